"""Who is calling: the proxy login, a virtual key, or anonymous; 401 otherwise."""

from __future__ import annotations

from mitmproxy import http

from ..call import Call
from ..providers.base import INVALID_SIGNATURE, UNAUTHENTICATED
from ..sigv4 import UNKNOWN_KEY, SignatureError
from .redact import credential_positions
from .shared import Shared, credentials_of, provider_of, refuse, request_parts

PROXYAUTH = "proxyauth"


def forget_proxy_password(flow: http.HTTPFlow) -> None:
    """mitmproxy's proxyauth keeps (user, password) in the flow's metadata, which saved flows carry."""
    login = flow.metadata.get(PROXYAUTH)
    if isinstance(login, (tuple, list)) and len(login) == 2 and login[1]:
        flow.metadata[PROXYAUTH] = (login[0], "")


class Identify:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        provider = provider_of(call)
        credentials = credentials_of(call, flow.request, provider)
        # Every credential the request carries, for any provider: Redact shows where they were.
        call.credential_positions = credential_positions(
            call.headers, flow.request.query if b"?" in flow.request.data.path else ()
        )
        login = flow.metadata.get(PROXYAUTH)
        name = login[0] if isinstance(login, (tuple, list)) and login and login[0] else None
        signed_with = None
        if name is None and provider.verifies_callers:
            try:
                verified = provider.verify_caller(request_parts(flow.request, call), call.loaded.directory.aws_secrets)
            except SignatureError as e:
                call.decision = "deny"
                call.deny_reasons = (str(e),)
                refuse(flow, call, UNAUTHENTICATED if e.code == UNKNOWN_KEY else INVALID_SIGNATURE, str(e))
                return
            if verified is not None:
                call.body_sha256 = verified.payload_hash
                signed_with = verified.key_id
        presented = provider.presented(*credentials)
        caller = call.loaded.directory.identify(name, presented, signed_with)
        if caller is None:
            call.decision = "deny"
            call.deny_reasons = ("unknown or missing API key",)
            refuse(
                flow,
                call,
                UNAUTHENTICATED,
                "Tollgate: unknown or missing API key. Use the virtual key Tollgate's operator gave you.",
            )
            return
        call.client, call.groups, call.auth = caller.name, caller.groups, caller.auth
