"""`agents` on a streamed chat completion: from a choice's first tool call delta, its events (and
every event after it, in order) are held until each choice that calls a tool has finished, so that
every call's arguments are complete; text before the first call goes on as it comes. Then each call
is decided: a refused call's deltas are taken out, the text the agent reads comes as a content
delta before its choice's finish, and the choice finishes with `stop` only when every call of it
was refused. The calls kept are numbered anew from 0. A stream that ends while holding is decided
on what came (arguments cut short are refused as `unread`). The events are framed as `held_events`
frames them. Where the policy decides tool calls, the held events wait too until it has answered on
each call (`call_state.unasked`): fed again (`feed(b"")`) once it has, they go."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.held_events import UNFRAMED, HeldEvents, error_event, event_object
from tollgate.governance.agents.tool_decision import ToolCall

_LEGACY = -1  # the key of a choice's older `function_call`, among its calls' indexes


class HeldChatCalls(HeldEvents):
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        super().__init__(state, inner)
        # Each choice's calls as they came: (choice, index) → [id, name, arguments].
        self._calls: dict[tuple[int, int], list[Any]] = {}
        self._open: set[int] = set()  # the choices that called a tool and have not finished
        self._texts: set[int] = set()  # the choices that wrote text

    def _event(self, raw: bytes) -> bytes:
        obj = event_object(raw)
        if obj is not None:
            self._read(obj)
        return raw if self._held is None else self._hold(raw, obj)

    def _whole(self) -> bool:
        return not self._open

    def _held_calls(self) -> Iterator[ToolCall]:
        return (_tool_call(call) for call in self._calls.values())

    def _unframed(self) -> bytes:
        self._calls, self._open = {}, set()
        return error_event(UNFRAMED)

    def _read(self, obj: dict[str, Any]) -> None:
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                continue
            at = choice.get("index", 0)
            found = choice.get("delta")
            delta: dict[str, Any] = found if isinstance(found, dict) else {}
            if delta.get("content"):
                self._texts.add(at)
            pieces = [(c.get("index", 0), c) for c in delta.get("tool_calls") or () if isinstance(c, dict)]
            if isinstance(delta.get("function_call"), dict):
                pieces.append((_LEGACY, {"function": delta["function_call"]}))
            for index, piece in pieces:
                if self._held is None:
                    self._held = []
                self._open.add(at)
                call = self._calls.setdefault((at, index if isinstance(index, int) else 0), [None, "", ""])
                given = piece.get("function")
                function: dict[str, Any] = given if isinstance(given, dict) else {}
                call[0] = piece.get("id") or call[0]
                name = function.get("name")
                call[1] += name if isinstance(name, str) else ""
                arguments = function.get("arguments")
                call[2] += arguments if isinstance(arguments, str) else ("\x00" if arguments is not None else "")
            if choice.get("finish_reason") is not None:
                self._open.discard(at)

    def _release(self) -> bytes:
        """The held events, each refused call taken out and its text put before its choice's finish."""
        held, self._held = self._held or [], None
        refused: dict[int, list[str]] = {}
        dropped: set[tuple[int, int]] = set()
        counts: dict[int, int] = {}
        for (at, index), (call_id, name, arguments) in sorted(self._calls.items()):
            counts[at] = counts.get(at, 0) + 1
            decision = decided_call(_tool_call([call_id, name, arguments]), self._state)
            if decision.refusal is not None:
                dropped.add((at, index))
                refused.setdefault(at, []).append(decision.refusal)
        renumbered = {
            key: n
            for at in counts
            for n, key in enumerate(
                k for k in sorted(self._calls) if k[0] == at and k not in dropped and k[1] != _LEGACY
            )
        }
        self._calls = {}
        if not dropped and renumbered == {k: k[1] for k in renumbered}:
            return b"".join(e.raw for e in held)
        out = []
        for event in held:
            if event.obj is None:
                out.append(event.raw)
                continue
            out.extend(self._rewritten(event.obj, dropped, renumbered, refused, counts))
        for at, texts in refused.items():  # a choice that never finished: its texts at the stream's end
            note = {
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": at,
                        "delta": {"content": ("\n\n" if at in self._texts else "") + "\n\n".join(texts)},
                        "finish_reason": None,
                    }
                ],
            }
            out.append(_written(note))
        return b"".join(out)

    def _rewritten(
        self,
        obj: dict[str, Any],
        dropped: set[tuple[int, int]],
        renumbered: dict[tuple[int, int], int],
        refused: dict[int, list[str]],
        counts: dict[int, int],
    ) -> list[bytes]:
        before: list[bytes] = []
        emptied: set[int] = set()  # the choices whose every delta was a refused call's
        choices = obj.get("choices") or ()
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            at = choice.get("index", 0)
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else None
            if delta is not None:
                if isinstance(delta.get("tool_calls"), list):
                    kept = []
                    for piece in delta["tool_calls"]:
                        key = (at, piece.get("index", 0) if isinstance(piece, dict) else 0)
                        if key not in dropped:
                            kept.append({**piece, "index": renumbered.get(key, key[1])})
                    if kept:
                        delta["tool_calls"] = kept
                    else:
                        del delta["tool_calls"]
                        emptied.add(id(choice))
                if (at, _LEGACY) in dropped:
                    delta.pop("function_call", None)
            if choice.get("finish_reason") is not None and at in refused:
                text = "\n\n".join(refused.pop(at))
                lead = "\n\n" if at in self._texts else ""
                note = {**obj, "choices": [{"index": at, "delta": {"content": lead + text}, "finish_reason": None}]}
                note.pop("usage", None)
                before.append(_written(note))
                if len([k for k in dropped if k[0] == at]) == counts.get(at) and choice["finish_reason"] in (
                    "tool_calls",
                    "function_call",
                ):
                    choice["finish_reason"] = "stop"
        # A choice left with nothing to say (a refused call's piece) is not written; nor its chunk.
        left = [
            c
            for c in choices
            if not (
                id(c) in emptied and not c.get("delta") and c.get("finish_reason") is None and not c.get("logprobs")
            )
        ]
        if choices and not left and obj.get("usage") is None:
            return before
        if isinstance(obj.get("choices"), list):
            obj["choices"] = left
        return [*before, _written(obj)]


def _tool_call(call: list[Any]) -> ToolCall:
    call_id, name, arguments = call
    return ToolCall.from_json(name or "unknown", arguments, call_id)


def _written(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
