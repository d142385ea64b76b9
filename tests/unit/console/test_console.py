"""The console over hand-made audit records: its sums, its event list and cursor, the files followed
across a rotation, a cut line, the budgets' rows, and its server's token, methods and headers."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.console_cursors import answer as plain_answer
from tests.support.web import NoRedirect

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.configuration.console_settings import ConsoleConfig, exposed_without_tls
from tollgate.console.budgets import rows as budget_rows
from tollgate.console.cursors import Cursors
from tollgate.console.day_sums import Later
from tollgate.console.follow import AuditFiles
from tollgate.console.server import Console
from tollgate.console.source import Source
from tollgate.console.viewer import TOKEN_HOLDER
from tollgate.console.views import BadQuery, Views, as_csv
from tollgate.governance.limits.limits import LimitRule
from tollgate.records.reports.usage_report import ReportedCall, aggregate, audit_calls

TOKEN = "a-console-token-of-test-0001"


def call(ts: str, client: str | None, **fields) -> dict:
    record = {
        "event": "llm_call", "ts": ts, "client": client, "provider": "openai", "model": "gpt-4o-mini",
        "decision": "allow", "deny_reasons": [], "findings": {}, "upstream_key": "sha256:aaaaaaaaaaaa",
        "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25, "refusal": None, "error": None,
    }  # fmt: skip
    record.update(fields)
    return record


RECORDS = [
    {"event": "tollgate_started", "ts": "2026-11-01T07:59:00.000Z", "pid": 1},
    call("2026-11-01T08:00:00.000Z", "alice"),
    call("2026-11-01T08:30:00.000Z", "alice", model="gpt-4o", cost_usd=1.5, findings={"pii.email": 2}),
    call("2026-11-01T09:10:00.000Z", "alice", decision="deny", deny_reasons=["gpt-4o is not for alice"],
         refusal="policy_denied", input_tokens=None, output_tokens=None, cost_usd=None),
    call("2026-11-02T10:00:00.000Z", "bob", cost_usd=None, answer_findings={"secrets.aws_access_key_id": 1}),
    call("2026-11-02T11:00:00.000Z", None, upstream_key="sha256:bbbbbbbbbbbb", provider="anthropic",
         model="claude-sonnet-4-5"),
    {"event": "mcp_call", "ts": "2026-11-02T11:30:00.000Z", "client": "bob", "server": "notes", "tool": "add",
     "decision": "deny", "deny_reasons": ["unknown or missing API key"], "refusal": "unauthenticated"},
    {"event": "connection", "ts": "2026-11-03T12:00:00.000Z", "client": "bob", "host": "pastebin.com",
     "service": None, "category": None, "decision": "deny", "deny_reasons": ["egress deny: pastebin.com"],
     "refusal": "egress_denied", "bytes_sent": 0, "bytes_received": 0},
]  # fmt: skip


def write(path: Path, records: list[dict], tail: bytes = b"") -> None:
    with path.open("ab") as f:
        f.write(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


@pytest.fixture
def views(tmp_path: Path) -> Views:
    write(tmp_path / "audit.jsonl", RECORDS)
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    return Views(audit)


def test_people_sum_calls_refusals_tokens_cost_and_findings(views: Views) -> None:
    assert views.answer("/api/people", {}) == [
        {"client": "alice", "key": None, "calls": 3, "refused": 1, "input_tokens": 20, "output_tokens": 10,
         "cost_usd": 1.75, "unpriced": 0, "findings": {"pii.email": 2}, "connections": 0,
         "first_seen": "2026-11-01T08:00:00.000Z", "last_seen": "2026-11-01T09:10:00.000Z",
         "models": {"gpt-4o": 1, "gpt-4o-mini": 2}},
        {"client": "bob", "key": None, "calls": 2, "refused": 1, "input_tokens": 10, "output_tokens": 5,
         "cost_usd": 0.0, "unpriced": 1, "findings": {"secrets.aws_access_key_id": 1}, "connections": 1,
         "first_seen": "2026-11-02T10:00:00.000Z", "last_seen": "2026-11-03T12:00:00.000Z",
         "models": {"gpt-4o-mini": 1}},
        {"client": None, "key": "sha256:bbbbbbbbbbbb", "calls": 1, "refused": 0, "input_tokens": 10,
         "output_tokens": 5, "cost_usd": 0.25, "unpriced": 0, "findings": {}, "connections": 0,
         "first_seen": "2026-11-02T11:00:00.000Z", "last_seen": "2026-11-02T11:00:00.000Z",
         "models": {"claude-sonnet-4-5": 1}},
    ]  # fmt: skip


def test_a_cost_no_call_has_is_listed_and_not_summed(tmp_path: Path) -> None:
    """A cost beyond what 64 bits of nano-dollars hold (no call costs $9 million) is of no record
    the audit writes: counted as malformed, its figures in no sum, the others' exact."""
    write(tmp_path / "audit.jsonl", [call("2026-11-05T08:00:00.000Z", "bob", cost_usd=1e300),
                                     call("2026-11-05T08:01:00.000Z", "bob", cost_usd=123456.000000001)])  # fmt: skip
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    (person,) = Views(audit).answer("/api/people", {})
    assert (person["calls"], person["cost_usd"], audit.index.malformed) == (1, 123456.000000001, 1)
    audit.close()


def test_a_source_is_what_source_names_every_method_of() -> None:
    """`Source` is an abstract base class: a source that leaves one of its methods out is no source."""

    class Partial(Source):
        def catch_up(self) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial(None)  # type: ignore[abstract]
    assert {"catch_up", "verify_pending", "checking", "line", "state", "close"} <= Source.__abstractmethods__


