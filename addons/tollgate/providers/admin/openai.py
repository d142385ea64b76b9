"""OpenAI's admin API: the Usage API's completions and embeddings by key, project, model and batch,
the Costs API by project and line item, and every project's keys (`redacted_value`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tollgate.providers.admin.pages import Admin, Query, listed, pages
from tollgate.providers.admin.usage_types import VendorKey, VendorReport, VendorUsage, count, day_of_epoch, text

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
            for bucket in _buckets(admin, f"/v1/organization/usage/{endpoint}", query, report.problems):
                day, results = bucket
                for n, result in results:
                    try:
                        report.usage.append(_usage(day, result))
                    except ValueError as e:
                        report.problems.append(f"usage/{endpoint} bucket {day} result {n}: {e}; left out")
        query = [*_span(since, until), ("group_by", "project_id"), ("group_by", "line_item")]
        for day, results in _buckets(admin, "/v1/organization/costs", query, report.problems):
            for n, result in results:
                try:
                    amount = _amount(result)
                except ValueError as e:
                    report.problems.append(f"costs bucket {day} result {n}: {e}; left out")
                    continue
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


def _buckets(
    admin: Admin, path: str, query: Query, problems: list[str]
) -> Iterator[tuple[date, list[tuple[int, dict[str, Any]]]]]:
    """Each daily bucket of every page: its day and its results (a bucket not understood named)."""
    where = path.removeprefix("/v1/organization/")
    for page in pages(admin, path, query):
        data = page.get("data")
        if not isinstance(data, list):
            problems.append(f"{where}: a page without a data list; left out")
            continue
        for i, bucket in enumerate(data):
            try:
                if not isinstance(bucket, dict):
                    raise ValueError("not an object")
                day = day_of_epoch(bucket.get("start_time"))
                results = bucket.get("results", bucket.get("result"))
                if not isinstance(results, list):
                    raise ValueError("no results list")
            except ValueError as e:
                problems.append(f"{where}: bucket {i}: {e}; left out")
                continue
            yield day, [(n, r) for n, r in enumerate(results) if isinstance(r, dict)]


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


def _amount(result: dict[str, Any]) -> Decimal:
    amount = result.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise ValueError("amount.value is not a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("amount.value is not a number") from None
    if not amount.is_finite():
        raise ValueError("amount.value is not a finite number")
    return amount


READER = OpenAIReader()
