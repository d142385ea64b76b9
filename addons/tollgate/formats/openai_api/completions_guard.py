"""OpenAI's legacy Completions answer (`/v1/completions`, and the OpenAI-compatible APIs' and Azure's)
read by the answer guardrails (`governance/guardrails/answer.py`), in its own events: each choice's
`text`, one scanner per choice (every choice of `n`, `best_of` and of several prompts by its
`index`). The events are read as OpenAI chat's are (`openai_chat/answer_guard.py`, whose event queue and choice
loop this reuses: only where a choice keeps its text, and the shape read, differ): one with nothing
held goes on as it came, byte for byte; one whose text is held waits whole with those after it; one
is written anew only where a value is replaced or a denial cuts it. An event of another shape than
read (`choices` not a list of objects, a `text` that is not a string or null) stops the answer, as
chat's does. An event written anew loses its choices' `logprobs`: their tokens are the text as it
came. At a value to deny, the text before it goes on, then the `error` event the SDKs raise on, and
nothing more (no `[DONE]`). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from tollgate.formats.answer_reading.logprob_tokens import completions_spells
from tollgate.formats.answer_reading.scanning import AnswerFormat, Scanners
from tollgate.formats.answer_reading.string_places import Place, members_in
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.openai_chat.answer_guard import (
    ChatAnswerGuard,
    Streamed,
    choices_read,
    denied_event,
    read_json_answer,
)

__all__ = ["CompletionsAnswerGuard", "denied_event", "guard_completions_json", "is_completion"]

TEXT = "text"
OBJECT = "text_completion"
# A choice's members its guard reads itself: its text, and its log probabilities, whose tokens
# must spell it (`logprob_tokens.py`); every other string is read whole.
_CHOICE_READ = frozenset((TEXT, "logprobs"))


def is_completion(first: Any) -> bool:
    """Whether a saved answer's first message is a Completions answer: OpenAI names its object
    `text_completion`; a server that does not, by its choices' `text` (chat's have a delta or a
    message)."""
    if not isinstance(first, dict):
        return False
    choices = first.get("choices")
    if first.get("object") == OBJECT:
        return True
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and TEXT in c and "delta" not in c and "message" not in c for c in choices)
    )


def of_completions_shape(obj: Any) -> bool:
    """Whether an event's (or a whole answer's) object holds its text only where the guard reads
    it: an object without choices (an error, usage alone), or choices that are objects whose `text`
    is a string or null, whose `logprobs` tokens spell exactly that text (`logprob_tokens.py`).
    Another shape would go on unread."""
    return choices_read(obj, _choice_of_read_shape)


def _choice_of_read_shape(choice: Any) -> bool:
    if not isinstance(choice, dict) or not isinstance(choice.get(TEXT), str | None):
        return False
    return completions_spells(choice.get("logprobs"), choice.get(TEXT))


class CompletionsAnswerGuard(ChatAnswerGuard):
    """A streamed Completions answer's events, read and rewritten (`feed` each piece, `flush` at its
    end): each choice's text one channel, read in chat's choice loop. `denied`: the kind that
    stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: Scanners) -> None:
        super().__init__(compiled)
        self._by_template.wanted = False  # chat's template reads a delta's text: not this

    @staticmethod
    def _of_read_shape(obj: Any) -> bool:
        return of_completions_shape(obj)

    def _choice_places(self, choice: dict[str, Any]) -> tuple[list[Place], list[Streamed]]:
        return _choice_places(choice, self._clean)

    def _read_choice(self, pending: Pending, choice: dict[str, Any], texts: list[Streamed]) -> bool:
        for holder, key, channel, _ in texts:
            self._fed(pending, channel, holder, key, holder[key])
        return True

    def _held_delta(self, channel: tuple[int, str, int], text: str) -> dict[str, Any]:
        template = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        choice = {"index": channel[0], TEXT: text, "logprobs": None, "finish_reason": None}
        return {**template, "choices": [choice]}


def guard_completions_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) Completions answer read: the body as it goes on (redacted, or as it
    came where nothing is), the kind of a value to deny (the answer is then refused), and the
    counts. A choice whose text is redacted loses its `logprobs`."""
    return read_json_answer(compiled, body, of_completions_shape, _choice_places)


def _choice_places(choice: dict[str, Any], clean: Container[str] = ()) -> tuple[list[Place], list[Streamed]]:
    """What a choice carries whole (but the strings in `clean`), and its text."""
    whole = members_in(choice, _CHOICE_READ, clean)
    value = choice.get(TEXT)
    texts: list[Streamed] = []
    if isinstance(value, str) and value:
        texts.append((choice, TEXT, (choice.get("index", 0), TEXT, -1), None))
    return whole, texts


ANSWER = AnswerFormat(CompletionsAnswerGuard, guard_completions_json, denied_event, saved=is_completion)