@pytest.mark.parametrize("cost", [999999.999999999, 0.1, 0.000000001, 3])
def test_money_is_summed_exactly_as_tollgate_usage_sums_it(tmp_path: Path, cost: float) -> None:
    """Five calls of $999,999.999999999 cost $4,999,999.999999995: summed as floats, $…994."""
    records = [call(f"2026-11-05T08:0{n}:00.000Z", "bob", cost_usd=cost) for n in range(5)]
    write(tmp_path / "audit.jsonl", records)
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    views = Views(audit)
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    usage = aggregate([c for c in audit_calls(lines, "audit.jsonl") if isinstance(c, ReportedCall)], ("client",))
    exact = float(usage.total.cost_usd)
    assert exact == float(sum(Decimal(repr(cost)) for _ in range(5)))
    (person,) = views.answer("/api/people", {})
    assert person["cost_usd"] == exact
    for bucket in ("day", "hour"):
        (spent,) = views.answer("/api/spend", {"by": ["client"], "bucket": [bucket], "since": ["2026-11-05"]})
        assert spent["cost_usd"] == exact
    audit.close()


def test_since_and_until_keep_the_days_they_name(views: Views) -> None:
    people = views.answer("/api/people", {"since": ["2026-11-01T09:00"], "until": ["2026-11-02"]})
    assert [(p["client"], p["calls"], p["refused"]) for p in people] == [("alice", 3, 1)]
    people = views.answer("/api/people", {"since": ["2026-11-02"], "until": ["2026-11-02T12:00"]})
    assert [(p["client"], p["calls"]) for p in people] == [("bob", 2), (None, 1)]
    with pytest.raises(BadQuery):
        views.answer("/api/people", {"since": ["last tuesday"]})


def test_spend_by_model_per_day_and_per_hour(views: Views) -> None:
    assert views.answer("/api/spend", {"by": ["model"], "bucket": ["day"]}) == [
        {"bucket": "2026-11-01T00:00:00Z", "key": "gpt-4o", "calls": 1, "input_tokens": 10, "output_tokens": 5,
         "cost_usd": 1.5},
        {"bucket": "2026-11-01T00:00:00Z", "key": "gpt-4o-mini", "calls": 2, "input_tokens": 10, "output_tokens": 5,
         "cost_usd": 0.25},
        {"bucket": "2026-11-02T00:00:00Z", "key": "claude-sonnet-4-5", "calls": 1, "input_tokens": 10,
         "output_tokens": 5, "cost_usd": 0.25},
        {"bucket": "2026-11-02T00:00:00Z", "key": "gpt-4o-mini", "calls": 1, "input_tokens": 10, "output_tokens": 5,
         "cost_usd": 0.0},
    ]  # fmt: skip
    hours = views.answer(
        "/api/spend", {"by": ["client"], "bucket": ["hour"], "since": ["2026-10-30"], "until": ["2026-11-01T09:00"]}
    )
    assert [(s["bucket"], s["key"], s["calls"]) for s in hours] == [("2026-11-01T08:00:00Z", "alice", 2)]
    with pytest.raises(BadQuery):
        views.answer("/api/spend", {"by": ["colour"]})
    with pytest.raises(BadQuery, match="no more than 31 days"):  # summed from the records: a month at most
        views.answer("/api/spend", {"bucket": ["hour"], "since": ["2026-09-01"], "until": ["2026-11-01"]})


def test_refusals_by_kind_and_client_with_the_latest_reason(views: Views) -> None:
    assert views.answer("/api/refusals", {}) == [
        {"kind": "egress_denied", "client": "bob", "count": 1, "last_reason": "egress deny: pastebin.com",
         "last_seen": "2026-11-03T12:00:00.000Z"},
        {"kind": "policy_denied", "client": "alice", "count": 1, "last_reason": "gpt-4o is not for alice",
         "last_seen": "2026-11-01T09:10:00.000Z"},
        {"kind": "unauthenticated", "client": "bob", "count": 1, "last_reason": "unknown or missing API key",
         "last_seen": "2026-11-02T11:30:00.000Z"},
    ]  # fmt: skip


def test_findings_by_kind_and_client_request_and_answer(views: Views) -> None:
    assert views.answer("/api/findings", {}) == [
        {"kind": "pii.email", "client": "alice", "where": "request", "action": "recorded", "count": 2},
        {"kind": "secrets.aws_access_key_id", "client": "bob", "where": "answer", "action": "recorded", "count": 1},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "found"),
    [
        # Redacted in the request (some of its matches replaced), refused in the request (it never went
        # upstream: no first byte, no answer read), recorded in the request of a call whose answer was refused.
        ({"findings": {"pii.email": 2}, "redacted": 2}, [("request", "redacted", 2)]),
        ({"findings": {"secrets.x": 1}, "redacted": 0, "decision": "deny", "refusal": "content_denied", "ttfb_ms": None},
         [("request", "refused", 1)]),
        ({"findings": {"pii.email": 1}, "redacted": 0, "answer_findings": {"secrets.x": 1}, "answer_redacted": 0,
          "refusal": "content_denied", "ttfb_ms": 120.5}, [("answer", "refused", 1), ("request", "recorded", 1)]),
        # In the answer: redacted (`answer_redacted`), recorded (none redacted, or a record from before the field).
        ({"answer_findings": {"pii.email": 3}, "answer_redacted": 3, "ttfb_ms": 80.0}, [("answer", "redacted", 3)]),
        ({"answer_findings": {"pii.email": 3}, "answer_redacted": 0, "ttfb_ms": 80.0}, [("answer", "recorded", 3)]),
        ({"answer_findings": {"pii.email": 1}}, [("answer", "recorded", 1)]),
    ],
)  # fmt: skip
def test_a_finding_says_where_it_was_and_what_was_done(tmp_path: Path, fields: dict, found: list) -> None:
    write(tmp_path / "audit.jsonl", [call("2026-11-01T08:00:00.000Z", "alice", **fields)])
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    rows = Views(audit).answer("/api/findings", {})
    assert sorted((r["where"], r["action"], r["count"]) for r in rows) == found


