"""A reconciliation's results as `tollgate reconcile` prints them: a table by default, `--json`
(`{"rows": [...], "days": [...]}`, the shapes `reconciling` makes) or `--csv` (a line per row and
per day, told apart by `kind`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tollgate.common.shown import usd_text

FORMATS = ("table", "json", "csv")
_ROW_KEYS = ("provider", "day", "open", "key_id", "key_name", "project", "model", "held", "status")
_SIDE_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "requests", "cost_usd")
_DAY_KEYS = ("coverage", "tollgate_usd", "vendor_usd", "around_usd", "billed_usd")

Result = Mapping[str, Any]


def to_json(rows: Sequence[Result], days: Sequence[Result]) -> str:
    return json.dumps({"rows": list(rows), "days": list(days)}, indent=2) + "\n"


def to_csv(rows: Sequence[Result], days: Sequence[Result]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    sides = [f"{side}_{k}" for side in ("tollgate", "vendor") for k in _SIDE_KEYS]
    writer.writerow(["kind", *_ROW_KEYS, *sides, *_DAY_KEYS])
    for r in rows:
        values = [r[side][k] for side in ("tollgate", "vendor") for k in _SIDE_KEYS]
        writer.writerow(["row", *(_cell(r[k]) for k in _ROW_KEYS), *map(_cell, values), *[""] * len(_DAY_KEYS)])
    blank = [""] * (len(_ROW_KEYS) - 3 + len(sides))
    for d in days:
        writer.writerow(["day", d["provider"], d["day"], _cell(d["open"]), *blank, *(_cell(d[k]) for k in _DAY_KEYS)])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _usd(value: float | None) -> str:
    return "-" if value is None else usd_text(value)


def _columns(head: list[str], body: list[list[str]], left: int) -> list[str]:
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in (head, *body)
    ]


def table(rows: Sequence[Result], days: Sequence[Result]) -> str:
    """The rows (tokens in and out on each side, the cost at Tollgate's prices), then the days."""
    head = ["provider", "day", "key", "project", "model", "status", "in", "vendor in", "out", "vendor out",
            "usd", "vendor usd"]  # fmt: skip
    body = []
    for r in rows:
        t, v = r["tollgate"], r["vendor"]
        key = " ".join(
            p for p in (r["key_id"] or "(no vendor key)", f"({r['key_name']})" if r["key_name"] else "") if p
        )
        status = r["status"] + (" (open)" if r["open"] else "")
        body.append([r["provider"], r["day"], key, r["project"] or "-", r["model"] or "-", status,
                     str(t["input_tokens"]), str(v["input_tokens"]), str(t["output_tokens"]), str(v["output_tokens"]),
                     _usd(t["cost_usd"]), _usd(v["cost_usd"])])  # fmt: skip
    lines = _columns(head, body, 6) if body else ["no usage on either side"]
    day_head = ["provider", "day", "coverage", "tollgate usd", "vendor usd", "around usd", "billed usd"]
    day_body = [
        [d["provider"], d["day"] + (" (open)" if d["open"] else ""), f"{d['coverage'] * 100:.2f} %",
         _usd(d["tollgate_usd"]), _usd(d["vendor_usd"]), _usd(d["around_usd"]), _usd(d["billed_usd"])]
        for d in days
    ]  # fmt: skip
    notes = [
        "cost at Tollgate's prices on both sides; billed usd: the vendor's own cost of the day (every project)",
        "a day that ended less than 48 hours ago is open: compared, never counted in the exit status",
    ]
    return "\n".join([*lines, "", *_columns(day_head, day_body, 2), "", *notes]) + "\n"


RENDER = {"table": table, "json": to_json, "csv": to_csv}
