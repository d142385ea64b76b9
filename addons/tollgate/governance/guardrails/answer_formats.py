"""The answer formats the answer guardrails read, each by its name: how a streamed answer in it is
read and rewritten (`AnswerGuard`), how a whole (JSON) answer is, and the bytes a stream ends with
where it is denied or cannot be read. Plain code, knowing nothing of mitmproxy: the proxy's
`StreamTap` asks here by the format the client gets its answer in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tollgate.formats import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from tollgate.formats.openai_responses import RESPONSES
from tollgate.governance.guardrails import responses_answer
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.chat_answer import ChatAnswerGuard, denied_event, guard_chat_json


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
    `stream_types`: the media types of its streamed answers."""

    stream: Callable[[AnswerDetectors], AnswerGuard]
    whole: WholeGuard
    denied_end: Callable[[str], bytes]
    stream_types: frozenset[str] = frozenset(("text/event-stream",))

    def streams(self, content_type: str) -> bool:
        """Whether an answer of this `Content-Type` is streamed (else read whole)."""
        return content_type.split(";", maxsplit=1)[0].strip().lower() in self.stream_types


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    OPENAI_CHAT: AnswerFormat(ChatAnswerGuard, guard_chat_json, denied_event),
    OPENAI_RESPONSES: AnswerFormat(
        responses_answer.ResponsesAnswerGuard, responses_answer.guard_responses_json, responses_answer.denied_event
    ),
}

# The endpoints whose answers are in a format of their own, not one of the chat formats a provider
# names (`Provider.chat_formats`): endpoint → format.
# The plans' (Copilot's, ChatGPT's) name none: their answers are in these formats all the same.
ANSWER_ENDPOINTS: dict[str, str] = {
    RESPONSES: OPENAI_RESPONSES,
    "chat.completions": OPENAI_CHAT,
    "messages": ANTHROPIC_MESSAGES,
}


def answer_format(name: str | None) -> AnswerFormat | None:
    """The readers of the format named, or None where answers in it are not read."""
    return ANSWER_FORMATS.get(name) if name is not None else None