def test_people_say_which_models_each_called(tmp_path: Path) -> None:
    """Who used which model: each person's `llm_call`s per model called (a refused one too), summed
    over the days the window covers; an MCP call or a connection names none."""
    write(tmp_path / "audit.jsonl", [
        call("2026-11-01T08:00:00.000Z", "alice", model="gpt-4o"),
        call("2026-11-02T08:00:00.000Z", "alice", model="gpt-4o"),
        call("2026-11-02T09:00:00.000Z", "alice", model="o3", decision="deny", refusal="policy_denied"),
        call("2026-11-02T09:00:00.000Z", "alice", model=None),
        {"event": "mcp_call", "ts": "2026-11-02T11:30:00.000Z", "client": "alice", "server": "notes",
         "tool": "add", "decision": "allow", "deny_reasons": [], "refusal": None},
    ])  # fmt: skip
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    views = Views(audit)
    assert [p["models"] for p in views.answer("/api/people", {})] == [{"gpt-4o": 2, "o3": 1}]
    assert [p["models"] for p in views.answer("/api/people", {"since": ["2026-11-02"]})] == [{"gpt-4o": 1, "o3": 1}]


def test_governed_calls_bring_their_bytes_to_the_ai_services(tmp_path: Path) -> None:
    """A call's bodies' bytes (`bytes_sent`, `bytes_received`) are its service's, as a connection's
    are; a record from before the fields adds none. `tollgate inventory` says the same."""
    from tollgate.records.reports.inventory import audit_file_seen, tally, to_json

    write(tmp_path / "audit.jsonl", [
        call("2026-11-01T08:00:00.000Z", "alice", bytes_sent=812, bytes_received=4096),
        call("2026-11-01T09:00:00.000Z", "alice", bytes_sent=100, bytes_received=None),
        call("2026-11-01T10:00:00.000Z", "alice"),
    ])  # fmt: skip
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    rows = Views(audit).answer("/api/inventory", {})
    assert [(r["service"], r["calls"], r["bytes_sent"], r["bytes_received"]) for r in rows] == [
        ("openai", 3, 912, 4096)
    ]
    assert json.loads(to_json(tally(audit_file_seen([tmp_path / "audit.jsonl"])))) == rows


