"""Cohere's Command R and R+ bodies on Bedrock's InvokeModel, as `agents` reads them: where a
request's text came from, its tools' parameters, and the tool calls of an answer and its stream.

A request: `preamble` (the system prompt), `chat_history` (entries of role `USER`, `SYSTEM`,
`CHATBOT` — its `message` and its `tool_calls` `[{name, parameters}]` — and `TOOL`, whose
`tool_results` answer them), the user's `message`, the RAG `documents` given for it, and the
`tool_results` `[{call: {name, parameters}, outputs: [{…}]}]` of the calls the model made last.
The preamble, `USER` and `SYSTEM` entries and the message are trusted (not the message under
`raw_prompting`, the whole prompt as the client wrote it: outside content); every tool result and
document is outside content; the chatbot's text and calls after outside content are too. A tool
declares its parameters in `parameter_definitions` (`{name: {type, description, required}}`).

An answer: `text`, `tool_calls` `[{name, parameters}]`, `finish_reason` (`COMPLETE` whether it
calls tools or not) and `chat_history`, the conversation with the answer's own `CHATBOT` turn.
Its stream's events (one JSON object each, named by `event_type`): `stream-start`,
`text-generation` (`text`), `tool-calls-chunk` (`tool_call_delta`: `{index, name, parameters}`,
the parameters as pieces of JSON text, or `text`, of the plan), `tool-calls-generation` (the
calls whole, in `tool_calls`), `citation-generation`, `stream-end` (`finish_reason` and the whole
answer in `response`). A client that builds its calls from the chunks runs what they say: a call's
chunks agree with the call carried whole (`chunks_agree`) or it is not the call decided."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import text_object_once
from tollgate.formats.provenance import Provenance, ProvenanceBuilder, dicts, items, mapping

TEXT_GENERATION = "text-generation"
TOOL_CALLS_CHUNK = "tool-calls-chunk"
TOOL_CALLS_GENERATION = "tool-calls-generation"
STREAM_END = "stream-end"
CHATBOT = "CHATBOT"
DOCUMENTS = "documents"  # the tool the RAG documents a request gives are attributed to


def is_cohere_chat(body: dict[str, Any]) -> bool:
    """Whether a body is Command R's: a user `message`, no `messages`."""
    return isinstance(body.get("message"), str) and "messages" not in body


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    built.trusted(body.get("preamble"))
    for entry in dicts(body.get("chat_history")):
        role = entry.get("role")
        role = role.upper() if isinstance(role, str) else None
        if role in ("USER", "SYSTEM"):
            built.trusted(entry.get("message"))
        elif role == CHATBOT:
            built.assistant(entry.get("message"))
            for call in dicts(entry.get("tool_calls")):
                built.call(None, call.get("name"), call.get("parameters"))
        elif role == "TOOL":
            _results(built, entry.get("tool_results"))
        else:  # a role this does not know: not trusted
            built.result(None, None, entry.get("message"))
    for document in items(body.get("documents")):  # an object or a string: outside content either way
        built.result(None, DOCUMENTS, document)
    if body.get("raw_prompting") in (None, False):
        built.trusted(body.get("message"))
    else:  # the prompt as the client wrote it, without Cohere's template: what tools read may be in it
        built.result(None, None, body.get("message"))
    _results(built, body.get("tool_results"))
    return built.build()


def _results(built: ProvenanceBuilder, results: Any) -> None:
    for result in items(results):
        if not isinstance(result, dict):  # no call to attribute it to: outside content still
            built.result(None, None, result)
            continue
        call = mapping(result.get("call"))
        built.call(None, call.get("name"), call.get("parameters"))
        built.result(None, call.get("name"), result.get("outputs"))


def schemas(body: dict[str, Any]) -> dict[str, Any]:
    """Each declared tool's parameters, as a JSON schema of an object declaring them (their types
    are Python's names, not JSON schema's: only the names are kept)."""
    out: dict[str, Any] = {}
    for tool in dicts(body.get("tools")):
        if isinstance(tool.get("name"), str):
            declared = mapping(tool.get("parameter_definitions"))
            out[tool["name"]] = {"type": "object", "properties": {name: {} for name in declared}}
    return out


def call_parts(call: Any) -> tuple[str, Any] | None:
    """A call's tool name and parameters (None: not an object). Parameters absent are none."""
    if not isinstance(call, dict):
        return None
    name = call["name"] if isinstance(call.get("name"), str) and call["name"] else "unknown"
    parameters = call.get("parameters")
    return name, {} if parameters is None else parameters


def chunks_agree(names: list[Any], pieces: list[Any], call: Any) -> bool:
    """Whether a call's `tool-calls-chunk` deltas say what the call carried whole (`{name,
    parameters}`) says: they give its name once, and their parameters' pieces joined read as the
    same JSON object (none given: `{}`, as `call_parts` reads parameters absent). What clients may
    assemble otherwise does not agree: a name given twice (some join the pieces, some keep the last),
    a piece that is not text, text that is not one JSON object or that repeats a key. Values are
    compared with their types (`1`, `1.0` and `true` differ)."""
    given = [n for n in names if n is not None]
    if not isinstance(call, dict) or given != [call.get("name")] or not isinstance(given[0], str) or not given[0]:
        return False
    if not all(isinstance(p, str) for p in pieces):
        return False
    text = "".join(pieces)
    assembled = text_object_once(text) if text else {}
    whole = call.get("parameters")
    if assembled is None or not isinstance(whole, dict | None):
        return False
    try:
        return _canonical(assembled) == _canonical({} if whole is None else whole)
    except (ValueError, RecursionError):  # nested past what can be written: not read alike
        return False


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)
