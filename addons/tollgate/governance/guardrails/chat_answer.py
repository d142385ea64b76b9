"""OpenAI chat's answer read by the answer guardrails (`governance/guardrails/answer.py`), in its
own events: each choice's text, refusal and reasoning, and each tool call's arguments (JSON as
the model writes it), one scanner per channel. A streamed answer's events go on as they come,
byte for byte where nothing in them is held or replaced; an event whose text is held or redacted
is written anew with what goes on now. What a choice holds goes on, in an event of its own, before
the event that finishes it. At a value to deny, the text before it goes on, then an event whose
`error` the SDKs raise on, and nothing more (no `[DONE]`). Plain code, knowing nothing of
mitmproxy: `ChatAnswerGuard` is a `Rewrite` (`formats/translation.py`)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner

# The text fields of a choice's delta (or message) that are read: its text, a refusal, and the
# reasoning some providers show (`reasoning_content`, `reasoning`).
TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."


def denied_event(kind: str) -> bytes:
    """The event a denied stream ends with: the SDKs raise on a `data:` object with `error`."""
    error = {"message": DENIED_MESSAGE.format(kind=kind), "type": "permission_error", "code": "content_denied"}
    return b"data: " + json.dumps({"error": error}, separators=(",", ":")).encode() + b"\n\n"


Channel = tuple[int, str, int]  # choice, field (a text field or "arguments"), tool call (-1 for text)


class ChatAnswerGuard:
    """A streamed chat answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        self._compiled = compiled
        self._framer = SSEFramer()
        self._scanners: dict[Channel, AnswerScanner] = {}
        self._template: dict[str, Any] = {}  # an event's fields, for the events of held text
        self._spent: Counter[str] = Counter()  # the counts of the channels that have ended
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        total = Counter(self._spent)
        for scanner in self._scanners.values():
            total.update(scanner.counts)
        return dict(total)

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is not None:
            return b""
        out = []
        for block in self._framer.feed(chunk):
            out.append(self._event(block))
            if self.denied is not None:
                break
        return b"".join(out)

    def flush(self) -> bytes:
        """What is held at the stream's end (one that ended without `[DONE]`)."""
        if self.denied is not None:
            return b""
        return self._held_events(None)

    def _event(self, block: bytes) -> bytes:
        whole = block + b"\n\n"
        event = parse_sse_block(block)
        if event is None:
            return whole
        if event.data.strip() == "[DONE]":
            return self._held_events(None) + (whole if self.denied is None else b"")
        try:
            obj = json.loads(event.data)
        except ValueError:
            return whole
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return whole
        self._template = {k: v for k, v in obj.items() if k in ("id", "object", "created", "model")}
        before = b""
        changed = False
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
                continue
            index = choice.get("index", 0)
            changed |= self._delta(index, choice["delta"])
            if self.denied is not None:
                # The choices after it are not read: none of them goes on.
                choice["finish_reason"] = None
                obj["choices"] = choices[: i + 1]
                return before + self._written(obj) + denied_event(self.denied)
            if choice.get("finish_reason") is not None:
                before += self._held_events(index)
                if self.denied is not None:
                    return before
        return before + (self._written(obj) if changed else whole)

    def _delta(self, index: int, delta: dict[str, Any]) -> bool:
        """The delta's text given to its channels, replaced by what goes on now; whether it changed."""
        changed = False
        for field in TEXT_FIELDS:
            value = delta.get(field)
            if isinstance(value, str) and value:
                sent = self._fed((index, field, -1), value)
                changed |= sent != value
                delta[field] = sent
                if self.denied is not None:
                    return True
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            value = function.get("arguments")
            if isinstance(value, str) and value:
                sent = self._fed((index, "arguments", call.get("index", 0)), value)
                changed |= sent != value
                function["arguments"] = sent
                if self.denied is not None:
                    return True
        return changed

    def _fed(self, channel: Channel, value: str) -> str:
        scanner = self._scanners.get(channel)
        if scanner is None:
            scanner = self._scanners[channel] = self._compiled.scanner(is_json=channel[1] == "arguments")
        released = scanner.feed(value.encode())
        if released.denied is not None:
            self.denied = released.denied
        return released.text.decode()

    def _held_events(self, index: int | None) -> bytes:
        """An event with what the channels of a choice (every choice: None) hold, flushed."""
        out = []
        for channel, scanner in list(self._scanners.items()):
            if index is not None and channel[0] != index:
                continue
            released = scanner.flush()
            del self._scanners[channel]
            self._spent.update(scanner.counts)
            if released.text:
                out.append(self._written(self._held_delta(channel, released.text.decode())))
            if released.denied is not None:
                self.denied = released.denied
                out.append(denied_event(released.denied))
                break
        return b"".join(out)

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        choice, field, call = channel
        if field == "arguments":
            delta: dict[str, Any] = {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
        else:
            delta = {field: text}
        return {**self._template, "choices": [{"index": choice, "delta": delta, "finish_reason": None}]}

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def guard_chat_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) chat answer read: the body as it goes on (redacted, or as it came
    where nothing is), the kind of a value to deny (the answer is then refused), and the counts."""
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
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        targets: list[tuple[dict[str, Any], str, bool]] = [(message, f, False) for f in TEXT_FIELDS]
        calls = message.get("tool_calls") or ()
        targets += [
            (c["function"], "arguments", True)
            for c in calls
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        ]
        for holder, field, is_json in targets:
            value = holder.get(field)
            if not isinstance(value, str) or not value:
                continue
            scanner = compiled.scanner(is_json)
            first = scanner.feed(value.encode())
            rest = scanner.flush() if first.denied is None else first
            counts.update(scanner.counts)
            denied = first.denied or rest.denied
            if denied is not None:
                return body, denied, dict(counts)
            sent = (first.text + (rest.text if rest is not first else b"")).decode()
            if sent != value:
                holder[field] = sent
                changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)
