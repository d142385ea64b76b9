"""`agents` on a Responses API answer read whole: each output item the agent runs (`function_call`,
`custom_tool_call`, and the built-in tools its own harness runs: `computer_call`, `shell_call`,
`local_shell_call`, `apply_patch_call`) decided before the agent gets it, and each
`mcp_approval_request` (a call the provider runs once the agent approves it) alike. The provider's
own tools' items (`web_search_call`, `mcp_call`, …) are not the agent's to run: they go as they came. A
refused call's item is replaced, at its place, by a `message` item whose `output_text` the agent
reads. The usage stays as it came. What the conversation holds once answered is kept by the
answer's id (`AgentsCall.remember`), for a later `previous_response_id` to be judged on it."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import json_loads
from tollgate.formats.openai_responses.provenance import APPROVAL_REQUEST, asked_call
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.provider_mcp import responses_unapproved, undecided
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall


def responses_schemas(body: dict[str, Any]) -> dict[str, Any]:
    """Each declared function's argument schema (custom and built-in tools declare none)."""
    out: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
            out[tool["name"]] = tool.get("parameters")
    return out


def undecidable(body: dict[str, Any], settings: AgentsSettings) -> str | None:
    """Why a request's answer's calls would reach the agent (or act) undecided; None where they cannot."""
    if body.get("background") is True and body.get("tools"):
        # Fetched later (GET /v1/responses/{id}, or its stream resumed): read back as it was made.
        return "a background response's tool calls are fetched later, undecided"
    return undecided(responses_unapproved(body), settings)


def tool_call_of(item: dict[str, Any]) -> ToolCall | None:
    """The call an output item asks the agent to make; None for an item the agent does not run."""
    found = asked_call(item)
    if found is None:
        return None
    name, arguments = found
    call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else None
    kind = item.get("type")
    if kind in ("function_call", APPROVAL_REQUEST):
        return ToolCall.from_json(name, arguments if isinstance(arguments, str) else "\x00", call_id)
    if kind == "custom_tool_call":  # freeform input, judged as its text
        return ToolCall(name, arguments if isinstance(arguments, str) else UNREAD, call_id)
    return ToolCall(name, arguments, call_id)


def refusal_item(call: dict[str, Any], text: str) -> dict[str, Any]:
    """The `message` item that takes a refused call's place, its id made from the call's (the same
    in a stream's events and in its last event's response)."""
    of = call.get("id") if isinstance(call.get("id"), str) else call.get("call_id")
    return {
        "id": f"msg_tollgate_{of if isinstance(of, str) else 'call'}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def identity(item: dict[str, Any]) -> str | None:
    """How an output item is found again in a stream's last event: its id, else its call's id."""
    for key in ("id", "call_id"):
        if isinstance(item.get(key), str):
            return f"{key}:{item[key]}"
    return None


# The item that answers a refused call, by the call's type, for the provider that keeps the call.
APPROVAL_RESPONSE = "mcp_approval_response"  # the agent's answer to an approval request
_ANSWERED_BY = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}


def refusal_output(call: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The output item that answers a refused call with its refusal (None for a call whose output
    is not text): the provider kept the call, and a request continuing its response must answer it.
    A refused approval request is denied, so that the provider never runs its call."""
    if call.get("type") == APPROVAL_REQUEST:
        of = call.get("id")
        if not isinstance(of, str):
            return None
        return {"type": APPROVAL_RESPONSE, "approval_request_id": of, "approve": False, "reason": text}
    kind, call_id = _ANSWERED_BY.get(str(call.get("type"))), call.get("call_id")
    if kind is None or not isinstance(call_id, str):
        return None
    return {"type": kind, "call_id": call_id, "output": text}


def with_refusals_answered(body: dict[str, Any], refused: dict[str, dict[str, Any]]) -> bool:
    """A request continuing a response (`previous_response_id`) whose calls Tollgate refused: the
    refusals put first in its input, as those calls' outputs, for each call its input does not
    answer itself (the agent never got the call to answer it). An approval of a refused MCP call
    (its request fetched elsewhere) becomes its denial in place: the provider would run the call.
    Whether the body changed."""
    source = body.get("input")
    items = [{"role": "user", "content": source}] if isinstance(source, str) else source
    if not isinstance(items, list):
        return False
    changed = False
    for at, item in enumerate(items):
        of = answered_id(item) if isinstance(item, dict) else None
        if of in refused and item.get("type") == APPROVAL_RESPONSE and item.get("approve") is not False:
            items[at], changed = dict(refused[of]), True
    answered = {answered_id(i) for i in items if isinstance(i, dict)} - {None}
    missing = [dict(output) for call_id, output in refused.items() if call_id not in answered]
    if not missing and not changed:
        return False
    body["input"] = [*missing, *items]
    return True


def answered_id(item: dict[str, Any]) -> str | None:
    """The call an input item answers: an output's `call_id`, an approval response's request id."""
    if item.get("type") == APPROVAL_RESPONSE:
        of = item.get("approval_request_id")
    else:
        of = item.get("call_id") if str(item.get("type", "")).endswith("_output") else None
    return of if isinstance(of, str) else None


def remembered(state: AgentsCall, response: dict[str, Any], refused: dict[str, dict[str, Any]]) -> None:
    """The conversation kept by the response's id, as the agent got its output."""
    if state.remember is not None and isinstance(response.get("id"), str):
        state.remember(response["id"], response.get("output"), refused)


def decided_responses_answer(content: bytes, state: AgentsCall) -> bytes | None:
    """The answer with each refused call's item replaced by its refusal's message (the same bytes
    where none was refused); None where it cannot be read."""
    try:
        answer = json_loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("output", []), list):
        return None
    output: list[Any] = answer.get("output") or []
    refused: dict[str, dict[str, Any]] = {}  # by call id: the output that answers it
    changed = False
    for at, item in enumerate(output):
        call = tool_call_of(item) if isinstance(item, dict) else None
        if call is None:
            continue
        decision = decided_call(call, state)
        if decision.refusal is not None:
            output[at], changed = refusal_item(item, decision.refusal), True
            if (answer_item := refusal_output(item, decision.refusal)) is not None:
                refused[str(answered_id(answer_item))] = answer_item
    remembered(state, answer, refused)
    if not changed:
        return content
    if isinstance(answer.get("output_text"), str):  # a convenience some servers add: the text anew
        answer["output_text"] = output_text(output)
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


def output_text(output: list[Any]) -> str:
    """Every `output_text` of the output's messages, joined, as the SDKs' `output_text` reads them."""
    return "".join(
        part["text"]
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
    )


def replaced_output(response: dict[str, Any], replacements: dict[str, dict[str, Any]]) -> bool:
    """A stream's last event's response with the refused calls' items replaced; whether any was."""
    output = response.get("output")
    changed = False
    for at, item in enumerate(output if isinstance(output, list) else ()):
        key = identity(item) if isinstance(item, dict) and asked_call(item) is not None else None
        if key is not None and key in replacements:
            output[at] = replacements[key]  # type: ignore[index]
            changed = True
    return changed
