"""A tool call decided by where its arguments came from, before the agent gets it.

Rules, in order: the policy's deny reasons (`data.tollgate.tools.deny`, passed in); arguments that
cannot be read are refused as `unread`; a call of an acting tool (`acting_tools`) with a tainted
argument is refused (`on_tainted`); after an `injection.*` finding in the conversation's outside
content, every acting tool's call is refused (`after_injection`). A rule set to `record` lets the
call through with its reason. A refused call is replaced by a text the agent reads, beginning
`Tollgate refused the call to <tool>`.

The record holds no argument value, ever: in its reasons any string of an argument of 5 characters
or more (and its tokens) is replaced by `…`, and in its paths a key the tool's schema does not
declare is written `*`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tollgate.formats.bodies.json_codec import json_loads
from tollgate.formats.provenance import ASSISTANT, UNKNOWN, Provenance
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.decoded import MAX_NODES
from tollgate.governance.agents.taint import UNINDEXED, TaintIndex, matches, tainted_values, tokens

REDACTED = "…"
REDACT_MIN_CHARS = 5
FREEFORM_PATH = "input"  # where a freeform call's text is, in a path


class Unread:
    """Arguments that could not be parsed: a call carrying them is refused as `unread`."""

    def __repr__(self) -> str:
        return "UNREAD"


UNREAD = Unread()
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any  # parsed JSON, freeform text (`custom_tool_call`), or UNREAD
    id: str | None = None

    @classmethod
    def from_json(cls, name: str, arguments: str | None, call_id: str | None = None) -> ToolCall:
        """A call whose arguments the wire carries as JSON text (empty text is no arguments)."""
        if arguments is None or not arguments.strip():
            return cls(name, {}, call_id)
        try:
            return cls(name, json_loads(arguments), call_id)
        except (ValueError, RecursionError):
            return cls(name, UNREAD, call_id)


@dataclass(slots=True)
class ToolDecision:
    name: str
    decision: Literal["allow", "deny"]
    reasons: list[str] = field(default_factory=list)  # redacted
    tainted: list[str] = field(default_factory=list)  # paths, undeclared keys as `*`
    refusal: str | None = None  # the text the agent reads instead of a refused call

    def record(self) -> dict[str, Any]:
        """The call's entry in the record's `tool_calls`: no argument value."""
        return {
            "name": self.name,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "tainted": list(self.tainted),
        }


def written(path: Path) -> str:
    """A path as the agent and the policy read it: `note[1].link`; a freeform call's text is `input`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or FREEFORM_PATH


def recorded(path: Path, schema: Any) -> str:
    """A path as the record keeps it: a key the tool's schema does not declare written `*`."""
    out = ""
    node = schema
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node.get("items") if isinstance(node, dict) else None
            continue
        declared = _properties(node)
        key = part if part in declared else "*"
        out += f".{key}" if out else key
        node = declared.get(part)
    return out or FREEFORM_PATH


def _properties(node: Any, depth: int = 0) -> dict[str, Any]:
    """The properties a schema node declares, its `anyOf`/`oneOf`/`allOf` branches' too."""
    if not isinstance(node, dict) or depth > 8:
        return {}
    props = dict(node["properties"]) if isinstance(node.get("properties"), dict) else {}
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key) or ():
            props.update({k: v for k, v in _properties(branch, depth + 1).items() if k not in props})
    return props


def _from(sources: list[str]) -> str:
    names = [
        {
            ASSISTANT: "the assistant's text after outside content",
            UNKNOWN: "a tool result of no known tool",
            UNINDEXED: "outside content past the index's bound",
        }.get(s, s)
        for s in sources
    ]
    tools = [n for n, s in zip(names, sources, strict=True) if s not in (ASSISTANT, UNKNOWN, UNINDEXED)]
    others = [n for n, s in zip(names, sources, strict=True) if s in (ASSISTANT, UNKNOWN, UNINDEXED)]
    parts = []
    if tools:
        parts.append(f"the result{'s' if len(tools) > 1 else ''} of {', '.join(tools)}")
    parts.extend(others)
    return " and ".join(parts)


def _taint_reason(found: list[tuple[str, list[str]]]) -> str:
    by_sources: dict[tuple[str, ...], list[str]] = {}
    for path, sources in found:
        by_sources.setdefault(tuple(sources), []).append(path)
    return "; ".join(
        f"its argument{'s' if len(paths) > 1 else ''} {', '.join(paths)} come{'' if len(paths) > 1 else 's'} from "
        f"{_from(list(sources))} (outside content)"
        for sources, paths in by_sources.items()
    )


