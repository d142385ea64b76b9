"""`/api/budgets`: each limit's counters in their current window, read from the ledger as it keeps
them: its SQLite file, or its Redis server's `tollgate:counter:*` keys (read-only: the console
never changes a counter; a Redis that cannot be read leaves the view empty until it can). A row
per limit and per counter it keeps: who it applies to (`per: client`/`group`: the client or
group, `(anonymous)` for the counter anonymous callers share; `per: all`: null; `per`, which of
them), used and the cap in the limit's unit (`usd`: US dollars)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tollgate.common.shown import caller_name
from tollgate.governance.limits.limits import ANONYMOUS, LimitRule, caps_of
from tollgate.ledger.windows import window_bounds

NANO = 10**9


def sqlite_path(store_url: str) -> Path | None:
    """The file of a `sqlite:///` store; None for another store (Redis)."""
    parts = urlsplit(store_url)
    return Path(parts.path[1:]) if parts.scheme == "sqlite" else None


REDIS_TIMEOUT = 2.0  # seconds: connecting to Redis, and each answer
REDIS_PAGE = 1000  # keys a SCAN step and an MGET ask for


def budgets_reader(rules: Sequence[LimitRule], store_url: str) -> Callable[[], list[dict[str, Any]]]:
    path = sqlite_path(store_url)
    scheme = urlsplit(store_url).scheme
    if scheme in ("redis", "rediss"):
        return lambda: rows(rules, redis_counters(store_url), time.time())

    def read() -> list[dict[str, Any]]:
        counters = _counters(path, time.time()) if path is not None and path.is_file() else {}
        return rows(rules, counters, time.time())

    return read


def redis_counters(url: str) -> dict[str, int]:
    """The counters on the ledger's Redis server, by the key the SQLite file gives them (Redis
    drops a counter once its window has ended); none when Redis cannot be read."""
    import redis

    from tollgate.ledger.redis_store import COUNTER

    try:
        with redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                  decode_responses=True, protocol=2) as client:  # fmt: skip
            keys: list[str] = list(client.scan_iter(match=COUNTER + "*", count=REDIS_PAGE))
            found: dict[str, int] = {}
            for start in range(0, len(keys), REDIS_PAGE):
                page = keys[start : start + REDIS_PAGE]
                values: Any = client.mget(page)
                for key, value in zip(page, values, strict=True):
                    if value is not None and value.lstrip("-").isdigit():
                        found[key.removeprefix(COUNTER)] = int(value)
            return found
    except redis.RedisError:
        return {}


def _counters(path: Path, now: float) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    try:
        found = connection.execute("SELECT key, value FROM counters WHERE expires > ?", (int(now),)).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        connection.close()
    return {key: int(value) for key, value in found}


def rows(rules: Sequence[LimitRule], counters: dict[str, int], now: float) -> list[dict[str, Any]]:
    """A row per limit's cap and per subject with a counter in the cap's current window (a
    `per: all` cap always has its row, used 0 before its first call)."""
    found = []
    for rule in rules:
        for field, metric, window, cap in caps_of(rule):
            start, _ = window_bounds(window, now)
            prefix, suffix = f"{rule.label}|{rule.per}:", f"|{metric}|{window}|{start}"
            subjects = {key[len(prefix) : -len(suffix)]: value for key, value in counters.items()
                        if key.startswith(prefix) and key.endswith(suffix)}  # fmt: skip
            if rule.per == "all":
                subjects = {"all": subjects.get("all", 0)}
            for subject, used in sorted(subjects.items()):
                found.append({
                    "limit": rule.label, "field": field, "per": rule.per, "subject": _subject(rule.per, subject),
                    "window": window, "used": _unit(metric, used), "cap": _unit(metric, cap),
                    "unit": "usd" if metric == "usd" else metric,
                })  # fmt: skip
    return found


def _subject(per: str, subject: str) -> str | None:
    if per == "client" and subject == ANONYMOUS:
        return caller_name(None)
    return None if per == "all" else subject


def _unit(metric: str, value: int) -> int | float:
    return float(Decimal(value) / NANO) if metric == "usd" else value
