"""The answer formats the answer guardrails read, each by its name: how a streamed answer in it is
read and rewritten (`AnswerGuard`), how a whole (JSON) answer is, and the bytes a stream ends with
where it is denied or cannot be read. Plain code, knowing nothing of mitmproxy: the proxy's
`StreamTap` asks here by the format the client gets its answer in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tollgate.formats import MCP_RESULTS, OPENAI_CHAT
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.governance.guardrails import mcp_answer
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.chat_answer import ChatAnswerGuard, denied_event, guard_chat_json
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
    `stream_types`: the media types of its streamed answers. `saved`: whether a saved answer is in
    this format, by its first message (`first_message`; `tollgate scan --answer` without `--format`). `denied_inside`: a
    value to deny replaces the message it is in (MCP's JSON-RPC error), the answer going on."""

    stream: Callable[[AnswerDetectors], AnswerGuard]
    whole: WholeGuard
    denied_end: Callable[[str], bytes]
    stream_types: frozenset[str] = frozenset(("text/event-stream",))
    saved: Callable[[Any], bool] | None = None
    denied_inside: bool = False

    def streams(self, content_type: str) -> bool:
        """Whether an answer of this `Content-Type` is streamed (else read whole)."""
        return content_type.split(";", maxsplit=1)[0].strip().lower() in self.stream_types


def _chat_saved(first: Any) -> bool:
    return isinstance(first, dict) and isinstance(first.get("choices"), list)


def _mcp_saved(first: Any) -> bool:
    messages = first if isinstance(first, list) else [first]
    return bool(messages) and all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in messages)


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    OPENAI_CHAT: AnswerFormat(ChatAnswerGuard, guard_chat_json, denied_event, saved=_chat_saved),
    MCP_RESULTS: AnswerFormat(
        McpAnswerGuard, guard_mcp_json, mcp_answer.denied_event, saved=_mcp_saved, denied_inside=True
    ),
}

# The endpoints whose answers are in a format of their own, not one of the chat formats a provider
# names (`Provider.chat_formats`): endpoint → format.
ANSWER_ENDPOINTS: dict[str, str] = {}


def answer_format(name: str | None) -> AnswerFormat | None:
    """The readers of the format named, or None where answers in it are not read."""
    return ANSWER_FORMATS.get(name) if name is not None else None


def first_message(saved: bytes) -> Any:
    """A saved answer's first message: a JSON body's value, else the data of its first server-sent
    event that holds JSON (`[DONE]` and comments passed over); None where there is none."""
    body = saved.lstrip()
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
