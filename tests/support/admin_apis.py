"""Stand-ins for the vendors' admin APIs, answering in their documented shapes over TLS (a
`FakeUpstream`'s handler): OpenAI's Usage and Costs APIs with its projects and their keys,
Anthropic's usage and cost reports with its keys. Daily buckets for every day asked (empty ones
too), pages of a few buckets (`has_more`, `next_page` asked back as `page=`), lists paged by
`after` / `after_id`, 429 with `Retry-After` on the first requests when asked, and the vendor's
own refusal of a wrong admin key. A test feeds them usage and may revise it between runs."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.fake_upstream import Received, Reply

BUCKETS_PER_PAGE = 2  # fewer than a week: a run reads several pages
KEYS_PER_PAGE = 1  # a list of two keys is two pages


@dataclass
class Usage:
    """A day's usage on one key and model, as the stand-in holds it."""

    day: date
    key_id: str
    model: str
    input_tokens: int  # every input token, cached ones among them
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # Anthropic
    requests: int = 1
    batch: bool = False
    endpoint: str = "completions"  # OpenAI: completions or embeddings


@dataclass
class Key:
    id: str
    name: str
    project: str  # OpenAI's project id, Anthropic's workspace id
    hint: str  # redacted_value, partial_key_hint


def hint_of(key: str, prefix: int, suffix: int) -> str:
    return f"{key[:prefix]}...{key[-suffix:]}"


@dataclass
class AdminApi:
    """What both stand-ins share: the admin key, the usage and costs fed, throttling, and what was asked."""

    admin_key: str
    keys: list[Key] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    costs: list[tuple[date, str, str, str]] = field(default_factory=list)  # day, project, line item, USD
    throttle: int = 0  # the next this many requests are answered 429 with Retry-After
    retry_after: str = "1"
    malformed_bucket: bool = False  # a bucket whose shape is not the documented one, first of each report
    asked: Counter = field(default_factory=Counter)  # requests per path
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, r: Received) -> Reply:
        parts = urlsplit(r.path)
        query = parse_qs(parts.query)
        with self._lock:
            self.asked[parts.path] += 1
            if self.throttle > 0:
                self.throttle -= 1
                return Reply(429, self.throttled(), headers={"retry-after": self.retry_after})
        refused = self.refusal(r)
        if refused is not None:
            return refused
        return self.answer(parts.path, query)

    def throttled(self) -> dict:
        return {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}

    def refusal(self, r: Received) -> Reply | None:
        raise NotImplementedError

    def answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        raise NotImplementedError


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _page(items: list[Any], query: dict[str, list[str]], size: int) -> tuple[list[Any], str | None]:
    """A page of a report's buckets: `page` is the index of its first, as an opaque text."""
    first = int(query.get("page", ["page_0"])[0].removeprefix("page_"))
    taken = items[first : first + size]
    after = first + size
    return taken, f"page_{after}" if after < len(items) else None


def _listed(items: list[dict], query: dict[str, list[str]], after_name: str) -> dict:
    after = query.get(after_name, [None])[0]
    start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0) if after else 0
    taken = items[start : start + KEYS_PER_PAGE]
    return {"data": taken, "first_id": taken[0]["id"] if taken else None,
            "last_id": taken[-1]["id"] if taken else None, "has_more": start + KEYS_PER_PAGE < len(items)}  # fmt: skip


def _grouped(rows: list[tuple[dict, dict]], groups: list[str], dims: tuple[str, ...]) -> list[dict]:
    """The results of a bucket: the counts summed per value of the dimensions grouped by, the
    others null (as the vendors answer)."""
    sums: dict[tuple, dict] = {}
    for dim_values, counts in rows:
        key = tuple(dim_values[d] if d in groups else None for d in dims)
        into = sums.setdefault(key, {})
        for name, value in counts.items():
            if isinstance(value, dict):
                inner = into.setdefault(name, {})
                for k, v in value.items():
                    inner[k] = inner.get(k, 0) + v
            else:
                into[name] = into.get(name, 0) + value
    return [{**dict(zip(dims, key, strict=True)), **counts} for key, counts in sums.items()]


