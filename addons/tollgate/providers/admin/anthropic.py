"""Anthropic's Admin API: the usage report of messages by key and model, the cost report by
workspace and description, and the organisation's keys (`partial_key_hint`). (The docs name its
newer analytics API as the next to read.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tollgate.providers.admin.pages import Admin, Query, listed, results
from tollgate.providers.admin.usage_types import (
    VendorKey,
    VendorReport,
    VendorUsage,
    amount_of,
    count,
    day_of_iso,
    text,
)

BASE_URL = "https://api.anthropic.com"
VERSION = "2023-06-01"
CENTS = Decimal("0.01")  # the cost report's amounts are in cents


def _span(since: date, until: date) -> Query:
    days = (until - since).days + 1
    return [("starting_at", f"{since.isoformat()}T00:00:00Z"),
            ("ending_at", f"{(until + timedelta(days=1)).isoformat()}T00:00:00Z"),
            ("bucket_width", "1d"), ("limit", str(min(max(days, 1), 31)))]  # fmt: skip


class AnthropicReader:
    base_url = BASE_URL

    def admin(self, base_url: str | None, key: str, ca_file: object, sleep: Callable[[float], None]) -> Admin:
        path = Path(str(ca_file)) if ca_file is not None else None
        return Admin(base_url or BASE_URL, {"x-api-key": key, "anthropic-version": VERSION}, path, sleep)

    def read(self, admin: Admin, since: date, until: date) -> VendorReport:
        report = VendorReport()
        report.keys = list(self.keys(admin))
        workspaces = {k.id: k.project for k in report.keys}
        query = [*_span(since, until), ("group_by[]", "api_key_id"), ("group_by[]", "model")]
        path = "/v1/organizations/usage_report/messages"
        usage = results(admin, path, query, report.problems, _bucket, lambda day, r: _usage(day, r, workspaces))
        report.usage.extend(read for _, read in usage)
        query = [*_span(since, until)[:3], ("group_by[]", "workspace_id"), ("group_by[]", "description")]
        for day, amount in results(admin, "/v1/organizations/cost_report", query, report.problems, _bucket, _amount):
            report.billed[day] = report.billed.get(day, Decimal(0)) + amount
        return report

    def keys(self, admin: Admin) -> Iterator[VendorKey]:
        for key in listed(admin, "/v1/organizations/api_keys", [("limit", "100")], "after_id"):
            if isinstance(key.get("id"), str):
                name, workspace, hint = key.get("name"), key.get("workspace_id"), key.get("partial_key_hint")
                yield VendorKey(
                    key["id"],
                    name if isinstance(name, str) else None,
                    workspace if isinstance(workspace, str) else "default",  # the default workspace has no id
                    hint if isinstance(hint, str) else None,
                )


def _bucket(bucket: dict[str, Any]) -> tuple[date, Any]:
    return day_of_iso(bucket.get("starting_at")), bucket.get("results")


def _usage(day: date, result: dict[str, Any], workspaces: dict[str, str | None]) -> VendorUsage:
    cache = result.get("cache_creation") or {}
    if not isinstance(cache, dict):
        raise ValueError("cache_creation is not an object")
    written = count(cache, "ephemeral_5m_input_tokens") + count(cache, "ephemeral_1h_input_tokens")
    read = count(result, "cache_read_input_tokens")
    key_id = text(result, "api_key_id")
    workspace = text(result, "workspace_id") or (workspaces.get(key_id) if key_id else None)
    return VendorUsage(
        day=day,
        key_id=key_id,
        project=workspace,
        model=text(result, "model"),
        input_tokens=count(result, "uncached_input_tokens") + read + written,
        cached_input_tokens=read,
        cache_write_tokens=written,
        output_tokens=count(result, "output_tokens"),
        requests=None,  # the usage report counts tokens, not requests
    )


def _amount(day: date, result: dict[str, Any]) -> Decimal:
    return amount_of(result.get("amount"), "amount") * CENTS


READER = AnthropicReader()