def facts(call: ToolCall, index: TaintIndex, provenance: Provenance, findings: Mapping[str, int]) -> dict[str, Any]:
    """`input.tool` and `input.conversation`, for the policy."""
    found = [] if call.arguments is UNREAD else tainted_values(call.arguments, index)
    return {
        "tool": {
            "name": call.name,
            "arguments": None if call.arguments is UNREAD else call.arguments,
            "tainted": [{"path": written(path), "sources": sources} for path, sources in found],
        },
        "conversation": {
            "outside": list(dict.fromkeys(piece.tool for piece in provenance.outside)),
            "findings": {kind: count for kind, count in findings.items() if count},
            "provider_tools": list(provenance.provider_tools),
        },
    }


def decide(
    call: ToolCall,
    *,
    settings: AgentsSettings,
    index: TaintIndex,
    findings: Mapping[str, int],
    policy_reasons: list[str] | None = None,
    schema: Any = None,
) -> ToolDecision:
    """The decision on one call. `schema` is the tool's JSON schema of its arguments, if the
    request declared the tool; `policy_reasons` the policy's deny reasons for it."""
    reasons: list[str] = []  # as the agent reads them
    record_reasons: list[str] = []  # as the record keeps them: paths with undeclared keys written `*`
    denied = False
    found = [] if call.arguments is UNREAD else tainted_values(call.arguments, index)
    acting = matches(call.name, settings.acting_tools)
    if policy_reasons:
        reasons.extend(policy_reasons)
        record_reasons.extend(policy_reasons)
        denied = True
    elif call.arguments is UNREAD:
        reasons.append("its arguments cannot be read (unread)")
        record_reasons.append(reasons[-1])
        denied = True
    else:
        if acting and found:
            reasons.append(_taint_reason([(written(p), s) for p, s in found]))
            record_reasons.append(_taint_reason([(recorded(p, schema), s) for p, s in found]))
            denied = settings.on_tainted == "refuse"
        injected = sorted(k for k, n in findings.items() if k.startswith("injection.") and n)
        if acting and injected and not denied:
            reasons.append(f"the conversation's outside content holds {', '.join(injected)}")
            record_reasons.append(reasons[-1])
            denied = settings.after_injection == "refuse"
    return ToolDecision(
        name=call.name,
        decision="deny" if denied else "allow",
        reasons=redacted(record_reasons, call.arguments, schema),
        tainted=[recorded(path, schema) for path, _ in found],
        refusal=f"Tollgate refused the call to {call.name}: {'; '.join(reasons)}." if denied else None,
    )


def redacted(reasons: list[str], arguments: Any, schema: Any = None) -> list[str]:
    """Reasons with every string of the arguments (5 characters or more), its JSON-escaped form and
    its tokens replaced by `…`; keys the schema does not declare are values too."""
    if arguments is UNREAD or not reasons:  # nothing to redact: the arguments' strings are not gathered
        return reasons
    secrets = sorted(_argument_strings(arguments, schema), key=len, reverse=True)
    return [_redact(reason, secrets) for reason in reasons]


def _redact(reason: str, secrets: list[str]) -> str:
    for _ in range(4):  # a replacement can join two halves of another value: read again
        before = reason
        for secret in secrets:
            if secret in reason:
                reason = reason.replace(secret, REDACTED)
        if reason == before:
            break
    return reason


def _argument_strings(arguments: Any, schema: Any) -> set[str]:
    out: set[str] = set()
    stack: list[tuple[Any, Any]] = [(arguments, schema)]
    budget = MAX_NODES
    while stack and budget > 0:
        budget -= 1
        node, node_schema = stack.pop()
        if isinstance(node, dict):
            declared = _properties(node_schema)
            for key, value in node.items():
                if key not in declared:
                    out.update(_forms(str(key)))
                stack.append((value, declared.get(key)))
        elif isinstance(node, list):
            items = node_schema.get("items") if isinstance(node_schema, dict) else None
            stack.extend((value, items) for value in node)
        elif isinstance(node, str):
            out.update(_forms(node))
    return out


def _forms(value: str) -> set[str]:
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        *tokens(value),
        *value.split(),
    }
    return {f for f in forms if len(f) >= REDACT_MIN_CHARS}