def test_the_kinds_are_every_kind_of_record_tollgate_writes(views: Views) -> None:
    """`/api/kinds` (the Live view's kind filter) lists `RECORD_KINDS`, and that holds every `event`
    a record Tollgate writes has: each dict written with an `event` key in the source, its value a
    string or a module's constant."""
    import ast

    import tollgate
    from tollgate.records.audit.kinds import RECORD_KINDS

    assert views.answer("/api/kinds", {}) == list(RECORD_KINDS)
    written: set[str] = set()
    root = Path(tollgate.__file__).parent
    for source in root.rglob("*.py"):
        if source.parent.name == "console":
            continue  # the console writes no record (its `malformed` is a line that is none)
        tree = ast.parse(source.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event":
                        if isinstance(value, ast.Constant):
                            written.add(value.value)
                        elif isinstance(value, ast.Name) and value.id in constants:
                            written.add(constants[value.id])
                        elif isinstance(value, ast.Name):  # imported: its module's constant
                            for module in root.rglob("*.py"):
                                found = re.search(rf'^{value.id} = "(\w+)"', module.read_text(), re.M)
                                if found:
                                    written.add(found.group(1))
    # A Responses WebSocket's flow keeps a summary under `event` in its metadata: no audit record.
    assert written - {"responses_websocket"} == set(RECORD_KINDS) - {"malformed"}


def test_inventory_rows_are_tollgate_inventorys(views: Views) -> None:
    rows = views.answer("/api/inventory", {})
    assert [(r["client"], r["service"], r["calls"], r["refused"]) for r in rows] == [
        ("alice", "openai", 2, 1),
        ("bob", "openai", 1, 0),
        ("bob", "pastebin.com", 0, 1),
        (None, "anthropic", 1, 0),
    ]


def test_events_latest_first_page_then_after_a_cursor_with_filters(views: Views) -> None:
    latest = views.answer("/api/events", {"limit": ["2"]})
    assert [e["ts"] for e in latest["events"]] == ["2026-11-02T11:30:00.000Z", "2026-11-03T12:00:00.000Z"]
    assert views.cursors.open(latest["cursor"], TOKEN_HOLDER) == 7  # sealed: opaque to the viewer
    denied = plain_answer(views, "/api/events", {"after": ["0"], "decision": ["deny"], "client": ["bob"]})
    assert [e["event"] for e in denied["events"]] == ["mcp_call", "connection"]
    assert views.answer("/api/events", {"client": ["nobody"]})["events"] == []
    write(views.source.paths[0], [call("2026-11-04T08:00:00.000Z", "carol")])
    views.source.catch_up()
    after = plain_answer(views, "/api/events", {"after": [latest["cursor"]]})
    assert [e["client"] for e in after["events"]] == ["carol"] and after["cursor"] == 8


def test_a_rotation_is_followed_and_a_cut_line_is_shown_as_such(tmp_path: Path) -> None:
    live = tmp_path / "audit.jsonl"
    write(live, RECORDS[:2], tail=b'{"event": "llm_call", "ts": "2026-11')  # a line being written
    audit = AuditFiles([live])
    audit.catch_up()
    assert len(audit.index) == 2
    live.rename(tmp_path / "audit.jsonl.1")  # logrotate; the cut line stays cut there
    write(live, [call("2026-11-05T08:00:00.000Z", "dan")])
    audit.catch_up()
    views = Views(audit)
    events = views.answer("/api/events", {})["events"]
    assert [e["event"] for e in events] == ["tollgate_started", "llm_call", "malformed", "llm_call"]
    assert events[2]["file"] == str(tmp_path / "audit.jsonl.1") and events[3]["client"] == "dan"
    write(live, [call("2026-11-05T09:00:00.000Z", "erin")])
    audit.catch_up()
    assert views.answer("/api/events", {"limit": ["1"]})["events"][0]["client"] == "erin"


def test_csv_has_a_column_per_field_and_no_formula(views: Views) -> None:
    text = as_csv([{"client": "=cmd()", "findings": {"pii.email": 1}, "count": 2}, {"client": None, "extra": 1}])
    assert text == 'client,findings,count,extra\n\'=cmd(),"{""pii.email"":1}",2,\n(anonymous),,,1\n'


def test_csv_writes_an_anonymous_caller_and_amounts_one_way() -> None:
    events = {"events": [{"client": None, "cost_usd": 8.035e-05, "latency_ms": 1.5e-05, "ttfb_ms": None},
                         {"client": "bob", "cost_usd": 0.0, "latency_ms": 412.3, "ttfb_ms": 2e21}]}  # fmt: skip
    assert as_csv(events) == (
        "client,cost_usd,latency_ms,ttfb_ms\n(anonymous),0.00008035,0.000015,\nbob,0.00,412.3,2000000000000000000000\n"
    )
    spend = [
        {"bucket": "2026-11-05", "key": None, "cost_usd": 1e-09},
        {"bucket": "2026-11-05", "key": "bob", "cost_usd": 3.0},
    ]
    assert (
        as_csv(spend, {"by": ["client"]})
        == "bucket,key,cost_usd\n2026-11-05,(anonymous),0.000000001\n2026-11-05,bob,3.00\n"
    )
    assert as_csv(spend, {"by": ["model"]}) == "bucket,key,cost_usd\n2026-11-05,,0.000000001\n2026-11-05,bob,3.00\n"
    budgets = [{"subject": "(anonymous)", "used": 1.25e-05, "cap": 5.0, "unit": "usd"},
               {"subject": "bob", "used": 3, "cap": 1e+22, "unit": "tokens"}]  # fmt: skip
    assert (
        as_csv(budgets)
        == "subject,used,cap,unit\n(anonymous),0.0000125,5.00,usd\nbob,3,10000000000000000000000,tokens\n"
    )


def test_budgets_rows_read_the_current_windows_counters() -> None:
    rules = [
        LimitRule(name="daily", per="client", requests_per_day=10, usd_per_day="5"),
        LimitRule(name="everyone", per="all", tokens_per_minute=1000),
    ]
    now = 1_800_000_000.0
    day = int(now) - int(now) % 86400
    counters = {f"daily|client:alice|requests|day|{day}": 3, f"daily|client:alice|usd|day|{day}": 1_250_000_000,
                f"daily|client:bob|requests|day|{day - 86400}": 9}  # fmt: skip
    assert budget_rows(rules, counters, now) == [
        {"limit": "daily", "field": "requests_per_day", "per": "client", "subject": "alice", "window": "day",
         "used": 3, "cap": 10, "unit": "requests"},
        {"limit": "daily", "field": "usd_per_day", "per": "client", "subject": "alice", "window": "day", "used": 1.25,
         "cap": 5.0, "unit": "usd"},
        {"limit": "everyone", "field": "tokens_per_minute", "per": "all", "subject": None, "window": "minute",
         "used": 0, "cap": 1000, "unit": "tokens"},
    ]  # fmt: skip
    # Anonymous callers share one counter per limit: the view names it as every output names them.
    counters = {f"daily|client:anonymous|requests|day|{day}": 2}
    assert [(r["subject"], r["used"]) for r in budget_rows(rules[:1], counters, now)] == [("(anonymous)", 2)]


def test_only_loopback_is_served_without_tls() -> None:
    assert exposed_without_tls("127.0.0.1:8090", tls=False) is None
    assert exposed_without_tls("[::1]:8090", tls=False) is None
    assert exposed_without_tls("0.0.0.0:8090", tls=True) is None
    assert "only over TLS" in (exposed_without_tls("0.0.0.0:8090", tls=False) or "")
    with pytest.raises(ValueError, match="only over TLS"):
        ConsoleConfig(listen="10.0.0.5:8090")
    with pytest.raises(ValueError, match="16 characters"):
        ConsoleConfig(token="short")


def test_the_cursor_secret_is_long_enough_and_named_when_not(tmp_path: Path) -> None:
    assert ConsoleConfig(cursor_secret="c" * 32).cursor_secret == "c" * 32
    assert "c" * 32 not in repr(ConsoleConfig(cursor_secret="c" * 32))  # a secret: never in a log
    with pytest.raises(ConfigError, match=r"console\.cursor_secret: .*32 characters or more"):
        parse_config({"console": {"cursor_secret": "${SHORT}"}}, {"SHORT": "too-short"})


def test_cursors_sealed_with_one_secret_hold_across_replicas(views: Views) -> None:
    """Two consoles with the same `cursor_secret` take each other's cursors; one with another, or
    with none, refuses them with a reason."""
    secret = "a-cursor-secret-shared-by-replicas-0001"
    one, two = (Views(views.source, cursors=Cursors(secret)) for _ in range(2))
    cursor = one.answer("/api/events", {"limit": ["1"]})["cursor"]
    write(views.source.paths[0], [call("2026-11-04T08:00:00.000Z", "carol")])
    views.source.catch_up()
    assert [e["client"] for e in two.answer("/api/events", {"after": [cursor]})["events"]] == ["carol"]
    for other in (Views(views.source, cursors=Cursors("another-cursor-secret-of-32-chars-01")), Views(views.source)):
        with pytest.raises(BadQuery, match="not a cursor this console gave you"):
            other.answer("/api/events", {"after": [cursor]})


@pytest.fixture
def served(views: Views):
    while views.source.verify_pending():  # its records carry no chain: each is unverified
        pass
    console = Console(views.source, views, "127.0.0.1", 0, TOKEN)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{console.port}"
    console.stop()
    thread.join(timeout=5)


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    opener = urllib.request.build_opener(NoRedirect)
    try:
        answer = opener.open(urllib.request.Request(url, headers=headers or {}, method=method), timeout=5)
    except urllib.error.HTTPError as e:
        answer = e
    with answer:
        return answer.status, answer.headers, answer.read()


def test_every_request_needs_the_token(served: str) -> None:
    for path in ("/", "/app.js", "/api/people", "/api/events/live", "/nothing"):
        status, headers, body = fetch(served + path)
        assert (status, json.loads(body)) == (401, {"error": "unauthenticated"}), path
        assert headers["Content-Security-Policy"] == "default-src 'self'"
    assert fetch(served + "/api/people", {"Authorization": "Bearer not-the-token"})[0] == 401
    # The token is no cookie: neither as the session's nor as the one of earlier versions.
    for cookie in ("tollgate_session=not-a-session", f"tollgate_session={TOKEN}", f"tollgate_console={TOKEN}"):
        assert fetch(served + "/api/people", {"Cookie": cookie})[0] == 401, cookie
    assert fetch(served + "/?token=not-the-token")[0] == 401


def signed_in(served: str) -> str:
    """The session the sign-in link is answered with."""
    status, headers, _ = fetch(f"{served}/?token={TOKEN}")
    assert status == 303
    return re.fullmatch(r"tollgate_session=([\w-]{43}); .*", headers.get_all("Set-Cookie")[0])[1]


def test_the_token_once_becomes_a_session_and_a_redirect_without_it(served: str) -> None:
    status, headers, _ = fetch(f"{served}/?token={TOKEN}&x=1")
    assert status == 303 and headers["Location"] == "/?x=1"
    session, emptied = headers.get_all("Set-Cookie")
    assert re.fullmatch(r"tollgate_session=[\w-]{43}; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict", session)
    assert emptied == "tollgate_console=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"  # the token, if it was there
    assert TOKEN not in session and signed_in(served) != signed_in(served)  # a new one at each sign-in
    status, headers, body = fetch(served + "/", {"Cookie": session.split(";")[0]})
    assert status == 200 and b'<script src="/app.js"' in body
    assert headers["Content-Security-Policy"] == "default-src 'self'"
    assert not any(h.lower().startswith("access-control-") for h in headers)


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "/\\/evil.example/x"])
def test_the_sign_in_redirect_stays_on_the_console(served: str, path: str) -> None:
    """A path a browser would read as another site's address (`//host`, `/\\host`) is sent back
    as one of the console's own."""
    status, headers, _ = fetch(f"{served}{path}?token={TOKEN}")
    assert (status, headers["Location"]) == (303, "/evil.example/x")


