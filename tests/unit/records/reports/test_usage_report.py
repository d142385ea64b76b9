"""`tollgate usage`: the sums per key from audit files and from the ledger's call rows, exact to the
nano-dollar, and their three formats."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.cli import run_tollgate
from tests.support.examples import examples

from tollgate.cli.main import main
from tollgate.common.shown import usd_text
from tollgate.records.reports.usage_report import (
    KEYS,
    Report,
    ReportedCall,
    SkippedRecord,
    aggregate,
    audit_calls,
    call_of,
    iso_epoch,
    ledger_calls,
    parse_by,
    parse_since,
    table,
    to_csv,
    to_json,
)

ROOT = Path(__file__).resolve().parents[4]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()


def audit_record(**fields: Any) -> dict[str, Any]:
    """An audit record as Tollgate writes it, with the fields given changed."""
    record = {
        "event": "llm_call",
        "ts": "2026-11-22T08:30:00.123Z",
        "request_id": "3f9c0d6e2b7a4c1e9d8f7a6b5c4d3e2f",
        "client": "alice",
        "auth": "virtual_key",
        "groups": ["research"],
        "provider": "openai",
        "requested_provider": "openai",
        "endpoint": "chat.completions",
        "method": "POST",
        "model": "gpt-4o",
        "decision": "allow",
        "deny_reasons": [],
        "status": 200,
        "latency_ms": 912.4,
        "input_tokens": 21,
        "output_tokens": 7,
        "total_tokens": 28,
        "cached_tokens": 5,
        "reasoning_tokens": 2,
        "cache_write_tokens": None,
        "cost_usd": 0.000123,
        "error": None,
    }
    return record | fields


def lines(*records: dict[str, Any]) -> list[bytes]:
    return [json.dumps(r).encode() + b"\n" for r in records]


def calls_of(items: Iterator[ReportedCall | SkippedRecord]) -> list[ReportedCall]:
    items = list(items)
    assert not [i for i in items if isinstance(i, SkippedRecord)]
    return [i for i in items if isinstance(i, ReportedCall)]


def call(**fields: Any) -> ReportedCall:
    """A call as the report reads one from a ledger row (ts in epoch seconds)."""
    record = audit_record(**fields)
    if isinstance(record["ts"], str):
        record["ts"] = iso_epoch(record["ts"])
    return call_of(record)


# ---- --since and --by


@pytest.mark.parametrize(
    ("text", "seconds_back"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 7 * 86400), ("1.5h", 5400), (" 2d ", 2 * 86400)],
)
def test_since_as_a_span_back_from_now(text: str, seconds_back: float) -> None:
    assert parse_since(text, NOW) == NOW - seconds_back


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),  # no offset: UTC, not local time
        ("2026-11-01T08:00:30.5Z", datetime(2026, 11, 1, 8, 0, 30, 500000, tzinfo=UTC)),
        ("2026-11-01T10:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_since_as_an_iso_date_or_datetime_in_utc(text: str, moment: datetime, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert parse_since(text, NOW) == moment.timestamp()


@pytest.mark.parametrize(
    "text", ["", "7", "7w", "-7d", "0d", "0s", "d", "7 d", "2026-13-01", "2026-02-30", "yesterday"]
)
def test_a_bad_since_is_an_error_that_says_what_is_wanted(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(text, NOW)


def test_by_keys_in_order_each_once() -> None:
    assert parse_by("client,model") == ("client", "model")
    assert parse_by(" model , client,model,") == ("model", "client")
    assert parse_by(",".join(KEYS)) == KEYS


@pytest.mark.parametrize(
    ("text", "message"), [("client,modle", "unknown key 'modle'"), ("", "name one or more"), (",", "name one or more")]
)
def test_bad_by_keys_are_an_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_by(text)


# ---- reading audit files and ledger rows


def test_audit_ts_in_epoch_seconds() -> None:
    (read,) = calls_of(audit_calls(lines(audit_record(ts="2026-11-22T08:30:00.123Z")), "audit.jsonl"))
    assert read.ts == datetime(2026, 11, 22, 8, 30, 0, 123000, tzinfo=UTC).timestamp()


def test_only_llm_call_records_and_malformed_lines_named_by_file_and_line() -> None:
    source = [
        *lines(audit_record(client="a")),
        b"\n",  # a blank line is nothing, not a fault
        b'{"event": "llm_call", "ts": "2026-11-22T08:30:00Z", "client": \n',
        b"[1, 2]\n",
        *lines({"event": "tollgate_started", "ts": "2026-11-22T08:30:00Z"}),  # not a call: not counted
        *lines(audit_record(ts="yesterday")),
        *lines(audit_record(ts=None)),
        *lines(audit_record(input_tokens=-1)),
        *lines(audit_record(output_tokens="7")),
        *lines(audit_record(cached_tokens=1.5)),
        *lines(audit_record(status=True)),
        *lines(audit_record(groups="research")),
        *lines(audit_record(client=7)),
        *lines(audit_record(cost_usd="0.1")),
        *lines(audit_record(cost_usd=-0.1)),
        b"\xff\xfe not utf-8\n",
        *lines(audit_record(client="b")),
    ]
    items = list(audit_calls(source, "logs/audit.jsonl"))
    malformed = [str(i) for i in items if isinstance(i, SkippedRecord)]
    assert [i.client for i in items if isinstance(i, ReportedCall)] == ["a", "b"]
    assert [m.split(": ")[0] for m in malformed] == [f"logs/audit.jsonl:{n}" for n in (3, 4, *range(6, 17))]
    assert malformed[0].startswith("logs/audit.jsonl:3: not JSON (")
    assert malformed[1:] == [
        "logs/audit.jsonl:4: not a JSON object",
        "logs/audit.jsonl:6: ts: 'yesterday' is not an ISO 8601 time",
        "logs/audit.jsonl:7: ts: None is not an ISO 8601 time",
        "logs/audit.jsonl:8: input_tokens: -1 is not a count",
        "logs/audit.jsonl:9: output_tokens: '7' is not a count",
        "logs/audit.jsonl:10: cached_tokens: 1.5 is not a count",
        "logs/audit.jsonl:11: status: True is not a count",
        "logs/audit.jsonl:12: groups: 'research' is not a list of names",
        "logs/audit.jsonl:13: client: 7 is not a string",
        "logs/audit.jsonl:14: cost_usd: '0.1' is not an amount",
        "logs/audit.jsonl:15: cost_usd: -0.1 is not an amount",
        malformed[-1],
    ]
    assert malformed[-1].startswith("logs/audit.jsonl:16: not JSON (")


def test_an_audit_without_the_ledgers_fields_reads_them_as_unknown() -> None:
    # Records written before costs were kept: no cost_usd, no cache_write_tokens.
    old = audit_record()
    del old["cost_usd"], old["cache_write_tokens"]
    (read,) = calls_of(audit_calls(lines(old), "old.jsonl"))
    assert (read.cost_usd, read.cache_write_tokens) == (None, 0)
    assert aggregate([read], ["client"]).total.unpriced == 1


def test_ledger_rows_read_as_audit_records_are() -> None:
    row = {k: v for k, v in audit_record(cost_usd=0.1).items() if k != "event"} | {"ts": NOW}
    items = list(ledger_calls([row, row | {"total_tokens": -5}, row | {"cost_usd": float("nan")}]))
    assert items[0] == call(ts=NOW, cost_usd=0.1)
    assert items[0].cost_usd == Decimal("0.1")  # str(0.1), not the float's binary value
    assert [str(i) for i in items[1:]] == [
        "ledger row 2: total_tokens: -5 is not a count",
        "ledger row 3: cost_usd: nan is not an amount",
    ]


def test_a_ledger_row_with_nano_dollars_is_read_exactly() -> None:
    row = {k: v for k, v in audit_record().items() if k != "cost_usd"} | {"ts": NOW, "cost_nanousd": 123_456_789_012}
    (read,) = calls_of(ledger_calls([row]))
    assert read.cost_usd == Decimal("123.456789012")


# ---- the sums


def test_money_is_summed_exactly_where_floats_drift() -> None:
    tenth = lines(*[audit_record(cost_usd=0.1)] * 1000)
    nano = lines(*[audit_record(cost_usd=0.000000001)] * 1000)
    third = lines(*[audit_record(cost_usd=0.333333333)] * 3)
    accumulated = 0.0
    for _ in range(1000):
        accumulated += 0.1  # what a float accumulation would report (sum() compensates since 3.12)
    assert accumulated != 100
    for source, exact in ((tenth, "100"), (nano, "0.000001"), (third, "0.999999999")):
        total = aggregate(calls_of(audit_calls(source, "a")), ["client"]).total
        assert total.cost_usd == Decimal(exact)
    big = aggregate([call(cost_usd=123456789.123456789)] * 10, ["model"])  # more digits than a float has
    assert big.total.cost_usd == Decimal(str(123456789.123456789)) * 10


def test_tokens_are_summed_exactly() -> None:
    calls = [
        call(input_tokens=2**40, output_tokens=3, total_tokens=2**40 + 3, cached_tokens=1, cache_write_tokens=7),
        call(input_tokens=5, output_tokens=None, total_tokens=5, cached_tokens=None, cache_write_tokens=None),
    ]
    total = aggregate(calls, ["client"]).total
    assert (total.requests, total.input_tokens, total.output_tokens, total.total_tokens) == (2, 2**40 + 5, 3, 2**40 + 8)
    assert (total.cached_tokens, total.cache_write_tokens) == (1, 7)


def test_unpriced_counts_calls_with_tokens_but_no_cost() -> None:
    calls = [
        call(cost_usd=None),  # used tokens, price unknown: unpriced
        call(cost_usd=None, input_tokens=None, output_tokens=None, total_tokens=None),  # refused: no tokens, no cost
        call(cost_usd=None, input_tokens=0, output_tokens=0, total_tokens=0),
        call(cost_usd=None, input_tokens=None, output_tokens=None, total_tokens=9),  # a provider's total only
        call(cost_usd=0),  # priced at nothing (a free model): priced
        call(cost_usd=0.5, model="gpt-4o-mini"),
    ]
    report = aggregate(calls, ["model"])
    assert (report.total.unpriced, report.total.cost_usd, report.total.requests) == (2, Decimal("0.5"), 6)
    assert [(key, s.unpriced) for key, s in report.rows] == [(("gpt-4o-mini",), 0), (("gpt-4o",), 2)]


# One call per line: the values each key gives it.
GROUPED = [
    call(client="alice", groups=["a", "b"], provider="gemini", requested_provider="openai", model="gemini-2.0-flash",
         endpoint="chat.completions", ts="2026-10-31T23:59:59.999Z", status=200, decision="allow", cost_usd=0.25),
    call(client="bob", groups=["b"], provider="openai", requested_provider="openai", model="gpt-4o",
         endpoint="responses", ts="2026-11-01T00:00:00.000Z", status=403, decision="deny", cost_usd=None,
         input_tokens=None, output_tokens=None, total_tokens=None),
    call(client=None, groups=[], provider="openai", requested_provider="openai", model="gpt-4o",
         endpoint="chat.completions", ts="2026-11-01T10:00:00.000Z", status=200, decision="allow", cost_usd=0.5),
    call(client="alice", groups=["b", "b"], provider="anthropic", requested_provider="anthropic", model=None,
         endpoint="messages", ts="2026-11-02T00:00:00.000Z", status=None, decision="allow", cost_usd=0.25),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("client", [("alice", 2, "0.5"), (None, 1, "0.5"), ("bob", 1, "0")]),  # a tie: most requests first
        ("group", [("b", 3, "0.5"), (None, 1, "0.5"), ("a", 1, "0.25")]),  # alice's first call in a and b
        ("provider", [("openai", 2, "0.5"), ("anthropic", 1, "0.25"), ("gemini", 1, "0.25")]),
        ("requested_provider", [("openai", 3, "0.75"), ("anthropic", 1, "0.25")]),
        ("model", [("gpt-4o", 2, "0.5"), ("gemini-2.0-flash", 1, "0.25"), (None, 1, "0.25")]),
        ("endpoint", [("chat.completions", 2, "0.75"), ("messages", 1, "0.25"), ("responses", 1, "0")]),
        ("day", [("2026-11-01", 2, "0.5"), ("2026-10-31", 1, "0.25"), ("2026-11-02", 1, "0.25")]),  # UTC days
        ("month", [("2026-11", 3, "0.75"), ("2026-10", 1, "0.25")]),
        ("status", [(200, 2, "0.75"), (None, 1, "0.25"), (403, 1, "0")]),
        ("decision", [("allow", 3, "1"), ("deny", 1, "0")]),
    ],
)
def test_grouping_by_each_key_costliest_first(key: str, expected: list[tuple[Any, int, str]]) -> None:
    report = aggregate(GROUPED, [key])
    assert [(k, s.requests, s.cost_usd) for (k,), s in report.rows] == [(v, n, Decimal(c)) for v, n, c in expected]
    assert (report.total.requests, report.total.cost_usd) == (4, Decimal(1))


def test_a_call_in_several_groups_counts_in_each_and_once_in_the_total() -> None:
    report = aggregate(GROUPED, ["client", "group"])
    assert {k: s.requests for k, s in report.rows} == {
        ("alice", "a"): 1,
        ("alice", "b"): 2,  # its last call names b twice: once
        ("bob", "b"): 1,
        (None, None): 1,
    }
    assert sum(s.requests for _, s in report.rows) == 5
    assert report.total.requests == 4


def test_calls_before_since_are_left_out() -> None:
    since = iso_epoch("2026-11-01T00:00:00.000Z")
    report = aggregate(GROUPED, ["day"], since)
    assert [k for (k,), _ in report.rows] == ["2026-11-01", "2026-11-02"]  # the boundary's own call counts
    assert report.total.requests == 3


names = st.sampled_from(["a", "b", "c"])
money = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)
tokens = st.none() | st.integers(min_value=0, max_value=10**9)
calls_strategy = st.lists(
    st.builds(
        ReportedCall,
        ts=st.floats(min_value=1.7e9, max_value=1.9e9),
        client=st.none() | names,
        groups=st.lists(names, max_size=3).map(tuple),
        provider=st.sampled_from(["openai", "gemini"]),
        requested_provider=st.sampled_from(["openai", "gemini"]),
        model=st.none() | names,
        endpoint=st.none() | names,
        status=st.none() | st.sampled_from([200, 429]),
        decision=st.sampled_from(["allow", "deny"]),
        input_tokens=tokens.map(lambda n: n or 0),
        output_tokens=tokens.map(lambda n: n or 0),
        total_tokens=tokens.map(lambda n: n or 0),
        cached_tokens=tokens.map(lambda n: n or 0),
        cache_write_tokens=tokens.map(lambda n: n or 0),
        cost_usd=st.none() | money,
    ),
    max_size=30,
)


@settings(max_examples=examples(100))  # hypothesis's own default, halved in the quick loop
@given(calls_strategy, st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
@pytest.mark.slow
def test_the_total_is_the_same_whatever_the_grouping(calls: list[ReportedCall], by: list[str]) -> None:
    grouped = aggregate(calls, by)
    assert grouped.total == aggregate(calls, ["client"]).total
    assert grouped.total.cost_usd == sum((c.cost_usd for c in calls if c.cost_usd is not None), Decimal(0))
    assert grouped.total.input_tokens == sum(c.input_tokens for c in calls)
    assert grouped.total.requests == len(calls)
    # Without `group` each call is in one row: the rows add up to the total. With it, to each call
    # once per group it is in.
    copies = [max(1, len(set(c.groups))) if "group" in by else 1 for c in calls]
    assert sum(s.requests for _, s in grouped.rows) == sum(copies)
    assert sum(s.cost_usd for _, s in grouped.rows) == sum(
        (c.cost_usd * n for c, n in zip(calls, copies, strict=True) if c.cost_usd is not None), Decimal(0)
    )
    costs = [(s.cost_usd, s.requests) for _, s in grouped.rows]
    assert costs == sorted(costs, reverse=True)


# ---- output


@pytest.mark.parametrize(
    ("amount", "text"),
    [("0", "0.00"), ("0E-9", "0.00"), ("1E+2", "100.00"), ("0.1", "0.10"), ("0.000000001", "0.000000001"),
     ("12.340", "12.34"), ("100.000123000", "100.000123"), ("8.035e-05", "0.00008035"), ("3.15E-6", "0.00000315")],
)  # fmt: skip
def test_amounts_in_cents_and_every_digit_beyond(amount: str, text: str) -> None:
    assert usd_text(Decimal(amount)) == text
    assert usd_text(float(amount)) == text  # a float (the audit's, the console's sums) as the decimal written


SMALL = [
    *lines(
        audit_record(client="alice", groups=["research", "ops"], model="gpt-4o", cost_usd=0.1,
                     input_tokens=21, output_tokens=7, total_tokens=28, cached_tokens=5),
        audit_record(client="bob", groups=[], provider="anthropic", model="claude-sonnet-4-5", cost_usd=None,
                     input_tokens=100, output_tokens=50, total_tokens=150, cached_tokens=0, cache_write_tokens=10),
        audit_record(client="alice", groups=["research", "ops"], model="gpt-4o", cost_usd=0.000000001,
                     input_tokens=1, output_tokens=1, total_tokens=2, cached_tokens=0),
        audit_record(client=None, groups=[], model="gpt-4o", decision="deny", status=403, cost_usd=None,
                     input_tokens=None, output_tokens=None, total_tokens=None, cached_tokens=None),
    ),
]  # fmt: skip


def small_report(by: list[str]) -> Report:
    return aggregate(calls_of(audit_calls(SMALL, "a")), by, iso_epoch("2026-11-01T00:00:00Z"))


def test_table() -> None:
    assert table(small_report(["client", "model"]), malformed=2) == (
        "client       model              requests  input  output  total  cached  cache_write     cost_usd  unpriced\n"
        "----------------------------------------------------------------------------------------------------------\n"
        "alice        gpt-4o                    2     22       8     30       5            0  0.100000001         0\n"
        "bob          claude-sonnet-4-5         1    100      50    150       0           10         0.00         1\n"
        "(anonymous)  gpt-4o                    1      0       0      0       0            0         0.00         0\n"
        "----------------------------------------------------------------------------------------------------------\n"
        "(total)                                4    122      58    180       5           10  0.100000001         1\n"
        "\n"
        "calls since 2026-11-01T00:00:00.000Z\n"
        "1 call used tokens but had no known price (unpriced): its cost is not in cost_usd\n"
        "2 malformed records skipped (see standard error)\n"
    )


def test_table_by_group_says_how_calls_in_several_groups_count() -> None:
    assert table(small_report(["group"])) == (
        "group     requests  input  output  total  cached  cache_write     cost_usd  unpriced\n"
        "------------------------------------------------------------------------------------\n"
        "ops              2     22       8     30       5            0  0.100000001         0\n"
        "research         2     22       8     30       5            0  0.100000001         0\n"
        "-                2    100      50    150       0           10         0.00         1\n"
        "------------------------------------------------------------------------------------\n"
        "(total)          4    122      58    180       5           10  0.100000001         1\n"
        "\n"
        "calls since 2026-11-01T00:00:00.000Z\n"
        "a call in several groups counts in each group's row; the total counts it once\n"
        "1 call used tokens but had no known price (unpriced): its cost is not in cost_usd\n"
    )


def test_json() -> None:
    text = to_json(small_report(["client", "model"]), malformed=1)
    assert text == (
        "{\n"
        '  "since": "2026-11-01T00:00:00.000Z",\n'
        '  "by": ["client", "model"],\n'
        '  "rows": [\n'
        '    {"client": "alice", "model": "gpt-4o", "requests": 2, "input_tokens": 22, "output_tokens": 8, "total_tokens": 30, "cached_tokens": 5, "cache_write_tokens": 0, "cost_usd": 0.100000001, "unpriced": 0},\n'
        '    {"client": "bob", "model": "claude-sonnet-4-5", "requests": 1, "input_tokens": 100, "output_tokens": 50, "total_tokens": 150, "cached_tokens": 0, "cache_write_tokens": 10, "cost_usd": 0.00, "unpriced": 1},\n'
        '    {"client": null, "model": "gpt-4o", "requests": 1, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cached_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.00, "unpriced": 0}\n'
        "  ],\n"
        '  "total": {"requests": 4, "input_tokens": 122, "output_tokens": 58, "total_tokens": 180, "cached_tokens": 5, "cache_write_tokens": 10, "cost_usd": 0.100000001, "unpriced": 1},\n'
        '  "malformed": 1\n'
        "}\n"
    )
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["total"]["cost_usd"] == Decimal("0.100000001")


def test_json_with_no_calls() -> None:
    parsed = json.loads(to_json(aggregate([], ["client"])))
    assert parsed == {
        "since": None,
        "by": ["client"],
        "rows": [],
        "total": dict.fromkeys(
            ["requests", "input_tokens", "output_tokens", "total_tokens", "cached_tokens", "cache_write_tokens",
             "cost_usd", "unpriced"], 0),
        "malformed": 0,
    }  # fmt: skip


def test_csv() -> None:
    assert to_csv(small_report(["client", "model"])) == (
        "client,model,requests,input_tokens,output_tokens,total_tokens,cached_tokens,cache_write_tokens,cost_usd,unpriced\n"
        "alice,gpt-4o,2,22,8,30,5,0,0.100000001,0\n"
        "bob,claude-sonnet-4-5,1,100,50,150,0,10,0.00,1\n"
        "(anonymous),gpt-4o,1,0,0,0,0,0,0.00,0\n"
        "(total),,4,122,58,180,5,10,0.100000001,1\n"
    )


# ---- the command


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(SMALL[:2]) + b"{broken\n" + b"".join(SMALL[2:]))
    return path


@pytest.mark.slow
def test_the_command_from_an_audit_file(audit_file: Path) -> None:
    done = run_tollgate("usage", "--from-audit", str(audit_file), "--since", "2026-11-01", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout == to_json(small_report(["client", "model"]), malformed=1)
    assert done.stderr.startswith(f"warning: {audit_file}:3: not JSON (")
    assert done.stderr.endswith("; skipped\n")


def test_the_command_sums_several_files_and_writes_csv(audit_file: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "audit.jsonl.1"
    other.write_bytes(b"".join(lines(audit_record(client="carol", cost_usd=2))))
    code = main(["usage", "--from-audit", str(audit_file), str(other), "--since", "2026-11-01", "--format", "csv"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[1] == "carol,gpt-4o,1,21,7,28,5,0,2.00,0"
    assert out.splitlines()[-1] == "(total),,5,143,65,208,10,10,2.100000001,1"
    # The count of malformed lines is no CSV row: standard error says it.
    assert err.splitlines()[-1] == "warning: 1 malformed record skipped in all"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--by", "client,tenant"], "error: --by: unknown key 'tenant'; the keys are client, group,"),
        (["--since", "last week"], "error: --since 'last week': neither a span"),
        (["--since=-1d"], "error: --since '-1d': neither a span"),
    ],
)
def test_bad_arguments_exit_with_status_2(audit_file: Path, capsys, arguments: list[str], message: str) -> None:
    assert main(["usage", "--from-audit", str(audit_file), *arguments]) == 2
    out, err = capsys.readouterr()
    assert (out, err.startswith(message)) == ("", True), err


def test_an_unreadable_audit_file_exits_with_status_1(tmp_path: Path, capsys) -> None:
    assert main(["usage", "--from-audit", str(tmp_path / "gone.jsonl")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'gone.jsonl'}: cannot read: No such file or directory\n"


class StandInStore:
    """A stand-in for the ledger store of issue #21's part B, which is not what these tests test:
    only `calls(since)` and `aclose()`, the two the report uses, over rows given to it."""

    def __init__(self, url: str, rows: list[dict[str, Any]], fail: bool = False) -> None:
        self.url, self.rows, self.fail = url, rows, fail
        self.asked_since: float | None = None
        self.closed = False

    def calls(self, since: float) -> Iterator[dict[str, Any]]:
        self.asked_since = since
        if self.fail:
            raise StandInStoreError(f"ledger {self.url}: cannot read the call rows: connection refused")
        return iter([r for r in self.rows if r["ts"] >= since])

    async def aclose(self) -> None:
        self.closed = True


class StandInStoreError(Exception):
    pass


@pytest.fixture
def ledger(monkeypatch, tmp_path: Path) -> list[StandInStore]:
    """`tollgate.ledger` replaced by a stand-in whose stores hold SMALL's calls as ledger rows."""
    rows = []
    for line in SMALL:
        row = {k: v for k, v in json.loads(line).items() if k != "event"}
        rows.append(row | {"ts": iso_epoch(row["ts"])})
    opened: list[StandInStore] = []

    def open_store(url: str) -> StandInStore:
        opened.append(StandInStore(url, rows, fail=url.endswith("/down")))
        return opened[-1]

    stand_in = types.ModuleType("tollgate.ledger")
    stand_in.open_store = open_store
    stand_in.StoreError = StandInStoreError
    monkeypatch.setitem(sys.modules, "tollgate.ledger", stand_in)
    monkeypatch.chdir(tmp_path)
    return opened


