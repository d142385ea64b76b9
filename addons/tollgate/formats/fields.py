"""Small readers of a call's JSON values, shared by the wire formats.

Requests are read exactly: `obj`, `array`, `string`, … return the value as the type they name or raise
Untranslatable naming where it is (`where`, a path such as "messages[0].content"): "messages must be an
array". Gemini's module words the same refusals "… is not an array" (`Exact("is not")`). Answers, streams
and errors from an upstream are read leniently instead: `int_or_none`, `str_or_none`.
"""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats.chat import Untranslatable


class Exact:
    """The exact readers, their refusals worded "`where` <fails> an array" ("must be", "is not")."""

    __slots__ = ("fails",)

    def __init__(self, fails: str) -> None:
        self.fails = fails

    def _refused(self, where: str, what: str) -> Untranslatable:
        return Untranslatable(f"{where} {self.fails} {what}")

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._refused(where, "an object")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self._refused(where, "an array")
        return value

    def array_or_empty(self, value: Any, where: str) -> list[Any]:
        """An array where absence (None) means an empty one."""
        return [] if value is None else self.array(value, where)

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self._refused(where, "a string")
        return value

    def optional_string(self, value: Any, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def integer(self, value: Any, where: str, *, whole_floats: bool = False) -> int:
        """A JSON integer, not a boolean. `whole_floats`: a float with no fraction (100.0) reads as
        its integer too, as OpenAI's and Gemini's APIs take it."""
        if whole_floats and isinstance(value, float) and value.is_integer():
            return int(value)
        if type(value) is not int:
            raise self._refused(where, "an integer")
        return value

    def optional_integer(self, value: Any, where: str, *, whole_floats: bool = False) -> int | None:
        return None if value is None else self.integer(value, where, whole_floats=whole_floats)

    def number(self, value: Any, where: str) -> float:
        """An integer or a float, not a boolean."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refused(where, "a number")
        return value

    def optional_number(self, value: Any, where: str) -> float | None:
        return None if value is None else self.number(value, where)

    def optional_bool(self, value: Any, where: str) -> bool | None:
        if value is not None and type(value) is not bool:
            raise self._refused(where, "a boolean")
        return value


# The readers as most formats word their refusals: fields.string(value, "messages[0].role").
_MUST_BE = Exact("must be")
obj = _MUST_BE.obj
array = _MUST_BE.array
array_or_empty = _MUST_BE.array_or_empty
string = _MUST_BE.string
optional_string = _MUST_BE.optional_string
integer = _MUST_BE.integer
optional_integer = _MUST_BE.optional_integer
number = _MUST_BE.number
optional_number = _MUST_BE.optional_number
optional_bool = _MUST_BE.optional_bool


def only(value: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Refuses a key of `value` not among `keys`, naming it."""
    for key in value:
        if key not in keys:
            raise Untranslatable(f"{where}.{key} cannot be translated")


_INDEX = re.compile(r"\[\d+\]")


def drop(dropped: list[str], name: str) -> None:
    """Names a field left out (in `ChatRequest.dropped`) once, whatever message or part it came in:
    "messages[3].name" as "messages[].name"."""
    name = _INDEX.sub("[]", name)
    if name not in dropped:
        dropped.append(name)


def int_or_none(value: Any) -> int | None:
    """An integer from an answer, or None for anything else (a boolean among them)."""
    return value if type(value) is int else None


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
