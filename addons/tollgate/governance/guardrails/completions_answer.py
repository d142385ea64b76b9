"""OpenAI's legacy Completions answer (`/v1/completions`, and the OpenAI-compatible APIs' and Azure's)
read by the answer guardrails (`governance/guardrails/answer.py`), in its own events: each choice's
`text`, one scanner per choice (every choice of `n`, `best_of` and of several prompts by its
`index`). The events are read as OpenAI chat's are (`chat_answer.py`, whose event queue and choice
loop this reuses: only where a choice keeps its text, and the shape read, differ): one with nothing
held goes on as it came, byte for byte; one whose text is held waits whole with those after it; one
is written anew only where a value is replaced or a denial cuts it. An event of another shape than
read (`choices` not a list of objects, a `text` that is not a string or null) stops the answer, as
chat's does. An event written anew loses its choices' `logprobs`: their tokens are the text as it
came. At a value to deny, the text before it goes on, then the `error` event the SDKs raise on, and
nothing more (no `[DONE]`). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.chat_answer import ChatAnswerGuard, choices_read, denied_event, without_logprobs
from tollgate.governance.guardrails.event_guard import UNREAD, Pending
from tollgate.governance.guardrails.logprob_tokens import completions_spells

__all__ = ["CompletionsAnswerGuard", "denied_event", "guard_completions_json", "is_completion"]

TEXT = "text"
OBJECT = "text_completion"


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

    def __init__(self, compiled: AnswerDetectors) -> None:
        super().__init__(compiled)
        self._by_template.wanted = False  # chat's template reads a delta's text: not this

    @staticmethod
    def _of_read_shape(obj: Any) -> bool:
        return of_completions_shape(obj)

    def _read_choice(self, pending: Pending, index: int, choice: dict[str, Any]) -> bool:
        value = choice.get(TEXT)
        if isinstance(value, str) and value:
            self._fed(pending, (index, TEXT, -1), choice, TEXT, value)
        return True

    def _held_delta(self, channel: tuple[int, str, int], text: str) -> dict[str, Any]:
        template = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        choice = {"index": channel[0], TEXT: text, "logprobs": None, "finish_reason": None}
        return {**template, "choices": [choice]}


def guard_completions_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) Completions answer read: the body as it goes on (redacted, or as it
    came where nothing is), the kind of a value to deny (the answer is then refused), and the
    counts. A choice whose text is redacted loses its `logprobs`."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None, {}
    if not of_completions_shape(obj):
        return body, UNREAD, {}  # its text elsewhere, or not a string: it would go on unread
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return body, None, {}
    counts: Counter[str] = Counter()
    changed = False
    for choice in choices:
        value = choice.get(TEXT) if isinstance(choice, dict) else None
        if not isinstance(value, str) or not value:
            continue
        scanner = compiled.scanner()
        first = scanner.feed(value.encode())
        rest = scanner.flush() if first.denied is None else first
        counts.update(scanner.counts)
        denied = first.denied or rest.denied
        if denied is not None:
            return body, denied, dict(counts)
        sent = (first.text + (rest.text if rest is not first else b"")).decode()
        if sent != value:
            choice[TEXT] = sent
            without_logprobs({"choices": [choice]})
            changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)
