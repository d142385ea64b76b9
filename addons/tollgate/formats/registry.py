"""The wire formats Tollgate knows, by name (`Classification.wire_format`, a route's `ChatLeg`):
each is a package of `formats/` whose `wire.py` says what Tollgate asks of it (`wire.WireFormat`).
Adding a format is its package and a line here."""

from __future__ import annotations

from tollgate.formats.anthropic_messages import wire as anthropic_messages
from tollgate.formats.bedrock_converse import wire as bedrock_converse
from tollgate.formats.bedrock_invoke import wire as bedrock_invoke
from tollgate.formats.code_assist import wire as code_assist
from tollgate.formats.gemini_generate import wire as gemini_generate
from tollgate.formats.openai_api import wire as openai_api
from tollgate.formats.openai_chat import wire as openai_chat
from tollgate.formats.wire import WireFormat

WIRE_FORMATS: dict[str, WireFormat] = {
    f.name: f
    for f in (
        openai_api.WIRE,
        openai_chat.WIRE,
        anthropic_messages.WIRE,
        anthropic_messages.ON_VERTEX,
        gemini_generate.WIRE,
        bedrock_converse.WIRE,
        bedrock_invoke.WIRE,
        bedrock_invoke.AGENTS,
        code_assist.WIRE,
    )
}


def wire_format(name: str) -> WireFormat:
    """A format by its name; KeyError for a name no format has."""
    return WIRE_FORMATS[name]