def test_the_ledger_gives_what_the_audit_of_the_same_calls_gives(ledger, audit_file: Path, capsys) -> None:
    for form in ("table", "json", "csv"):
        assert main(["usage", "--store", "redis://ledger:6379/0", "--since", "2026-11-01", "--format", form]) == 0
        from_ledger = capsys.readouterr().out
        assert main(["usage", "--from-audit", str(audit_file), "--since", "2026-11-01", "--format", form]) == 0
        from_audit = capsys.readouterr().out
        assert from_ledger == from_audit.replace("1 malformed record skipped (see standard error)\n", "").replace(
            '"malformed": 1', '"malformed": 0'
        )
    assert [(s.url, s.asked_since, s.closed) for s in ledger] == [
        ("redis://ledger:6379/0", iso_epoch("2026-11-01T00:00:00Z"), True)
    ] * 3


def test_the_ledger_named_by_the_configuration(ledger, tmp_path: Path, capsys) -> None:
    Path("tollgate.yaml").write_text("ledger: {store: 'redis://here:6379/1'}\n")
    Path("other.yaml").write_text("ledger: {store: 'redis://there:6379/2'}\n")
    Path("data").mkdir()
    Path("data/ledger.sqlite").touch()
    Path("beside.yaml").write_text("audit: {path: data/audit.jsonl}\n")
    assert main(["usage"]) == 0  # ./tollgate.yaml
    assert main(["usage", "--config", "other.yaml"]) == 0
    assert main(["usage", "--config", "beside.yaml"]) == 0  # the default: a SQLite file beside the audit
    assert main(["usage", "--config", "other.yaml", "--store", "redis://given:6379/3"]) == 0
    assert [s.url for s in ledger] == [
        "redis://here:6379/1",
        "redis://there:6379/2",
        "sqlite:///data/ledger.sqlite",
        "redis://given:6379/3",
    ]
    assert ledger[0].asked_since == pytest.approx(datetime.now(UTC).timestamp() - 7 * 86400, abs=60)  # --since 7d


