"""What the first calls would otherwise do on the event loop, holding every stream in flight, done
before the proxy listens (mitmproxy listens once its options are configured, and only then).

- The upstream TLS context: mitmproxy makes it at the first connection to an upstream, loading
  certifi's ~140 CAs (25-50 ms) unless `ssl_verify_upstream_trusted_ca` names others. It is made
  here with the arguments mitmproxy's `tls_start_server` will give it, into the cache it keeps.
- The objects made at start-up: loading mitmproxy, Tollgate, its price table and its configuration
  leaves some 145 000 objects that live as long as the process. Python's cyclic garbage collector
  walks every one of them in its first full collection, which the first calls' allocations set
  off: 100 ms and more. They are collected once and frozen (`gc.freeze`): later collections walk
  only what was made since. A configuration a reload replaces is freed as before, by reference
  counting; the few of its objects in reference cycles (a dozen) stay.
- The detectors that read every call's model for secrets (`shown_name`): a configuration with no
  guardrails and no keys of its own compiles them at the first call's model (about 0.1 s).
- With `agents`, the pass that finds the injection phrases (about 0.2 s to compile)."""

from __future__ import annotations

import gc
import logging
import os
import time

from mitmproxy import ctx
from mitmproxy.addons import tlsconfig
from mitmproxy.net import tls as net_tls

from tollgate.governance.agents import injection
from tollgate.governance.guardrails.rules import shown_name
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


class WarmUp:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._done = False

    def configure(self, _updated: set[str]) -> None:
        """Once, when the first configuration has been loaded."""
        if self._done or self.shared.loaded is None:
            return
        self._done = True
        shown_name("", self.shared.loaded.guardrails)
        if self.shared.loaded.config.agents is not None:
            injection.ready()
        start = time.perf_counter()
        try:
            upstream_tls_context()
        except Exception as e:  # mitmproxy says what is wrong at the first connection, as without this
            logger.debug(f"Tollgate: the upstream TLS context was not made ahead: {type(e).__name__}: {e}")
        made = time.perf_counter()
        if gc.get_freeze_count() == 0:  # once a process (another pipeline in it has done it)
            gc.collect()
            gc.freeze()
        logger.debug(
            f"Tollgate: upstream TLS context made in {(made - start) * 1000:.0f} ms; {gc.get_freeze_count()}"
            f" objects of start-up collected and frozen in {(time.perf_counter() - made) * 1000:.0f} ms"
        )


def upstream_tls_context() -> object:
    """mitmproxy's TLS context for an upstream over TLS, as its `tls_start_server` asks its cache
    for it when neither the server nor an addon changed its ciphers and no client certificate is
    chosen per host (`client_certs` a directory)."""
    options = ctx.options
    min_version = net_tls.Version[options.tls_version_server_min]
    ciphers = options.ciphers_server.split(":") if options.ciphers_server else None
    client_cert = os.path.expanduser(options.client_certs) if options.client_certs else None
    return net_tls.create_proxy_server_context(
        method=net_tls.Method.TLS_CLIENT_METHOD,
        min_version=min_version,
        max_version=net_tls.Version[options.tls_version_server_max],
        cipher_list=tuple(ciphers or tlsconfig._default_ciphers(min_version)),
        ecdh_curve=net_tls.get_curve(options.tls_ecdh_curve_server),
        verify=net_tls.Verify.VERIFY_NONE if options.ssl_insecure else net_tls.Verify.VERIFY_PEER,
        ca_path=options.ssl_verify_upstream_trusted_confdir,
        ca_pemfile=options.ssl_verify_upstream_trusted_ca,
        client_cert=client_cert if client_cert and os.path.isfile(client_cert) else None,
        legacy_server_connect=options.ssl_insecure,
    )
