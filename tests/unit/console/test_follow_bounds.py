"""The console never goes blind: a line longer than what it reads at once is listed as `malformed`
(file, offset, length) and the console goes on following the file, before and after a restart; a
record claiming to be that marker is malformed itself."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from tests.unit.console.test_console import RECORDS, call, chained, write

from tollgate.console import follow
from tollgate.console.follow import AuditFiles
from tollgate.console.views import Views

CHUNK = 64 << 10  # what the console reads at once, made small: the lines stay small too


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "CHUNK", CHUNK)


def chained_as(instance: str, records: list[dict]) -> bytes:
    """`chained`'s lines, of another instance."""
    from tollgate.common.audit_chain import ZERO, chain_of

    lines, chain = [], ZERO
    for seq, record in enumerate(records, 1):
        content = json.dumps({**record, "instance": instance, "seq": seq})[:-1]
        chain = chain_of(chain, content.encode())
        lines.append(f'{content},"chain":"{chain}"}}\n'.encode())
    return b"".join(lines)


def long_line(size: int) -> bytes:
    return b'{"event": "llm_call", "model": "' + b"m" * size + b'"}\n'


def events(audit: AuditFiles) -> list[dict]:
    return Views(audit).answer("/api/events", {})["events"]


def checked(audit: AuditFiles) -> list[tuple[str, list[str]]]:
    for _ in range(100):
        if not audit.verify_pending():
            break
    return [(f["state"], f["faults"]) for f in audit.state()]


def test_a_line_longer_than_a_read_is_malformed_and_the_records_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = chained([{**RECORDS[0], "previous_chain": None}, *RECORDS[1:3]]).splitlines(keepends=True)
    big = long_line(3 * CHUNK)
    path.write_bytes(b"".join(lines[:2]) + big + lines[2])
    audit = AuditFiles([path])
    audit.catch_up()
    shown = events(audit)
    offset = len(lines[0]) + len(lines[1])
    assert [e["event"] for e in shown] == ["tollgate_started", "llm_call", "malformed", "llm_call"]
    assert shown[2] == {"event": "malformed", "file": str(path), "offset": offset, "length": len(big)}
    assert audit.index.malformed == 1
    assert [p["calls"] for p in Views(audit).answer("/api/people", {})] == [2]
    # The chain is checked past it: a fault there, never "whole", never "checking" for good.
    assert checked(audit) == [("fault", [f"{path}:3: a line of {len(big)} bytes, longer than the console reads at"
                                          f" once ({CHUNK}): not read, changed or inserted"])]  # fmt: skip
    write(path, [call("2026-11-07T08:00:00.000Z", "dan")])
    audit.catch_up()
    assert events(audit)[-1]["client"] == "dan"


def test_a_long_line_being_written_is_waited_for_then_read_past(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, RECORDS[:2])
    big = long_line(5 * CHUNK)
    with path.open("ab") as f:
        f.write(big[: 2 * CHUNK])  # its writer has not ended it yet
    audit = AuditFiles([path])
    audit.catch_up()
    assert len(audit.index) == 2
    with path.open("ab") as f:
        f.write(big[2 * CHUNK : 4 * CHUNK])
    audit.catch_up()
    assert len(audit.index) == 2 and audit.files[0].long_scan is not None  # looked through, not again
    with path.open("ab") as f:
        f.write(big[4 * CHUNK :])
    write(path, [call("2026-11-07T08:00:00.000Z", "dan")])
    audit.catch_up()
    shown = events(audit)
    assert [e["event"] for e in shown] == ["tollgate_started", "llm_call", "malformed", "llm_call"]
    assert (shown[2]["length"], shown[3]["client"]) == (len(big), "dan")
    # The live stream serves the marker, not the line.
    assert json.loads(audit.line(2)) == shown[2]


