"""Routes across wire formats: a chat call that a rule sends to a provider speaking another format
goes there translated, and its answer, stream or error comes back in the caller's format, the
stream translated event by event as it arrives (`formats/translation.py`)."""

from __future__ import annotations

import logging
from functools import partial

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.bodies.raw_headers import decoded
from tollgate.formats.chat import Untranslatable
from tollgate.formats.framing import MAX_FRAME, Undecodable, decode_whole
from tollgate.formats.refusals import BAD_REQUEST, INTERNAL_ERROR
from tollgate.proxy.flows import call_of, provider_of, refuse
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

# The caller's headers a translated request keeps: the rest speak the caller's API (its key, its
# version, its SDK's telemetry), not the target's; its format's own (`Translation.caller_headers`)
# go to the target's writer.
_KEPT = frozenset((b"host", b"user-agent"))
# The answer's headers that no longer hold once its body is translated.
_ANSWER_DROPPED = frozenset((b"content-length", b"content-encoding", b"content-type", b"transfer-encoding"))


class Translate:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        """The request, rewritten for the target's own API (Override chose the route)."""
        if call.route.translated is None:
            return
        refusal = self.rewrite(flow, call)
        if refusal is not None:
            reason, message, error = refusal
            refuse(flow, call, reason, message)
            if error is not None:
                call.answer.error = error

    def again(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call step of a routed call whose conversation `RollUp` rolled up (the pipeline's
        `rolled_up`): its client's body, rolled up, written in the target's format anew. Where it
        cannot be, the request goes as translated before, in full, and the call is not rolled up:
        a roll-up saves tokens, it is not a gate."""
        translated, call.request.body = call.request.body, call.request.client_body
        refusal = self.rewrite(flow, call, again=True)
        if refusal is not None:
            logger.warning("Tollgate: a conversation was not rolled up: %s", refusal[1])
            call.request.body, call.rolled_up, call.failover.rolled_up = translated, None, None

    def rewrite(self, flow: http.HTTPFlow, call: Call, again: bool = False) -> tuple[str, str, str | None] | None:
        """The request of a call with a translation, written for its target's own API; else why it
        cannot be (the refusal's reason and message, and the call's error): `handle` refuses it
        (a fallback's is skipped then), `again` keeps the request as translated before. `again`:
        the same call's request written anew (rolled up), whose dropped fields were told already."""
        translation = call.route.translated
        assert translation is not None
        request, c = flow.request, call.classification
        if call.request.body is None:  # Classify read the body exactly (its encoding undone), or refused it
            return BAD_REQUEST, "Tollgate translates only a JSON body for this route.", None
        caller = decoded(call.request.headers, translation.caller_headers)
        model = call.route.target.model  # the name the target's API takes (an Azure deployment's)
        if model is None:
            return BAD_REQUEST, "This call names no model for its route to translate.", None
        stream = bool(c.facts.stream)
        leg = provider_of(call).native_chat(model, stream, translation.source)
        translation.target = leg.format
        try:
            body, extra, dropped = translation.request(call.request.body, model, stream, caller)
        except Untranslatable as e:
            message = f"Tollgate cannot route this call to {call.route.target.provider}: {e}"
            return BAD_REQUEST, message, "untranslatable request"
        provider_of(call).fit_chat_body(body)
        if dropped and not again:
            logger.warning(
                "Tollgate: %s call routed to %s without %s (no equivalent there)",
                call.route.requested.provider, call.route.target.provider, ", ".join(dict.fromkeys(dropped)),
            )  # fmt: skip
        path, _, query = leg.path.partition("?")
        try:
            call.route.upstream_classification = provider_of(call).classify("POST", path, body, query)
        except Unreadable as e:  # Tollgate's own translation is at fault: never sent
            logger.error("Tollgate: a translated %s call does not classify: %s", call.route.target.provider, e)
            return INTERNAL_ERROR, "Tollgate could not translate this call.", None
        translation.billed = partial(provider_of(call).cost.billed_usage, call.route.upstream_classification)
        content = encode_json(body)
        accept = provider_of(call).routing.stream_media_type if stream else "application/json"
        fields = [f for f in request.headers.fields if f[0].lower() in _KEPT]
        fields += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"accept", accept.encode()),
            # The answer is read whole to be translated: not compressed on the way.
            (b"accept-encoding", b"identity"),
            *provider_of(call).routing.target_headers,
            *((k.encode(), v.encode()) for k, v in extra.items()),
        ]
        request.headers.fields = tuple(fields)
        request.path = leg.path
        request.raw_content = content
        call.request.client_body, call.request.body, call.request.body_sha256 = call.request.body, body, None
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The headers of an answer StreamTap translates, as the caller's format sends them. An
        error is left to mitmproxy to read whole (it holds no completion), to be put in the caller's
        shape at `response`, its status kept."""
        call = call_of(flow)
        response = flow.response
        if call is None or call.route.translated is None or response is None or call.route.translated.rewrite is None:
            return
        translation = call.route.translated
        stream = bool(call.classification.facts.stream)
        fields = [f for f in response.headers.fields if f[0].lower() not in _ANSWER_DROPPED]
        fields.append((b"content-type", translation.content_type(stream).encode()))
        if flow.request.http_version.startswith("HTTP/1"):
            # The translated body's length is known only at its end.
            fields.append((b"transfer-encoding", b"chunked"))
        response.headers.fields = tuple(fields)

    def response(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        response = flow.response
        translation = call.route.translated if call is not None else None
        if call is None or translation is None or response is None or call.answer.answered_by_tollgate:
            return
        if response.status_code < 400 or response.raw_content is None:
            return
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:  # read as a streamed answer is: a bomb or an undecodable body is not read
            content = decode_whole(response.raw_content, headers.get("content-encoding", "identity"), MAX_FRAME)
        except Undecodable:
            content = b""  # the caller still gets the status, in its own shape
        try:
            status, shaped, body = translation.error(response.status_code, headers, content)
        except Exception:
            logger.exception("Tollgate: translating an upstream error failed")
            return
        response.status_code = status
        kept = [f for f in response.headers.fields if f[0].lower() not in _ANSWER_DROPPED]
        response.headers.fields = tuple(kept)
        response.headers.update(shaped)
        response.content = body
