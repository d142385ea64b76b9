"""Which of a fixed set of regular expressions may match a text, in one Hyperscan pass: each is
looked for as a looser pattern over the text's UTF-8, one that matches wherever the expression
does (and maybe elsewhere), so that an expression that is not reported cannot match and is not
run. Python's `re` then runs only the few that are reported; most texts report none.

The looser pattern is the expression with its word boundaries (`\\b`) left out, `\\s` and `\\w`
written as the ASCII characters Python's classes hold, and any character outside ASCII let
through as a run of bytes of 0x80 and above (what Python's `\\w` and `\\s` hold beyond ASCII is
among them). A character past ASCII is looked for as its UTF-8 bytes, but not in a class. An
expression with what this cannot loosen soundly (a look-around, `.`, a negated class, another class
escape, a class holding a character past ASCII) is refused when the set is made."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tollgate.governance.guardrails.engine import HYPERSCAN

if HYPERSCAN:
    import hyperscan

# The ASCII characters of Python's `\s` and `\w` on a `str` (`\x1c`-`\x1f` are white space there).
_ASCII = {"s": "\\t\\n\\x0b\\x0c\\r\\x20\\x1c-\\x1f", "w": "0-9A-Za-z_"}
# Bytes past ASCII, beside a class's: its character as a run of them (a character past ASCII is
# two to four such bytes, so a run of the class's bytes matches wherever the character does). One
# class for both keeps the patterns small: Hyperscan compiles them some times as fast.
_NON_ASCII = "\\x80-\\xff"
# Escapes kept as written: a literal character, or (`\d` aside, refused) nothing else.
_REFUSED_ESCAPES = set("dDSWBAZzGpPNuUx0123456789")


def loosened(pattern: str) -> str:
    """The looser pattern over UTF-8 bytes (see the module's words); ValueError where there is none."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            letter = pattern[i + 1]
            i += 2
            if letter == "b":
                continue  # a boundary only narrows where a pattern matches
            if letter in _ASCII:
                out.append(f"(?:[{_ASCII[letter]}{_NON_ASCII}]+)")
            elif letter in _REFUSED_ESCAPES:
                raise ValueError(f"cannot loosen the escape \\{letter}")
            else:
                out.append("\\" + letter)
            continue
        if c == "[":
            j = i + 1
            if pattern[j] == "^":
                raise ValueError("cannot loosen a negated class")
            if pattern[j] == "]":
                j += 1
            while pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(_class(pattern[i + 1 : j]))
            i = j + 1
            continue
        if c == "(" and pattern[i : i + 3] in ("(?<", "(?=", "(?!"):
            raise ValueError("cannot loosen a look-around")
        if c in ".^$":
            raise ValueError(f"cannot loosen {c!r}")
        out.append(c if c.isascii() else "".join(f"\\x{b:02x}" for b in c.encode()))  # a literal, byte by byte
        i += 1
    return "".join(out)


def _class(body: str) -> str:
    """A class's looser form, from what it holds between its brackets."""
    parts: list[str] = []
    wide = False
    k = 0
    while k < len(body):
        if body[k] == "\\":
            letter = body[k + 1]
            if letter in _ASCII:
                parts.append(_ASCII[letter])
                wide = True
            elif letter in _REFUSED_ESCAPES:
                raise ValueError(f"cannot loosen the escape \\{letter}")
            else:
                parts.append(body[k : k + 2])
            k += 2
            continue
        if not body[k].isascii():
            raise ValueError("cannot loosen a class with characters past ASCII")
        parts.append(body[k])
        k += 1
    return f"(?:[{''.join(parts)}{_NON_ASCII}]+)" if wide else f"[{''.join(parts)}]"


class PatternsHeld:
    """Needs Hyperscan (`HYPERSCAN`). Each pattern is loosened when the set is made; the database is
    compiled at its first use or `ready()` (some 0.2 s of CPU for `injection`'s phrases: a process
    without `agents` never pays it)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._loose = [loosened(p).encode("ascii") for p in patterns]
        self._database: Any = None
        self._compiling = threading.Lock()
        # Each thread's scratch: a scratch serves one scan at a time (see WordsHeld).
        self._scratch = threading.local()

    def ready(self) -> Any:
        """The database, compiled once."""
        if self._database is None:
            with self._compiling:
                if self._database is None:
                    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                    database.compile(
                        expressions=self._loose,
                        ids=list(range(len(self._loose))),
                        elements=len(self._loose),
                        flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(self._loose),  # reported once, wherever
                    )
                    self._database = database
        return self._database

    def held(self, text: str) -> set[int]:
        """The positions (in the set) of the patterns that may match `text`."""
        database = self.ready()
        scratch = getattr(self._scratch, "scratch", None)
        if scratch is None:
            scratch = self._scratch.scratch = hyperscan.Scratch(database)
        found: set[int] = set()

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            found.add(id_)

        database.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_match, scratch=scratch)
        return found
