"""OpenAI's legacy Completions answer (`/v1/completions`, and the OpenAI-compatible APIs' and Azure's)
read by the answer guardrails (`governance/guardrails/answer.py`), in its own events: each choice's
`text`, one scanner per choice (every choice of `n`, `best_of` and of several prompts by its
`index`). The events are read as OpenAI chat's are (`chat_answer.py`, whose event queue this
reuses): one with nothing held goes on as it came, byte for byte; one whose text is held waits
whole with those after it; one is written anew only where a value is replaced or a denial cuts it.
An event written anew loses its choices' `logprobs`: their tokens are the text as it came. At a
value to deny, the text before it goes on, then the `error` event the SDKs raise on, and nothing
more (no `[DONE]`). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.chat_answer import ChatAnswerGuard, denied_event, event_data, event_object
from tollgate.governance.guardrails.event_guard import Pending

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


class CompletionsAnswerGuard(ChatAnswerGuard):
    """A streamed Completions answer's events, read and rewritten (`feed` each piece, `flush` at its
    end): each choice's text one channel. `denied`: the kind that stopped it (the caller then
    closes the upstream)."""

    def _event(self, block: bytes) -> bytes:
        pending = Pending(block + b"\n\n")
        self._pending.append(pending)
        data = event_data(block)
        if data is None:
            return self._drained()
        if data.strip() == b"[DONE]":
            self._pending.pop()
            self._ended(None)
            return self._cut() if self.denied is not None else self._drained() + self._orphans() + pending.whole
        obj = event_object(data)
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return self._drained()
        pending.obj = obj
        self._last = obj
        before = b""
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            value = choice.get(TEXT)
            if isinstance(value, str) and value:
                self._fed(pending, (index, TEXT, -1), choice, TEXT, value)
                if self.denied is not None:
                    # The choices after it are not read: none of them goes on.
                    choice["finish_reason"] = None
                    obj["choices"] = choices[: i + 1]
                    return before + self._cut()
            if choice.get("finish_reason") is not None:
                # What the choice holds goes on before the event that finishes it.
                self._pending.pop()
                self._ended(index)
                if self.denied is not None:
                    return before + self._cut()
                before += self._drained() + self._orphans()
                self._pending.append(pending)
        return before + self._drained()

    def _held_delta(self, channel: tuple[int, str, int], text: str) -> dict[str, Any]:
        template = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        choice = {"index": channel[0], TEXT: text, "logprobs": None, "finish_reason": None}
        return {**template, "choices": [choice]}

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        """An event written anew: its choices' log probabilities, whose tokens are the text as it
        came, are left out."""
        _without_logprobs(obj)
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _without_logprobs(obj: dict[str, Any]) -> None:
    for choice in obj.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs"):
            choice["logprobs"] = None


def guard_completions_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) Completions answer read: the body as it goes on (redacted, or as it
    came where nothing is), the kind of a value to deny (the answer is then refused), and the
    counts. A choice whose text is redacted loses its `logprobs`."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None, {}
    choices = obj.get("choices") if isinstance(obj, dict) else None
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
            if choice.get("logprobs"):
                choice["logprobs"] = None
            changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)
