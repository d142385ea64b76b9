"""The part of a provider that says how a route between providers reaches it or leaves it: the
OpenAI-compatible API it offers, whether OpenAI-compatible APIs take its calls as they are, its
chat endpoints a route may translate from, and what a request Tollgate writes for it needs. Plain
Python that knows nothing of mitmproxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tollgate.formats.bodies.raw_headers import Fields


@dataclass(frozen=True, slots=True)
class Routing:
    """How routes reach a provider, which every provider declares as its `routing`.

    `openai_compatible_prefix`: the path prefix of its OpenAI-compatible API, if it has one, that
    stands for OpenAI's `/v1/`, and `openai_compatible_endpoints` the endpoints offered there:
    OpenAI-format calls may be routed here (`overrides:`). `openai_compatible_source`: its own API
    is the one OpenAI-compatible APIs copy, so they take its calls as they are (`api:
    openai_compatible` routes only its calls). `chat_formats`: its chat endpoints a route may
    translate from (`overrides: … provider:`), and the wire format each speaks
    (`formats/registry.py`'s names). `target_headers`: headers its own API needs on every request
    Tollgate writes for it (a translated call, the summarizer's), beside the body's own.
    `stream_media_type`: the media type a streamed answer comes in (what a translated streamed
    call accepts)."""

    openai_compatible_prefix: str | None = None
    openai_compatible_endpoints: frozenset[str] = frozenset()
    openai_compatible_source: bool = False
    chat_formats: Mapping[str, str] = field(default_factory=dict)
    target_headers: Fields = ()
    stream_media_type: str = "text/event-stream"
