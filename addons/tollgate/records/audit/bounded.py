"""Recorded text, bounded (docs/audit.md, "Bounds"): what a record takes from a caller, a policy or
an upstream is cut to a size no reader has to fear, so that one request cannot fill the audit, nor
blind the console that reads it.

Every string keeps at most `TEXT` characters (cut with `…`), every list `ENTRIES` entries (then a
last entry `"… N more"`), and a record's line stays within `LINE` bytes: should its bounded values
still weigh more (many of them, or nested), its largest values give way, one at a time, to a note
of their size. Tollgate's own values (`chain`, `seq`, a checkpoint's `signature`) are added to the
line after it is bounded, or named in `KEEP`: never cut. Plain code, no mitmproxy."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

TEXT = 256  # characters a string keeps, `…` included
ENTRIES = 32  # entries a list keeps before its `… N more`
LINE = 64 * 1024  # bytes a record's line holds at most, its newline included
MARK = "…"
# What the chain adds to a line once it is bounded (`,"seq":N,"chain":"<64 hex>"` and the newline),
# with room to spare for a seq's digits.
CHAINED = 128
# The top-level members Tollgate writes of its own: a record's `instance` (from the configuration),
# and what a checkpoint and a started record name; the chain's are added after bounding.
KEEP = frozenset(("event", "instance", "covers_chain", "signature", "key_id", "previous_chain", "config_sha256"))


_SCALARS = frozenset((type(None), bool, int, float))


def cut(text: str) -> str:
    """`text`, or its first TEXT - 1 characters and `…`."""
    return text if len(text) <= TEXT else text[: TEXT - 1] + MARK


def bounded(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every string and list it holds within bounds (a copy of what changed; the
    record itself, most often, when nothing is over)."""
    changed: dict[str, Any] | None = None
    for key, value in record.items():
        # The early check, allocating nothing: most members are short strings, numbers, None, or
        # short lists and small mappings of those.
        kind = type(value)
        if kind is str:
            if len(value) <= TEXT:
                continue
        elif kind in _SCALARS or _within(value):
            continue
        if key in KEEP:
            continue
        if changed is None:
            changed = dict(record)
        changed[key] = _bounded(value)
    return record if changed is None else changed


def _within(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= TEXT
    if kind is list or kind is tuple:
        return len(value) <= ENTRIES and all(map(_within, value))
    if kind is dict:
        return all(map(_within, value)) and all(map(_within, value.values()))
    return True


def _bounded(value: Any) -> Any:
    """`value` within bounds (a tuple as a list, as JSON writes it)."""
    kind = type(value)
    if kind is str:
        return cut(value)
    if kind is list or kind is tuple:
        items = [_bounded(v) for v in value[:ENTRIES]]
        return [*items, f"{MARK} {len(value) - ENTRIES} more"] if len(value) > ENTRIES else items
    if kind is dict:
        return {(_bounded(k) if type(k) is str else k): _bounded(v) for k, v in value.items()}
    return value


def within_line(record: dict[str, Any], render: Callable[[dict[str, Any]], bytes | str]) -> bytes | str:
    """The record (bounded) rendered by `render`, in at most LINE bytes once chained: when it is
    longer, its largest members other than `KEEP`'s are each replaced, largest first, by a note of
    their size (`"… 70123 bytes cut"`) until it fits."""
    line = render(record)
    if len(line) <= LINE - CHAINED:
        return line
    by_size = sorted(((_size(v), k) for k, v in record.items() if k not in KEEP), key=lambda sk: -sk[0])
    fitted = dict(record)
    for size, key in by_size:
        fitted[key] = f"{MARK} {size} bytes cut"
        line = render(fitted)
        if len(line) <= LINE - CHAINED:
            return line
    # Only KEEP's members left, and still too long: nothing any record Tollgate makes comes near.
    return render({k: v if k in ("event", "instance") else f"{MARK} cut" for k, v in record.items()})


def _size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # a lone surrogate: as the audit writes it then
        return len(json.dumps(value, default=repr).encode())
