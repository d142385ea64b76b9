"""What the stages share (`Shared`: the configuration loaded, `runtime.Loaded`, its audit log and ledger's
store), and per-flow access: the call record, the request as plain data, refusals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from mitmproxy import http
from mitmproxy.proxy.mode_specs import LocalMode, ProxyMode, TransparentMode, WireGuardMode

from ..auditlog import AuditLog
from ..call import Call
from ..json_codec import encode_json
from ..ledger.store import Store
from ..metrics import MetricSet
from ..policy import Policy
from ..providers import BUILT_IN_HOSTS, PROVIDERS, Hosts
from ..providers.base import FAILURES, Provider, Query, RequestParts
from ..raw_headers import decoded, with_header
from ..runtime import Loaded

CALL = "tollgate"
# The error of a call the process's end breaks off.
SHUT_DOWN = "proxy shut down during the call"
# The error of a call whose client went away before its answer ended.
CLIENT_DISCONNECTED = "client disconnected"

logger = logging.getLogger(__name__)


class Shared:
    """What the stages share: the configuration loaded (None until one has: a broken one must not
    leave Tollgate open), the audit log, which outlives a reload that keeps its path, and the
    ledger's store, which outlives one that keeps its URL."""

    def __init__(self) -> None:
        self.loaded: Loaded | None = None
        self.audit: AuditLog | None = None
        self.ledger: Store | None = None
        self.metrics: MetricSet | None = None  # while `metrics.listen` serves them
        # mitmproxy's `proxyauth` is `any`: it takes every login, and Tollgate judges its password,
        # which must be a JWT of a configured issuer (the user name says nothing).
        self.logins_unchecked = False
        # Set by `Decide.running`. Until then no policy worker is started: mitmproxy may still stop
        # at start-up (a busy port) by raising out of its event loop, and asyncio waits for ever
        # for a process cancelled while it is being made (its pipes are never connected).
        self.running = False
        # Set by `Drain` at SIGTERM: the proxy takes no new connection and ends once its calls have.
        self.draining = False
        # The error of the calls still in flight when the process ends (`Drain` says why, when the
        # drain ran out of time).
        self.shut_down_error = SHUT_DOWN
        # Why the configuration file's last edit was not loaded (the last good one is in force);
        # None when it was. Read by /healthz.
        self.config_problem: str | None = None

    def apply(self, loaded: Loaded, audit: AuditLog | None, ledger: Store | None = None) -> None:
        """Swap in a configuration, its audit log and its ledger's store; stop the policy, audit log
        and store no longer used (a policy once the evaluations under way have ended, an audit log
        and a store once they have written what they hold)."""
        old, old_audit, old_ledger = self.loaded, self.audit, self.ledger
        self.loaded, self.audit = loaded, audit
        self.ledger = ledger  # the store `loaded.config.ledger_store` names
        if old_audit is not None and old_audit is not audit:
            old_audit.close()
        if old_ledger is not None and old_ledger is not ledger:
            close_later(old_ledger)
        if old is not None and old.policy is not None and old.policy is not loaded.policy:
            old.policy.close()
        if self.running and loaded.policy is not None and (old is None or old.policy is not loaded.policy):
            loaded.policy.start()  # at start-up `Decide.running` starts it

    def rest_elsewhere(self, fingerprint: str, until: float) -> None:
        """A key that another process sharing the ledger's store rested, until `until` (epoch seconds)."""
        loaded = self.loaded
        if loaded is None:
            return
        seconds = until - time.time()
        if seconds > 0:
            for pool in loaded.pools.values():
                pool.rest_fingerprint(fingerprint, seconds)

    def replace_policy(self, current: Policy, fresh: Policy) -> bool:
        """Swap in a reloaded policy, unless a configuration replaced `current` meanwhile."""
        loaded = self.loaded
        if loaded is None or loaded.policy is not current:
            return False
        self.loaded = replace(loaded, policy=fresh)
        current.close()
        fresh.start()
        return True


def close_later(store: Store) -> None:
    """Close a store once it has written what it holds, without waiting for it (a reload)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(store.aclose())
        return
    task = loop.create_task(store.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # kept, so that a task is not collected before it ends


def write_body(request: http.Request, call: Call) -> None:
    """The call's changed JSON body into the request, with its Content-Length corrected. A SigV4
    hash of the old body no longer holds."""
    body = encode_json(call.body)
    call.body_sha256 = None
    if b"content-encoding" in call.headers or b"transfer-encoding" in call.headers:
        request.content = body  # mitmproxy's setter re-applies the encoding, keeps the chunking
        return
    # Most bodies are plain: the setter's four header scans are one pass here.
    request.raw_content = body
    request.headers.fields = with_header(request.headers.fields, b"content-length", str(len(body)).encode())


def credentials_of(call: Call, request: http.Request, provider: Provider) -> tuple[dict[str, str], Query]:
    """Where the provider's keys go in this request: its credential headers, and its query if keys go there."""
    return decoded(call.headers, provider.header_positions), (request.query if provider.query_positions else {})


def request_parts(request: http.Request, call: Call) -> RequestParts:
    """The request as plain data for the providers' hooks that read or sign it whole (Bedrock's):
    as mitmproxy holds it, nothing copied."""
    data = request.data
    return RequestParts(
        method=data.method,
        scheme=data.scheme,
        host=data.host,
        authority=request.authority if request.is_http2 or request.is_http3 else "",
        path=data.path,
        fields=data.headers.fields,
        body=data.content or b"",
        index=call.headers,
        called_host=call.host,
        upstream=call.upstream,
        payload_hash=call.body_sha256,
    )


def call_of(flow: http.HTTPFlow) -> Call | None:
    """The flow's call record while the call is live; None for flows Tollgate does not handle."""
    call = flow.metadata.get(CALL)
    return call if isinstance(call, Call) else None


def provider_of(call: Call) -> Provider:
    return PROVIDERS[call.provider]


def hosts_of(shared: Shared) -> Hosts:
    """The hosts the configuration in force governs (the providers' own before one has loaded)."""
    loaded = shared.loaded
    return BUILT_IN_HOSTS if loaded is None else loaded.hosts


def refuse(
    flow: http.HTTPFlow, call: Call, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """Answer the call in the provider's own error shape instead of forwarding it: the provider
    the client called, where a route translated the call into another's format."""
    shape = (
        PROVIDERS[call.requested_provider]
        if call.translated is not None and call.requested_provider
        else provider_of(call)
    )
    refusal = shape.refusal(reason, message)
    call.answered_by_tollgate = True
    call.refused = reason
    if reason not in FAILURES:
        # Tollgate's own refusal is its decision: the call was denied, for the stage's reasons
        # (the policy's, a limit's, an unknown key) where it gave some, else for this one.
        call.decision = "deny"
        call.deny_reasons = call.deny_reasons or (reason,)
    # mitmproxy cannot answer a request it streams upstream; the refused body is read instead.
    flow.request.stream = False
    flow.response = http.Response.make(
        refusal.status, refusal.body, {**refusal.headers, **(headers or {}), "x-tollgate-request-id": call.request_id}
    )


# mitmproxy's modes that take connections a client did not send to a proxy (`./run.sh --capture`).
CAPTURE_MODES = (TransparentMode, WireGuardMode, LocalMode)


def captures(mode: str) -> bool:
    """Whether the `mode` option's entry is one of the capture modes."""
    try:
        return isinstance(ProxyMode.parse(mode), CAPTURE_MODES)
    except ValueError:
        return False  # mitmproxy refuses it itself
