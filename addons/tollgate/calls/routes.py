"""Where a call an override rule routes goes: to a path of the target's own API that speaks its
format, or translated into the target's; and the request a fallback to another provider is
written from, as its client sent it; the format the client gets its answer in. Plain logic, no
mitmproxy."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, urlencode

from tollgate.calls.call import Call, ClientRequest
from tollgate.formats.bodies.raw_headers import Fields
from tollgate.formats.translation import Translation
from tollgate.governance.guardrails.answer_formats import answer_format_of
from tollgate.providers import Provider


def own_api_path(call: Call, target: str) -> str | None:
    """Where a call goes on `target`'s own API when that API speaks the call's format already (an
    OpenAI-format call to a provider's OpenAI-compatible endpoint, routed to OpenAI); None when it
    must be translated."""
    requested = call.route.requested
    source = call.registry[requested.provider].routing.chat_formats[call.classification.endpoint or ""]
    leg = call.registry[target].native_chat(requested.model or "", bool(call.classification.facts.stream), source)
    return leg.path if leg.format == source else None


def translation_for(call: Call, alt: str | None) -> Translation:
    """The translation of a call Override routes to another provider's own format; a Gemini caller's
    stream comes back as it asked for it, server-sent events (`alt=sse`, the query's `alt`) or one JSON
    array."""
    endpoint = call.classification.endpoint or ""
    json_array = endpoint == "streamGenerateContent" and alt != "sse"
    return Translation(call.registry[call.route.requested.provider].routing.chat_formats[endpoint], json_array)


# What the kept request of a call leaves out besides its provider's credential positions: the side
# headers name other providers' keys; its body is kept decoded, so its framing goes; Tollgate's
# own roll-up header never goes upstream.
_NOT_KEPT = frozenset(
    (b"proxy-authorization", b"content-length", b"content-encoding", b"transfer-encoding", b"x-tollgate-rollup")
)


def client_request(
    provider: Provider,
    where: tuple[str, str, int],
    path: str,
    fields: Fields,
    content: bytes,
    side_headers: frozenset[bytes],
) -> ClientRequest:
    """A request as its client sent it, for a fallback to another provider to be written from:
    without the caller's credentials (headers and query parameters) and what picks an account."""
    dropped = (
        provider.credentials.caller.header_positions
        | provider.credentials.key.billing_headers
        | side_headers
        | _NOT_KEPT
    )
    kept = tuple((name, value) for name, value in fields if name.lower() not in dropped)
    raw, _, query = path.partition("?")
    if query and provider.credentials.caller.query_positions:
        pairs = [
            (k, v)
            for k, v in parse_qsl(query, keep_blank_values=True)
            if k not in provider.credentials.caller.query_positions
        ]
        path = f"{raw}?{urlencode(pairs)}" if pairs else raw
    return ClientRequest(*where, path, kept, content)


def fallback_route(call: Call, target: str, model: str) -> tuple[Literal["same", "own", "native"], str | None] | None:
    """How a fallback takes a call to `model` of `target` from the request its client sent
    (`route.requested`, the provider the client called): to that provider itself (`same`),
    to the path of the target's API that speaks the call's format (`own`), or translated into the
    target's own format (`native`); None where the call is no chat call, which is not translated."""
    if target == call.route.requested.provider:
        return "same", None
    endpoint = call.classification.endpoint or ""
    source = call.registry[call.route.requested.provider].routing.chat_formats.get(endpoint)
    if source is None:
        return None
    leg = call.registry[target].native_chat(model, bool(call.classification.facts.stream), source)
    return ("own", leg.path) if leg.format == source else ("native", None)


def client_answer_format(call: Call) -> str | None:
    """The name of the format a call's client gets its answer in (after any translation), where
    an answer format may read it; None where none is known for it."""
    translation = call.route.translated
    if translation is not None:
        return translation.source
    endpoint = call.classification.endpoint or ""
    formats = call.registry[call.route.requested.provider].routing.chat_formats
    return formats.get(endpoint) or answer_format_of(call.classification, call.target_model)
