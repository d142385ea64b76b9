"""The built-in functions a policy may not call: `opa.runtime`, whose `env` holds Tollgate's
environment (the providers' real keys among it), which a deny reason would hand to a client; and
`http.send` and `net.lookup_ip_addr`, network I/O on every call's path, which `policy.network:
allow` admits.

Which built-ins a module names is read from OPA's own parse of it (`rego.parse_module`): a call
written `http["send"](…)`, one in a helper rule or a package another file imports, and a function
replaced by one (`f(x) with f as http.send`) are each a reference to it. OPA's parse gives no
lines: a reference's line is found by reading the source's tokens, strings and comments apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tollgate.governance.policy.policy_engine import PolicyError

if TYPE_CHECKING:
    from tollgate.governance.policy.policy_engine import Rules

# Refused whatever the settings say, and why.
NEVER = {"opa.runtime": "its env holds Tollgate's environment, the providers' real keys among it"}
# Refused unless `policy.network: allow`.
NETWORK = {
    "http.send": "it sends an HTTP request on every call's path",
    "net.lookup_ip_addr": "it asks DNS on every call's path",
}
PARSE_QUERY = "module := rego.parse_module(input.name, input.source)"

_TOKEN = re.compile(
    r'(?P<comment>#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<space>\s+)|(?P<other>.)",
    re.DOTALL,
)


def check_builtins(rules: Rules, sources: Mapping[str, str], network: bool) -> None:
    """`PolicyError` naming each file, line and built-in the policy may not call, in one line."""
    refused = {**NEVER, **({} if network else NETWORK)}
    problems: list[str] = []
    for name, source in sources.items():
        module = rules.query(PARSE_QUERY, {"name": name, "source": source})[0]["module"]
        named = builtins_named(module) & refused.keys()
        for builtin in sorted(named, key=lambda b: (lines_of(source, b) or [0])[0]):
            lines = lines_of(source, builtin)
            where = ", ".join(f"{name}:{line}" for line in lines) if lines else name
            allow = " (policy.network: allow admits it)" if builtin in NETWORK else ""
            problems.append(f"{where}: calls {builtin}, which a policy may not call: {refused[builtin]}{allow}")
    if problems:
        raise PolicyError("; ".join(problems))


def builtins_named(module: Any) -> set[str]:
    """The built-ins (`http.send`) a parsed module refers to, called or given as a `with` value; a
    `with` target (a built-in a test replaces) is not a use of it."""
    found: set[str] = set()
    for term in _terms(module):
        value = term.get("value")
        if term.get("type") == "ref" and isinstance(value, list) and len(value) >= 2:
            head, field = value[0], value[1]
            if head.get("type") == "var" and field.get("type") == "string":
                found.add(f"{head['value']}.{field['value']}")
    return found


def _terms(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "target" in node and "value" in node:  # a `with`: its target is replaced, not called
            yield from _terms(node["value"])
            return
        if "type" in node:
            yield node
        for key, child in node.items():
            if key != "imports":
                yield from _terms(child)
    elif isinstance(node, list):
        for child in node:
            yield from _terms(child)


def lines_of(source: str, builtin: str) -> list[int]:
    """The lines where `source` refers to a built-in (`http.send` written so, or `http["send"]`)."""
    first, second = builtin.split(".", 1)
    tokens = [(m.lastgroup, m.group(), m.start()) for m in _TOKEN.finditer(source)]
    tokens = [t for t in tokens if t[0] not in ("space", "comment")]
    lines: list[int] = []
    for i, (kind, text, start) in enumerate(tokens):
        if kind != "name" or text != first or (i and tokens[i - 1][1] == "."):
            continue
        after = [t[1] for t in tokens[i + 1 : i + 4]]
        kinds = [t[0] for t in tokens[i + 1 : i + 4]]
        dotted = after[:2] == [".", second]
        indexed = len(after) == 3 and after[0] == "[" and after[2] == "]" and _string(kinds[1], after[1]) == second
        if dotted or indexed:
            line = source.count("\n", 0, start) + 1
            if line not in lines:
                lines.append(line)
    return lines


def _string(kind: str | None, text: str) -> str | None:
    if kind == "raw":
        return text[1:-1]
    if kind == "string":
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    return None