def test_a_session_ends_after_12_hours_and_with_the_console(views: Views) -> None:
    now = [1_800_000_000.0]
    console = Console(views.source, views, "127.0.0.1", 0, TOKEN, clock=lambda: now[0])
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    served = f"http://127.0.0.1:{console.port}"
    try:
        first = signed_in(served)
        now[0] += 12 * 3600 - 1
        second = signed_in(served)
        assert fetch(served + "/api/people", {"Cookie": f"tollgate_session={first}"})[0] == 200
        now[0] += 1
        assert fetch(served + "/api/people", {"Cookie": f"tollgate_session={first}"})[0] == 401
        assert fetch(served + "/api/people", {"Cookie": f"tollgate_session={second}"})[0] == 200
        assert fetch(served + "/api/people", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        console.stop()
        thread.join(timeout=5)
    assert console.viewer(None, [second]) is None  # the console stopped: its sessions with it


@pytest.mark.slow
def test_a_live_stream_ends_with_the_session_it_was_opened_in(views: Views) -> None:
    """A stream opened in a session does not outlive it: once the session has ended (here its 12
    hours), the console closes the stream."""
    now = [1_800_000_000.0]
    console = Console(views.source, views, "127.0.0.1", 0, TOKEN, clock=lambda: now[0])
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        session = signed_in(f"http://127.0.0.1:{console.port}")
        connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        connection.request("GET", "/api/events/live", headers={"Cookie": f"tollgate_session={session}"})
        answer = connection.getresponse()
        assert answer.status == 200
        now[0] += 12 * 3600
        began = time.monotonic()
        assert answer.read() == b""  # the stream ends (a timeout, 10 s, would fail the read)
        assert time.monotonic() - began < 5
        connection.close()
    finally:
        console.stop()
        thread.join(timeout=5)


def test_another_services_cookie_of_the_same_name_leaves_the_session_working(served: str) -> None:
    session = signed_in(served)
    for cookie in (f"tollgate_session=theirs; tollgate_session={session}", f"tollgate_session={session}; a=b"):
        assert fetch(served + "/api/people", {"Cookie": cookie})[0] == 200, cookie
    answer = fetch(served + "/api/people", {"Cookie": "tollgate_session=theirs; tollgate_session=other"})
    assert answer[0] == 401


def test_bearer_json_csv_and_read_only(served: str) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = fetch(served + "/api/findings", bearer)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)[0] == {"kind": "pii.email", "client": "alice", "where": "request", "action": "recorded",
                                   "count": 2, "unverified": True}  # fmt: skip
    status, headers, body = fetch(served + "/api/findings?format=csv", bearer)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert body.decode().splitlines()[:2] == [
        "kind,client,where,action,count,unverified",
        "pii.email,alice,request,recorded,2,True",
    ]
    assert fetch(served + "/api/spend?by=colour", bearer)[0] == 400
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert fetch(served + "/api/people", bearer, method)[0] == 405, method


