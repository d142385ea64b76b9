"""A call's row as the stores keep it: one JSON object, whatever fields the pipeline gives it."""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode_row(row: dict[str, Any]) -> str:
    """One line of JSON (orjson writes no raw newline); never fails: a row that would fail a batch
    of writes would fail it at every retry."""
    try:
        return orjson.dumps(row).decode()
    except TypeError:  # a value orjson cannot write (a lone surrogate, a set): its text instead
        return json.dumps(row, default=str)


def decode_row(text: str | bytes) -> dict[str, Any]:
    row = orjson.loads(text)
    return row if isinstance(row, dict) else {}
