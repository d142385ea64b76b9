"""Who is calling: the proxy login, a virtual key, or anonymous; 401 otherwise."""

from __future__ import annotations

from mitmproxy import http

from ..call import Call
from ..providers.base import UNAUTHENTICATED
from .shared import CallStage, Shared, provider_of, refuse

PROXYAUTH = "proxyauth"


def forget_proxy_password(flow: http.HTTPFlow) -> None:
    """mitmproxy's proxyauth keeps (user, password) in the flow's metadata, which saved flows carry."""
    login = flow.metadata.get(PROXYAUTH)
    if isinstance(login, (tuple, list)) and len(login) == 2 and login[1]:
        flow.metadata[PROXYAUTH] = (login[0], "")


class Identify(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def http_connect(self, flow: http.HTTPFlow) -> None:
        forget_proxy_password(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        forget_proxy_password(flow)
        super().requestheaders(flow)

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        login = flow.metadata.get(PROXYAUTH)
        name = login[0] if isinstance(login, (tuple, list)) and login and login[0] else None
        presented = provider_of(call).presented(flow.request.headers, flow.request.query)
        caller = self.shared.directory.identify(name, presented)
        if caller is None:
            call.decision = "deny"
            call.deny_reasons = ["unknown or missing API key"]
            refuse(
                flow,
                call,
                UNAUTHENTICATED,
                "Tollgate: unknown or missing API key. Use the virtual key Tollgate's operator gave you.",
            )
            return
        call.client, call.groups, call.auth = caller.name, caller.groups, caller.auth
