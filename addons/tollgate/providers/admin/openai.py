"""OpenAI's admin API: the Usage API's completions and embeddings by key, project, model and batch,
the Costs API by project and line item, and every project's keys (`redacted_value`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
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
    day_of_epoch,
    text,
)

BASE_URL = "https://api.openai.com"
USAGE = (("completions", True), ("embeddings", False))  # each endpoint, and whether it groups by batch


def _epoch(day: date) -> str:
    return str(int(datetime.combine(day, time(), UTC).timestamp()))


def _span(since: date, until: date) -> Query:
    days = (until - since).days + 1
    return [("start_time", _epoch(since)), ("end_time", _epoch(until + timedelta(days=1))),
            ("bucket_width", "1d"), ("limit", str(min(max(days, 1), 31)))]  # fmt: skip


class OpenAIReader:
    base_url = BASE_URL

    def admin(self, base_url: str | None, key: str, ca_file: object, sleep: Callable[[float], None]) -> Admin:
        path = Path(str(ca_file)) if ca_file is not None else None
        return Admin(base_url or BASE_URL, {"authorization": f"Bearer {key}"}, path, sleep)

    def read(self, admin: Admin, since: date, until: date) -> VendorReport:
        report = VendorReport()
        report.keys = list(self.keys(admin))
        for endpoint, batch in USAGE:
            groups = ["api_key_id", "project_id", "model", *(["batch"] if batch else [])]
            query = [*_span(since, until), *(("group_by", g) for g in groups)]
            path = f"/v1/organization/usage/{endpoint}"
            report.usage.extend(usage for _, usage in results(admin, path, query, report.problems, _bucket, _usage))
        query = [*_span(since, until), ("group_by", "project_id"), ("group_by", "line_item")]
        for day, amount in results(admin, "/v1/organization/costs", query, report.problems, _bucket, _amount):
            report.billed[day] = report.billed.get(day, Decimal(0)) + amount
        return report

    def keys(self, admin: Admin) -> Iterator[VendorKey]:
        for project in listed(admin, "/v1/organization/projects", [("limit", "100"), ("include_archived", "true")],
                              "after"):  # fmt: skip
            project_id = project.get("id")
            if not isinstance(project_id, str):
                continue
            name = project.get("name") if isinstance(project.get("name"), str) else project_id
            for key in listed(admin, f"/v1/organization/projects/{project_id}/api_keys", [("limit", "100")], "after"):
                if isinstance(key.get("id"), str):
                    hint = key.get("redacted_value")
                    key_name = key.get("name")
                    yield VendorKey(key["id"], key_name if isinstance(key_name, str) else None, name,
                                    hint if isinstance(hint, str) else None)  # fmt: skip


def _bucket(bucket: dict[str, Any]) -> tuple[date, Any]:
    return day_of_epoch(bucket.get("start_time")), bucket.get("results", bucket.get("result"))


def _usage(day: date, result: dict[str, Any]) -> VendorUsage:
    return VendorUsage(
        day=day,
        key_id=text(result, "api_key_id"),
        project=text(result, "project_id"),
        model=text(result, "model"),
        input_tokens=count(result, "input_tokens"),  # cached ones among them
        cached_input_tokens=count(result, "input_cached_tokens"),
        output_tokens=count(result, "output_tokens"),
        requests=count(result, "num_model_requests"),
    )


def _amount(day: date, result: dict[str, Any]) -> Decimal:
    amount = result.get("amount")
    return amount_of(amount.get("value") if isinstance(amount, dict) else None, "amount.value")


READER = OpenAIReader()