def test_a_restart_lists_the_long_line_from_the_saved_index(tmp_path: Path) -> None:
    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    write(path, RECORDS[:2])
    big = long_line(2 * CHUNK)
    with path.open("ab") as f:
        f.write(big)
    write(path, RECORDS[2:3])
    first = AuditFiles([path], remember=remember)
    first.catch_up()
    first.save()
    first.close()
    write(path, [call("2026-11-07T08:00:00.000Z", "dan")])
    restarted = AuditFiles([path], remember=remember)
    restarted.catch_up()
    assert restarted.saved_records == 4
    shown = events(restarted)
    assert [e["event"] for e in shown] == ["tollgate_started", "llm_call", "malformed", "llm_call", "llm_call"]
    assert shown[2]["length"] == len(big)
    restarted.close()


def test_a_long_line_in_a_compressed_rotation_is_malformed_too(tmp_path: Path) -> None:
    rotated, live = tmp_path / "audit.jsonl.2.gz", tmp_path / "audit.jsonl"
    big = long_line(3 * CHUNK)
    plain = (
        b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:2]) + big + json.dumps(RECORDS[2]).encode() + b"\n"
    )
    rotated.write_bytes(gzip.compress(plain))
    write(live, [call("2026-11-07T08:00:00.000Z", "dan")])
    audit = AuditFiles([rotated, live])
    audit.catch_up()
    shown = events(audit)
    assert [e["event"] for e in shown] == ["tollgate_started", "llm_call", "malformed", "llm_call", "llm_call"]
    assert (shown[2]["offset"], shown[2]["length"]) == (plain.index(big), len(big))


def test_a_record_claiming_to_be_the_marker_is_malformed_itself(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    forged = {**call("2026-11-06T08:00:00.000Z", "mallory", cost_usd=99.0), "event": "malformed",
              "file": "/elsewhere", "offset": 0, "length": 1}  # fmt: skip
    write(path, [*RECORDS[:2], forged])
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    lines = path.read_bytes().splitlines(keepends=True)
    offset, length = len(lines[0]) + len(lines[1]), len(lines[2])
    assert events(audit)[2] == {"event": "malformed", "file": str(path), "offset": offset, "length": length}
    assert audit.index.malformed == 1
    assert [p["client"] for p in Views(audit).answer("/api/people", {})] == ["alice"]


def test_a_file_truncated_in_place_and_grown_past_its_old_size_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, RECORDS[:3])
    audit = AuditFiles([path])
    audit.catch_up()
    assert len(audit.index) == 3
    # logrotate's copytruncate, and more written before the console looks again than was there.
    path.write_bytes(b"")
    later = [call(f"2026-11-07T08:{i:02d}:00.000Z", "dan") for i in range(6)]
    write(path, later)
    assert path.stat().st_size > audit.files[0].position
    audit.catch_up()
    shown = events(audit)
    assert [e.get("client") for e in shown[3:]] == ["dan"] * 6
    assert audit.index.malformed == 0
    write(path, [call("2026-11-07T09:00:00.000Z", "erin")])
    audit.catch_up()
    assert [e.get("client") for e in events(audit)[3:]] == ["dan"] * 6 + ["erin"]


def test_a_file_truncated_in_place_has_its_chain_checked_anew(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = chained([{**RECORDS[0], "previous_chain": None}, *RECORDS[1:]]).splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))
    audit = AuditFiles([path])
    audit.catch_up()
    assert checked(audit) == [("whole", [])]
    path.write_bytes(b"".join(lines[2:]))  # the rest of the run, in the file truncated in place
    audit.catch_up()
    assert checked(audit) == [("whole", [])]
    assert audit.files[0].checked == path.stat().st_size


