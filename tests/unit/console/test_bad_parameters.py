"""Every API endpoint asked with every parameter set to values the console cannot use (bounded):
each answer is a status of its own (400 with a reason where the value is read), never a dropped
connection or a 500, and every request has its `console_access` record."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tollgate.console.access_log import AccessLog
from tollgate.console.follow import AuditFiles
from tollgate.console.server import Console
from tollgate.console.views import Views

TOKEN = "a-console-token-of-test-0001"
RECORDS = [
    {"event": "tollgate_started", "ts": "2026-11-01T07:59:00.000Z", "pid": 1},
    {"event": "llm_call", "ts": "2026-11-01T08:00:00.000Z", "client": "alice", "provider": "openai",
     "model": "gpt-4o-mini", "decision": "allow", "deny_reasons": [], "findings": {}, "input_tokens": 10,
     "output_tokens": 5, "cost_usd": 0.25, "refusal": None, "error": None, "upstream_key": "sha256:aaaaaaaaaaaa"},
]  # fmt: skip
PATHS = ["/api/events", "/api/people", "/api/spend", "/api/refusals", "/api/findings", "/api/inventory",
         "/api/budgets", "/api/audit", "/api/me", "/api/kinds", "/api/access"]  # fmt: skip
PARAMETERS = ["limit", "after", "client", "provider", "decision", "event", "instance", "since", "until", "by",
              "bucket", "format"]  # fmt: skip
BAD = ["0005-01-01", "9999-12-31T23:00-23:59", "0001-01-01T00:00+01:00", "9999-12-31T23:59+00:00", "", "x", "-1",
       "0", "99999999999999999999999", "1e3", "\u00b2", "\u0661\u0662", "2026-13-01", "2026-02-30", "nan",
       "%00", "%ff%fe", "x" * 5000, "2026-11-01T08:00:00+99:00"]  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, AccessLog]]:
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    audit = AuditFiles([tmp_path / "audit.jsonl"], follow=False)
    audit.catch_up()
    access = AccessLog(tmp_path / "access.jsonl")
    console = Console(audit, Views(audit), "127.0.0.1", 0, TOKEN, access=access)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    yield console.port, access
    console.stop()
    thread.join(timeout=10)


def asked(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Authorization": f"Bearer {TOKEN}"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_the_reported_values_are_400_with_a_reason_and_recorded(served: tuple[int, AccessLog]) -> None:
    port, log = served
    for target in ("/api/spend?bucket=hour&since=0005-01-01", "/api/people?since=9999-12-31T23:00-23:59"):
        status, body = asked(port, target)
        assert status == 400, target
        assert "since" in json.loads(body)["message"], target
    assert asked(port, "/api/access?limit=%C2%B2")[0] == 400  # a digit Python's int() does not read
    assert sorted((r["path"], r["query"], r["status"]) for r in log.recent(100)) == [
        ("/api/access", "limit=%C2%B2", 400), ("/api/people", "since=9999-12-31T23%3A00-23%3A59", 400),
        ("/api/spend", "bucket=hour&since=0005-01-01", 400),
    ]  # fmt: skip


def test_every_endpoint_and_parameter_with_bad_values_answers_and_is_recorded(served: tuple[int, AccessLog]) -> None:
    port, log = served
    answered: dict[tuple[str, str], int] = {}
    for path in PATHS:
        for name in PARAMETERS:
            for value in BAD:
                query = f"{name}={value}" if "%" in value else urlencode({name: value})
                status, body = asked(port, f"{path}?{query}")
                assert status in (200, 400), (path, query, status, body[:200])
                if status == 400:
                    assert json.loads(body)["message"], (path, query)
                answered[(path, query)] = status
                summed = path in ("/api/people", "/api/spend", "/api/refusals", "/api/findings", "/api/inventory")
                if name == "format" or (summed and name in ("since", "until") and value == "9999-12-31T23:00-23:59"):
                    assert status == 400, (path, query)  # read there: never ignored
    assert len(answered) == len(PATHS) * len(PARAMETERS) * len(BAD)
    assert 400 in answered.values() and 200 in answered.values()
    # Each request recorded: the same request again in a minute is counted in its record.
    assert sum(r["count"] for r in log.recent(len(answered))) == len(answered)