class OpenAIAdmin(AdminApi):
    """`/v1/organization/usage/{completions,embeddings}`, `/v1/organization/costs`,
    `/v1/organization/projects` and `/v1/organization/projects/{id}/api_keys`."""

    project_names: dict[str, str]

    def __init__(self, admin_key: str, project_names: dict[str, str]) -> None:
        super().__init__(admin_key)
        self.project_names = project_names

    def refusal(self, r: Received) -> Reply | None:
        if r.headers.get("authorization") == f"Bearer {self.admin_key}":
            return None
        given = (r.headers.get("authorization") or "").removeprefix("Bearer ")
        return Reply(401, {"error": {
            "message": f"Incorrect API key provided: {given[:8]}****{given[-4:]}. You can find your API key at"
                       " https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})  # fmt: skip

    def answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == "/v1/organization/projects":
            projects = [{"id": pid, "object": "organization.project", "name": name, "created_at": 1711471533,
                         "archived_at": None, "status": "active"} for pid, name in self.project_names.items()]  # fmt: skip
            return Reply(200, {"object": "list", **_listed(projects, query, "after")})
        if path.startswith("/v1/organization/projects/") and path.endswith("/api_keys"):
            project = path.split("/")[4]
            keys = [{"object": "organization.project.api_key", "redacted_value": k.hint, "name": k.name,
                     "created_at": 1711471533, "last_used_at": 1711471534, "id": k.id,
                     "owner": {"type": "user", "user": {"id": "user_abc", "name": "First Last"}}}
                    for k in self.keys if k.project == project]  # fmt: skip
            return Reply(200, {"object": "list", **_listed(keys, query, "after")})
        start = datetime.fromtimestamp(int(query["start_time"][0]), UTC).date()
        end = datetime.fromtimestamp(int(query["end_time"][0]), UTC).date() if "end_time" in query else start
        groups = query.get("group_by", [])
        if path in ("/v1/organization/usage/completions", "/v1/organization/usage/embeddings"):
            endpoint = path.rsplit("/", 1)[1]
            dims = ("project_id", "user_id", "api_key_id", "model", *(("batch",) if endpoint == "completions" else ()))
            kind = f"organization.usage.{endpoint}.result"
            buckets = [self._usage_bucket(day, endpoint, groups, dims, kind) for day in _days(start, end)]
        elif path == "/v1/organization/costs":
            buckets = [self._cost_bucket(day, groups) for day in _days(start, end)]
        else:
            return Reply(404, {"error": {"message": f"Invalid URL (GET {path})", "type": "invalid_request_error"}})
        if self.malformed_bucket and buckets:
            buckets.insert(0, {"object": "bucket", "start_time": "yesterday", "results": {}})
        taken, next_page = _page(buckets, query, min(int(query.get("limit", ["7"])[0]), BUCKETS_PER_PAGE))
        return Reply(200, {"object": "page", "data": taken, "has_more": next_page is not None, "next_page": next_page})

    def _usage_bucket(self, day: date, endpoint: str, groups: list[str], dims: tuple[str, ...], kind: str) -> dict:
        projects = {k.id: k.project for k in self.keys}
        rows = [
            ({"project_id": projects.get(u.key_id), "user_id": None, "api_key_id": u.key_id, "model": u.model,
              "batch": u.batch},
             {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "num_model_requests": u.requests}
             | ({"input_cached_tokens": u.cached_tokens, "input_audio_tokens": 0, "output_audio_tokens": 0}
                if endpoint == "completions" else {}))
            for u in self.usage if u.day == day and u.endpoint == endpoint
        ]  # fmt: skip
        start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
        results = [{"object": kind, **r} for r in _grouped(rows, groups, dims)]
        return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}

    def _cost_bucket(self, day: date, groups: list[str]) -> dict:
        rows = [
            ({"project_id": p, "line_item": item}, {"value": float(usd)}) for d, p, item, usd in self.costs if d == day
        ]
        results = [
            {"object": "organization.costs.result", "amount": {"value": r["value"], "currency": "usd"},
             "line_item": r["line_item"], "project_id": r["project_id"]}
            for r in _grouped(rows, groups, ("project_id", "line_item"))
        ]  # fmt: skip
        start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
        return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}


def _iso(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


class AnthropicAdmin(AdminApi):
    """`/v1/organizations/usage_report/messages`, `/v1/organizations/cost_report` and
    `/v1/organizations/api_keys`; `x-api-key` and `anthropic-version` required."""

    def refusal(self, r: Received) -> Reply | None:
        if r.headers.get("x-api-key") == self.admin_key and r.headers.get("anthropic-version"):
            return None
        return Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})

    def answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == "/v1/organizations/api_keys":
            keys = [{"id": k.id, "type": "api_key", "name": k.name, "workspace_id": k.project,
                     "created_at": "2026-01-01T00:00:00Z", "created_by": {"id": "user_01", "type": "user"},
                     "partial_key_hint": k.hint, "status": "active"} for k in self.keys]  # fmt: skip
            return Reply(200, _listed(keys, query, "after_id"))
        start = datetime.fromisoformat(query["starting_at"][0].replace("Z", "+00:00")).date()
        end = datetime.fromisoformat(query["ending_at"][0].replace("Z", "+00:00")).date() if "ending_at" in query \
            else start + timedelta(days=7)  # fmt: skip
        groups = query.get("group_by[]", [])
        if path == "/v1/organizations/usage_report/messages":
            buckets = [self._usage_bucket(day, groups) for day in _days(start, end)]
        elif path == "/v1/organizations/cost_report":
            buckets = [self._cost_bucket(day, groups) for day in _days(start, end)]
        else:
            return Reply(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}})
        if self.malformed_bucket and buckets:
            buckets.insert(0, {"starting_at": 17, "results": None})
        taken, next_page = _page(buckets, query, min(int(query.get("limit", ["7"])[0]), BUCKETS_PER_PAGE))
        return Reply(200, {"data": taken, "has_more": next_page is not None, "next_page": next_page})

    def _usage_bucket(self, day: date, groups: list[str]) -> dict:
        workspaces = {k.id: k.project for k in self.keys}
        dims = ("api_key_id", "workspace_id", "model", "service_tier", "context_window")
        rows = [
            ({"api_key_id": u.key_id, "workspace_id": workspaces.get(u.key_id), "model": u.model,
              "service_tier": "standard", "context_window": "0-200k"},
             {"uncached_input_tokens": u.input_tokens - u.cached_tokens - u.cache_write_tokens,
              "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": u.cache_write_tokens},
              "cache_read_input_tokens": u.cached_tokens, "output_tokens": u.output_tokens,
              "server_tool_use": {"web_search_requests": 0}})
            for u in self.usage if u.day == day
        ]  # fmt: skip
        return {"starting_at": _iso(day), "ending_at": _iso(day + timedelta(days=1)),
                "results": _grouped(rows, groups, dims)}  # fmt: skip

    def _cost_bucket(self, day: date, groups: list[str]) -> dict:
        # The amount in cents, as a decimal string.
        rows = [({"workspace_id": p, "description": item}, {"cents": float(usd) * 100})
                for d, p, item, usd in self.costs if d == day]  # fmt: skip
        results = [
            {"currency": "USD", "amount": f"{r['cents']:.4f}", "workspace_id": r["workspace_id"],
             "description": r["description"], "cost_type": "tokens", "context_window": None, "model": None,
             "service_tier": None, "token_type": None}
            for r in _grouped(rows, groups, ("workspace_id", "description"))
        ]  # fmt: skip
        return {"starting_at": _iso(day), "ending_at": _iso(day + timedelta(days=1)), "results": results}
