"""OpenAI's API as a wire format (`formats/wire.py`): any of its endpoints, on OpenAI or on another
provider's OpenAI-compatible API."""

from __future__ import annotations

from tollgate.formats import OPENAI_API, OPENAI_CHAT
from tollgate.formats.openai_api.answers import CHAT, streamed_usage, usage
from tollgate.formats.openai_api.attachments import MARKERS, attachments, runs
from tollgate.formats.openai_chat import ask_for_usage
from tollgate.formats.openai_chat.answer import reasoning_beside_completion
from tollgate.formats.openai_chat.errors import refusal
from tollgate.formats.request_facts import Classification
from tollgate.formats.wire import WireFormat


def conversation(classification: Classification) -> str | None:
    """A chat call holds a conversation in Chat Completions' `messages`."""
    return OPENAI_CHAT if classification.endpoint == CHAT else None


WIRE = WireFormat(
    OPENAI_API,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    conversation=conversation,
    bearer_key=True,
    ask_for_usage=ask_for_usage,
    # A chat answer's `completion_tokens` may leave its reasoning out (xAI's, Gemini's
    # OpenAI-compatible endpoint's): where its provider bills both as output, both are.
    reasoning_beside=frozenset((CHAT,)),
    with_reasoning=reasoning_beside_completion,
    attachments=attachments,
    attachment_markers=MARKERS,
    text_runs=runs,
)
