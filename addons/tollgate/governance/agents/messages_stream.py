"""`agents` on a streamed Anthropic Messages answer: from a `tool_use` block's `content_block_start`,
its events and every event after it (pings too, in order) are held until each `tool_use` block
begun has stopped, so that every call's input is complete (its `input_json_delta` pieces joined;
none is `{}`); the events before go on as they come. Then each call is decided: a refused block's
events are replaced, at its index, by a text block's (start, one `text_delta`, stop) the agent
reads, so that later blocks keep their indexes; `message_delta`'s `stop_reason` becomes `end_turn`
only when every `tool_use` of the answer was refused, its usage kept. The provider's own calls
(`server_tool_use`, `mcp_tool_use`) are not held. A stream that ends while holding is decided on
what came (input cut short is refused as `unread`). An event too large to frame ends the stream
with an `error` event: what cannot be read does not go. Where the policy decides tool calls, the
held events wait too until it has answered on each call (`call_state.unasked`): fed again
(`feed(b"")`) once it has, they go."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tollgate.formats.anthropic_messages.stream_writer import write_event
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.held_events import UNFRAMED, HeldEvent, HeldEvents, event_object
from tollgate.governance.agents.messages_calls import TOOL_USE, tool_use_call
from tollgate.governance.agents.tool_decision import ToolCall

UNREAD_PIECE = "\x00"  # a piece of input that is not text: the input cannot be read


class _Block:
    """A `tool_use` block as it came: its start's input, and its `partial_json` pieces."""

    __slots__ = ("id", "name", "pieces", "start_input", "starts", "stops")

    def __init__(self, block: dict[str, Any]) -> None:
        self.id, self.name, self.start_input = block.get("id"), block.get("name"), block.get("input")
        self.pieces: list[str] | None = None
        self.starts, self.stops = 1, 0

    @property
    def stopped(self) -> bool:
        return self.stops >= self.starts

    def call(self) -> ToolCall:
        if self.pieces is None:  # no delta: the input its start carried
            return tool_use_call(self.name, self.start_input, self.id)
        arguments = "".join(self.pieces)
        if not arguments.strip():
            return tool_use_call(self.name, {}, self.id)
        try:
            parsed = json.loads(arguments)
        except (ValueError, RecursionError):
            parsed = UNREAD_PIECE  # not an object: unread
        return tool_use_call(self.name, parsed, self.id)


class HeldMessagesCalls(HeldEvents):
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        super().__init__(state, inner)
        self._blocks: dict[int, _Block] = {}  # the held tool_use blocks, by index
        self._calls = 0  # the answer's tool_use blocks decided
        self._refused = 0  # …and refused

    def _event(self, raw: bytes) -> bytes:
        if self._held is None and not _may_matter(raw):  # most of a stream: its text's deltas
            return raw
        obj = event_object(raw)
        if obj is not None:
            self._read(obj)
        if self._held is None:
            return self._stop_rewritten(HeldEvent(raw, obj)) if obj is not None else raw
        return self._hold(raw, obj)

    def _whole(self) -> bool:
        return all(b.stopped for b in self._blocks.values())

    def _held_calls(self) -> Iterator[ToolCall]:
        return (block.call() for block in self._blocks.values())

    def _unframed(self) -> bytes:
        self._blocks = {}
        return write_event("error", {"error": {"type": "api_error", "message": UNFRAMED}})

    def _read(self, obj: dict[str, Any]) -> None:
        kind, index = obj.get("type"), obj.get("index")
        if not isinstance(index, int):
            return
        if kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and block.get("type") == TOOL_USE:
                if self._held is None:
                    self._held = []
                if index in self._blocks:  # two calls at one index: neither can be told apart
                    self._blocks[index].pieces = [UNREAD_PIECE]
                    self._blocks[index].starts += 1
                else:
                    self._blocks[index] = _Block(block)
        elif kind == "content_block_delta" and index in self._blocks:
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                piece = delta.get("partial_json")
                held = self._blocks[index]
                if held.pieces is None:
                    held.pieces = []
                held.pieces.append(piece if isinstance(piece, str) else UNREAD_PIECE)
        elif kind == "content_block_stop" and index in self._blocks:
            self._blocks[index].stops += 1

    def _release(self) -> bytes:
        """The held events, each refused block's replaced by a text block's at its index."""
        held, self._held = self._held or [], None
        refused: dict[int, str] = {}
        for index, block in sorted(self._blocks.items()):
            decision = decided_call(block.call(), self._state)
            self._calls += 1
            if decision.refusal is not None:
                refused[index] = decision.refusal
                self._refused += 1
        unstopped = [i for i, b in sorted(self._blocks.items()) if not b.stopped and i in refused]
        self._blocks = {}
        if not refused:
            return b"".join(self._stop_rewritten(e) for e in held)
        out = []
        opened: set[int] = set()  # the refused indexes whose text block began, and ended
        closed: set[int] = set()
        for event in held:
            obj = event.obj
            at = obj.get("index") if obj is not None else None
            if obj is None or at not in refused or not str(obj.get("type")).startswith("content_block_"):
                out.append(self._stop_rewritten(event))
            elif obj["type"] == "content_block_start" and at not in opened:
                opened.add(at)
                start = {"index": at, "content_block": {"type": "text", "text": ""}}
                out.append(write_event("content_block_start", start))
                delta = {"index": at, "delta": {"type": "text_delta", "text": refused[at]}}
                out.append(write_event("content_block_delta", delta))
            elif obj["type"] == "content_block_stop" and at in opened and at not in closed:
                closed.add(at)
                out.append(write_event("content_block_stop", {"index": at}))
        # A refused block that never stopped (the stream ended): its text block closed all the same.
        out.extend(write_event("content_block_stop", {"index": i}) for i in unstopped if i not in closed)
        return b"".join(out)

    def _stop_rewritten(self, event: HeldEvent) -> bytes:
        """`message_delta` ending on `end_turn` where every call of the answer was refused."""
        obj = event.obj
        if obj is None or obj.get("type") != "message_delta" or not self._calls or self._refused < self._calls:
            return event.raw
        delta = obj.get("delta")
        if not isinstance(delta, dict) or delta.get("stop_reason") != TOOL_USE:
            return event.raw
        rest = {k: v for k, v in obj.items() if k != "type"}
        return write_event("message_delta", {**rest, "delta": {**delta, "stop_reason": "end_turn"}})


def _may_matter(raw: bytes) -> bool:
    """Whether an event may begin a block or end the message: the types read where nothing is held.
    An event that names neither, and escapes nothing (a type could be written escaped), is neither."""
    return b"content_block_start" in raw or b"message_delta" in raw or b"\\" in raw
