"""The Invoice view over `tollgate reconcile`'s results, from the audit's `reconciliation` records
and from the table `tollgate_reconciliation` in a real PostgreSQL: the newest run per provider and
day shown, amounts exact, each role's part (security all, a lead the held keys their clients'
calls used, never a day's totals or a key used around Tollgate; anyone else none), the metrics of
the newest closed day."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.reconciliation import day, record, row, side, store

from tollgate.configuration.config import parse_config
from tollgate.console.follow import AuditFiles
from tollgate.console.invoice import Invoice, metrics_text, text
from tollgate.console.invoice_results import FromTable, Unreadable, decimal_of, exact_json
from tollgate.console.scope import ScopeRules
from tollgate.console.server import Console
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import BadQuery, Forbidden, Views, as_csv

RULES = ScopeRules.of(parse_config({"clients": [
    {"name": "alice", "keys": ["tg-alice-000000000000000001"], "groups": ["research"], "people": ["alice@example.com"]},
    {"name": "bob", "keys": ["tg-bob-0000000000000000002"], "groups": ["infra"], "people": ["bob@example.com"]},
]}, {}))  # fmt: skip
SECURITY = Viewer("security", "sam@example.com")
LEAD = Viewer("lead", "lena@example.com", "Lena", frozenset({"research"}))
ALICE = Viewer("self", "alice@example.com")
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
TOKEN = "invoice-console-TOKEN-0001"
KEY_A, KEY_B = "sha256:aaaaaaaaaaaa", "sha256:bbbbbbbbbbbb"


def call(ts: str, client: str, groups: list[str], key: str, provider: str = "openai") -> dict[str, Any]:
    return {"event": "llm_call", "ts": ts, "client": client, "groups": groups, "provider": provider,
            "model": "gpt-4o-mini", "decision": "allow", "upstream_key": key, "input_tokens": 10,
            "output_tokens": 5, "cost_usd": 0.25}  # fmt: skip


CALLS = [
    call("2026-11-20T08:00:00.000Z", "alice", ["research"], KEY_A),  # research's calls: key A on the 20th
    call("2026-11-20T09:00:00.000Z", "bob", ["infra"], KEY_B),  # infra's: key B on the 20th and 21st
    call("2026-11-21T09:00:00.000Z", "bob", ["infra"], KEY_B),
]


def mini(day_: str, key_id: str, status: str, ours: dict[str, Any], theirs: dict[str, Any], *more: Any,
         **named: Any) -> dict[str, Any]:  # fmt: skip
    """A row of OpenAI's gpt-4o-mini."""
    return row("openai", day_, key_id, "gpt-4o-mini", status, ours, theirs, *more, **named)


NONE, CALL = side(0, 0, 0, "0"), side(10, 5, 1, "0.25")  # nothing seen; a call as Tollgate saw it
HAIKU = side(1, 1, 1, "0.000006")
AROUND = {"held": False, "key_name": "laptop", "project": "proj_side"}  # a key used around Tollgate
OLD_RUN = [mini("2026-11-20", "key_a", "differs", CALL, side(99, 5, 1, "9"), KEY_A)]  # revised by the second run
ROWS = [
    mini("2026-11-20", "key_a", "match", CALL, CALL, KEY_A, key_name="research-prod"),
    mini("2026-11-20", "key_b", "differs", CALL, side(4010, 5, 2, "0.85"), KEY_B, key_name="infra-prod"),
    mini("2026-11-21", "key_b", "unseen", NONE, side(7, 1, 1, "0.1"), KEY_B),
    mini("2026-11-21", "key_a", "unseen", NONE, side(7, 1, 1, "0.1"), KEY_A),
    mini("2026-11-20", "key_x", "around", NONE, side(100, 50, 3, "0.1"), **AROUND),
    row("openai", "2026-11-21", "key_x", "gpt-4o", "around", NONE, side(100, 50, 3, "0.2"), **AROUND),
    # No upstream_key: no lead's.
    row("anthropic", "2026-11-28", "apikey_1", "claude-haiku-4-5", "match", HAIKU, HAIKU, None, open_=True),
]
DAYS = [
    day("openai", "2026-11-20", "0.9", "1.10", "1.20", "0.1", "1.21"),
    day("openai", "2026-11-21", "0.5", "0.2", "0.4", "0.2", None),
    day("anthropic", "2026-11-28", "1", "0.000006", "0.000006", "0", "0.01", open_=True),
]


def audit_of(tmp_path: Path, lines: list[dict[str, Any]]) -> AuditFiles:
    """An audit file of `lines`, read whole."""
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    return audit


def files_views(tmp_path: Path) -> Views:
    lines = [*CALLS, record("2026-11-22T03:00:00.000Z", OLD_RUN, DAYS[:1]),
             record("2026-11-29T03:00:00.000Z", ROWS, DAYS)]  # fmt: skip
    views = Views(audit_of(tmp_path, lines), rules=RULES)
    views.invoice.clock = lambda: NOW
    return views


