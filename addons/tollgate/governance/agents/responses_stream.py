"""`agents` on a streamed Responses API answer: from an agent's call's `response.output_item.added`,
its events and every event after it are held, in order, until each call begun has its
`response.output_item.done` (which holds the whole item, its arguments complete); text before is
not held. Then each call is decided: a refused call's events are replaced, at the same
`output_index`, by a `message` item's events (added, content part, text delta and done, content
part done, item done) whose text the agent reads. From the first change on, every event's
`sequence_number` is renumbered to follow on, and the last event's response (`response.completed`,
`incomplete`, `failed`), which repeats the items, gets the same replacement. A stream that ends
while holding is decided on what came: a call without its done item is refused as `unread`. The
events are framed as `held_events` frames them. Where the policy decides tool calls, the held
events wait too until it has answered on each call (`call_state.unasked`): fed again (`feed(b"")`)
once it has, they go."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tollgate.formats.openai_responses.provenance import asked_call
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.held_events import UNFRAMED, HeldEvents, error_event, event_object
from tollgate.governance.agents.responses_calls import (
    answered_id,
    identity,
    refusal_item,
    refusal_output,
    remembered,
    replaced_output,
    tool_call_of,
)
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall

ADDED, DONE = "response.output_item.added", "response.output_item.done"
_LAST = ("response.completed", "response.incomplete", "response.failed")


class HeldResponsesCalls(HeldEvents):
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        super().__init__(state, inner)
        self._calls: dict[int, dict[str, Any]] = {}  # each held call's item, by output_index
        self._open: set[int] = set()  # the calls begun whose done item has not come
        self._finished: set[int] = set()  # the calls whose done item came: whole
        self._shift = 0  # what each later event's sequence_number moves by
        self._replaced: dict[str, dict[str, Any]] = {}  # a refused call's identity → its message item
        self._refused: dict[str, dict[str, Any]] = {}  # a refused call's id → the output that answers it

    def _event(self, raw: bytes) -> bytes:
        obj = event_object(raw)
        if obj is not None:
            self._read(obj)
        return self._passed(raw, obj) if self._held is None else self._hold(raw, obj)

    def _whole(self) -> bool:
        return not self._open

    def _unframed(self) -> bytes:
        self._calls, self._open, self._finished = {}, set(), set()
        return error_event(UNFRAMED, b"error")

    def _held_calls(self) -> Iterator[ToolCall]:
        return (call for _, call in self._placed_calls())

    def _placed_calls(self) -> list[tuple[int, ToolCall]]:
        """Each held call as it is decided, by output_index: one not whole is `unread`."""
        out = []
        for at, item in sorted(self._calls.items()):
            call = tool_call_of(item)
            if call is None:
                continue
            if at not in self._finished:  # the stream ended before the call's item was whole
                call = ToolCall(call.name, UNREAD, call.id)
            out.append((at, call))
        return out

    def _read(self, obj: dict[str, Any]) -> None:
        kind, at, item = obj.get("type"), obj.get("output_index"), obj.get("item")
        if kind not in (ADDED, DONE) or not isinstance(at, int) or not isinstance(item, dict):
            return
        if kind == ADDED and asked_call(item) is not None:
            if self._held is None:
                self._held = []
            self._calls[at] = item
            self._open.add(at)
        elif kind == DONE and at in self._calls:
            self._calls[at] = item
            self._open.discard(at)
            self._finished.add(at)

    def _release(self) -> bytes:
        """The held events, each refused call's replaced by its refusal message's."""
        held, self._held = self._held or [], None
        messages: dict[int, dict[str, Any]] = {}
        for at, call in self._placed_calls():
            item = self._calls[at]
            decision = decided_call(call, self._state)
            if decision.refusal is not None:
                messages[at] = message = refusal_item(item, decision.refusal)
                if (answer_item := refusal_output(item, decision.refusal)) is not None:
                    self._refused[str(answered_id(answer_item))] = answer_item
                key = identity(item)
                if key is not None:
                    self._replaced[key] = message
        self._calls, self._finished = {}, set()
        if not messages and not self._shift:
            return b"".join(self._passed(e.raw, e.obj) for e in held)
        out = []
        for event in held:
            place = event.obj.get("output_index") if event.obj is not None else None
            if event.obj is None or place not in messages:
                out.append(self._passed(event.raw, event.obj))
            elif event.obj.get("type") == ADDED:
                out.extend(self._message_events(event.obj, messages[place]))
            elif isinstance(event.obj.get("sequence_number"), int):
                self._shift -= 1  # a refused call's event: taken out
        return b"".join(out)

    def _message_events(self, added: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        """The refusal message's events, in place of its call's `output_item.added`."""
        at, item_id = added["output_index"], message["id"]
        text = message["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": []}
        place = {"item_id": item_id, "output_index": at, "content_index": 0}
        events: list[dict[str, Any]] = [
            {"type": ADDED, "output_index": at, "item": {**message, "status": "in_progress", "content": []}},
            {"type": "response.content_part.added", **place, "part": part},
            {"type": "response.output_text.delta", **place, "delta": text, "logprobs": []},
            {"type": "response.output_text.done", **place, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **place, "part": {**part, "text": text}},
            {"type": DONE, "output_index": at, "item": message},
        ]
        number = added.get("sequence_number")
        if isinstance(number, int):
            for n, event in enumerate(events):
                event["sequence_number"] = number + self._shift + n
            self._shift += len(events) - 1
        return [_written(e) for e in events]

    def _passed(self, raw: bytes, obj: dict[str, Any] | None) -> bytes:
        """An event let go: renumbered after a change, its response's items replaced if it is the last."""
        if obj is None:
            return raw
        changed = False
        if obj.get("type") in _LAST and isinstance(obj.get("response"), dict):
            changed = replaced_output(obj["response"], self._replaced)
            remembered(self._state, obj["response"], self._refused)
        if self._shift and isinstance(obj.get("sequence_number"), int):
            obj["sequence_number"] += self._shift
            changed = True
        return _written(obj) if changed else raw


def _written(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    kind = obj.get("type")
    head = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) else b""
    return head + b"data: " + data + b"\n\n"
