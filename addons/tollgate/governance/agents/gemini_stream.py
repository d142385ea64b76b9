"""`agents` on a streamed Gemini answer (streamGenerateContent: server-sent events with `alt=sse`,
else one JSON array written item by item; Code Assist's the same inside `{"response": …}`). Gemini
writes each `functionCall` part whole in one item, its arguments complete: so each item is decided
as it comes, held only until its bytes are whole, and nothing after it waits. An item with no call
refused goes on as it came, byte for byte; one with a call refused goes written anew, the refused
part replaced by its refusal's text (`gemini_calls`). The bytes around the items (line ends, the
array's brackets and commas) go as they came.

Fail closed: an item that cannot be read and names a function call is replaced by an item carrying
a refusal; a JSON array that cannot be framed stops there; an item cut short by the stream's end
is not sent.

Where the policy decides tool calls, an item whose calls it has not answered on waits, and every
byte after it, in order (its calls noted for the proxy to ask, and those of the items after it,
together): fed again (`feed(b"")`) once it has answered, they go, up to the next item still to ask
about. At the stream's end what waits is decided on what came (a call unanswered: a policy error)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from tollgate.formats.bodies.json_codec import object_once
from tollgate.formats.framing import (
    MAX_FRAME,
    JSONArrayFramer,
    LeadingBom,
    parse_sse_block,
    raw_event_spans,
    sse_event_end,
)
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, probed
from tollgate.governance.agents.gemini_calls import decided_item, unread_item

_BETWEEN = re.compile(rb"[\[ \t\r\n,]*")  # what comes before an element of the array
# What an unreadable item must not be let through with: a call, in either spelling.
_CALL_MARK = re.compile(rb"function_?call", re.IGNORECASE)


class HeldGeminiCalls:
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None, envelope: str | None = None) -> None:
        self._state, self._inner, self._envelope = state, inner, envelope
        self._bom = LeadingBom()
        self._mode: Literal["sse", "array", "whole"] | None = None  # told by the first byte not white space
        self._raw = bytearray()  # what came and is not yet framed into whole items
        self._array: JSONArrayFramer | None = None
        self._stopped = False  # what came cannot be framed: nothing more goes
        # What waits for the policy, in order: each piece as it goes when let go, and the item's
        # bytes where it is one (None: bytes around the items). None: nothing waits.
        self._waiting: list[tuple[Callable[[], bytes], bytes | None]] | None = None

    def feed(self, chunk: bytes) -> bytes:
        out = self._items(self._inner.feed(chunk) if self._inner is not None else chunk)
        if self._waiting is not None and not self._state.asking:  # fed again: the policy has answered
            out += self._let_go()
        return out

    def flush(self) -> bytes:
        out = self._items(self._inner.flush() if self._inner is not None else b"")
        out += self._let_go(final=True)
        if not self._bom.done:  # a stream shorter than a byte order mark
            out += self._items(self._bom.flush())
        rest, self._raw = bytes(self._raw), bytearray()
        if self._stopped or not rest:
            return out
        if self._mode == "array":  # the array's end, and what follows it; an element cut short is not sent
            return out + (rest if b"{" not in rest else b"")
        body = rest.strip(b" \t\r\n")
        if not body:
            return out + rest
        at = rest.index(body)
        if self._mode == "whole":  # a JSON answer to a streamed call
            decided = self._decided(body)
            read = body if decided is None else decided
        else:  # an event without its blank line, the stream's last: read as one
            read = self._event(body)
        return out + rest[:at] + read + rest[at + len(body) :]

    def _items(self, data: bytes) -> bytes:
        if not data or self._stopped:
            return b""
        if self._mode is None:
            data = self._bom.feed(data)  # a byte order mark before the first item: read past
            start = (bytes(self._raw) + data).lstrip()
            if not start:
                self._raw += data
                return b""
            self._mode = "array" if start[:1] == b"[" else "whole" if start[:1] == b"{" else "sse"
            if self._mode == "array":
                self._array = JSONArrayFramer()
                data, self._raw = bytes(self._raw) + data, bytearray()
        if self._mode == "whole":
            self._raw += data  # a JSON answer to a streamed call: decided at its end
            return b""
        if self._mode == "sse":
            return self._sse(data)
        return self._elements(data)

    def _sse(self, data: bytes) -> bytes:
        # An event's end is looked for in what this piece adds (and the line ends before it).
        start = max(0, len(self._raw) - 4)
        self._raw += data
        end = sse_event_end(bytes(self._raw[start:]))
        if end < 0:
            if len(self._raw) > MAX_FRAME:
                self._stopped, self._raw = True, bytearray()
            return b""
        region = bytes(self._raw[: start + end])
        del self._raw[: start + end]
        out, at = [], 0
        for s, e in raw_event_spans(region):
            event = region[s:e]
            out += [self._around(region[at:s]), self._item(partial(self._event, event), event)]
            at = e
        out.append(self._around(region[at:]))
        return b"".join(out)

    def _event(self, raw: bytes) -> bytes:
        event = parse_sse_block(raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        if event is None:
            return raw  # a comment, or an event without data
        decided = self._decided(event.data.encode())
        return raw if decided is None else b"data: " + decided

    def _elements(self, data: bytes) -> bytes:
        framer = self._array
        assert framer is not None
        self._raw += data
        elements = framer.feed(data)
        out, at = [], 0
        for element in elements:
            start = _BETWEEN.match(self._raw, at).end()  # type: ignore[union-attr]
            end = start + len(element)
            if self._raw[start:end] != element:
                framer.error = "an element of the JSON array is not where it was read"
                break
            out += [self._around(bytes(self._raw[at:start])), self._item(partial(self._element, element), element)]
            at = end
        del self._raw[:at]
        if framer.error is not None:  # what cannot be framed does not go on
            self._stopped, self._raw = True, bytearray()
        return b"".join(out)

    def _element(self, element: bytes) -> bytes:
        decided = self._decided(element)
        return element if decided is None else decided

    def _around(self, raw: bytes) -> bytes:
        """Bytes around the items: they wait behind an item that waits."""
        if self._waiting is None or not raw:
            return raw
        self._waiting.append((partial(bytes, raw), None))
        return b""

    def _item(self, written: Callable[[], bytes], data: bytes) -> bytes:
        """An item as it goes: at once, unless it or one before it waits for the policy."""
        if self._waiting is None:
            if not self._awaits(written, data):
                return written()
            self._waiting = []
        else:
            self._awaits(written, data)  # its calls noted too: asked with those before it
        self._waiting.append((written, data))
        return b""

    def _awaits(self, written: Callable[[], bytes], data: bytes) -> bool:
        """Whether the policy is still to be asked about some of the item's calls (noted then): the
        item read as it is decided (`written`), only to note them."""
        if self._state.policy is None or (_CALL_MARK.search(data) is None and b"\\u" not in data):
            return False
        return probed(written, self._state)

    def _let_go(self, final: bool = False) -> bytes:
        """What waits, up to an item whose calls the policy is still to be asked about (at the
        stream's end, all of it: decided on what came)."""
        waiting, self._waiting = self._waiting or [], None
        out = []
        for n, (written, data) in enumerate(waiting):
            if not final and data is not None and self._awaits(written, data):
                self._waiting = waiting[n:]
                break
            out.append(written())
        return b"".join(out)

    def _decided(self, data: bytes) -> bytes | None:
        """An item's bytes as they go: None where as they came."""
        if _CALL_MARK.search(data) is None and b"\\u" not in data:
            return None  # no call in it (nor a key spelt with escapes): most items, not parsed
        obj = object_once(data)  # an object that repeats a key is not read
        changed = decided_item(obj, self._state, self._envelope) if obj is not None else None
        if changed is None:
            return _written(unread_item(self._state, self._envelope)) if _CALL_MARK.search(data) else None
        return _written(obj) if changed else None


def _written(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
