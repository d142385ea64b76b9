"""Anthropic's Messages answer read by the answer guardrails (`answer.py`), in its own events; also
as Claude answers on Vertex AI's rawPredict (Anthropic's own stream) and on Bedrock's InvokeModel
(each event base64 in an AWS event stream frame). Each content block is read: its text
(`text_delta`), a tool use's input (`input_json_delta`, JSON as the model writes it) and thinking
(`thinking_delta`), one scanner per block; what a block gives whole (a server tool's result, a
citation, a tool use's `input` at its start) is read at once, each string value. Thinking is
signed: it is never changed, and a value found there is denied under a `redact` rule too (so is a
compaction's summary, and any block with a signature); redacted thinking is opaque, not read.
Events are held, go on as they came or are written anew as OpenAI chat's are (`answer_reading/events.py`).
A stream denied ends with Anthropic's `error` event (`permission_error`), on Bedrock with an
exception frame. An event that cannot be read stops the stream as a value to deny would
(`unread`): so does an event or a delta of a type not known that carries text (it may come in
pieces, which could not be read together), and a delta to a block that has ended. Plain code,
knowing nothing of mitmproxy."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tollgate.formats import chat
from tollgate.formats.answer_reading.scanning import (
    UNREAD,
    AnswerFormat,
    Scanner,
    Scanners,
    Unpaired,
    arguments_detectors,
    scan_whole,
    signed_detectors,
)
from tollgate.formats.answer_reading.string_places import answer_json, carries_text, sse_fields
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.anthropic_messages.stream_writer import write_event
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing import parse_sse_block
from tollgate.formats.openai_chat.answer_guard import DENIED_MESSAGE, Channel, ChatAnswerGuard

# Each streamed delta: the field its text is in, and the channel it feeds.
DELTAS = {
    "text_delta": ("text", "text"),
    "input_json_delta": ("partial_json", "input"),
    "thinking_delta": ("thinking", "thinking"),
}
_DELTA_OF_CHANNEL = {channel: (kind, name) for kind, (name, channel) in DELTAS.items()}
# The deltas that give what they carry whole: a citation; a compaction's summary (each delta
# replaces it whole), which is signed.
WHOLE_DELTAS = frozenset(("citations_delta", "compaction_delta"))
# The blocks whose text is signed besides thinking: a compaction's summary ("send it back verbatim").
SIGNED_BLOCKS = frozenset(("compaction",))
# The blocks of a tool call: their input read as a call's arguments are (`arguments_detectors`).
CALL_BLOCKS = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))
# The events that carry no model text: they go on as they came.
PASSED_EVENTS = frozenset(("ping", "error"))
# The members that hold no text, at the places Anthropic defines them (docs/guardrails.md, "Opaque
# places"): an object's type → its opaque members. A thinking block's signature, redacted
# thinking, a web search result's encrypted content, a citation's encrypted index (and the
# signature of any block that has one: `read_block`). Every other string is read, ids and types
# too, at any depth.
OPAQUE_AT: dict[object, frozenset[str]] = {
    "thinking": frozenset(("signature",)),
    "signature_delta": frozenset(("signature",)),
    "redacted_thinking": frozenset(("data",)),
    "web_search_result": frozenset(("encrypted_content",)),
    "web_search_result_location": frozenset(("encrypted_index",)),
}
NOTHING: frozenset[str] = frozenset()
# An event's own type, dispatched on (one of the types read here): not read again.
_TYPE = frozenset(("type",))
# What an event or a delta of a type not known may hold and still be read (each comes whole).
_WHOLE_IDS = _TYPE | {"id"}
_TEXT_OPAQUE = _TYPE | {"text"}  # a text block's own text is streamed: its channel reads it
_COUNTS_OPAQUE = frozenset(("usage", "amazon-bedrock-invocationMetrics"))  # a message's counts
_EVENT_COUNTS_OPAQUE = _COUNTS_OPAQUE | _TYPE
_STOP_OPAQUE = _EVENT_COUNTS_OPAQUE | {"index"}
# What an event carries beside what its own reading reads: read whole (a member not known).
_BLOCK_EVENT_OPAQUE = _TYPE | {"index", "content_block", "delta"}
_START_OPAQUE = _TYPE | {"message"}
_MESSAGE_OPAQUE = _COUNTS_OPAQUE | {"content"}


def denied_event(kind: str) -> bytes:
    """The event a denied stream ends with: the anthropic SDK raises on an `error` event."""
    error = {"type": "permission_error", "message": DENIED_MESSAGE.format(kind=kind)}
    return write_event("error", {"error": error})


def _scanned(compiled: Scanners, value: str, counts: Counter[str]) -> tuple[str, str | None]:
    """A whole string read: as it goes on, and the kind of a value to deny."""
    read = scan_whole(compiled, value)
    counts.update(read.counts)
    return read.text, read.denied


def read_values(
    compiled: Scanners, node: Any, counts: Counter[str], opaque: frozenset[str] = NOTHING
) -> tuple[bool, str | None]:
    """Every string (key or value) and integer of a JSON value given whole, read but under the
    keys `opaque` names at its top and the opaque members of each object of a type `OPAQUE_AT`
    names, each value to redact replaced in place (an integer by the placeholder's string):
    whether it changed, and the kind of a value to deny."""
    if isinstance(node, list):
        changed = False
        for i, item in enumerate(node):
            new, found, denied = _value(compiled, item, counts)
            if denied is not None:
                return changed, denied
            if found:
                node[i], changed = new, True
        return changed, None
    if not isinstance(node, dict):
        return False, None
    items, changed = [], False
    kind = node.get("type")
    placed = OPAQUE_AT.get(kind, NOTHING) if isinstance(kind, str) else NOTHING
    for key, item in node.items():
        if key in opaque or key in placed:
            items.append((key, item))
            continue
        new_key, denied = _scanned(compiled, key, counts)
        if denied is not None:
            return changed, denied
        new, found, denied = _value(compiled, item, counts)
        if denied is not None:
            return changed, denied
        changed = changed or found or new_key != key
        items.append((new_key, new))
    if changed:  # in place: an event's object holds it
        node.clear()
        node.update(items)
    return changed, None


def _value(compiled: Scanners, item: Any, counts: Counter[str]) -> tuple[Any, bool, str | None]:
    if isinstance(item, str):
        new, denied = _scanned(compiled, item, counts)
        return new, new != item, denied
    if isinstance(item, int) and not isinstance(item, bool):
        new, denied = _scanned(compiled, str(item), counts)
        return (new if new != str(item) else item), new != str(item), denied
    changed, denied = read_values(compiled, item, counts)
    return item, changed, denied


def read_block(
    compiled: Scanners, block: dict[str, Any], counts: Counter[str], opaque: frozenset[str] = NOTHING
) -> tuple[bool, str | None]:
    """A content block given whole: its thinking read as signed (never changed), redacted
    thinking not read, every other block's strings as `read_values` (but under `opaque`)."""
    kind = block.get("type")
    if kind == "redacted_thinking":
        return False, None
    if kind == "thinking":
        thinking = block.get("thinking")
        if not isinstance(thinking, str) or not thinking:
            return False, None
        return False, _scanned(signed_detectors(compiled), thinking, counts)[1]
    if kind in SIGNED_BLOCKS or "signature" in block:
        # Signed: never changed (a value to redact there is denied).
        return False, read_values(signed_detectors(compiled), block, counts, opaque | {"signature"})[1]
    if kind in CALL_BLOCKS:
        return read_values(arguments_detectors(compiled), block, counts, opaque)
    return read_values(compiled, block, counts, opaque)


def guard_messages_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) Messages answer read: the body as it goes on (redacted, or as it came
    where nothing is), the kind of a value to deny (the answer is then refused), and the counts."""
    obj = parse_json(body)
    if obj is None:
        return body, None, {}
    counts: Counter[str] = Counter()
    changed = False
    for key, item in obj.items():
        if key in _COUNTS_OPAQUE:
            continue
        if key == "content" and isinstance(item, list):
            found, denied = _content_read(compiled, item, counts)
        else:
            # Every other field is read too: a body of another shape (Claude's Text Completions'
            # `completion` on Bedrock) is not let through unread.
            new, found, denied = _value(compiled, item, counts)
            obj[key] = new
        if denied is not None:
            return body, denied, dict(counts)
        changed = changed or found
    if not changed:
        return body, None, dict(counts)
    return encode_json(obj), None, dict(counts)


def _content_read(compiled: Scanners, content: list[Any], counts: Counter[str]) -> tuple[bool, str | None]:
    """A whole answer's blocks read; an item that is no block, each of its strings."""
    changed = False
    for i, block in enumerate(content):
        if isinstance(block, dict):
            found, denied = read_block(compiled, block, counts)
        else:
            new, found, denied = _value(compiled, block, counts)
            content[i] = new
        if denied is not None:
            return changed, denied
        changed = changed or found
    return changed, None


