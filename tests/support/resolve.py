"""A stand-in for DNS, loaded into the tests' mitmdump after Tollgate (`-s`): a connection to a host
that TOLLGATE_TEST_RESOLVE names (a JSON object of host names, or `host:port`s, to ports) goes to
127.0.0.1 on that port instead, its TLS SNI and Host header unchanged. A fake upstream there whose certificate
covers the name then sees which host a call went to, as the provider's own server would."""

from __future__ import annotations

import json
import os

from mitmproxy.proxy import server_hooks


class Resolve:
    def __init__(self) -> None:
        self.ports: dict[str, int] = {
            k.lower(): v for k, v in json.loads(os.environ.get("TOLLGATE_TEST_RESOLVE", "{}")).items()
        }

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        host, port, *_ = data.server.address
        port = self.ports.get(f"{host.lower()}:{port}", self.ports.get(host.lower()))
        if port is not None:
            data.server.address = ("127.0.0.1", port)


addons = [Resolve()]
