"""The answer formats the answer guardrails read, each by its name: how a streamed answer in it is
read and rewritten (`AnswerGuard`), how a whole (JSON) answer is, and the bytes a stream ends with
where it is denied or cannot be read. Plain code, knowing nothing of mitmproxy: the proxy's
`StreamTap` asks here by the format the client gets its answer in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE,
    CLAUDE_ON_BEDROCK,
    CLAUDE_ON_VERTEX,
    CODE_ASSIST,
    GEMINI_GENERATE,
    MCP_RESULTS,
    OPENAI_API,
    OPENAI_CHAT,
    OPENAI_COMPACTION,
    OPENAI_COMPLETIONS,
    OPENAI_IMAGES,
    OPENAI_RESPONSES,
)
from tollgate.formats.answer_reading.scanning import AnswerFormat
from tollgate.formats.anthropic_messages import answer_guard as messages
from tollgate.formats.bedrock_converse import answer_guard as converse
from tollgate.formats.bedrock_invoke import answer_guard as invoke
from tollgate.formats.bedrock_invoke import is_claude
from tollgate.formats.framing.bom import BOM
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.gemini_generate import answer_guard as gemini
from tollgate.formats.mcp import answer_guard as mcp
from tollgate.formats.openai_api import completions_guard as completions
from tollgate.formats.openai_api import images_guard as images
from tollgate.formats.openai_chat import answer_guard as chat
from tollgate.formats.openai_responses import COMPACT, RESPONSES
from tollgate.formats.openai_responses import answer_guard as responses
from tollgate.formats.openai_responses import compaction_guard as compaction
from tollgate.formats.request_facts import Classification


def _chat_saved(first: Any) -> bool:
    """Chat's saved answers: choices, but not Completions' (whose choices are told by their text)."""
    return isinstance(first, dict) and isinstance(first.get("choices"), list) and not completions.is_completion(first)


# Each format's readers, from its package (`formats/<format>/`): a new format is its line here.
ANSWER_FORMATS: dict[str, AnswerFormat] = {
    OPENAI_CHAT: replace(chat.ANSWER, saved=_chat_saved),
    OPENAI_COMPLETIONS: completions.ANSWER,
    OPENAI_RESPONSES: responses.ANSWER,
    ANTHROPIC_MESSAGES: messages.ANSWER,
    # Anthropic's own stream, at rawPredict and streamRawPredict (a saved one is told as Anthropic's)
    CLAUDE_ON_VERTEX: replace(messages.ANSWER, saved=None),
    CLAUDE_ON_BEDROCK: invoke.CLAUDES,
    GEMINI_GENERATE: gemini.ANSWER,
    CODE_ASSIST: gemini.CODE_ASSIST_ANSWER,
    BEDROCK_CONVERSE: converse.ANSWER,
    # Each family's own body, told by the answer where the model id does not tell it (`bedrock_invoke`).
    BEDROCK_INVOKE: invoke.ANSWER,
    OPENAI_IMAGES: images.ANSWER,
    OPENAI_COMPACTION: compaction.ANSWER,
    MCP_RESULTS: mcp.ANSWER,
}

# The endpoints whose answers are in a format of their own, not one of the chat formats a provider
# names (`Provider.routing.chat_formats`): endpoint → format.
ANSWER_ENDPOINTS: dict[str, str] = {
    # The plans' (Copilot's, ChatGPT's) name no chat formats: their answers are in these all the same.
    RESPONSES: OPENAI_RESPONSES,
    COMPACT: OPENAI_COMPACTION,
    "chat.completions": OPENAI_CHAT,
    # Code Assist's model calls (Gemini and Vertex AI name theirs among their chat formats).
    "generateContent": CODE_ASSIST,
    "streamGenerateContent": CODE_ASSIST,
    "invoke": BEDROCK_INVOKE,
    "invoke-with-response-stream": BEDROCK_INVOKE,
}


def _claude_on_vertex(classification: Classification) -> str | None:
    """rawPredict answers in its publisher's own body: Anthropic's is read."""
    return CLAUDE_ON_VERTEX if classification.wire_format == ANTHROPIC_MESSAGES else None


def _completions(classification: Classification) -> str | None:
    """OpenAI's legacy Completions, on its API and the OpenAI-compatible ones (not Anthropic's
    legacy `/v1/complete`, another format of the same endpoint's name)."""
    return OPENAI_COMPLETIONS if classification.wire_format == OPENAI_API else None


def _images(classification: Classification) -> str | None:
    """OpenAI's image generations, their JSON answers (a stream is not read)."""
    streamed = classification.facts.stream
    return OPENAI_IMAGES if classification.wire_format == OPENAI_API and not streamed else None


def _messages(classification: Classification) -> str | None:
    """Anthropic's Messages on a host of another's (Copilot's)."""
    return ANTHROPIC_MESSAGES if classification.wire_format == ANTHROPIC_MESSAGES else None


# The endpoints whose answers are in a format of their own for some models (or formats) only:
# endpoint → the format of a call's answer there (None: not read).
ANSWER_MODELS: dict[str, Callable[[Classification], str | None]] = {
    "completions": _completions,
    "images.generations": _images,
    "messages": _messages,
    "rawPredict": _claude_on_vertex,
    "streamRawPredict": _claude_on_vertex,
}


def model_answer_format(classification: Classification) -> str | None:
    """The format of a call's answer at an endpoint of `ANSWER_MODELS` (None elsewhere)."""
    of_model = ANSWER_MODELS.get(classification.endpoint or "")
    return of_model(classification) if of_model is not None else None


def endpoint_answer_format(endpoint: str, model: str | None) -> str | None:
    """The format of an endpoint's answers that is none of its provider's chat formats: Bedrock's
    InvokeModel answers in the model family's own, Claude's in its own (`CLAUDE_ON_BEDROCK`, read
    only once that format is registered here); where the model id does not name Claude (an
    application inference profile's ARN), the answer tells (`formats/bedrock_invoke/answer_guard.py`)."""
    found = ANSWER_ENDPOINTS.get(endpoint)
    if found == BEDROCK_INVOKE and is_claude(model or ""):
        return CLAUDE_ON_BEDROCK
    return found


def answer_format(name: str | None) -> AnswerFormat | None:
    """The readers of the format named, or None where answers in it are not read."""
    return ANSWER_FORMATS.get(name) if name is not None else None


def answer_format_of(classification: Classification, model: str | None) -> str | None:
    """The format of a call's answer where it is none of its provider's chat formats (by its
    endpoint, its wire format and the model it goes to); None where it is not read."""
    return model_answer_format(classification) or endpoint_answer_format(classification.endpoint or "", model)


def first_message(saved: bytes) -> Any:
    """A saved answer's first message: a JSON body's value, else the data of its first server-sent
    event that holds JSON (`[DONE]` and comments passed over); None where there is none."""
    body = saved.removeprefix(BOM).lstrip()
    if body[:1] in (b"{", b"["):
        try:
            return json.loads(body)
        except ValueError:
            return None
    for block in SSEFramer().feed(saved + b"\n\n"):
        event = parse_sse_block(block)
        if event is None:
            continue
        try:
            return json.loads(event.data)
        except ValueError:
            continue
    return None


def detected(saved: bytes) -> list[str]:
    """The formats whose answers a saved answer's first message looks like."""
    first = first_message(saved)
    if first is None:
        return []
    return [name for name, found in ANSWER_FORMATS.items() if found.saved is not None and found.saved(first)]