def _beside(node: dict[str, Any], skipped: frozenset[str]) -> bool:
    """Whether an object holds a string beside its members `skipped` (at any depth below them)."""
    return any(key not in skipped and carries_text(item, NOTHING) for key, item in node.items())


def event_json(data: bytes | None) -> dict[str, Any] | None:
    """An event's JSON object (None: not one, or a string in it holds a surrogate not paired)."""
    if data is None:
        return None
    try:
        return answer_json(data)
    except Unpaired:
        return None


class MessagesAnswerGuard(ChatAnswerGuard):
    """A streamed Messages answer's events, read and rewritten (`feed` each piece, `flush` at its
    end): each content block's channels (text, input, thinking) by its index, ended at its
    `content_block_stop`. `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: Scanners) -> None:
        super().__init__(compiled)
        self._stopped: set[int] = set()  # the indexes of the blocks that ended

    def _saved(self) -> dict[str, Any]:
        return {**super()._saved(), "_stopped": set(self._stopped)}

    def _read_each(self, units: list[Any]) -> bytes:
        out = super()._read_each(units)
        if self.denied is None and self._framing_error():  # an event too large to be read
            out += self._unread()
        return out

    def _framing_error(self) -> bool:
        return self._framer.error is not None

    def _event(self, block: bytes) -> bytes:
        whole = block + b"\n\n"
        fields = sse_fields(block)
        if fields:
            pending = Pending(whole)
            self._pending.append(pending)
            denied = self._read_places(pending, None, fields)
            self._pending.pop()
            if denied is not None:
                return self._stop_before(None, denied)  # its name, id or a comment holds a value
        event = parse_sse_block(block)
        if event is None or not event.data.strip():  # a comment, or an event without data
            return self._passed(whole)
        return self._message_event(whole, event_json(event.data.encode("utf-8", "surrogatepass")))

    def _passed(self, whole: bytes) -> bytes:
        """An event that carries no answer: it goes on in its turn, as it came."""
        self._pending.append(Pending(whole))
        return self._drained()

    def _message_event(self, whole: bytes, obj: dict[str, Any] | None) -> bytes:
        """One event, its bytes as they came and its object (None: not a JSON object)."""
        if obj is None:
            return self._unread()
        kind = obj.get("type")
        if kind in ("content_block_stop", "message_stop"):
            index = obj.get("index") if kind == "content_block_stop" else None
            return self._closing(Pending(whole, obj), index if type(index) is int else None)
        pending = Pending(whole, obj)
        self._pending.append(pending)
        if kind == "content_block_start":
            # What the event carries beside its block is read whole first.
            if obj.keys() <= _BLOCK_EVENT_OPAQUE or not self._whole_read(pending, obj, _BLOCK_EVENT_OPAQUE):
                self._block_start(pending, obj)
        elif kind == "content_block_delta":
            if obj.keys() <= _BLOCK_EVENT_OPAQUE or not self._whole_read(pending, obj, _BLOCK_EVENT_OPAQUE):
                self._block_delta(pending, obj)
        elif kind == "message_start":
            message = obj.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            # The message's other members (its model, usage, a member not known) read whole.
            if self._whole_read(pending, obj, _START_OPAQUE) or (
                isinstance(message, dict) and self._whole_read(pending, message, _MESSAGE_OPAQUE)
            ):
                return self._cut()
            for block in content if isinstance(content, list) else ():
                if not isinstance(block, dict):
                    self._refuse(pending)
                if self.denied is not None or self._whole_read(pending, block):
                    break
        elif kind == "message_delta":
            self._whole_read(pending, obj, _EVENT_COUNTS_OPAQUE)  # its stop sequence, a refusal's explanation
        elif kind in PASSED_EVENTS:
            self._whole_read(pending, obj, _TYPE)  # an error's message: read as any string
        elif _beside(obj, _WHOLE_IDS):
            # An event of a type not known (or of none: Claude's Text Completions on Bedrock)
            # whose text is not read: the stream stops before it.
            self._refuse(pending)
        else:
            self._whole_read(pending, obj)  # its type and id alone, read as any string
        return self._cut() if self.denied is not None else self._drained()

    def _closing(self, pending: Pending, index: int | None) -> bytes:
        """A block's end (or the message's: None): its text known to its end goes on before it."""
        if index is not None:
            self._stopped.add(index)
        self._ended(index)
        if self.denied is not None:
            return self._cut()
        out = self._drained() + self._orphans()
        self._pending.append(pending)
        # What else it carries is read whole: on Bedrock, a guardrail's trace of the answer.
        if self._whole_read(pending, pending.obj, _STOP_OPAQUE):
            return out + self._cut()
        return out + self._drained()

    def _block_start(self, pending: Pending, obj: dict[str, Any]) -> None:
        index, block = obj.get("index"), obj.get("content_block")
        if type(index) is not int or not isinstance(block, dict):
            self._refuse(pending)
            return
        if index in self._stopped:
            self._refuse(pending)  # a block again at the index of one that ended
            return
        kind = block.get("type")
        if kind in ("text", "thinking"):
            # Its text begins the block's channel (it is "" as Anthropic writes it); the rest,
            # a text block's citations, is read whole.
            if kind == "text" and self._whole_read(pending, block, _TEXT_OPAQUE):
                return
            value = block.get(kind)
            if not isinstance(value, str | None):
                self._refuse(pending)
            elif value:
                self._fed(pending, (index, kind, -1), block, kind, value)
            return
        self._whole_read(pending, block)

    def _block_delta(self, pending: Pending, obj: dict[str, Any]) -> None:
        index, delta = obj.get("index"), obj.get("delta")
        if type(index) is not int or not isinstance(delta, dict):
            self._refuse(pending)
            return
        if index in self._stopped:
            # A delta to a block that ended: its text would be joined to what was read as ended.
            self._refuse(pending)
            return
        kind = delta.get("type")
        if kind == "signature_delta":
            # A thinking block's signature, not text; anything beside it is read whole.
            if len(delta) > 2:
                self._whole_read(pending, delta, _TYPE)
            return
        if kind in WHOLE_DELTAS:
            self._whole_read(pending, delta, signed=kind == "compaction_delta")
            return
        if kind not in DELTAS:
            # A delta newer than this reader: its text may go on in pieces, which could not be read
            # together. One that carries text stops the stream before it.
            if _beside(delta, _WHOLE_IDS):
                self._refuse(pending)
            else:
                self._whole_read(pending, delta)  # its type and id alone, read as any string
            return
        name, channel = DELTAS[kind]
        value = delta.get(name)
        if not isinstance(value, str) or (len(delta) > 2 and _beside(delta, _TYPE | {name})):
            # Text beside the delta's own, in a member not known: it may come in pieces too.
            self._refuse(pending)
        elif value:
            self._fed(pending, (index, channel, -1), delta, name, value)

    def _whole_read(
        self, pending: Pending, node: dict[str, Any], opaque: frozenset[str] = NOTHING, signed: bool = False
    ) -> bool:
        """What an event gives whole, read at once (before any of its streamed text): where a
        value is redacted the event is written anew; at one to deny (or to redact in what is
        `signed`), it does not go on. Whether the stream stops here."""
        counts: Counter[str] = Counter()
        compiled = signed_detectors(self._compiled) if signed else self._compiled
        changed, denied = read_block(compiled, node, counts, opaque)
        self._spent.update(counts)
        if denied is not None:
            self._refuse(pending, denied)
            return True
        if changed:
            pending.whole = self._written(pending.obj)
        return False

    def _refuse(self, pending: Pending, kind: str = UNREAD) -> None:
        """The stream stops before this event (the last come): none of it goes on."""
        if self._pending and self._pending[-1] is pending:
            self._pending.pop()
        self.denied = kind

    def _scanner(self, channel: Channel) -> Scanner:
        if channel[1] == "thinking":
            return signed_detectors(self._compiled).scanner()
        return self._compiled.scanner(is_json=channel[1] == "input")

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        kind, name = _DELTA_OF_CHANNEL[channel[1]]
        return {"type": "content_block_delta", "index": channel[0], "delta": {"type": kind, name: text}}

    def _denied_end(self, kind: str) -> bytes:
        return denied_event(kind)

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        return chat.sse(encode_json(obj), str(obj.get("type")))


def is_message(first: Any) -> bool:
    """Whether a saved answer's first message is Anthropic's (a stream's first event, or a body)."""
    return isinstance(first, dict) and first.get("type") in ("message_start", "message")


ANSWER = AnswerFormat(MessagesAnswerGuard, guard_messages_json, denied_event, saved=is_message)
