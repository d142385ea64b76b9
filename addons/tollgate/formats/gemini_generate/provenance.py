"""Where a generateContent request's text came from: `systemInstruction` and the user's text parts
trusted; `functionResponse` parts (by `id`, else `name`) outside content, and the results of the
code Gemini runs (`codeExecutionResult`). Both spellings of the fields (camelCase and snake_case)
are read, as the API takes both."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, items, mapping
from tollgate.formats.turns import role

# Tools Google runs itself, by their key in `tools[]`.
_PROVIDER_TOOLS = (
    "googleSearch",
    "google_search",
    "googleSearchRetrieval",
    "google_search_retrieval",
    "urlContext",
    "url_context",
    "codeExecution",
    "code_execution",
    "googleMaps",
    "google_maps",
)


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def _part(built: ProvenanceBuilder, part: dict[str, Any], by_user: bool) -> None:
    call = mapping(_field(part, "functionCall", "function_call"))
    answer = mapping(_field(part, "functionResponse", "function_response"))
    code = _field(part, "executableCode", "executable_code")
    ran = _field(part, "codeExecutionResult", "code_execution_result")
    if isinstance(part.get("text"), str):
        if by_user and not part.get("thought"):
            built.trusted(part["text"])
        else:
            built.assistant(part["text"])
    elif call:
        built.call(call.get("id"), call.get("name"), call.get("args"))
    elif answer:
        built.result(answer.get("id"), answer.get("name"), [answer.get("response"), answer.get("parts")])
    elif code is not None:
        built.call(None, "code_execution", code, provider=True)
    elif ran is not None:
        built.result(None, "code_execution", ran, provider=True)


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    for tool in items(body.get("tools")):
        for key in mapping(tool):
            if key in _PROVIDER_TOOLS:
                built.provider_tool(key)
    built.trusted(mapping(_field(body, "systemInstruction", "system_instruction")).get("parts"))
    for content in items(body.get("contents")):
        by_user = role(content) in ("user", None)  # a content without a role is the user's
        for part in items(mapping(content).get("parts")):
            _part(built, mapping(part), by_user)
    return built.build()