def chained(records: list[dict]) -> bytes:
    """Lines as Tollgate writes them: one instance's run, each record chained to the one before."""
    from tollgate.common.audit_chain import ZERO, chain_of

    lines, chain = [], ZERO
    for seq, record in enumerate(records, 1):
        content = json.dumps({**record, "instance": "gw-1", "seq": seq})[:-1]
        chain = chain_of(chain, content.encode())
        lines.append(f'{content},"chain":"{chain}"}}\n'.encode())
    return b"".join(lines)


def test_the_audit_view_checks_the_chain_behind_the_index(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(chained([{**RECORDS[0], "previous_chain": None}, *RECORDS[1:]]))
    audit = AuditFiles([path])
    audit.catch_up()
    assert [f["state"] for f in audit.state()] == ["checking"]
    while audit.verify_pending():
        pass
    assert [(f["instance"], f["records"], f["state"], f["faults"]) for f in audit.state()] == [
        ("gw-1", len(RECORDS), "whole", [])
    ]
    changed = path.read_bytes().replace(b'"cost_usd": 1.5', b'"cost_usd": 0.5')
    path.write_bytes(changed)
    audit = AuditFiles([path])
    audit.catch_up()
    while audit.verify_pending():
        pass
    assert [(f["state"], f["faults"]) for f in audit.state()] == [
        ("fault", [f"{path}:3: changed: its chain does not match its content and the record before it"])
    ]


def test_under_tls_the_cookie_is_secure_and_another_address_is_allowed(views: Views, tmp_path: Path) -> None:
    import ssl

    import trustme

    from tollgate.console.command import run

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    console = Console(views.source, views, "127.0.0.1", 0, TOKEN, context)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        client = ssl.create_default_context()
        ca.configure_trust(client)
        opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=client))
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"https://127.0.0.1:{console.port}/?token={TOKEN}", timeout=5)
        assert redirect.value.code == 303
        cookie = redirect.value.headers["Set-Cookie"]
        assert re.fullmatch(
            r"tollgate_session=[\w-]{43}; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict; Secure", cookie
        )
    finally:
        console.stop()
        thread.join(timeout=5)
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n")
    assert run([], "0.0.0.0:0", config) == 1  # no TLS: refused at start, before anything listens


def test_an_ipv6_address_is_served(views: Views) -> None:
    console = Console(views.source, views, "::1", 0, TOKEN)  # --listen [::1]:PORT
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        status, _, body = fetch(f"http://[::1]:{console.port}/api/people", {"Authorization": f"Bearer {TOKEN}"})
        assert (status, [p["client"] for p in json.loads(body)]) == (200, ["alice", "bob", None])
    finally:
        console.stop()
        thread.join(timeout=5)


def every_view(views: Views) -> list:
    spend = [views.answer("/api/spend", {"by": [by]}) for by in ("provider", "model", "client")]
    hourly = views.answer("/api/spend", {"by": ["model"], "bucket": ["hour"], "since": ["2026-11-01"],
                                         "until": ["2026-11-05"]})  # fmt: skip
    return [plain_answer(views, path, {}) for path in ("/api/people", "/api/refusals", "/api/findings",
                                                       "/api/inventory", "/api/events")] + spend + [hourly]  # fmt: skip


def opened(path: Path, remember: Path) -> tuple[AuditFiles, Views]:
    audit = AuditFiles([path], remember=remember)
    audit.catch_up()
    return audit, Views(audit)


def saved_index(tmp_path: Path) -> tuple[Path, Path]:
    """An audit file of `RECORDS` in `tmp_path`, and the index a console saved of it as it closed."""
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    write(path, RECORDS)
    audit, _ = opened(path, remember)
    audit.close()
    return path, remember


def test_the_index_is_remembered_and_a_restart_reads_only_what_came_since(tmp_path: Path) -> None:
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    write(path, RECORDS[:5])
    first, views = opened(path, remember)
    first.save()
    first.close()
    assert remember.stat().st_mode & 0o777 == 0o600
    write(path, RECORDS[5:])
    restarted, views = opened(path, remember)
    assert restarted.saved_records == 5  # restored, not read again
    fresh_audit, fresh = opened(path, tmp_path / "elsewhere")
    assert len(restarted.index) == len(fresh_audit.index) == len(RECORDS)
    assert every_view(views) == every_view(fresh)
    assert views.answer("/api/people", {})[0]["calls"] == 3
    while restarted.verify_pending():  # the chain is checked again from the file, never taken from the index
        pass
    assert restarted.files[0].checked == path.stat().st_size
    restarted.close()


def test_a_restart_makes_a_days_sums_when_a_view_first_asks_for_that_day(tmp_path: Path) -> None:
    """A restart is ready before it parses each day's sums: a day is made when a view (or a record
    of that day) first needs it, and a day not made yet is saved again as it was."""
    path, remember = saved_index(tmp_path)
    restarted, views = opened(path, remember)
    assert restarted.saved_records == len(RECORDS)
    held = restarted.index.days.held()
    assert [(day, type(sums)) for day, sums in held] == [
        (day, Later) for day in ("2026-11-01", "2026-11-02", "2026-11-03")
    ]
    views.answer("/api/people", {"since": ["2026-11-03"]})
    assert [day for day, sums in restarted.index.days.held() if not isinstance(sums, Later)] == ["2026-11-03"]
    write(path, [call("2026-11-02T18:00:00.000Z", "carol")])  # a record of a day not made: made for it
    restarted.catch_up()
    made = [day for day, sums in restarted.index.days.held() if not isinstance(sums, Later)]
    assert made == ["2026-11-02", "2026-11-03"]
    restarted.save()
    restarted.close()
    again, views = opened(path, remember)
    assert again.saved_records == len(RECORDS) + 1
    fresh_audit, fresh = opened(path, tmp_path / "elsewhere")
    assert every_view(views) == every_view(fresh)
    for audit in (again, fresh_audit):
        audit.close()


