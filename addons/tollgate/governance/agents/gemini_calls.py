"""`agents` on a Gemini generateContent answer (and Code Assist's, the same inside `{"response":
…}`): each `functionCall` part of each candidate decided before the agent gets it. A refused call's
part is replaced, in its place, by a text part the agent reads (`Tollgate refused the call to
<tool>: …`). Gemini ends a turn of calls with `finishReason: STOP` as it ends text, and its SDKs
tell calls by the parts: the finish stays as it came. The usage stays as it came.

Vertex AI's calls whose arguments come in pieces (`partialArgs`, `willContinue`) cannot be decided
piece by piece: the piece that names the tool is refused as `unread`, the pieces after it taken out."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import object_once
from tollgate.formats.gemini_generate.provenance import read_provenance
from tollgate.formats.provenance import Provenance, items, mapping
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall

ENVELOPE = "response"  # Code Assist's answers, each inside `{"response": …}`
_CALL = ("functionCall", "function_call")
_SIGNATURE = ("thoughtSignature", "thought_signature")


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def gemini_schemas(body: dict[str, Any]) -> dict[str, Any]:
    """Each declared function's argument schema (`parametersJsonSchema`, else the OpenAPI subset
    `parameters`: both name their properties alike)."""
    out: dict[str, Any] = {}
    for tool in items(body.get("tools")):
        for found in items(_field(mapping(tool), "functionDeclarations", "function_declarations")):
            declaration = mapping(found)
            if isinstance(declaration.get("name"), str):
                schema = _field(declaration, "parametersJsonSchema", "parameters_json_schema")
                out[declaration["name"]] = schema if schema is not None else declaration.get("parameters")
    return out


def code_assist_provenance(body: dict[str, Any]) -> Provenance:
    return read_provenance(mapping(body.get("request")))


def code_assist_schemas(body: dict[str, Any]) -> dict[str, Any]:
    return gemini_schemas(mapping(body.get("request")))


def decided_gemini_answer(content: bytes, state: AgentsCall, envelope: str | None = None) -> bytes | None:
    """The answer with each refused call's part replaced by its refusal's text (the same bytes where
    none was refused); None where it cannot be read."""
    obj = object_once(content)  # an object that repeats a key is not read
    if obj is None:
        return None
    changed = decided_item(obj, state, envelope)
    if changed is None:
        return None
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() if changed else content


def decided_item(obj: dict[str, Any], state: AgentsCall, envelope: str | None = None) -> bool | None:
    """One answer (a streamed item, or the whole) decided in place: whether it changed; None where
    it cannot be read (candidates outside the envelope, or not a list)."""
    answer = obj.get(envelope) if envelope is not None else obj
    if envelope is not None and ("candidates" in obj or (answer is not None and not isinstance(answer, dict))):
        return None
    candidates = mapping(answer).get("candidates")
    if candidates is None:
        return False  # usage alone, prompt feedback
    if not isinstance(candidates, list):
        return None
    changed = False
    for candidate in candidates:
        parts = mapping(mapping(candidate).get("content")).get("parts")
        if isinstance(parts, list):
            changed |= _decided_parts(parts, state)
    return changed


def unread_item(state: AgentsCall, envelope: str | None = None) -> dict[str, Any]:
    """An item that stands for one that could not be read but may hold a call: its refusal's text."""
    refusal = decided_call(ToolCall("unknown", UNREAD), state).refusal
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": refusal}]}, "index": 0}]}
    return {envelope: answer} if envelope is not None else answer


def _decided_parts(parts: list[Any], state: AgentsCall) -> bool:
    """A candidate's parts decided in place: whether any changed."""
    out: list[Any] = []
    refused: list[tuple[int, Any]] = []  # each refusal's place in `out`, and the signature its part had
    for part in parts:
        if not isinstance(part, dict) or not any(key in part for key in _CALL):
            out.append(part)
            continue
        call = mapping(_field(part, *_CALL))
        name = call["name"] if isinstance(call.get("name"), str) and call["name"] else None
        pieces = "partialArgs" in call or "partial_args" in call or _field(call, "willContinue", "will_continue")
        if pieces and name is None:
            refused.append((-1, None))  # a later piece of a call in pieces: taken out
            continue
        args = call.get("args")
        arguments: Any = {} if args is None else args if isinstance(args, dict) else UNREAD
        if pieces or all(key in part for key in _CALL) or not isinstance(_field(part, *_CALL), dict):
            arguments = UNREAD  # in pieces, or two spellings of one call, or not an object
        call_id = call.get("id") if isinstance(call.get("id"), str) else None
        decision = decided_call(ToolCall(name or "unknown", arguments, call_id), state)
        if decision.refusal is None:
            out.append(part)
            continue
        refused.append((len(out), _field(part, *_SIGNATURE)))
        out.append({"text": decision.refusal})
    if not refused:
        return False
    for at, signature in refused:
        if signature is not None:
            _place_signature(out, at, signature)
    parts[:] = out
    return True


def _place_signature(parts: list[Any], at: int, signature: Any) -> None:
    """A refused call's thought signature: on the first call kept after it that has none (Gemini 3
    asks it back on a step's first call), else on the text that took its place (the model's
    thinking goes on with it)."""
    for part in parts[at + 1 :]:
        if isinstance(part, dict) and any(k in part for k in _CALL) and not any(k in part for k in _SIGNATURE):
            part["thoughtSignature"] = signature
            return
    parts[at]["thoughtSignature"] = signature
