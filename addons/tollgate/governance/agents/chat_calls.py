"""`agents` on an OpenAI chat completion read whole: each tool call of the answer decided before
the agent gets it. A refused call is taken out of its message and a text the agent
reads takes its place; the choice ends as a text answer does (`finish_reason: stop`) only when
every call of it was refused. The usage stays as it came."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import json_loads
from tollgate.formats.openai_chat.provenance import read_provenance
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, decided_call, read_request
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.tool_decision import ToolCall


def read_chat_request(body: dict[str, Any], settings: AgentsSettings, signals: InjectionSignals) -> AgentsCall:
    return read_request(read_provenance(body), chat_schemas(body), settings, signals)


def chat_schemas(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            out[function["name"]] = function.get("parameters")
    for function in body.get("functions") or ():  # the older `functions`
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            out[function["name"]] = function.get("parameters")
    return out


def decided_chat_answer(content: bytes, state: AgentsCall) -> bytes | None:
    """The answer with each refused tool call replaced by its refusal's text (the same bytes where
    none was refused); None where it cannot be read."""
    try:
        answer = json_loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("choices", []), list):
        return None
    changed = False
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            continue
        changed |= _decided_message(choice, choice["message"], state)
    if not changed:
        return content
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


def _decided_message(choice: dict[str, Any], message: dict[str, Any], state: AgentsCall) -> bool:
    calls = message.get("tool_calls")
    kept: list[Any] = []
    refusals: list[str] = []
    count = 0
    for call in calls if isinstance(calls, list) else ():
        count += 1
        function = call.get("function") if isinstance(call, dict) else None
        function = function if isinstance(function, dict) else {}
        name = function["name"] if isinstance(function.get("name"), str) else "unknown"
        arguments = function.get("arguments")
        tool_call = ToolCall.from_json(name, arguments if isinstance(arguments, str) else "\x00")
        decision = decided_call(tool_call, state)
        if decision.refusal is None:
            kept.append(call)
        else:
            refusals.append(decision.refusal)
    legacy = message.get("function_call")
    if isinstance(legacy, dict):  # the older single `function_call`
        count += 1
        name = legacy["name"] if isinstance(legacy.get("name"), str) else "unknown"
        arguments = legacy.get("arguments")
        decision = decided_call(ToolCall.from_json(name, arguments if isinstance(arguments, str) else "\x00"), state)
        if decision.refusal is not None:
            refusals.append(decision.refusal)
            del message["function_call"]
    if not refusals:
        return False
    if isinstance(calls, list):
        if kept:
            message["tool_calls"] = kept
        else:
            message.pop("tool_calls", None)
    text = message.get("content")
    before = text if isinstance(text, str) and text else None
    message["content"] = "\n\n".join([*([before] if before else []), *refusals])
    # `stop_reason`: Mistral's name for it on Bedrock's InvokeModel
    for finish in ("finish_reason", "stop_reason"):
        if len(refusals) == count and choice.get(finish) in ("tool_calls", "function_call"):
            choice[finish] = "stop"
    return True