def test_the_index_is_set_aside_when_the_file_was_rewritten_or_rotated(tmp_path: Path) -> None:
    path, remember = saved_index(tmp_path)
    text = path.read_bytes()
    path.write_bytes(text.replace(b'"alice"', b'"alicE"'))  # the same size, other bytes: rewritten in place
    rewritten, views = opened(path, remember)
    assert rewritten.saved_records == -1
    assert [p["client"] for p in views.answer("/api/people", {})][:1] == ["alicE"]
    rewritten.close()
    path.rename(tmp_path / "audit.jsonl.1")  # rotated: its index still fits the file, now `.1`
    write(path, [call("2026-11-04T08:00:00.000Z", "carol")])
    rotated = AuditFiles([tmp_path / "audit.jsonl.1", path], remember=remember)
    rotated.catch_up()
    assert rotated.saved_records == len(RECORDS)
    assert [p["client"] for p in Views(rotated).answer("/api/people", {})][:3] == ["alicE", "bob", "carol"]
    rotated.close()
    (tmp_path / "audit.jsonl.1").unlink()  # the rotation the index began with is gone: read afresh
    alone = AuditFiles([path], remember=remember)
    alone.catch_up()
    assert alone.saved_records == -1
    assert [p["client"] for p in Views(alone).answer("/api/people", {})] == ["carol"]
    alone.close()


def test_a_saved_index_that_is_no_index_is_set_aside(tmp_path: Path) -> None:
    path, remember = saved_index(tmp_path)
    remember.write_bytes(remember.read_bytes()[:200])  # cut
    cut, views = opened(path, remember)
    assert cut.saved_records == -1
    assert len(views.answer("/api/people", {})) == 3
    cut.close()


def test_budgets_are_read_from_a_redis_ledger_as_it_keeps_them(tmp_path: Path) -> None:
    """A real redis-server, its counters written by the ledger's own Redis store."""
    import asyncio
    import time

    from tests.support.redis import redis_server

    from tollgate.console.budgets import budgets_reader
    from tollgate.governance.limits.limits import caps_of, counters
    from tollgate.ledger import open_store
    from tollgate.ledger.store import Charge

    rules = [
        LimitRule(name="daily", per="client", requests_per_day=10, usd_per_day="5"),
        LimitRule(name="everyone", per="all", tokens_per_day=1000),
    ]
    server = redis_server(tmp_path / "redis")
    try:
        now = time.time()
        amounts = {"requests": 3, "usd": 1_250_000_000, "tokens": 120}
        charges = [
            Charge(c.key, amounts[c.metric], None, c.end)
            for c in counters([(rule, caps_of(rule)) for rule in rules], "alice", (), now)
        ]

        async def reserve() -> None:
            store = open_store(server.url)
            try:
                assert (await store.reserve(charges)).granted
            finally:
                await store.aclose()

        asyncio.run(asyncio.wait_for(reserve(), 10))
        read = budgets_reader(rules, server.url)
        assert [(r["limit"], r["field"], r["subject"], r["used"], r["cap"], r["unit"]) for r in read()] == [
            ("daily", "requests_per_day", "alice", 3, 10, "requests"),
            ("daily", "usd_per_day", "alice", 1.25, 5.0, "usd"),
            ("everyone", "tokens_per_day", None, 120, 1000, "tokens"),
        ]
    finally:
        server.stop()
    assert budgets_reader(rules, server.url)() == [  # Redis gone: the limits, nothing counted
        {"limit": "everyone", "field": "tokens_per_day", "per": "all", "subject": None, "window": "day", "used": 0,
         "cap": 1000, "unit": "tokens"},
    ]  # fmt: skip


CORRUPTED = [
    b"not json at all\n",
    b'{"event": "llm_call", "ts": "2026-11-06T08:\xff\xfe"}\n',  # bytes that are no UTF-8
    b"[1, 2, 3]\n",  # JSON, not a record
    b'{"event": "llm_call", "ts": "2026-11-06T08:30:00.000Z", "client": "eve", "findings": [1]}\n',  # figures of another shape
]


def corrupted_audit(path: Path) -> AuditFiles:
    write(path, RECORDS[:2])
    with path.open("ab") as f:
        f.write(b"".join(CORRUPTED))
    write(path, [call("2026-11-06T09:00:00.000Z", "dan")], tail=b'{"event": "llm_call", "ts": "2026-11')
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    while audit.verify_pending():
        pass
    return audit


def test_corrupted_and_cut_lines_are_listed_as_such_and_the_views_still_answer(tmp_path: Path) -> None:
    audit = corrupted_audit(tmp_path / "audit.jsonl")
    views = Views(audit)
    events = views.answer("/api/events", {})["events"]
    assert [e["event"] for e in events] == [
        "tollgate_started", "llm_call", "malformed", "malformed", "malformed", "llm_call", "llm_call", "malformed",
    ]  # fmt: skip
    assert audit.index.malformed == 5  # the three no records, the one of another shape, the cut one
    # Eve's call, its findings of another shape, is listed and counted malformed, never summed.
    assert [p["client"] for p in views.answer("/api/people", {})] == ["alice", "dan"]
    [state] = audit.state()
    place = tmp_path / "audit.jsonl"
    assert state["state"] == "fault" and f"{place}:3: not a JSON record: changed, cut or inserted" in state["faults"]
    assert f"{place}:8: not a JSON record: changed, cut or inserted" in state["faults"]  # the cut last line


