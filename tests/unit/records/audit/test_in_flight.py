"""The calls in flight kept beside the audit file: a process killed outright leaves them to the
next process of its instance, which writes their records (`worker lost`); lines Tollgate did not
write are refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.common.audit_chain import Signer
from tollgate.records.audit import in_flight
from tollgate.records.audit.audit_verify import read_lines, verify
from tollgate.records.audit.auditlog import AuditLog
from tollgate.records.audit.in_flight import (
    InFlight,
    InstanceBusy,
    check_free,
    in_flight_secret,
    journal_path,
    secret_path,
)

SECRET = b"s" * 32


def record(request_id: str, **fields: object) -> dict:
    return {"event": "llm_call", "request_id": request_id, "status": None, "latency_ms": 1.5, "error": None, **fields}


def opened(path: str, secret: bytes = SECRET) -> InFlight:
    """As a process opens it at start, then takes it over once its started record is written."""
    journal = InFlight(path, secret)
    journal.take()
    return journal


def killed(journal: InFlight) -> None:
    """As a SIGKILL leaves it: the file as written, its lock let go."""
    os.close(journal._fd)


def test_calls_sent_and_not_recorded_are_lost_for_the_next_process(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl.in-flight.host")
    first = opened(path)
    assert first.lost == {} and first.refused == 0
    for i in "abc":
        first.began_records(i, [record(i, model="gpt-4o")])
    first.began_records("b", [record("b", model="claude")])  # a fallback's attempt replaces the first
    first.written(json.dumps(record("a")).encode() + b"\n")
    killed(first)
    second = opened(path)
    assert list(second.lost) == ["c", "b"] and second.refused == 0
    (b,) = second.lost["b"]
    assert (b["model"], b["status"], b["error"], b["latency_ms"]) == ("claude", None, "worker lost", None)
    # Taken over: the next process finds nothing of the first's.
    killed(second)
    assert InFlight(path, SECRET).lost == {}


def test_a_clean_end_keeps_only_the_last_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = opened(path)
    journal.began_records("a", [record("a")])
    chain = "ab" * 32
    journal.written(json.dumps(record("a")).encode()[:-1] + f', "chain":"{chain}"}}\n'.encode())
    journal.close()
    again = InFlight(path, SECRET)
    assert (again.lost, again.refused, again.last_chain) == ({}, 0, chain)
    key_line, chain_line = Path(path).read_bytes().splitlines()
    assert key_line == b'{"key":"%s"}' % in_flight.key_id(SECRET).encode() and chain.encode() in chain_line


def test_a_start_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    first = opened(path)
    first.began_records("a", [record("a")])
    killed(first)
    before = Path(path).read_bytes()
    InFlight(path, SECRET).close()  # opened, never taken: the start failed before its started record
    assert Path(path).read_bytes() == before
    assert list(InFlight(path, SECRET).lost) == ["a"]


def test_a_second_live_process_of_the_same_instance_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl.in-flight.gw-1")
    live = opened(path)
    live.began_records("a", [record("a")])
    with pytest.raises(InstanceBusy, match=r"^instance: another process of instance 'gw-1' is running"):
        InFlight(path, SECRET, "gw-1")
    audit = str(tmp_path / "audit.jsonl")
    assert path == journal_path(audit, "gw-1")
    with pytest.raises(InstanceBusy, match=r"^instance: another process of instance 'gw-1' is running"):
        check_free(audit, "gw-1")  # the check before start-up, which takes nothing
    check_free(audit, "gw-2")
    killed(live)
    check_free(audit, "gw-1")
    assert list(InFlight(path, SECRET).lost) == ["a"]


def test_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    first = opened(path)
    first.began_records("a", [record("a")])
    killed(first)
    with open(path, "ab") as f:
        f.write(b'{"sent": "b", "records": [{"ev')
    journal = InFlight(path, SECRET)
    assert list(journal.lost) == ["a"] and journal.refused == 0


def test_lines_tollgate_did_not_write_are_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    first = opened(path)
    first.began_records("real", [record("real")])
    killed(first)
    planted = [
        json.dumps({"sent": "planted", "records": [record("planted", client="mallory")]}),  # no MAC
        json.dumps({"sent": "forged", "records": [record("forged")], "mac": "0" * 64}, separators=(",", ":")),
        json.dumps({"ended": ["real"]}),  # would hide a lost call
    ]
    with open(path, "a") as f:
        f.write("\n".join(planted) + "\n")
    journal = InFlight(path, SECRET)
    assert list(journal.lost) == ["real"] and journal.refused == 3
    # Under another secret, the file naming none (as files did before they named their key): no line holds.
    other = in_flight.keyed_mac(b"t" * 32)
    unnamed = Path(path).read_bytes().partition(b"\n")[2]
    read = in_flight._unended(unnamed, other, b'{"key":"%s"}\n' % in_flight.key_id(b"t" * 32).encode())
    assert (read.lost, read.refused, read.other_key) == ({}, 4, 0)


def test_a_file_kept_under_another_key_is_not_read_and_its_lines_not_called_planted(tmp_path: Path) -> None:
    clean, lost = str(tmp_path / "clean"), str(tmp_path / "lost")
    journal = opened(clean)
    journal.began_records("a", [record("a")])
    journal.written(json.dumps(record("a")).encode()[:-1] + f', "chain":"{"ab" * 32}"}}\n'.encode())
    journal.close()
    journal = opened(lost)
    for i in "abc":
        journal.began_records(i, [record(i)])
    journal.written(json.dumps(record("b")).encode() + b"\n")
    killed(journal)
    other = b"t" * 32  # audit.signing_key added, changed or removed since
    after_clean, after_kill = InFlight(clean, other), InFlight(lost, other)
    assert (after_clean.lost, after_clean.refused, after_clean.other_key, after_clean.last_chain) == ({}, 0, 0, None)
    assert (after_kill.lost, after_kill.refused, after_kill.other_key, after_kill.last_chain) == ({}, 0, 2, None)
    after_kill.take()  # this process's own from now on, under its key
    killed(after_kill)
    taken = InFlight(lost, other)
    assert (taken.lost, taken.refused, taken.other_key) == ({}, 0, 0)


def test_a_changed_signing_key_is_no_planted_line_and_lost_calls_under_the_old_one_are_said(tmp_path: Path) -> None:
    audit_path = str(tmp_path / "audit.jsonl")
    keys = [Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())]
    for signer in [None, keys[0], keys[1], None]:  # added, changed, removed: each after a clean stop
        log = AuditLog(audit_path, instance="gw-1", signer=signer)
        log.begin({"event": "tollgate_started"})
        log.stop()
    assert "in_flight_refused" not in Path(audit_path).read_text()
    killed_log = AuditLog(audit_path, instance="gw-1")
    killed_log.begin({"event": "tollgate_started"})
    assert killed_log.in_flight is not None
    killed_log.in_flight.began_records("r-1", [record("r-1", client="alice")])
    killed(killed_log.in_flight)
    killed_log.in_flight = None
    killed_log.close()
    again = AuditLog(audit_path, instance="gw-1", signer=keys[0])
    again.begin({"event": "tollgate_started"})
    again.stop()
    written = [json.loads(line) for line in Path(audit_path).read_text().splitlines()]
    refusals = [r for r in written if r["event"] == "in_flight_refused"]
    assert [(r["lines"], r["other_key"]) for r in refusals] == [(0, 1)]
    assert [r for r in written if r.get("request_id") == "r-1"] == []


def test_the_secret_comes_from_the_signing_key_or_a_file_of_its_own(tmp_path: Path) -> None:
    audit = str(tmp_path / "audit.jsonl")
    made = in_flight_secret(audit, "gw-1", None)
    assert len(made) == 32 and in_flight_secret(audit, "gw-1", None) == made
    assert stat.S_IMODE(os.stat(secret_path(audit, "gw-1")).st_mode) == 0o600
    assert in_flight_secret(audit, "gw-2", None) != made
    key = Signer(Ed25519PrivateKey.generate()).raw_private()
    derived = in_flight_secret(audit, "gw-1", key)
    assert derived not in (made, in_flight_secret(audit, "gw-2", key)) and derived == in_flight_secret(
        audit, "gw-1", key
    )


def test_compaction_keeps_the_open_calls_and_the_last_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_flight, "COMPACT_AT", 2_000)
    path = str(tmp_path / "j")
    journal = opened(path)
    journal.began_records("open", [record("open")])
    chain = "cd" * 32
    journal.written(f'{{"event":"llm_call","chain":"{chain}"}}\n'.encode())
    for i in range(200):
        journal.began_records(f"c{i}", [record(f"c{i}")])
        journal.written(json.dumps(record(f"c{i}")).encode() + b"\n")
    assert Path(path).stat().st_size <= 2_000
    killed(journal)
    again = InFlight(path, SECRET)
    assert (list(again.lost), again.last_chain, again.refused) == (["open"], chain, 0)


def test_the_audit_writes_a_lost_call_after_its_started_record_and_ends_it_once_written(tmp_path: Path) -> None:
    audit_path = str(tmp_path / "audit.jsonl")
    secret = in_flight_secret(audit_path, "host/w1", None)
    before = opened(journal_path(audit_path, "host/w1"), secret)
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
    left = InFlight(journal_path(audit_path, "host/w1"), secret)  # every call recorded; the last chain kept
    assert (left.lost, left.refused, left.last_chain) == ({}, 0, lines[-1]["chain"])


def test_a_planted_line_is_refused_at_start_and_said(tmp_path: Path) -> None:
    audit_path = str(tmp_path / "audit.jsonl")
    key = Ed25519PrivateKey.generate()
    first = AuditLog(audit_path, instance="gw-1", signer=Signer(key))
    first.begin({"event": "tollgate_started"})
    first.stop()
    planted = {"sent": "planted-1", "records": [record("planted-1", client="mallory", findings={"x": 1})]}
    with open(journal_path(audit_path, "gw-1"), "a") as f:
        f.write(json.dumps(planted) + "\n")
    again = AuditLog(audit_path, instance="gw-1", signer=Signer(key))
    again.begin({"event": "tollgate_started"})
    again.stop()
    text = Path(audit_path).read_text()
    assert "mallory" not in text and "planted-1" not in text
    refusals = [r for r in map(json.loads, text.splitlines()) if r["event"] == "in_flight_refused"]
    assert [(r["instance"], r["lines"], r["file"]) for r in refusals] == [("gw-1", 1, journal_path(audit_path, "gw-1"))]
    verdict = verify(read_lines([audit_path]), key.public_key())
    assert verdict.faults == [] and verdict.summary.runs == 2


def test_a_run_after_the_file_was_rotated_names_the_last_chain_of_the_rotated_file(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    first = AuditLog(str(audit_path), instance="gw-1")
    first.begin({"event": "tollgate_started"})
    first.write(record("a"))
    first.stop()
    last = json.loads(audit_path.read_text().splitlines()[-1])["chain"]
    audit_path.rename(tmp_path / "audit.jsonl.1")  # logrotate, between two runs
    again = AuditLog(str(audit_path), instance="gw-1")
    again.begin({"event": "tollgate_started"})
    again.stop()
    assert json.loads(audit_path.read_text().splitlines()[0])["previous_chain"] == last
    assert verify(read_lines([str(tmp_path / "audit.jsonl.1"), str(audit_path)])).faults == []
    alone = [str(f) for f in verify(read_lines([str(audit_path)])).faults]
    assert alone == [
        f"{audit_path}:1: previous_chain names a record of gw-1 that the files do not hold: its records before"
        " this run are missing (give every file since the instance began)"
    ]


def test_instances_are_files_of_their_own(tmp_path: Path) -> None:
    assert journal_path("/var/log/audit.jsonl", "node-1/w2") == "/var/log/audit.jsonl.in-flight.node-1_w2"
    assert journal_path("a", "../x") == "a.in-flight..._x"


def test_after_a_reload_to_another_file_the_calls_in_flight_go_on_there(tmp_path: Path) -> None:
    before = opened(str(tmp_path / "old"))
    before.began_records("a", [record("a")])
    before.began_records("b", [record("b")])
    after = opened(str(tmp_path / "new"))
    after.take_over(before)
    before.written(json.dumps(record("a"), separators=(",", ":")).encode() + b"\n")  # the old writer's last
    before.close()
    assert InFlight(str(tmp_path / "old"), SECRET).lost == {}  # nothing left in flight there
    killed(after)
    assert list(InFlight(str(tmp_path / "new"), SECRET).lost) == ["b"]


def test_a_lost_calls_record_has_every_field_of_a_calls_record_and_what_was_known_when_sent() -> None:
    from tests.unit.records.telemetry.test_metrics import call

    from tollgate.governance.limits.limits import Estimate, Reserved
    from tollgate.records.audit.audit_record import RECORD_FIELDS, audit_record, lost_record, sent_record

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


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_byte_changed_in_a_line_refuses_that_line(data: st.DataObject) -> None:
    journal = InFlight.__new__(InFlight)
    journal._mac = in_flight.keyed_mac(SECRET)
    lines = [
        journal._signed({"sent": "a", "records": [record("a", client="alice")]}),
        journal._signed({"sent": "b", "call": {"request_id": "b", "client": "bob"}}),
        journal._signed({"ended": ["a"], "chain": "ab" * 32}),
    ]
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    line = bytearray(lines[i])
    j = data.draw(st.integers(0, len(line) - 2), label="byte")  # not its newline
    line[j] = data.draw(st.integers(0, 255).filter(lambda b: b not in (line[j], 10)), label="value")
    lines[i] = bytes(line)
    key_line = b'{"key":"%s"}\n' % in_flight.key_id(SECRET).encode()
    read = in_flight._unended(key_line + b"".join(lines), journal._mac, key_line)
    lost, refused = read.lost, read.refused
    assert (refused, read.other_key) == (1, 0)
    # Whole, "a" ended and "b" lost; a line refused is as if it were not there.
    assert set(lost) == [{"b"}, set(), {"a", "b"}][i]


def test_what_is_kept_in_flight_is_bounded_as_the_audit_bounds_it(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl.in-flight.host")
    first = opened(path)
    first.began("a", {"request_id": "a", "model": "m" * 2_200_000, "started": 1.0})
    first.began_records("b", [record("b", tool="t" * 1_000_000, deny_reasons=["no"] * 50)])
    killed(first)
    assert os.path.getsize(path) < 4096
    second = opened(path)
    (a,) = second.lost["a"]
    (b,) = second.lost["b"]
    assert (a["model"], b["tool"], b["deny_reasons"]) == ("m" * 255 + "…", "t" * 255 + "…", ["no"] * 32 + ["… 18 more"])
