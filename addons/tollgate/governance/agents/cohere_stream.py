"""`agents` on Cohere's Command R stream inside InvokeModelWithResponseStream (each `chunk` frame's
event read as a server-sent event by `InvokeChunks`): from a call's first `tool-calls-chunk` on,
its events and every event after them are held until the calls are whole — the
`tool-calls-generation` event that carries them, or the `stream-end` whose `response` does — and
the policy has answered on each; text before goes on as it comes. Then each call is decided
(`cohere_calls.Decided`): a refused call's chunks are taken out (the calls kept numbered anew from
0), its refusal comes as a `text-generation` event before the `tool-calls-generation` event, which
goes only with the calls kept, and the `stream-end`'s `response` says the same as the events did.
A stream that ends while holding is decided on what came: a call whose chunks came and that no
event carried whole is refused as `unread`, its chunks taken out. So is a call whose chunks say
another name or other parameters than the event carrying it whole (`chunks_agree`): a client that
builds its calls from the chunks would run what was not decided. Its chunks are read as they are
held: their names and parameters' pieces are the held events' own strings, not copies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tollgate.formats.bedrock_invoke.cohere import STREAM_END, TEXT_GENERATION, TOOL_CALLS_CHUNK, chunks_agree
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall
from tollgate.governance.agents.cohere_calls import Decided, decided_response, tool_call, with_refusals
from tollgate.governance.agents.held_events import UNFRAMED, HeldEvents, error_event, event_object
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall


class _Chunks:
    """One call's chunks so far: the names they gave and its parameters' pieces, as they came."""

    __slots__ = ("names", "pieces")

    def __init__(self) -> None:
        self.names: list[Any] = []
        self.pieces: list[Any] = []

    @property
    def name(self) -> str:
        """The name it goes by in a refusal: the last one its chunks gave."""
        given = [n for n in self.names if isinstance(n, str) and n]
        return given[-1] if given else "unknown"


class HeldCohereCalls(HeldEvents):
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        super().__init__(state, inner)
        self._decided = Decided(state)
        self._pending: list[ToolCall] = []  # the calls held, carried whole, not yet decided
        # The calls whose chunks came that no event carried whole yet, by index.
        self._pieces: dict[Any, _Chunks] = {}
        # The calls whose chunks came that the event carrying the calls whole left out, by name.
        self._uncarried: list[str] = []
        self._wrote = False  # text went before

    def _event(self, raw: bytes) -> bytes:
        obj = event_object(raw)
        if obj is not None:
            self._read(obj)
        return raw if self._held is None else self._hold(raw, obj)

    def _read(self, obj: dict[str, Any]) -> None:
        kind = obj.get("event_type")
        if kind == TEXT_GENERATION and obj.get("text") and self._held is None:
            self._wrote = True
        delta = obj.get("tool_call_delta")
        if kind == TOOL_CALLS_CHUNK or delta is not None:
            if _is_call_piece(delta):
                at = delta.get("index", 0) if isinstance(delta, dict) else None
                chunks = self._pieces.setdefault(at if isinstance(at, int) else None, _Chunks())
                if isinstance(delta, dict):
                    chunks.names.append(delta.get("name"))
                    if delta.get("parameters") is not None:
                        chunks.pieces.append(delta["parameters"])
                self._held = [] if self._held is None else self._held
            return
        calls = _calls_of(obj)
        if calls is not None:
            self._held = [] if self._held is None else self._held
            self._carried(calls)

    def _carried(self, calls: list[Any]) -> None:
        """The calls an event carries whole, each held to be decided, checked against its chunks."""
        carried = range(len(calls))
        self._uncarried.extend(c.name for at, c in self._pieces.items() if at not in carried)
        for at, whole in enumerate(calls):
            call, came = tool_call(whole), self._pieces.get(at)
            if came is not None and not chunks_agree(came.names, came.pieces, whole):
                # What a client builds of the chunks is not this call: the call is unread.
                self._decided.read_as(call, ToolCall(call.name, UNREAD))
                call = ToolCall(call.name, UNREAD)
            self._pending.append(call)
        self._pieces = {}

    def _whole(self) -> bool:
        return not self._pieces

    def _held_calls(self) -> Iterator[ToolCall]:
        return iter(self._pending)  # calls cut short are refused as unread: the policy is not asked

    def _unframed(self) -> bytes:
        self._pending, self._pieces = [], {}
        return error_event(UNFRAMED)

    def _release(self) -> bytes:
        """The held events, each refused call's chunks taken out and its text before its calls."""
        held, self._held = self._held or [], None
        for call in self._pending:
            self._decided.refusal(call)
        # Calls cut short (the stream ended before an event carried them whole): refused as unread.
        # So are the calls whose chunks came that the whole event left out: their chunks are not the
        # calls decided.
        left_out = [*(c.name for c in self._pieces.values()), *self._uncarried]
        cut = [self._decided.refusal(ToolCall(name, UNREAD)) or "" for name in left_out]
        self._pending, self._pieces, self._uncarried = [], {}, []
        if not cut and all(r is None for r in self._decided.refusals.values()):
            return b"".join(e.raw for e in held)
        out: list[bytes] = []
        for event, step in zip(held, _steps(held), strict=True):
            if event.obj is None:
                out.append(event.raw)
                continue
            out.extend(self._rewritten(event.raw, event.obj, step))
            if event.obj.get("event_type") == TEXT_GENERATION and event.obj.get("text"):
                self._wrote = True
        if cut:
            out.append(self._text(cut))
        return b"".join(out)

    def _rewritten(self, raw: bytes, obj: dict[str, Any], step: list[Any] | None) -> list[bytes]:
        """What goes on of one held event: as it came (`raw`) where nothing in it changed."""
        delta = obj.get("tool_call_delta")
        if obj.get("event_type") == TOOL_CALLS_CHUNK or delta is not None:
            if not _is_call_piece(delta):
                return [raw]
            numbers = self._numbers(step)
            at = delta.get("index", 0) if isinstance(delta, dict) else None
            if not isinstance(delta, dict) or not isinstance(at, int) or at not in numbers:
                return []  # a piece of a call refused, or that nothing carried whole
            if numbers[at] == at:
                return [raw]
            return [_written({**obj, "tool_call_delta": {**delta, "index": numbers[at]}})]
        if obj.get("event_type") == STREAM_END or "response" in obj:
            response = obj.get("response")
            changed = isinstance(response, dict) and decided_response(response, self._decided)
            return [_written(obj) if changed else raw]
        calls = _calls_of(obj)
        if calls is None:
            return [raw]
        kept, refused = self._decided.kept(calls)
        if not refused:
            return [raw]
        return [self._text(refused), *([_written({**obj, "tool_calls": kept})] if kept else [])]

    def _numbers(self, step: list[Any] | None) -> dict[int, int]:
        """The calls of a step kept, by the index its chunks give → their index once the refused are out."""
        if step is None:
            return {}
        kept = [at for at, call in enumerate(step) if self._decided.refusal(tool_call(call)) is None]
        return {at: n for n, at in enumerate(kept)}

    def _text(self, refusals: list[str]) -> bytes:
        lead = "\n\n" if self._wrote else ""
        self._wrote = True
        text = lead + with_refusals("", refusals)
        return _written({"is_finished": False, "event_type": TEXT_GENERATION, "text": text})


def _is_call_piece(delta: Any) -> bool:
    """Whether a chunk's delta carries a piece of a call (its name or parameters), not the plan's text."""
    return not isinstance(delta, dict) or delta.get("name") is not None or delta.get("parameters") is not None


def _calls_of(obj: dict[str, Any]) -> list[Any] | None:
    """The calls an event carries whole: a `tool-calls-generation`'s, a `stream-end`'s response's."""
    if obj.get("event_type") == STREAM_END or "response" in obj:
        response = obj.get("response")
        calls = response.get("tool_calls") if isinstance(response, dict) else None
    else:
        calls = obj.get("tool_calls")
    if calls is None:
        return None
    return calls if isinstance(calls, list) else [calls]


def _steps(held: list[Any]) -> list[list[Any] | None]:
    """For each held event, the calls its chunks' indexes name: those carried whole by the next
    event that carries calls (a step's chunks come before the event that carries them)."""
    out: list[list[Any] | None] = []
    step: list[Any] | None = None
    for event in reversed(held):
        calls = _calls_of(event.obj) if event.obj is not None else None
        step = calls if calls is not None else step
        out.append(step)
    return out[::-1]


def _written(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
