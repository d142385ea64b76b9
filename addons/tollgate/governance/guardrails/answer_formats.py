"""The answer formats the answer guardrails read, each by its name: how a streamed answer in it is
read and rewritten (`AnswerGuard`), how a whole (JSON) answer is, and the bytes a stream ends with
where it is denied or cannot be read. Plain code, knowing nothing of mitmproxy: the proxy's
`StreamTap` asks here by the format the client gets its answer in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

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
from tollgate.formats.bedrock_converse.fields import EVENT_STREAM
from tollgate.formats.bedrock_invoke import is_claude
from tollgate.formats.framing.bom import BOM
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.openai_responses import COMPACT, RESPONSES
from tollgate.formats.request_facts import Classification
from tollgate.governance.guardrails import (
    compaction_answer,
    completions_answer,
    gemini_answer,
    images_answer,
    mcp_answer,
    messages_answer,
    responses_answer,
)
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.bedrock_answer import ConverseAnswerGuard, denied_frame, guard_bedrock_json
from tollgate.governance.guardrails.chat_answer import ChatAnswerGuard, denied_event, guard_chat_json
from tollgate.governance.guardrails.invoke_answer import InvokeByAnswerGuard, guard_invoke_json
from tollgate.governance.guardrails.mcp_answer import McpAnswerGuard, guard_mcp_json


class AnswerGuard(Protocol):
    """A streamed answer, read and rewritten: `feed` each piece as it comes, `flush` at its end.
    `denied`: the kind of a value that stopped it (the caller then closes the upstream);
    `counts`: what was found so far, kind → count."""

    denied: str | None

    @property
    def counts(self) -> dict[str, int]: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


# A whole answer read: the body as it goes on (redacted, or as it came where nothing is), the kind
# of a value to deny (the answer is then refused), and the counts.
WholeGuard = Callable[[AnswerDetectors, bytes], tuple[bytes, str | None, dict[str, int]]]


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """One format's readers: `stream` makes a streamed answer's guard, `whole` reads a JSON
    answer, `denied_end(kind)` is what a stream ends with at a value to deny (or `unread`).
    `stream_types`: the media types of its streamed answers; `application/json` among them (a
    streamed JSON array, as Gemini's) is a stream only where the call asked for one. `saved`:
    whether a saved answer is in this format, by its first message (`first_message`; `tollgate
    scan --answer` without `--format`). `denied_inside`: a value to deny replaces the message it
    is in (MCP's JSON-RPC error), the answer going on. `array_end(kind, opened)`: what a stream
    written as one JSON array (Gemini's without alt=sse) ends with where it cannot be read, its
    error item and the array closed (`opened`: its `[` went already); None: no such stream."""

    stream: Callable[[AnswerDetectors], AnswerGuard]
    whole: WholeGuard
    denied_end: Callable[[str], bytes]
    stream_types: frozenset[str] = frozenset(("text/event-stream",))
    saved: Callable[[Any], bool] | None = None
    denied_inside: bool = False
    array_end: Callable[[str, bool], bytes] | None = None

    def streams(self, content_type: str, asked: bool = False) -> bool:
        """Whether an answer of this `Content-Type` is streamed (else read whole); `asked`: whether
        the call asked for a stream."""
        media = content_type.split(";", maxsplit=1)[0].strip().lower()
        return media in self.stream_types and (asked or media != JSON_TYPE)


JSON_TYPE = "application/json"
# Gemini's streams: server-sent events (`alt=sse`), or one JSON array (`application/json`).
_GEMINI_STREAMS = frozenset(("text/event-stream", JSON_TYPE))


def _chat_saved(first: Any) -> bool:
    return (
        isinstance(first, dict)
        and isinstance(first.get("choices"), list)
        and not completions_answer.is_completion(first)
    )


def _mcp_saved(first: Any) -> bool:
    messages = first if isinstance(first, list) else [first]
    return bool(messages) and all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in messages)


def _responses_saved(first: Any) -> bool:
    return isinstance(first, dict) and (
        first.get("object") == "response" or str(first.get("type")).startswith("response.")
    )


def _messages_saved(first: Any) -> bool:
    return isinstance(first, dict) and first.get("type") in ("message_start", "message")


def _gemini_saved(first: Any) -> bool:
    item = first[0] if isinstance(first, list) and first else first
    return isinstance(item, dict) and isinstance(item.get("candidates"), list)


_MESSAGES = AnswerFormat(
    messages_answer.MessagesAnswerGuard,
    messages_answer.guard_messages_json,
    messages_answer.denied_event,
    saved=_messages_saved,
)


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    OPENAI_CHAT: AnswerFormat(ChatAnswerGuard, guard_chat_json, denied_event, saved=_chat_saved),
    OPENAI_COMPLETIONS: AnswerFormat(
        completions_answer.CompletionsAnswerGuard,
        completions_answer.guard_completions_json,
        completions_answer.denied_event,
        saved=completions_answer.is_completion,
    ),
    OPENAI_RESPONSES: AnswerFormat(
        responses_answer.ResponsesAnswerGuard,
        responses_answer.guard_responses_json,
        responses_answer.denied_event,
        saved=_responses_saved,
    ),
    ANTHROPIC_MESSAGES: _MESSAGES,
    # Anthropic's own stream, at rawPredict and streamRawPredict (a saved one is told as Anthropic's)
    CLAUDE_ON_VERTEX: replace(_MESSAGES, saved=None),
    CLAUDE_ON_BEDROCK: AnswerFormat(
        messages_answer.BedrockMessagesGuard,
        messages_answer.guard_messages_json,
        denied_frame,
        frozenset((EVENT_STREAM,)),
    ),
    GEMINI_GENERATE: AnswerFormat(
        gemini_answer.GeminiAnswerGuard,
        gemini_answer.guard_gemini_json,
        gemini_answer.denied_event,
        _GEMINI_STREAMS,
        saved=_gemini_saved,
        array_end=gemini_answer.array_end,
    ),
    CODE_ASSIST: AnswerFormat(
        gemini_answer.code_assist_guard, gemini_answer.guard_code_assist_json, gemini_answer.denied_event
    ),
    BEDROCK_CONVERSE: AnswerFormat(ConverseAnswerGuard, guard_bedrock_json, denied_frame, frozenset((EVENT_STREAM,))),
    # Each family's own body, told by the answer where the model id does not tell it (`invoke_answer`).
    BEDROCK_INVOKE: AnswerFormat(InvokeByAnswerGuard, guard_invoke_json, denied_frame, frozenset((EVENT_STREAM,))),
    # Read whole only: a stream (none asked for, the asked ones refused before they go) stops unread.
    OPENAI_IMAGES: AnswerFormat(
        images_answer.UnreadStream, images_answer.guard_images_json, denied_event, stream_types=frozenset()
    ),
    # A compacted conversation: one JSON object, never streamed (a stream stops unread).
    OPENAI_COMPACTION: AnswerFormat(
        images_answer.UnreadStream,
        compaction_answer.guard_compaction_json,
        responses_answer.denied_event,
        stream_types=frozenset(),
    ),
    MCP_RESULTS: AnswerFormat(
        McpAnswerGuard, guard_mcp_json, mcp_answer.denied_event, saved=_mcp_saved, denied_inside=True
    ),
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
    application inference profile's ARN), the answer tells (`invoke_answer`)."""
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
