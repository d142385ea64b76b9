"""What `tollgate reconcile` stores, made by the tests that read it: rows of the table
`tollgate_reconciliation` (made by its own migration, as `tollgate audit migrate` makes it, and
written by the command's own writer) and its `reconciliation` audit record, and a run's results to
put in either."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from tollgate.records.reconcile.kept_results import ensure_table, store_table


def side(input_tokens: int, output_tokens: int, requests: int, cost_usd: str, cached: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "cached_input_tokens": cached, "output_tokens": output_tokens,
            "requests": requests, "cost_usd": cost_usd}  # fmt: skip


def row(provider: str, day: str, key_id: str, model: str, status: str, ours: dict[str, Any], theirs: dict[str, Any],
        upstream_key: str | None = None, held: bool = True, key_name: str = "", project: str = "",
        open_: bool = False) -> dict[str, Any]:  # fmt: skip
    found = {"provider": provider, "day": day, "open": open_, "key_id": key_id, "key_name": key_name or key_id,
             "project": project or "proj_default", "model": model, "held": held, "status": status,
             "tollgate": ours, "vendor": theirs}  # fmt: skip
    if upstream_key is not None:
        found["upstream_key"] = upstream_key
    return found


def day(provider: str, day_: str, coverage: str, tollgate_usd: str, vendor_usd: str, around_usd: str,
        billed_usd: str | None, open_: bool = False) -> dict[str, Any]:  # fmt: skip
    return {"provider": provider, "day": day_, "open": open_, "coverage": coverage, "tollgate_usd": tollgate_usd,
            "vendor_usd": vendor_usd, "around_usd": around_usd, "billed_usd": billed_usd}  # fmt: skip


def record(ts: str, rows: list[dict[str, Any]], days: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit record of a run without audit.postgres."""
    covered = sorted({r["day"] for r in [*rows, *days]})
    return {"event": "reconciliation", "ts": ts, "since": covered[0] if covered else None,
            "until": covered[-1] if covered else None, "rows": rows, "days": days}  # fmt: skip


def store(dsn: str, run_at: str, rows: list[dict[str, Any]], days: list[dict[str, Any]]) -> None:
    """A run's results in the table (made or migrated first, as `tollgate audit migrate` does), as
    `tollgate reconcile` stores them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_table(conn)
        store_table(conn, datetime.fromisoformat(run_at), rows, days)