def table_views(tmp_path: Path, dsn: str) -> Views:
    store(dsn, "2026-11-22T03:00:00Z", OLD_RUN, DAYS[:1])
    store(dsn, "2026-11-29T03:00:00Z", ROWS, DAYS)
    audit = audit_of(tmp_path, CALLS)  # the records: as a fleet's console reads them
    return Views(audit, rules=RULES, invoice=Invoice(FromTable(dsn), audit, clock=lambda: NOW))


@pytest.fixture(params=["files", "postgresql"])
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Views:
    if request.param == "files":
        return files_views(tmp_path)
    return table_views(tmp_path, request.getfixturevalue("postgres").database())


def keys(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["day"], r["key_id"], r["status"]) for r in answer["rows"]]


def test_security_sees_every_day_row_and_key_used_around_tollgate_of_the_newest_run(views: Views) -> None:
    for viewer in (SECURITY, TOKEN_HOLDER):
        answer = views.answer("/api/invoice", {"since": ["2026-11-20"]}, viewer)
        assert (answer["since"], answer["until"]) == ("2026-11-20", "2026-11-29")
        assert [
            (d["provider"], d["day"], d["coverage"], d["around_usd"], d["billed_usd"], d["open"])
            for d in answer["days"]
        ] == [
            ("openai", "2026-11-20", "0.9", "0.1", "1.21", False),
            ("openai", "2026-11-21", "0.5", "0.2", None, False),
            ("anthropic", "2026-11-28", "1", "0", "0.01", True),
        ]
        assert sorted(keys(answer)) == sorted((r["day"], r["key_id"], r["status"]) for r in ROWS)
        differs = next(r for r in answer["rows"] if r["status"] == "differs")
        assert differs["difference"] == {"input_tokens": 4000, "cached_input_tokens": 0, "output_tokens": 0,
                                         "requests": 1, "cost_usd": "0.60"}  # fmt: skip
        assert differs["vendor"]["cost_usd"] == "0.85" and differs["key_name"] == "infra-prod"
        assert answer["around"] == [{
            "provider": "openai", "key_id": "key_x", "key_name": "laptop", "project": "proj_side",
            "first_day": "2026-11-20", "last_day": "2026-11-21", "days": 2, "models": ["gpt-4o", "gpt-4o-mini"],
            "requests": 6, "input_tokens": 200, "output_tokens": 100, "cost_usd": "0.3", "open": False}]  # fmt: skip
        assert "upstream_key" not in json.dumps(answer)


def test_a_lead_sees_the_held_keys_their_clients_calls_used_that_day_and_nothing_else(views: Views) -> None:
    answer = views.answer("/api/invoice", {"since": ["2026-11-01"]}, LEAD)
    assert keys(answer) == [("2026-11-20", "key_a", "match")]  # key A, used by alice on the 20th alone
    assert (answer["days"], answer["around"]) == ([], [])
    infra = Viewer("lead", "ian@example.com", "Ian", frozenset({"infra"}))
    assert sorted(keys(views.answer("/api/invoice", {"since": ["2026-11-01"]}, infra))) == [
        ("2026-11-20", "key_b", "differs"), ("2026-11-21", "key_b", "unseen")]  # fmt: skip
    nobody = Viewer("lead", "nora@example.com", "Nora", frozenset({"sales"}))
    assert views.answer("/api/invoice", {"since": ["2026-11-01"]}, nobody)["rows"] == []
    for said in (json.dumps(answer), as_csv(answer, {})):
        assert "key_x" not in said and "laptop" not in said and "key_b" not in said
    with pytest.raises(Forbidden):
        views.answer("/api/invoice", {}, ALICE)


def test_the_window_and_the_csv(views: Views) -> None:
    assert keys(views.answer("/api/invoice", {"since": ["2026-11-21T08:00"], "until": ["2026-11-21"]}, SECURITY)) == [
        ("2026-11-21", "key_b", "unseen"), ("2026-11-21", "key_a", "unseen"), ("2026-11-21", "key_x", "around")]  # fmt: skip
    assert views.answer("/api/invoice", {}, SECURITY)["since"] == "2026-10-30"  # 31 days to today
    for bad in ({"since": ["yesterday"]}, {"since": ["2026-11-02"], "until": ["2026-11-01"]},
                {"since": ["2024-01-01"]}, {"part": ["everything"]}):  # fmt: skip
        with pytest.raises(BadQuery):
            views.answer("/api/invoice", bad, SECURITY)
    answer = views.answer("/api/invoice", {"since": ["2026-11-20"]}, SECURITY)
    days = as_csv(answer, {"part": ["days"]}).splitlines()
    assert days[0] == "run_at,provider,day,open,coverage,tollgate_usd,vendor_usd,around_usd,billed_usd"
    assert days[1].endswith(",openai,2026-11-20,False,0.9,1.10,1.20,0.1,1.21")
    assert "key_x,laptop" in as_csv(answer, {"part": ["around"]})