def test_a_ledger_that_cannot_be_read_exits_with_status_1(ledger, tmp_path: Path, capsys) -> None:
    assert main(["usage"]) == 1  # no tollgate.yaml: the built-in default, ./ledger.sqlite, is not there
    assert capsys.readouterr().err == (
        "error: no ledger at ledger.sqlite (Tollgate makes it when it runs; --store or --config name another)\n"
    )
    assert ledger == []  # not opened, which would have made an empty one
    assert main(["usage", "--store", "redis://ledger:6379/down"]) == 1
    assert (
        capsys.readouterr().err
        == "error: ledger redis://ledger:6379/down: cannot read the call rows: connection refused\n"
    )
    assert ledger[0].closed
    Path("bad.yaml").write_text("ledger: {store: 'mysql://x'}\n")
    assert main(["usage", "--config", "bad.yaml"]) == 1
    assert "bad.yaml: ledger.store: must be sqlite:///path or redis://host:port/db" in capsys.readouterr().err


# The audit file behind the examples in docs/limits.md's "Usage report".
DOCS_AUDIT = lines(
    audit_record(ts="2026-11-20T08:30:00.123Z", client="alice", groups=["research", "ops"], model="gpt-4o",
                 input_tokens=1200, output_tokens=340, total_tokens=1540, cached_tokens=1024, cost_usd=0.00518),
    audit_record(ts="2026-11-20T09:12:44.002Z", client="alice", groups=["research", "ops"], model="gpt-4o",
                 input_tokens=800, output_tokens=120, total_tokens=920, cached_tokens=0, cost_usd=0.0032),
    audit_record(ts="2026-11-21T14:02:10.555Z", client="etl", groups=["batch"], provider="anthropic",
                 requested_provider="anthropic", endpoint="messages", model="claude-sonnet-4-5", input_tokens=5200,
                 output_tokens=900, total_tokens=6100, cached_tokens=4000, cache_write_tokens=1000,
                 reasoning_tokens=None, cost_usd=0.02205),
    audit_record(ts="2026-11-21T15:40:00.000Z", client="etl", groups=["batch"], model="ft:gpt-4o-mini:acme",
                 input_tokens=300, output_tokens=80, total_tokens=380, cached_tokens=0, cost_usd=None),
    audit_record(ts="2026-11-22T07:00:00.000Z", client="alice", groups=["research", "ops"], model="gpt-4o",
                 decision="deny", status=403, input_tokens=None, output_tokens=None, total_tokens=None,
                 cached_tokens=None, reasoning_tokens=None, cost_usd=None),
)  # fmt: skip
_EXAMPLE = re.compile(r"```\n\$ tollgate (usage --from-audit audit\.jsonl .*?)\n(.*?)```", re.DOTALL)


def test_the_docs_examples_are_what_the_command_prints(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("audit.jsonl").write_bytes(b"".join(DOCS_AUDIT))
    examples = _EXAMPLE.findall((ROOT / "docs" / "limits.md").read_text(encoding="utf-8"))
    assert len(examples) == 4
    for command, printed in examples:
        assert main(command.split()) == 0
        assert capsys.readouterr().out == printed, command


def test_many_malformed_lines_are_named_up_to_a_limit_and_all_counted(tmp_path: Path, capsys) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(lines(audit_record())) + b"garbage\n" * 25)
    assert main(["usage", "--from-audit", str(path), "--since", "2026-11-01"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith(f"warning: {path}:2: not JSON (")
    assert err.splitlines()[19].startswith(f"warning: {path}:21: not JSON (")
    assert err.splitlines()[20:] == ["warning: 5 more malformed records skipped"]
    assert out.endswith("\n25 malformed records skipped (see standard error)\n")