def test_records_after_a_fault_of_the_chain_are_unverified_in_every_view(tmp_path: Path) -> None:
    rotated, live = tmp_path / "audit.jsonl.1", tmp_path / "audit.jsonl"
    records = [{**RECORDS[0], "previous_chain": None}, call("2026-11-01T08:00:00.000Z", "alice"),
               call("2026-11-01T09:00:00.000Z", "mallory", findings={"pii.email": 1}),
               call("2026-11-01T10:00:00.000Z", "alice", decision="deny", refusal="policy_denied",
                    deny_reasons=["no"])]  # fmt: skip
    forged = chained(records).replace(b'"client": "mallory"', b'"client": "bob"')  # changed after it was written
    rotated.write_bytes(forged)
    # The next file, its chain whole: another instance's run.
    another = chained_as("gw-2", [{**RECORDS[0], "previous_chain": None}, call("2026-11-02T08:00:00.000Z", "carol")])
    live.write_bytes(another)
    audit = AuditFiles([rotated, live], follow=False)
    audit.catch_up()
    while audit.verify_pending():
        pass
    views = Views(audit)
    assert audit.unverified() == [range(2, 4)]
    marks = [(e.get("client"), e.get("unverified", False)) for e in views.answer("/api/events", {})["events"]]
    assert marks == [(None, False), ("alice", False), ("bob", True), ("alice", True), (None, False), ("carol", False)]
    people = {p["client"]: p.get("unverified", False) for p in views.answer("/api/people", {})}
    assert people == {"alice": True, "bob": True, "carol": False}
    spend = {(s["bucket"][:10], s["key"]): s.get("unverified", False)
             for s in views.answer("/api/spend", {"by": ["client"]})}  # fmt: skip
    assert spend == {("2026-11-01", "alice"): True, ("2026-11-01", "bob"): True, ("2026-11-02", "carol"): False}
    assert [r.get("unverified") for r in views.answer("/api/refusals", {})] == [True]
    assert [r.get("unverified") for r in views.answer("/api/findings", {})] == [True]


def test_the_live_stream_sends_markers_and_unverified_records_as_the_api_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = chained([{**RECORDS[0], "previous_chain": None}, *RECORDS[1:3]]).splitlines(keepends=True)
    forged = json.dumps({"event": "malformed", "file": "/elsewhere", "offset": 0, "length": 1}).encode() + b"\n"
    big = long_line(2 * CHUNK)
    path.write_bytes(lines[0] + lines[1] + big + forged + lines[2])
    audit = AuditFiles([path])
    audit.catch_up()
    while audit.verify_pending():
        pass
    views = Views(audit)
    newer, seen = views.newer(0, {})
    assert seen == 5
    sent = [json.loads(line) for line in newer]
    assert sent == [
        *(json.loads(line) for line in lines[:2]),
        {"event": "malformed", "file": str(path), "offset": len(lines[0] + lines[1]), "length": len(big),
         "unverified": True},
        {"event": "malformed", "file": str(path), "offset": len(lines[0] + lines[1] + big), "length": len(forged),
         "unverified": True},
        {**json.loads(lines[2]), "unverified": True},
    ]  # fmt: skip
    assert sent == views.answer("/api/events", {})["events"]
    assert views.newer(0, {})[0][0] == lines[0]  # a record before any fault: as written


def test_records_coming_after_a_fault_are_unverified_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = chained([{**RECORDS[0], "previous_chain": None}, *RECORDS[1:3]]).splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b'"cost_usd": 0.25', b'"cost_usd": 0.01') + lines[2])
    audit = AuditFiles([path])
    audit.catch_up()
    while audit.verify_pending():
        pass
    views = Views(audit)
    assert {p["client"]: p.get("unverified") for p in views.answer("/api/people", {})} == {"alice": True}
    write(path, [call("2026-11-08T08:00:00.000Z", "dave")])
    audit.catch_up()
    while audit.verify_pending():
        pass
    people = {p["client"]: p.get("unverified") for p in views.answer("/api/people", {})}
    assert people == {"alice": True, "dave": True}
    assert [p.get("unverified") for p in views.answer("/api/people", {"since": ["2026-11-08"]})] == [True]
    assert [s["key"] for s in views.answer("/api/spend", {"by": ["client"]}) if s.get("unverified")] == [
        "alice", "dave"
    ]  # fmt: skip
