"""The calls in flight kept beside the audit file: a process killed outright leaves them to the
next process of its instance, which writes their records (`worker lost`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tollgate.records import in_flight
from tollgate.records.auditlog import AuditLog
from tollgate.records.in_flight import InFlight, journal_path


def record(request_id: str, **fields: object) -> dict:
    return {"event": "llm_call", "request_id": request_id, "status": None, "latency_ms": 1.5, "error": None, **fields}


def killed(journal: InFlight) -> None:
    """As a SIGKILL leaves it: the file as written, its lock let go."""
    os.close(journal._fd)


def test_calls_sent_and_not_recorded_are_lost_for_the_next_process(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl.in-flight.host")
    first = InFlight(path)
    assert first.lost == {}
    for i in "abc":
        first.began_records(i, [record(i, model="gpt-4o")])
    first.began_records("b", [record("b", model="claude")])  # a fallback's attempt replaces the first
    first.written(json.dumps(record("a")).encode() + b"\n")
    killed(first)
    second = InFlight(path)
    assert list(second.lost) == ["c", "b"]
    (b,) = second.lost["b"]
    assert (b["model"], b["status"], b["error"], b["latency_ms"]) == ("claude", None, "worker lost", None)
    # Taken over: the next process finds nothing of the first's.
    killed(second)
    assert InFlight(path).lost == {}


def test_a_clean_end_leaves_no_file(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = InFlight(path)
    journal.began_records("a", [record("a")])
    journal.written(json.dumps(record("a")).encode() + b"\n")
    journal.close()
    assert not Path(path).exists()


def test_a_live_process_of_the_same_instance_keeps_its_calls(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    live = InFlight(path)
    live.began_records("a", [record("a")])
    other = InFlight(path)  # the lock is held: not taken for lost
    assert other.lost == {} and other.path == f"{path}.{os.getpid()}"
    killed(live)
    assert list(InFlight(path).lost) == ["a"]


def test_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(
        json.dumps({"sent": "a", "records": [record("a")]}).encode() + b"\n" + b'{"sent": "b", "records": [{"ev'
    )
    assert list(InFlight(str(path)).lost) == ["a"]


def test_compaction_keeps_the_open_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_flight, "COMPACT_AT", 2_000)
    path = str(tmp_path / "j")
    journal = InFlight(path)
    journal.began_records("open", [record("open")])
    for i in range(200):
        journal.began_records(f"c{i}", [record(f"c{i}")])
        journal.written(json.dumps(record(f"c{i}")).encode() + b"\n")
    assert Path(path).stat().st_size <= 2_000
    killed(journal)
    assert list(InFlight(path).lost) == ["open"]


def test_the_audit_writes_a_lost_call_after_its_started_record_and_ends_it_once_written(tmp_path: Path) -> None:
    audit_path = str(tmp_path / "audit.jsonl")
    before = InFlight(journal_path(audit_path, "host/w1"))
    before.began_records("lost-1", [record("lost-1", client="alice")])
    killed(before)

    audit = AuditLog(audit_path, instance="host/w1")
    audit.begin({"event": "tollgate_started"})
    assert audit.in_flight is not None and audit.in_flight.path == journal_path(audit_path, "host/w1")
    audit.in_flight.began_records("new-1", [record("new-1")])
    audit.write(record("new-1", status=200))
    audit.stop()
    lines = [json.loads(line) for line in Path(audit_path).read_text().splitlines()]
    assert [(r["event"], r.get("request_id"), r.get("error")) for r in lines] == [
        ("tollgate_started", None, None),
        ("llm_call", "lost-1", "worker lost"),
        ("llm_call", "new-1", None),
        ("tollgate_stopped", None, None),
        ("audit_checkpoint", None, None),
    ]
    assert lines[1]["seq"] == 2  # chained as every record
    assert lines[1]["instance"] == "host/w1" and lines[1]["client"] == "alice"
    assert not Path(journal_path(audit_path, "host/w1")).exists()  # every call recorded


def test_instances_are_files_of_their_own(tmp_path: Path) -> None:
    assert journal_path("/var/log/audit.jsonl", "node-1/w2") == "/var/log/audit.jsonl.in-flight.node-1_w2"
    assert journal_path("a", "../x") == "a.in-flight..._x"


def test_after_a_reload_to_another_file_the_calls_in_flight_go_on_there(tmp_path: Path) -> None:
    before = InFlight(str(tmp_path / "old"))
    before.began_records("a", [record("a")])
    before.began_records("b", [record("b")])
    after = InFlight(str(tmp_path / "new"))
    after.take_over(before)
    before.written(json.dumps(record("a"), separators=(",", ":")).encode() + b"\n")  # the old writer's last
    before.close()
    assert not (tmp_path / "old").exists()  # nothing left in flight there
    killed(after)
    assert list(InFlight(str(tmp_path / "new")).lost) == ["b"]


def test_a_lost_calls_record_has_every_field_of_a_calls_record_and_what_was_known_when_sent() -> None:
    from tests.unit.test_metrics import call

    from tollgate.governance.limits import Estimate, Reserved
    from tollgate.records.audit_record import RECORD_FIELDS, audit_record, lost_record, sent_record

    c = call(stream=True, provider="anthropic", model="claude-sonnet-4-5", groups=("research",))
    c.route.upstream, c.answer.upstream_key, c.verdict.decision = "https://api.anthropic.com", "sha256:ab12", "allow"
    c.ledger.reserved = Reserved(store=None, counters=(), estimate=Estimate(1, 4_096, None))  # type: ignore[arg-type]
    whole = audit_record(c)
    assert tuple(whole) == RECORD_FIELDS
    sent = json.loads(json.dumps(sent_record(c)))  # as the file keeps it
    lost = lost_record(sent, RECORD_FIELDS)
    assert tuple(lost) == (*RECORD_FIELDS, "reserved_tokens")
    known = (
        "ts",
        "request_id",
        "client",
        "groups",
        "provider",
        "model",
        "stream",
        "decision",
        "upstream",
        "upstream_key",
    )
    assert {k: lost[k] for k in known} == {k: whole[k] for k in known}
    assert (lost["status"], lost["latency_ms"], lost["error"], lost["reserved_tokens"]) == (
        None,
        None,
        "worker lost",
        4_096,
    )
