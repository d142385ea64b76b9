"""What the addons share: the loaded configuration and what is built from it, and per-flow access."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

from mitmproxy import http

from ..auditlog import AuditLog
from ..call import Call
from ..clients import Directory
from ..config import Config
from ..keypool import KeyPool
from ..overrides import RuleBook
from ..policy import Policy
from ..providers import PROVIDERS
from ..providers.base import INTERNAL_ERROR, Provider, Query, decoded, encode_json, with_header
from ..sigv4 import CredentialSource

CALL = "tollgate"

logger = logging.getLogger(__name__)


class Shared:
    """`apply` swaps in everything built from a new configuration at once."""

    def __init__(self) -> None:
        # False until a configuration has loaded: a broken one must not leave Tollgate open.
        self.ready = False
        self.audit: AuditLog | None = None
        self.policy: Policy | None = None
        self.aws_credentials: CredentialSource | None = None
        self._use(Config())

    def apply(self, config: Config, audit: AuditLog, policy: Policy | None, aws: CredentialSource | None) -> None:
        old, old_policy = self.audit, self.policy
        self._use(config)
        self.policy = policy
        self.aws_credentials = aws
        self.audit = audit
        self.ready = True
        if old is not None and old is not audit:
            old.close()
        if old_policy is not None and old_policy is not policy:
            old_policy.close()

    def _use(self, config: Config) -> None:
        self.config = config
        self.providers = {name: config.providers.get(name) for name in PROVIDERS}  # each one's settings
        self.directory = Directory(config)
        self.rules = RuleBook(config.overrides)
        self.pools = {name: KeyPool(settings.keys) for name, settings in self.providers.items()}


class CallStage:
    """A stage that acts on a call's request once, before it goes upstream: at `request` as a rule,
    but at `requestheaders` for a streamed upload, whose body goes upstream as it arrives.
    `handle` may return an awaitable (the work is not done until it is), which the hook returns."""

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        return run_call_stages((self,), True, flow)

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        return run_call_stages((self,), False, flow)

    def _handle_or_refuse(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        # mitmproxy would log an exception and carry on with the stages after this one skipped:
        # a call would go out unidentified or with the caller's credential. Fail closed instead.
        try:
            pending = self.handle(flow, call)
        except Exception:
            self._refuse_after_failure(flow, call)
            return None
        return None if pending is None else self._finish_or_refuse(flow, call, pending)

    async def _finish_or_refuse(self, flow: http.HTTPFlow, call: Call, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            self._refuse_after_failure(flow, call)

    def _refuse_after_failure(self, flow: http.HTTPFlow, call: Call) -> None:
        logger.exception(f"Tollgate: {type(self).__name__} failed on a call; it was refused")
        call.error = f"internal error in {type(self).__name__}"
        refuse(flow, call, INTERNAL_ERROR, "Tollgate failed on this call and did not forward it; see its console.")

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        raise NotImplementedError


def run_call_stages(stages: Sequence[CallStage], at_headers: bool, flow: http.HTTPFlow) -> Awaitable[None] | None:
    """Call stages in turn on the flow's call, at its request headers for a streamed upload, else at
    its request; until one answers it. `Gateway` runs consecutive stages with one lookup of the call.
    Once a stage returns an awaitable, the rest run after it: the awaitable returned does that."""
    call = call_of(flow)
    if call is None or call.streamed_upload is not at_headers:
        return None
    for stage in stages:
        if flow.response is not None:
            return None
        pending = stage._handle_or_refuse(flow, call)
        if pending is not None:
            return _then_call_stages(pending, stages[stages.index(stage) + 1 :], flow, call)
    return None


async def _then_call_stages(
    pending: Awaitable[None], stages: Sequence[CallStage], flow: http.HTTPFlow, call: Call
) -> None:
    await pending
    for stage in stages:
        if flow.response is not None:
            return
        pending = stage._handle_or_refuse(flow, call)
        if pending is not None:
            await pending


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


def call_of(flow: http.HTTPFlow) -> Call | None:
    """The flow's call record while the call is live; None for flows Tollgate does not handle."""
    call = flow.metadata.get(CALL)
    return call if isinstance(call, Call) else None


def provider_of(call: Call) -> Provider:
    return PROVIDERS[call.provider]


def refuse(flow: http.HTTPFlow, call: Call, reason: str, message: str) -> None:
    """Answer the call in the provider's own error shape instead of forwarding it."""
    refusal = provider_of(call).refusal(reason, message)
    call.answered_by_tollgate = True
    # mitmproxy cannot answer a request it streams upstream; the refused body is read instead.
    flow.request.stream = False
    flow.response = http.Response.make(
        refusal.status, refusal.body, {**refusal.headers, "x-tollgate-request-id": call.request_id}
    )