def test_a_corrupted_line_is_served_over_the_api(tmp_path: Path) -> None:
    audit = corrupted_audit(tmp_path / "audit.jsonl")
    console = Console(audit, Views(audit), "127.0.0.1", 0, TOKEN)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{console.port}"
        status, _, body = fetch(url + "/api/events", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert [e["event"] for e in json.loads(body)["events"]].count("malformed") == 4
        status, _, body = fetch(url + "/api/people", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and [p["client"] for p in json.loads(body)] == ["alice", "dan"]
    finally:
        console.stop()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "shape",
    [{"findings": [1]}, {"findings": "pii.email"}, {"answer_findings": [["pii.email", 1]]},
     {"decision": "deny", "refusal": "policy_denied", "deny_reasons": 5}],
)  # fmt: skip
def test_a_record_of_another_shape_is_malformed_and_no_sum_takes_it(tmp_path: Path, shape: dict) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, [call("2026-11-06T08:00:00.000Z", "alice"), call("2026-11-06T08:30:00.000Z", "eve", **shape)])
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    views = Views(audit)
    assert audit.index.malformed == 1
    assert [e["client"] for e in views.answer("/api/events", {})["events"]] == ["alice", "eve"]  # listed as written
    assert [(p["client"], p["calls"]) for p in views.answer("/api/people", {})] == [("alice", 1)]
    assert [s["calls"] for s in views.answer("/api/spend", {"by": ["client"]})] == [1]
    assert [r["client"] for r in views.answer("/api/inventory", {})] == ["alice"]
    assert views.answer("/api/refusals", {}) == views.answer("/api/findings", {}) == []


def many_records(n: int) -> list[dict]:
    started = {**RECORDS[0], "previous_chain": None}
    return [started] + [call(f"2026-11-01T08:{i // 60 % 60:02d}:{i % 60:02d}.000Z", f"p{i % 7}") for i in range(n - 1)]


def checked(audit: AuditFiles) -> list[tuple]:
    while audit.verify_pending():
        pass
    return [(f["instance"], f["records"], f["state"], f["faults"]) for f in audit.state()]


def test_a_restart_checks_the_chain_only_from_where_the_saved_index_stopped(tmp_path: Path) -> None:
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    lines = chained(many_records(300)).splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:200]))
    first = AuditFiles([path], remember=remember)
    first.catch_up()
    assert checked(first) == [("gw-1", 200, "whole", [])]
    first.close()  # saved: the index and the chain as checked
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"".join(lines[200:]))
    restarted = AuditFiles([path], remember=remember)
    restarted.catch_up()
    assert restarted.files[0].checked == size  # only the lines written since are left to check
    assert [f["state"] for f in restarted.state()] == ["checking"]
    assert checked(restarted) == [("gw-1", 300, "whole", [])]
    assert restarted.verifier.summary.records == 300  # the 200 checked before, and the 100 since
    restarted.close()
    again = AuditFiles([path], remember=remember)
    again.catch_up()
    assert again.files[0].checked == path.stat().st_size and not again.checking
    assert checked(again) == [("gw-1", 300, "whole", [])]
    again.close()


def test_a_restart_still_names_the_faults_found_before_and_finds_those_after(tmp_path: Path) -> None:
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    lines = chained(many_records(30)).splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"p4"', b'"p5"')  # changed before the save
    lines[25] = lines[25].replace(b'"p3"', b'"p2"')  # and after
    path.write_bytes(b"".join(lines[:20]))
    first = AuditFiles([path], remember=remember)
    first.catch_up()
    fault = f"{path}:6: changed: its chain does not match its content and the record before it"
    assert checked(first) == [("gw-1", 20, "fault", [fault])]
    first.close()
    with path.open("ab") as f:
        f.write(b"".join(lines[20:]))
    path.rename(tmp_path / "audit.jsonl.1")  # rotated: the faults are named by the file as it is now called
    restarted = AuditFiles([tmp_path / "audit.jsonl.1"], remember=remember)
    restarted.catch_up()
    assert restarted.saved_checked > 0
    moved = str(tmp_path / "audit.jsonl.1")
    assert checked(restarted) == [
        ("gw-1", 30, "fault", [fault.replace(str(path), moved), f"{moved}:26: " + fault.split(": ", 1)[1]])
    ]
    restarted.close()


def test_a_line_checked_before_and_changed_since_has_the_chain_checked_afresh(tmp_path: Path, monkeypatch) -> None:
    """The saved index still fits (the file's start and the bytes before where reading stopped are
    as they were), but the last line whose chain was checked is not: the chain is checked afresh."""
    from tollgate.console import follow

    monkeypatch.setattr(follow, "CHUNK", 16 << 10)  # the chain checked a little at a time
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    path.write_bytes(chained(many_records(600)))  # about 200 kB
    first = AuditFiles([path], remember=remember)
    first.catch_up()
    for _ in range(8):  # 128 kB checked: past the file's first 64 kB, before its last 64 kB
        first.verify_pending()
    first.close()
    at, end = first.files[0].checked_at, first.files[0].checked
    assert 64 << 10 < at < end < path.stat().st_size - (64 << 10)
    text = path.read_bytes()
    changed = text[at:end].replace(b'"cost_usd": 0.25', b'"cost_usd": 0.75')
    assert changed != text[at:end]
    path.write_bytes(text[:at] + changed + text[end:])  # the same size, in place
    line = text[:end].count(b"\n")
    restarted = AuditFiles([path], remember=remember)
    restarted.catch_up()
    assert restarted.saved_records == 600  # the index still fits
    assert restarted.files[0].checked == 0  # the chain does not: checked from the start
    assert checked(restarted) == [
        (
            "gw-1",
            600,
            "fault",
            [f"{path}:{line}: changed: its chain does not match its content and the record before it"],
        )
    ]
    restarted.close()
