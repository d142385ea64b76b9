"""A call's row as the stores keep it: one JSON object, whatever fields the pipeline gives it."""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode_row(row: dict[str, Any]) -> str:
    """Encoded by the caller, on `record`: a row that cannot be encoded fails there, never in a
    batch of writes it would keep failing."""
    try:
        return orjson.dumps(row).decode()
    except TypeError:  # a value orjson cannot write (a lone surrogate, a set): its text instead
        return json.dumps(row, default=str)


def decode_row(text: str | bytes) -> dict[str, Any]:
    row = orjson.loads(text)
    return row if isinstance(row, dict) else {}
