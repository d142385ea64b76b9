"""The console's Audit view with `audit.anchor`: each instance's last anchor and its gaps, a file
rewritten and signed again after it was anchored shown as a fault, a checkpoint with no anchor in
time as one; on files built here whose checkpoints a real TSA time-stamped (tests/support/tsa.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.tsa import Tsa, tsa_fixture
from tests.unit.anchored_audit import HOUR, Writer, rewritten

from tollgate.console.follow import AuditFiles
from tollgate.records.audit.anchor_verify import AnchorRules, load_rules
from tollgate.records.audit.audit_record import utc_timestamp

tsa = tsa_fixture("tsa", listening=False)


def state(paths: list[Path], rules: AnchorRules | None, remember: Path | None = None) -> list[dict[str, Any]]:
    audit = AuditFiles(paths, follow=False, anchors=rules, remember=remember)
    audit.catch_up()
    while audit.verify_pending():
        pass
    rows = audit.state()
    audit.close()
    return rows


def anchored(tsa: Tsa, now: float) -> Writer:
    w = Writer(tsa)
    w.start(now - 20)
    w.calls(now - 20, 2)
    checkpoint = w.checkpoint(now - 19)  # line 4
    w.gap(now - 18, checkpoint, "the TSA answered 503")  # line 5
    w.anchor(now - 17, checkpoint)  # line 6
    w.calls(now, 2)
    return w


def test_the_audit_view_shows_the_last_anchor_and_the_gaps(tsa: Tsa, tmp_path: Path) -> None:
    now = time.time()
    w = anchored(tsa, now)
    path = w.write(tmp_path / "audit.jsonl")
    [row] = state([path], load_rules(tsa.ca_file))
    assert (row["state"], row["faults"], row["anchor_gaps"]) == ("whole", [], 1)
    assert row["anchor"] == {
        "seq": 3, "record": f"{path}:3", "tsa": [tsa.url], "gen_time": w.records[5]["gen_time"], "after": 5,
        "gaps": 1, "last_gap": {"tsa": tsa.url, "error": "the TSA answered 503", "place": f"{path}:5"}, "missed": "",
    }  # fmt: skip
    [row] = state([path], None)  # no audit.anchor: not checked
    assert (row["state"], row["anchor"], row["anchor_gaps"]) == ("whole", None, None)


def test_a_file_rewritten_and_signed_again_after_anchoring_is_a_fault(tsa: Tsa, tmp_path: Path) -> None:
    w = anchored(tsa, time.time())
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in rewritten(w.records, {1: {"input_tokens": 1}})))
    [row] = state([path], load_rules(tsa.ca_file))
    assert row["state"] == "fault"
    assert [f.split(" at ")[0] for f in row["faults"]] == [f"{path}:6: rewritten: {tsa.url} time-stamped another chain"]
    assert row["anchor"]["seq"] is None  # the anchor that does not check anchors nothing
    [row] = state([path], None)
    assert (row["state"], row["faults"]) == ("whole", [])  # the chain and the signatures hold


def test_records_with_no_anchor_in_time_are_a_fault_as_things_stand(tsa: Tsa, tmp_path: Path) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 2 * HOUR)
    w.checkpoint(now - 2 * HOUR)  # line 2: never anchored
    w.calls(now, 1)
    path = w.write(tmp_path / "audit.jsonl")
    [row] = state([path], load_rules(tsa.ca_file))
    assert row["state"] == "fault"
    assert row["faults"] == [
        f"{path}:1: not anchored in time: this record of gw-1 (seq 1, ended {utc_timestamp(now - 2 * HOUR)}) is"
        " covered by no token whose gen_time is within 3600 s of its end; no anchor_gap record explains it (its"
        " anchors removed, re-timed, or never asked for)"
    ]
    [row] = state([path], load_rules(tsa.ca_file, 3 * HOUR))
    assert (row["state"], row["anchor"]["after"], row["anchor"]["seq"]) == ("whole", 3, None)


def test_the_anchors_checked_are_remembered_across_a_restart(tsa: Tsa, tmp_path: Path) -> None:
    now = time.time()
    w = anchored(tsa, now)
    path, remember = w.write(tmp_path / "audit.jsonl"), tmp_path / "audit.jsonl.console-index"
    rules = load_rules(tsa.ca_file)
    [first] = state([path], rules, remember)
    w.anchor(now, w.checkpoint(now))
    w.write(path)
    [again] = state([path], rules, remember)
    assert (again["anchor"]["seq"], again["anchor"]["after"], again["anchor"]["gaps"]) == (8, 2, 1)
    assert first["anchor"]["seq"] == 3
    # Other roots: checked afresh with them; the TSA's tokens do not check against another CA.
    [other] = state([path], load_rules(tsa.foreign_ca_file), remember)
    assert other["state"] == "fault" and other["anchor"]["seq"] is None
