"""Outside content decoded before it is indexed, so that a value an agent copies out of a tool's
result is found however the result wrote it: JSON (and JSON inside JSON strings), YAML and its
`key: value` lines, printed Python literals (a dict's or a list's `repr`), `\\uXXXX` and backslash
escapes, doubled quotes, continued lines. Every variant is kept beside the raw text: decoding only
ever adds text to the index, never takes any away.

Bounded: a piece is parsed only up to `PARSE_CHARS` (YAML and Python literals, slower, up to
`SLOW_PARSE_CHARS`), strings inside strings are decoded `MAX_DEPTH` levels deep, and a walk visits
at most `MAX_NODES` nodes (a YAML alias cannot make it expand). What is past a bound is still
indexed as raw and unescaped text."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

import orjson
import yaml

from tollgate.governance.agents.one_pass import PIECE_PASS
from tollgate.governance.agents.patterns_held import PatternsHeld
from tollgate.governance.agents.words_held import WordsHeld
from tollgate.governance.guardrails.engine import HYPERSCAN

PARSE_CHARS = 1_000_000
SLOW_PARSE_CHARS = 200_000
MAX_DEPTH = 3
MAX_NODES = 100_000

# One escape, read left to right (so `\\\\u0041` is a backslash and `u0041`): a surrogate pair,
# a `\\uXXXX` (Python's `\\UXXXXXXXX` and `\\xNN` too), a continued line, a backslash escape.
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})|\\x([0-9a-fA-F]{2})|\\(\r?\n)|\\([ntr\"'/\\bf])"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "/": "/", "\\": "\\", "b": "\b", "f": "\f"}
_DOUBLED = WordsHeld(('""', "''"))  # found in one pass: a search for each is slower
_SOFT_BREAK = re.compile(r"=\r?\n")  # quoted-printable's continued line
_KEY_VALUE = re.compile(r"^[ \t]*(?:-[ \t]+)?[\"']?[\w .@/-]{1,64}[\"']?[ \t]*[:=][ \t]*(.+?)[ \t]*$", re.MULTILINE)
_QUOTES = "\"'"
# In JSON without a backslash, a string beginning with a structure (decoded in turn): a closing
# quote is followed by `,`, `:`, `]` or `}`, never by these.
_STRING_STRUCTURE = re.compile(r'"\s*[\[{(]')
# Where it may be, found in one Hyperscan pass (JSON holds quotes everywhere, a search stops at each).
_MAY_STRING_STRUCTURE = PatternsHeld([_STRING_STRUCTURE.pattern]) if HYPERSCAN else None
# Where JSON may write a float (a digit, then `.`, `e` or `E`) or an integer orjson reads as one (19
# digits or more: past 64 bits): a text without either is read by orjson, some twice as fast as the
# standard library, into the same value and no float.
_MAY_FLOAT = PatternsHeld(["[0-9][.eE]|[0-9]{19}"]) if HYPERSCAN else None
# libyaml's loader where PyYAML was built with it: some 10 times as fast as the pure-Python one.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The same three, looked for in a tool result's one pass (`one_pass`), with the other readers' sets.
_PIECE_DOUBLED = PIECE_PASS.words(_DOUBLED.words) if PIECE_PASS is not None else None
_PIECE_STRING_STRUCTURE = PIECE_PASS.patterns([_STRING_STRUCTURE.pattern]) if PIECE_PASS is not None else None
_PIECE_FLOAT = PIECE_PASS.patterns(["[0-9][.eE]|[0-9]{19}"]) if PIECE_PASS is not None else None


def _escape(match: re.Match[str]) -> str:
    high, low, single, wide, byte, _line, char = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if single is not None:
        code = int(single, 16)
        return match.group(0) if 0xD800 <= code <= 0xDFFF else chr(code)  # a lone surrogate stays written
    if wide is not None or byte is not None:  # Python's repr of a character it does not print
        code = int(wide or byte, 16)
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else match.group(0)
    if char is not None:
        return _ESCAPES[char]
    return ""  # a continued line


def unescaped(text: str, doubled: bool | None = None) -> str:
    """The text with one level of its escapes written out: `\\uXXXX` (surrogate pairs joined),
    backslash escapes, a backslash's continued lines joined, doubled quotes (CSV's). `doubled`:
    whether the text may hold doubled quotes, where that was looked for already."""
    if "\\" not in text:  # every escape begins with one
        if doubled is None:
            doubled = bool(_DOUBLED.held(text))
        return text.replace('""', '"').replace("''", "'") if doubled else text
    return _ESCAPE.sub(_escape, text).replace('""', '"').replace("''", "'")


def structure(text: str) -> Any | None:
    """The list or mapping a text holds, read as JSON, a printed Python literal or YAML (in that
    order); None when it holds none within the bounds."""
    return _structure(text)[0]


def _structure(text: str, may_float: bool | None = None) -> tuple[Any | None, list[float] | None]:
    """`structure`, with the numbers it read as floats where it was read as JSON (None otherwise).
    `may_float`: whether the text may write a float, where that was looked for already."""
    stripped = text.strip()
    if not stripped or len(stripped) > PARSE_CHARS:
        return None, None
    if stripped[0] in "[{":
        if may_float is None and _MAY_FLOAT is not None:
            may_float = bool(_MAY_FLOAT.held(stripped))
        if may_float is False:
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError:  # NaN, a lone surrogate, nested too deep: read below
                value = None
            if isinstance(value, (dict, list)):
                return value, []
        floats: list[float] = []

        def read_float(written: str) -> float:
            floats.append(float(written))
            return floats[-1]

        try:
            value = json.loads(stripped, parse_float=read_float)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, (dict, list)):
            return value, floats
    return _slow_structure(stripped), None


def _slow_structure(stripped: str) -> Any | None:
    """A printed Python literal or YAML."""
    if len(stripped) > SLOW_PARSE_CHARS:
        return None
    if stripped[0] in "[{(":
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None
        if isinstance(value, (dict, list, tuple)):
            return value
    if ":" in stripped or stripped.startswith("- "):
        try:
            value = yaml.load(stripped, Loader=_YAML_LOADER)  # a safe loader: builds no objects of its own
        except (yaml.YAMLError, ValueError, RecursionError):
            value = None
        if isinstance(value, (dict, list)):
            return value
    return None


def leaves(value: Any, depth: int = 0, *, held: bool = False) -> Iterator[str]:
    """The strings a decoded value holds (keys, strings, numbers as written), a string that itself
    holds a structure decoded too, up to `MAX_DEPTH` levels. `held`: the text the value was read
    from holds its keys and strings as they are, and is indexed beside them: they are left out (a
    structure inside a string is still decoded)."""
    budget = [MAX_NODES]
    yield from _walk(value, depth, budget, held)


def _walk(value: Any, depth: int, budget: list[int], held: bool = False) -> Iterator[str]:
    stack = [value]
    while stack and budget[0] > 0:
        budget[0] -= 1
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                stack.append(item)
                if isinstance(key, str) and not held:
                    yield key
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(node)))
        elif isinstance(node, str):
            if not held:
                yield node
            inner = structure(node) if depth < MAX_DEPTH and node.lstrip()[:1] in ("[", "{", "(") else None
            if inner is not None:
                yield from _walk(inner, depth + 1, budget)
            elif "\\" in node:
                yield unescaped(node)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            yield str(node)
        elif node is not None and not isinstance(node, bool):
            yield str(node)  # a date YAML read, bytes a literal held


def key_values(text: str) -> Iterator[str]:
    """The values of `key: value` (and `key = value`) lines, their quotes taken off: YAML a parser
    refused, a config file, an e-mail's headers."""
    for match in _KEY_VALUE.finditer(text[:PARSE_CHARS]):
        yield match.group(1).strip(_QUOTES)


