"""Who is calling: the proxy login, a virtual key, or anonymous; 401 otherwise."""

from __future__ import annotations

from mitmproxy import http

from .. import sigv4
from ..call import Call
from ..providers.base import INVALID_SIGNATURE, UNAUTHENTICATED
from ..providers.bedrock import region_of
from ..sigv4 import UNKNOWN_KEY, SignatureError
from .redact import credential_positions
from .shared import Shared, credentials_of, provider_of, refuse

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
        if name is None and call.provider == "bedrock":
            try:
                signed_with = self._verified_aws_key(flow, call)
            except SignatureError as e:
                call.decision = "deny"
                call.deny_reasons = (str(e),)
                refuse(flow, call, UNAUTHENTICATED if e.code == UNKNOWN_KEY else INVALID_SIGNATURE, str(e))
                return
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

    def _verified_aws_key(self, flow: http.HTTPFlow, call: Call) -> str | None:
        """The virtual AWS access key id whose SigV4 signature this request carries, verified over
        the request exactly as it arrived; None when it carries no virtual AWS credential."""
        authorization = call.headers.get(b"authorization", b"").decode("utf-8", "surrogateescape")
        if not authorization.startswith(sigv4.ALGORITHM):
            return None
        try:
            key_id = sigv4.parse_authorization(authorization).access_key_id
        except SignatureError:
            return None  # not ours to judge: it is no virtual credential
        directory = call.loaded.directory
        if not directory.is_virtual_aws_key(key_id):
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in flow.request.headers.fields]
        if not any(name.lower() == "host" for name, _ in headers):  # HTTP/2 carries it as :authority
            headers.append(("host", flow.request.host_header or call.host))
        verified = sigv4.verify_request(
            method=flow.request.method,
            raw_path=flow.request.path,
            headers=headers,
            body=flow.request.raw_content or b"",
            secrets=directory.aws_secrets,
            service="bedrock",
            region=region_of(call.host),
        )
        call.body_sha256 = verified.payload_hash
        return key_id
