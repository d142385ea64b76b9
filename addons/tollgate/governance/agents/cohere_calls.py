"""`agents` on Cohere's Command R answer on Bedrock's InvokeModel, read whole: each of its
`tool_calls` decided before the agent gets it. A refused call is taken out and the text the agent
reads takes its place at the end of the answer's `text`; the answer's own `CHATBOT` turn in its
`chat_history` is changed alike, so that a conversation continued from it holds no refused call.
Cohere says `COMPLETE` whether an answer calls tools or not: an answer whose every call was refused
is a text answer by having no `tool_calls` left. The rest stays as it came.

`Decided` keeps each call's decision by its name and parameters, so that the same call seen twice
(a stream's `tool-calls-generation` and its `stream-end`'s `response`) is decided and recorded once."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bedrock_invoke.cohere import CHATBOT, call_parts
from tollgate.formats.bodies.json_codec import object_once
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall


def tool_call(call: Any) -> ToolCall:
    """A call of Cohere's; one that is not an object, or whose parameters are not one, is `unread`."""
    parts = call_parts(call)
    if parts is None:
        return ToolCall("unknown", UNREAD)
    name, parameters = parts
    return ToolCall(name, parameters if isinstance(parameters, dict) else UNREAD)


def call_key(call: ToolCall) -> str:
    """A call by its name and parameters: the same call wherever the answer repeats it."""
    if call.arguments is UNREAD:
        return call.name + "\x00unread"
    return call.name + "\x00" + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)


class Decided:
    """The answer's calls decided so far: each one's refusal (None: allowed), by `call_key`."""

    def __init__(self, state: AgentsCall) -> None:
        self._state = state
        self.refusals: dict[str, str | None] = {}
        # Calls carried whole that are decided as another (their stream's chunks said otherwise: as
        # unread), by `call_key`; wherever the answer repeats them.
        self._read_as: dict[str, ToolCall] = {}

    def read_as(self, carried: ToolCall, call: ToolCall) -> None:
        """A call carried whole decided as `call`, here and wherever the answer repeats it."""
        self._read_as[call_key(carried)] = call

    def refusal(self, call: ToolCall) -> str | None:
        """A call's refusal, decided now where it was not before."""
        call = self._read_as.get(call_key(call), call)
        key = call_key(call)
        if key not in self.refusals:
            self.refusals[key] = decided_call(call, self._state).refusal
        return self.refusals[key]

    def kept(self, calls: list[Any]) -> tuple[list[Any], list[str]]:
        """The calls allowed, as they came, and the refusals of the others, in order."""
        kept: list[Any] = []
        refused: list[str] = []
        for call in calls:
            refusal = self.refusal(tool_call(call))
            if refusal is None:
                kept.append(call)
            else:
                refused.append(refusal)
        return kept, refused


def with_refusals(text: Any, refusals: list[str]) -> str:
    """A text followed by the refusals, a blank line between each."""
    before = [text] if isinstance(text, str) and text else []
    return "\n\n".join([*before, *refusals])


def decided_response(response: dict[str, Any], decided: Decided) -> bool:
    """An answer (or a stream's `response`) with its refused calls taken out and their texts
    after its text, its last `CHATBOT` turn alike; whether it changed."""
    changed = _decided_turn(response, "text", decided)
    history = response.get("chat_history")
    if isinstance(history, list):
        turns = [t for t in history if isinstance(t, dict) and str(t.get("role", "")).upper() == CHATBOT]
        if turns and "tool_calls" in turns[-1]:
            changed |= _decided_turn(turns[-1], "message", decided)
    return changed


def _decided_turn(turn: dict[str, Any], text: str, decided: Decided) -> bool:
    calls = turn.get("tool_calls")
    if calls is None:
        return False
    kept, refused = decided.kept(calls if isinstance(calls, list) else [calls])
    if not refused:
        return False
    if kept:
        turn["tool_calls"] = kept
    else:
        del turn["tool_calls"]
    turn[text] = with_refusals(turn.get(text), refused)
    return True


def decided_cohere_answer(content: bytes, state: AgentsCall) -> bytes | None:
    """The answer with each refused call taken out and its text after the answer's (the same
    bytes where none was refused); None where it cannot be read."""
    answer = object_once(content)  # an object that repeats a key is not read
    if answer is None:
        return None
    if not decided_response(answer, Decided(state)):
        return content
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