def string_structure(text: str, may: bool | None = None) -> bool:
    """Whether a JSON text without a backslash has a string beginning with a structure. `may`:
    whether it may have one, where that was looked for already."""
    if may is None and _MAY_STRING_STRUCTURE is not None:
        may = bool(_MAY_STRING_STRUCTURE.held(text))
    if may is False:
        return False
    return _STRING_STRUCTURE.search(text) is not None


def decoded_texts(text: str) -> list[str]:
    """Every text a piece of outside content is indexed by: itself, written out, what its structure
    holds, and its `key: value` lines' values."""
    out = [text]
    plain = text
    kept = text  # written out with a value's own doubled quotes (`it''s`) kept, beside an escape
    # What the text may hold, from the pass the other readers of a tool result share (None: each looked for apart).
    doubled = may_float = may_structure = None
    if _PIECE_DOUBLED is not None and _PIECE_FLOAT is not None and _PIECE_STRING_STRUCTURE is not None:
        doubled, may_float = bool(_PIECE_DOUBLED.held(text)), bool(_PIECE_FLOAT.held(text))
        may_structure = bool(_PIECE_STRING_STRUCTURE.held(text))
    for _ in range(MAX_DEPTH):  # a string escaped twice (JSON in a JSON string) is written out twice
        once = unescaped(plain, doubled if plain is text else None)
        if once == plain:
            break
        plain = once
        out.append(plain)
        kept = _ESCAPE.sub(_escape, kept)
        if kept != plain and ("''" in kept or '""' in kept):
            out.append(kept)
    # Quoted-printable's continued lines, joined beside the text as it was (looked for as the two
    # strings the pattern matches: a search in C, where the pattern's skips from `=` to `=`).
    if "=\n" in plain or "=\r\n" in plain:
        out.append(_SOFT_BREAK.sub("", plain))
    value, floats = _structure(text, may_float)
    if value is None and plain != text:
        value = structure(plain)
    if value is not None:
        # JSON without a backslash writes every key, string and integer as it is: the text indexed
        # above holds them already, and decoding adds only what it writes otherwise.
        if floats is None or "\\" in text:
            out.extend(leaves(value))
        elif string_structure(text, may_structure):
            out.extend(leaves(value, held=True))
        else:
            out.extend(str(f) for f in floats)  # `1e3` is `1000.0`
    else:
        out.extend(key_values(plain))
    return out
