"""A streamed Gemini answer's items as they go on once read: an item written anew (a value replaced
in it, its log probabilities dropped), an item for held text alone, and the error item a denied
answer ends with (google-genai raises on an item whose first key is `error`), each framed as the
answer's items are. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.gemini_generate.item_framing import ItemFramer

DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."
# The answer's own fields an item written anew for held text alone carries.
_TEMPLATE = ("responseId", "modelVersion", "createTime")
# A candidate's log probabilities: their tokens are its text as it came.
LOGPROBS = "logprobsResult"

Channel = tuple[int, str]  # candidate, "text", "thought" or a partial argument's JSON path


def denied_error(kind: str) -> bytes:
    """The item a denied answer ends with, as Google writes an error: google-genai raises
    `errors.ClientError` (403) on an item whose first key is `error`."""
    error = {"code": 403, "message": DENIED_MESSAGE.format(kind=kind), "status": "PERMISSION_DENIED"}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def denied_event(kind: str) -> bytes:
    """The server-sent event a denied stream ends with."""
    return b"data: " + denied_error(kind) + b"\r\n\r\n"


def array_end(kind: str, opened: bool) -> bytes:
    """A denied JSON array's end: its error item, the array closed after it; opened with it where
    none of it went yet."""
    return (b",\r\n" if opened else b"[") + denied_error(kind) + b"\r\n]"


@dataclass(slots=True)
class Item(Pending):
    """An item not yet gone on: its bytes as they came (`whole`: `head`, the item, `tail`: what
    frames it, kept where it is written anew), its object, its channels' text, and whether its
    function calls' arguments were replaced (`changed`)."""

    head: bytes = b""
    body: bytes = b""
    tail: bytes = b""


def new_item(head: bytes, body: bytes, tail: bytes = b"", obj: Any = None) -> Item:
    return Item(head + body + tail, obj, head=head, body=body, tail=tail)


class ItemWriter:
    """What goes on of a Gemini answer's items, framed as `framer` found them; `envelope`: the key
    each answer is wrapped in (Code Assist's `response`), or None. It notes what went on last
    (`went`): whether an item went (in an array: the `[` with it), whether it ended in a CR, and
    the answer's own fields (`noted`) an item for held text alone repeats."""

    def __init__(self, framer: ItemFramer, envelope: str | None) -> None:
        self._framer = framer
        self._envelope = envelope
        self._sent_any = False  # an item went on (in an array: the `[` with it)
        self._cr_last = False  # what went on last ends in a CR (an event's blank line cut at it)
        self._template: dict[str, Any] = {}

    def copy(self) -> ItemWriter:
        """The writer as it stands (an answer's items read together may be read again)."""
        copied = ItemWriter(self._framer, self._envelope)
        copied._sent_any, copied._cr_last, copied._template = self._sent_any, self._cr_last, self._template
        return copied

    def noted(self, answer: dict[str, Any]) -> None:
        """An answer's own fields, as its last item gave them."""
        self._template = {k: answer[k] for k in _TEMPLATE if k in answer}

    def went(self, item: Pending, out: bytes) -> None:
        """An item went on (`out`, as it came or written anew)."""
        assert isinstance(item, Item)
        self._sent_any = self._sent_any or bool(item.body)
        # Written anew, an item never ends in a CR.
        self._cr_last = out is item.whole and (item.tail or item.body or item.head).endswith(b"\r")

    def orphan(self, channel: Channel, text: str) -> bytes:
        """An item for a channel's held text alone."""
        mode = self._framer.mode
        head = b",\r\n" if mode == "array" else b""
        tail = b"\r\n\r\n" if mode == "sse" else b""
        return self.written(new_item(head, b"", tail, self._held_item(channel, text)))

    def denied_end(self, kind: str) -> bytes:
        """The error item a denied stream ends with."""
        mode = self._framer.mode
        if mode == "array":
            return array_end(kind, self._sent_any)
        if mode == "whole":
            return b""
        return (b"\n" if self._cr_last else b"") + denied_event(kind)

    def written(self, item: Item) -> bytes:
        """An item written anew from its object."""
        self._without_logprobs(item.obj)
        body = json.dumps(item.obj, ensure_ascii=False, separators=(",", ":")).encode()
        if self._framer.mode == "sse":
            # A blank line cut at its CR: the LF that may follow it comes with the next item.
            tail = item.tail + b"\n" if item.tail.endswith(b"\r") else item.tail or b"\r\n\r\n"
            return item.head + b"data: " + body + tail
        return item.head + body + item.tail

    def _held_item(self, channel: Channel, text: str) -> dict[str, Any]:
        index, name = channel
        if name.startswith("partialArgs "):
            partial = {"jsonPath": name.removeprefix("partialArgs "), "stringValue": text, "willContinue": True}
            part: dict[str, Any] = {"functionCall": {"partialArgs": [partial], "willContinue": True}}
        else:
            part = {"text": text, **({"thought": True} if name == "thought" else {})}
        answer = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": index}], **self._template}
        return {self._envelope: answer} if self._envelope is not None else answer

    def _without_logprobs(self, obj: Any) -> None:
        """An item written anew loses its candidates' `logprobsResult`: its tokens (chosen and top
        candidates) are the text as it came, value and all."""
        answer = obj.get(self._envelope) if self._envelope is not None and isinstance(obj, dict) else obj
        candidates = answer.get("candidates") if isinstance(answer, dict) else None
        for candidate in candidates if isinstance(candidates, list) else ():
            if isinstance(candidate, dict):
                candidate.pop(LOGPROBS, None)