def test_the_metrics_are_of_each_providers_newest_closed_day(views: Views) -> None:
    assert views.invoice.metrics() == [("openai", Decimal("0.5"), Decimal("0.2"))]
    text = metrics_text(views.invoice.metrics()).decode()
    assert 'tollgate_spend_coverage_ratio{provider="openai"} 0.5' in text
    assert 'tollgate_spend_around_usd{provider="openai"} 0.2' in text
    assert "anthropic" not in text  # its one day is open


def test_amounts_are_read_exactly_as_written(tmp_path: Path) -> None:
    exact = "0.123456789012345678901"
    body = json.dumps(row("openai", "2026-11-20", "key_x", "gpt-4o", "around", side(0, 0, 0, "0"), side(1, 1, 1, "0"),
                          held=False))  # fmt: skip
    body = body.replace(
        '"vendor": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1, "requests": 1, "cost_usd": "0"}',
        f'"vendor": {{"input_tokens": 1, "output_tokens": 1, "cost_usd": {exact}}}',
    )
    path = tmp_path / "audit.jsonl"
    path.write_text(f'{{"event": "reconciliation", "ts": "2026-11-29T03:00:00.000Z", "rows": [{body}], "days": '
                    f'[{{"provider": "openai", "day": "2026-11-20", "open": false, "coverage": {exact}, '
                    f'"tollgate_usd": 0, "vendor_usd": 1e-9, "around_usd": {exact}, "billed_usd": null}}]}}\n'
                    '{"event": "reconciliation", "ts": "2026-11-29T03:00:00.000Z", "rows": [{"day": "2026-11-20"}, '
                    '"no row"], "days": "none"}\nnot json\n')  # fmt: skip
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    views = Views(audit, rules=RULES)
    views.invoice.clock = lambda: NOW
    answer = views.answer("/api/invoice", {"since": ["2026-11-20"]}, SECURITY)
    assert answer["around"][0]["cost_usd"] == exact and answer["rows"][0]["vendor"]["cost_usd"] == exact
    assert [(d["coverage"], d["vendor_usd"], d["tollgate_usd"]) for d in answer["days"]] == [
        (exact, "0.000000001", "0")
    ]


def test_a_table_that_cannot_be_read_is_said_and_none_made_yet_is_empty(tmp_path: Path, postgres) -> None:
    dsn = postgres.database()
    audit = AuditFiles([], follow=False)
    results = FromTable(dsn)
    assert results.results("2026-11-01", "2026-11-30") == []  # no run yet: no table
    results.close()
    gone = FromTable(f"postgresql://nobody@127.0.0.1:{postgres.port}/nowhere")
    with pytest.raises(Unreadable, match="tollgate_reconciliation cannot be read"):
        Invoice(gone, audit).metrics()


@contextmanager
def serving(views: Views) -> Iterator[tuple[str, Console]]:
    console = Console(views.source, views, "127.0.0.1", 0, TOKEN)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{console.port}", console
    finally:
        console.stop()
        thread.join(timeout=5)


def fetch(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_the_server_answers_the_invoice_and_the_metrics_by_role(tmp_path: Path, postgres) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with serving(files_views(tmp_path)) as (base, console):
        status, kind, body = fetch(f"{base}/metrics", bearer)
        assert (status, kind.split(";")[0]) == (200, "text/plain")
        assert b'tollgate_spend_coverage_ratio{provider="openai"} 0.5' in body
        status, kind, body = fetch(f"{base}/api/invoice?since=2026-11-20&format=csv&part=around", bearer)
        assert status == 200 and b"key_x,laptop,proj_side" in body
        assert fetch(f"{base}/metrics", {})[0] == 401
        for viewer, invoice, metrics in ((ALICE, 403, 403), (LEAD, 200, 403), (SECURITY, 200, 200)):
            cookie = {"Cookie": f"tollgate_session={console.open_session(viewer)}"}
            assert fetch(f"{base}/api/invoice", cookie)[0] == invoice, viewer
            assert fetch(f"{base}/metrics", cookie)[0] == metrics, viewer
        assert fetch(f"{base}/api/invoice?part=all", bearer)[0] == 400
    audit = AuditFiles([], follow=False)
    gone = FromTable(f"postgresql://nobody@127.0.0.1:{postgres.port}/nowhere")
    with serving(Views(audit, rules=RULES, invoice=Invoice(gone, audit))) as (base, _):
        for path in ("/api/invoice", "/metrics"):
            status, _, body = fetch(base + path, bearer)
            assert status == 503 and b"unavailable" in body and b"nobody@" not in body, path


@given(st.decimals(allow_nan=False, allow_infinity=False), st.booleans())
def test_any_amount_written_as_a_json_number_or_text_is_shown_as_the_same_decimal(
    amount: Decimal, quoted: bool
) -> None:
    written = f'"{amount}"' if quoted else str(amount)
    shown = text(decimal_of(exact_json(f'{{"cost_usd": {written}}}')["cost_usd"]))
    assert shown is not None and "E" not in shown.upper() and Decimal(shown) == amount
