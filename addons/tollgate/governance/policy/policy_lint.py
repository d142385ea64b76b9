"""A trap a policy author falls into, found in the policy's text: a rule that hands `input.model`
to a string built-in (`startswith(input.model, "claude-")`) without first making sure it is a
string. The model is `null` on every call that names none (listings, uploads, batches, Claude
Code's calls to Anthropic's own service), the built-in then fails, and Tollgate denies the call
(`policy error`). `tollgate policy test` warns of each such line.

It reads the text as `opa fmt` writes it: a rule begins at the start of a line, its body is
indented. A rule is guarded when its body also says `is_string(input.model)`, `input.model !=
null` or `input.model == "…"`; a helper rule (such as `model_permitted`) is guarded when every rule
that uses it is. A heuristic, which warns and decides nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The built-ins that fail on a `null` argument where a string is wanted, by the names Rego calls them.
STRING_BUILTINS = (
    "startswith", "endswith", "contains", "glob.match", "regex.match", "lower", "upper", "split",
    "substring", "indexof", "replace", "trim", "trim_prefix", "trim_suffix", "trim_left", "trim_right",
    "trim_space", "strings.replace_n", "strings.any_prefix_match", "strings.any_suffix_match", "concat",
    "regex.find_n", "regex.split", "count", "strings.count",
)  # fmt: skip
FIELDS = ("model", "requested_model")

_CALL = re.compile(r"(?<![\w.])(" + "|".join(re.escape(b) for b in STRING_BUILTINS) + r")\s*\(([^()]*)\)")
# Strings keep their quotes (an equality with a string guards), their text gone; comments go.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')
_RULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Unguarded:
    file: str
    line: int
    call: str  # the built-in and the field: `startswith(input.model, …)`

    def __str__(self) -> str:
        field = self.call.partition("(")[2].partition(",")[0].rstrip(")")
        return (
            f"{self.file}:{self.line}: {self.call} fails on a call with no model ({field} is null: listings,"
            f" uploads, Claude Code's service calls), and the call is refused (policy error): guard the rule"
            f" with is_string({field})"
        )


@dataclass
class _Rule:
    name: str
    first_line: int
    text: str  # comments removed, strings emptied


def unguarded_model_reads(file: str, source: str) -> list[Unguarded]:
    """Each line of `source` where a rule hands a model field to a string built-in unguarded."""
    rules = _rules(source)
    found: list[Unguarded] = []
    for rule in rules:
        for field in FIELDS:
            if _guards(rule.text, field) or _guarded_by_users(rule, rules, field):
                continue
            for match in _CALL.finditer(rule.text):
                args = [a.strip() for a in match.group(2).split(",")]
                if f"input.{field}" not in args:
                    continue
                line = rule.first_line + rule.text.count("\n", 0, match.start())
                shown = ", ".join(a if a == f"input.{field}" else "…" for a in args)
                found.append(Unguarded(file, line, f"{match.group(1)}({shown})"))
    return sorted(found, key=lambda u: u.line)


def _rules(source: str) -> list[_Rule]:
    """The source cut into its rules: each begins at a line that starts with a name (not `package`
    or `import`) and runs to the next."""
    text = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else '""', source)
    rules: list[_Rule] = []
    for number, line in enumerate(text.split("\n"), 1):
        name = _RULE_NAME.match(line)
        if name is not None and name.group() not in ("package", "import"):
            rules.append(_Rule(name.group(), number, line))
        elif rules:
            rules[-1].text += "\n" + line
    return rules


def _guards(text: str, field: str) -> bool:
    ref = rf"input\s*\.\s*{field}\b"
    return bool(
        re.search(rf"\bis_string\s*\(\s*{ref}\s*\)", text)
        or re.search(rf"{ref}\s*!=\s*null\b|\bnull\s*!=\s*{ref}", text)
        or re.search(rf'{ref}\s*==\s*"|"\s*==\s*{ref}', text)
    )


def _guarded_by_users(rule: _Rule, rules: list[_Rule], field: str) -> bool:
    """Whether every rule that uses this one guards the field itself (and at least one does)."""
    if rule.name in ("deny", "allow"):
        return False
    use = re.compile(rf"(?<![\w.]){re.escape(rule.name)}\b")
    users = [r for r in rules if r.name != rule.name and use.search(r.text)]
    return bool(users) and all(_guards(r.text, field) for r in users)
