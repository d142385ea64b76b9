"""`tollgate inventory`: who reached which AI service, summed exactly from audit files (rotated and
compressed ones too), as a table and as JSON."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.cli.main import main
from tollgate.records.reports.inventory import Seen, audit_seen, seen_of, tally, with_rotations


def call(ts: str, client: str | None, provider: str | None, decision: str = "allow", **more: Any) -> dict[str, Any]:
    return {
        "event": "llm_call", "instance": "gw-1", "ts": ts, "client": client, "provider": provider,
        "requested_provider": provider, "host": "api.openai.com", "decision": decision, "status": 200,
        "input_tokens": 10, "output_tokens": 3, "seq": 2, "chain": "0" * 64, **more,
    }  # fmt: skip


def connection(
    ts: str,
    client: str | None,
    host: str,
    service: str | None,
    category: str | None,
    decision: str = "allow",
    sent: int = 0,
    received: int = 0,
) -> dict[str, Any]:
    return {
        "event": "connection", "instance": "gw-1", "ts": ts, "request_id": "ab" * 16, "client": client,
        "auth": None, "source": "127.0.0.1:50000", "host": host, "port": 443, "address": "127.0.0.1",
        "service": service, "category": category, "decision": decision,
        "deny_reasons": [] if decision == "allow" else ["egress.deny: *.paste.example"], "bytes_sent": sent,
        "bytes_received": received, "duration_ms": 12.5, "error": None, "seq": 3, "chain": "0" * 64,
    }  # fmt: skip


def lines(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


RECORDS = (
    {"event": "tollgate_started", "instance": "gw-1", "ts": "2026-11-22T08:00:00.000Z", "seq": 1, "chain": "0" * 64},
    call("2026-11-22T08:30:00.123Z", "alice", "openai"),
    call("2026-11-22T09:00:00.000Z", "alice", "openai"),
    call("2026-11-22T09:10:00.000Z", "alice", "openai", "deny", deny_reasons=["content_denied"]),
    call("2026-11-22T09:15:00.000Z", "bob", "anthropic"),
    connection("2026-11-22T08:45:00.500Z", "alice", "chatgpt.com", "chatgpt", "ai_chat", sent=1200, received=56000),
    connection("2026-11-22T10:00:00.000Z", "alice", "chatgpt.com", "chatgpt", "ai_chat", sent=800, received=4000),
    connection("2026-11-22T10:05:00.000Z", "alice", "chat.deepseek.com", "deepseek", "ai_chat", "deny"),
    connection("2026-11-22T10:06:00.000Z", None, "cursor.sh", "cursor", "ai_coding", sent=10, received=20),
    connection("2026-11-22T10:07:00.000Z", "bob", "paste.example", None, None, "deny"),
    connection("2026-11-22T10:08:00.000Z", "bob", "pypi.org", None, None, sent=5, received=7),
    {"event": "mcp_call", "ts": "2026-11-22T10:09:00.000Z", "client": "bob", "decision": "allow"},
)


# The columns of `tollgate inventory --json`, in its order.
COLUMNS = (
    "client",
    "service",
    "category",
    "calls",
    "connections",
    "refused",
    "bytes_sent",
    "bytes_received",
    "first_seen",
    "last_seen",
)


def rows(text: str) -> list[dict[str, Any]]:
    parsed = json.loads(text)
    assert isinstance(parsed, list)
    return parsed


def test_each_client_and_service_summed_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(lines(*RECORDS))
    assert main(["inventory", str(audit), "--json"]) == 0
    expected = [
        ("alice", "chatgpt", "ai_chat", 0, 2, 0, 2000, 60000, "2026-11-22T08:45:00.500Z", "2026-11-22T10:00:00.000Z"),
        ("alice", "deepseek", "ai_chat", 0, 0, 1, 0, 0, "2026-11-22T10:05:00.000Z", "2026-11-22T10:05:00.000Z"),
        ("alice", "openai", "ai_api", 2, 0, 1, 0, 0, "2026-11-22T08:30:00.123Z", "2026-11-22T09:10:00.000Z"),
        ("bob", "anthropic", "ai_api", 1, 0, 0, 0, 0, "2026-11-22T09:15:00.000Z", "2026-11-22T09:15:00.000Z"),
        ("bob", "paste.example", None, 0, 0, 1, 0, 0, "2026-11-22T10:07:00.000Z", "2026-11-22T10:07:00.000Z"),
        (None, "cursor", "ai_coding", 0, 1, 0, 10, 20, "2026-11-22T10:06:00.000Z", "2026-11-22T10:06:00.000Z"),
    ]
    assert rows(capsys.readouterr().out) == [dict(zip(COLUMNS, row, strict=True)) for row in expected]


def test_the_table_says_what_it_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(lines(*RECORDS) + b"{not json\n")
    assert main(["inventory", str(audit)]) == 0
    out, err = capsys.readouterr()
    table = out.splitlines()
    assert table[0].split() == [
        "client", "service", "category", "calls", "connections", "refused", "sent", "received", "first_seen",
        "last_seen",
    ]  # fmt: skip
    assert table[2].split() == [
        "alice", "chatgpt", "ai_chat", "0", "2", "0", "2000", "60000", "2026-11-22T08:45:00.500Z",
        "2026-11-22T10:00:00.000Z",
    ]  # fmt: skip
    assert table[6].split()[:3] == ["bob", "paste.example", "-"]
    assert table[7].split()[:2] == ["(anonymous)", "cursor"]
    assert "every record" in out
    assert "1 connection let through to hosts of no AI service not shown" in out
    assert "1 malformed record skipped" in out
    assert f"{audit}:13: not JSON" in err


def test_since_leaves_out_what_came_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(lines(*RECORDS))
    assert main(["inventory", str(audit), "--since", "2026-11-22T09:30", "--json"]) == 0
    found = {(r["client"], r["service"]): (r["calls"], r["connections"], r["refused"], r["bytes_sent"])
             for r in rows(capsys.readouterr().out)}  # fmt: skip
    assert found == {
        ("alice", "chatgpt"): (0, 1, 0, 800),
        ("alice", "deepseek"): (0, 0, 1, 0),
        ("bob", "paste.example"): (0, 0, 1, 0),
        (None, "cursor"): (0, 1, 0, 10),
    }


def test_rotated_and_compressed_files_beside_the_configured_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    Path("tollgate.yaml").write_text("audit: {path: logs/audit.jsonl}\n")
    first, second, third = (call(f"2026-11-2{d}T08:00:00.000Z", "alice", "openai") for d in (1, 2, 3))
    with gzip.open("logs/audit.jsonl.2.gz", "wb") as f:
        f.write(lines(first))
    Path("logs/audit.jsonl.1").write_bytes(lines(second))
    Path("logs/audit.jsonl").write_bytes(lines(third))
    Path("logs/audit.jsonl.in-flight.gw-1").write_text("not an audit file")
    assert [p.name for p in with_rotations(Path("logs/audit.jsonl"))] == [
        "audit.jsonl.2.gz", "audit.jsonl.1", "audit.jsonl"
    ]  # fmt: skip
    assert main(["inventory", "--json"]) == 0
    (row,) = rows(capsys.readouterr().out)
    assert (row["calls"], row["first_seen"], row["last_seen"]) == (
        3, "2026-11-21T08:00:00.000Z", "2026-11-23T08:00:00.000Z"
    )  # fmt: skip


def test_files_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", str(tmp_path / "gone.jsonl")]) == 1
    assert "gone.jsonl: cannot read" in capsys.readouterr().err
    cut = tmp_path / "audit.jsonl.1.gz"
    cut.write_bytes(gzip.compress(lines(*RECORDS))[:-30])
    assert main(["inventory", str(cut)]) == 1
    assert "audit.jsonl.1.gz: cannot read: compressed, and cut short" in capsys.readouterr().err
    assert main(["inventory", str(cut), "--since", "yesterday"]) == 2


def test_records_that_say_something_else_are_skipped_by_line() -> None:
    bad = [
        call("2026-11-22T08:30:00Z", "alice", "openai", "maybe"),
        connection("noon", "alice", "chatgpt.com", "chatgpt", "ai_chat"),
        connection("2026-11-22T08:30:00Z", "alice", "chatgpt.com", "chatgpt", "ai_chat", sent=-1),
    ]
    found = list(audit_seen(lines(*bad).splitlines(), "a.jsonl"))
    assert [str(m) for m in found] == [
        "a.jsonl:1: decision: 'maybe' is neither allow nor deny",
        "a.jsonl:2: ts: 'noon' is not an ISO 8601 time",
        "a.jsonl:3: bytes_sent: -1 is not a count",
    ]


def test_a_call_refused_before_routing_is_named_by_the_provider_asked_for() -> None:
    record = call("2026-11-22T08:30:00Z", None, None, "deny", requested_provider="gemini")
    seen = seen_of(record)
    assert seen is not None
    inventory = tally([seen])
    assert [(r.client, r.service, r.refused, r.calls) for r in inventory.rows] == [(None, "gemini", 1, 0)]


def test_a_providers_host_without_a_call_counts_under_the_provider() -> None:
    # A CONNECT to api.openai.com whose TLS handshake failed, or on which no request came: its
    # record names no catalogued service, and yet the host is the provider's.
    records = [
        call("2026-11-22T08:30:00Z", "alice", "openai"),
        connection("2026-11-22T08:40:00Z", "alice", "api.openai.com", None, None, sent=300, received=40),
        connection("2026-11-22T08:41:00Z", "bob", "eu.api.openai.com", None, None, "deny"),
        connection("2026-11-22T08:42:00Z", "bob", "pypi.org", None, None),
    ]
    seen = [s for r in records if (s := seen_of(r)) is not None]
    inventory = tally(seen)
    assert [(r.client, r.service, r.category, r.calls, r.connections, r.refused) for r in inventory.rows] == [
        ("alice", "openai", "ai_api", 1, 1, 0),
        ("bob", "openai", "ai_api", 0, 0, 1),
    ]
    assert inventory.elsewhere == 1


_SEEN = st.builds(
    Seen,
    ts=st.floats(min_value=0, max_value=2e9),
    client=st.sampled_from([None, "alice", "bob"]),
    service=st.sampled_from([None, "chatgpt", "openai"]),
    category=st.sampled_from([None, "ai_chat"]),
    kind=st.sampled_from(["call", "connection"]),
    refused=st.booleans(),
    bytes_sent=st.integers(0, 10**9),
    bytes_received=st.integers(0, 10**9),
)


@settings(max_examples=200, deadline=None)
@given(seen=st.lists(_SEEN, max_size=30), since=st.floats(min_value=0, max_value=2e9))
@pytest.mark.slow
def test_every_record_since_counts_once_in_one_row(seen: list[Seen], since: float) -> None:
    inventory = tally(seen, since)
    counted = [s for s in seen if s.ts >= since]
    named = [s for s in counted if s.service is not None]
    assert sum(r.calls + r.connections + r.refused for r in inventory.rows) == len(named)
    assert inventory.elsewhere == len(counted) - len(named)
    assert sum(r.bytes_sent for r in inventory.rows) == sum(s.bytes_sent for s in named)
    assert sum(r.refused for r in inventory.rows) == sum(s.refused for s in named)
    for row in inventory.rows:
        mine = [s for s in named if (s.client, s.service) == (row.client, row.service)]
        assert (row.first_seen, row.last_seen) == (min(s.ts for s in mine), max(s.ts for s in mine))
    assert len({(r.client, r.service) for r in inventory.rows}) == len(inventory.rows)
