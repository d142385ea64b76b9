"""`tollgate audit verify --anchors`: files built here record by record, their checkpoints
time-stamped by a real TSA (OpenSSL's `openssl ts -reply`, tests/support/tsa.py)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from tests.support.tsa import Tsa, tsa_fixture
from tests.unit.anchored_audit import HOUR, KEY, Writer, anchored_file, every_half_hour, rewritten

from tollgate.cli.main import main
from tollgate.records.audit.anchor_verify import load_rules
from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.audit_verify import read_lines, verify
from tollgate.records.audit.verify_state import restored_verifier, saved_state

tsa = tsa_fixture("tsa", listening=False)  # its certificates and `openssl ts -reply`; asked directly, not over HTTP


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    status = main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def check_anchors(capsys: pytest.CaptureFixture[str], path: Path, tsa: Tsa, *more: str) -> tuple[int, list[str]]:
    """`--live --anchors` of `path`, with `tsa`'s certificates: the status and standard output."""
    status, out, _ = run_cli(capsys, str(path), "--live", "--anchors", str(tsa.ca_file), *more)
    return status, out


def not_in_time(path: Path, ended: float, up_to: int | str = "") -> str:
    """The start of the fault of gw-1's seq 1, which ended at `ended`, the records up to seq `up_to`
    with it: what comes after `may not be either;` says why (its gaps)."""
    return (
        f"{path}:1: not anchored in time: this record of gw-1 (seq 1, ended {utc_timestamp(ended)}) is covered by"
        f" no token whose gen_time is within 3600 s of its end; records after it, up to seq {up_to}"
    )


NO_GAP = " may not be either; no anchor_gap record explains it (its anchors removed, re-timed, or never asked for)"


def anchored(path: Path, seq: int, url: str, first: int = 1, line: int | None = None) -> str:
    """The start of the line that says gw-1's run from `path`:`first` is anchored to `seq` (at `line`)."""
    return f"anchored: gw-1 to seq {seq} of its run of {path}:{first} ({path}:{seq if line is None else line}), by {url} at "


def write_rewritten(
    path: Path, records: list[dict], change: dict[int, dict], tsa_anchor: bool = False, restamp: Tsa | None = None
) -> Path:
    """`path` holding `records` as `rewritten` rewrites them."""
    path.write_bytes(b"".join(line + b"\n" for line in rewritten(records, change, tsa_anchor, restamp=restamp)))
    return path


def test_an_anchored_file_says_to_which_record_by_which_tsa_and_when(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 10)
    w.calls(now - 10, 2)
    first = w.checkpoint(now - 9)
    w.anchor(now - 9, first)
    w.calls(now - 5, 2)
    second = w.checkpoint(now - 4)
    w.anchor(now - 4, second)
    w.calls(now, 3)
    path = w.write(tmp_path / "audit.jsonl")
    gen_time = w.records[8]["gen_time"]
    status, out, err = run_cli(capsys, str(path), "--live", "--anchors", str(tsa.ca_file))
    assert (status, err) == (0, [])
    assert out == [
        f"anchored: gw-1 to seq 7 of its run of {path}:1 ({path}:7), by {tsa.url} at {gen_time}; 5 records after it"
        " not anchored yet",
        "whole: 12 records, 1 instance, 1 run, 2 checkpoints, signatures not checked (no --key; 2 signed), 2 anchors"
        " verified",
        f"last record: {utc_timestamp(now)}; last signed checkpoint: -",
    ]
    assert (second["covers_seq"], first["covers_seq"]) == (7, 3)


def test_without_anchors_they_are_counted_not_checked(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now)
    w.anchor(now, w.checkpoint(now))
    path = w.write(tmp_path / "audit.jsonl")
    status, out, _ = run_cli(capsys, str(path), "--live")
    assert status == 0
    assert out[0] == (
        "whole: 3 records, 1 instance, 1 run, 1 checkpoint, signatures not checked (no --key; 1 signed), anchors"
        " not checked (no --anchors; 1 anchor)"
    )


def test_records_older_than_the_window_with_no_anchor_in_time_fail(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anchored two hours late: the token checks, but is not in time; no anchor_gap says why."""
    now = time.time()
    w = Writer(tsa)
    w.start(now - 2 * HOUR)
    w.calls(now - 2 * HOUR, 2)
    late = w.checkpoint(now - 2 * HOUR)  # line 4
    w.calls(now - 1.5 * HOUR, 1)
    w.checkpoint(now - 1.5 * HOUR)  # line 6
    w.calls(now, 1)
    w.anchor(now, late)  # line 8: in time for neither
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0] == not_in_time(path, now - 2 * HOUR, 5) + "," + NO_GAP
    assert out[1].startswith(anchored(path, 3, tsa.url))
    # A window of three hours takes the late token as in time for both.
    status, out = check_anchors(capsys, path, tsa, "--anchor-window", "10800")
    assert status == 0


def test_a_later_anchor_in_time_covers_the_checkpoints_before_it(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints every ten minutes, anchored every half hour: each within the window of the next anchor."""
    now = time.time()
    w = Writer(tsa)
    w.start(now - 0.9 * HOUR)
    w.calls(now - 0.9 * HOUR, 1)
    w.checkpoint(now - 0.9 * HOUR)
    w.calls(now - 0.8 * HOUR, 1)
    w.checkpoint(now - 0.8 * HOUR)
    w.calls(now - 0.05 * HOUR, 1)
    w.anchor(now, w.checkpoint(now - 0.05 * HOUR))
    w.calls(now, 1)
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert status == 0
    assert out[0].endswith("; 3 records after it not anchored yet")  # the checkpoint, its anchor, a call


def test_no_anchor_at_all_fails_once_the_window_has_passed(tsa: Tsa, tmp_path: Path) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 2 * HOUR)
    w.checkpoint(now - 2 * HOUR)
    w.calls(now, 1)
    rules = load_rules(tsa.ca_file)
    verdict = verify(read_lines([str(w.write(tmp_path / "a.jsonl"))]), live=True, anchors=rules)
    assert [str(f).split(": ")[:2] for f in verdict.faults] == [[f"{tmp_path / 'a.jsonl'}:1", "not anchored in time"]]
    assert verdict.anchored["gw-1"].run is None and verdict.anchored["gw-1"].after == 3
    # With a window of three hours: not anchored yet, no fault.
    verdict = verify(
        read_lines([str(w.write(tmp_path / "b.jsonl"))]), live=True, anchors=load_rules(tsa.ca_file, 3 * HOUR)
    )
    assert verdict.faults == []


def test_gaps_explain_a_missing_anchor_never_excuse_it(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 3 * HOUR)
    w.calls(now - 3 * HOUR, 1)
    old = w.checkpoint(now - 3 * HOUR)  # line 3
    w.gap(now - 3 * HOUR + 60, old)  # line 4
    w.gap(now - 3 * HOUR + 120, old, "the TSA answered 503")  # line 5
    w.calls(now - 10, 1)
    w.anchor(now, w.checkpoint(now - 10))  # line 7, 8
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0] == not_in_time(path, now - 3 * HOUR, 2) + (
        ", may not be either;"
        f" 2 anchor_gap records explain it, not excuse it (the first {path}:4: {tsa.url}: connection refused)"
    )
    assert out[2] == f"anchor gaps: gw-1: 2 anchor_gap records, the last at {path}:5 ({tsa.url}: the TSA answered 503)"


def test_gaps_then_an_anchor_in_time_is_whole_and_the_gaps_are_said(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 120)
    w.calls(now - 120, 1)
    checkpoint = w.checkpoint(now - 120)
    w.gap(now - 60, checkpoint)
    w.anchor(now, checkpoint)
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert status == 0
    assert out[0].endswith("; 3 records after it not anchored yet")  # the checkpoint, the gap, the anchor
    assert out[1] == f"anchor gaps: gw-1: 1 anchor_gap record, the last at {path}:4 ({tsa.url}: connection refused)"


def test_a_token_that_does_not_verify_fails(tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now)
    checkpoint = w.checkpoint(now)
    w.anchor(now, checkpoint)  # line 3
    tsa.mode = "foreign"  # signed by a TSA certificate of another CA
    try:
        w.anchor(now, checkpoint)  # line 4
    finally:
        tsa.mode = "ok"
    token = base64.b64decode(w.records[2]["token"])
    flipped = base64.b64encode(token[:-8] + bytes([token[-8] ^ 1]) + token[-7:]).decode()
    records = [*w.records, dict(w.records[2], token=flipped), dict(w.records[2], token="not base64!")]
    path = write_rewritten(tmp_path / "audit.jsonl", records, {})
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    ca = tsa.ca_file
    assert out[:3] == [
        f"{path}:4: the token of {tsa.url} does not verify: its signature and certificate chain, as of its gen_time,"
        f" do not check against {ca} (unable to get local issuer certificate)",
        f"{path}:5: the token of {tsa.url} does not verify: its signature and certificate chain, as of its gen_time,"
        f" do not check against {ca} (provider signature failure)",
        f"{path}:6: the token of {tsa.url} does not verify: its token is not base64",
    ]
    # The foreign CA's roots: the test TSA's own tokens are the ones that fail.
    status, out, _ = run_cli(capsys, str(path), "--live", "--anchors", str(tsa.foreign_ca_file))
    assert [line.split(": ", 1)[0] for line in out[:3]] == [f"{path}:3", f"{path}:5", f"{path}:6"]


def test_a_rewrite_signed_again_with_the_key_after_anchoring_is_refused(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = Writer(tsa)
    w.start(now - 20)
    w.calls(now - 20, 2)  # lines 2, 3
    w.anchor(now - 19, w.checkpoint(now - 19))  # lines 4, 5
    w.calls(now - 10, 2)
    w.anchor(now - 9, w.checkpoint(now - 9))  # lines 8, 9
    w.calls(now, 1)
    public = tmp_path / "audit-signing.pub.pem"
    public.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    original = w.write(tmp_path / "audit.jsonl")
    args = ("--live", "--key", str(public), "--anchors", str(tsa.ca_file))
    assert run_cli(capsys, str(original), *args)[0] == 0
    # A call's tokens changed, every chain computed again and every checkpoint signed again: whole
    # by the key, refused by the anchors it kept.
    path = write_rewritten(tmp_path / "rewritten.jsonl", w.records, {1: {"input_tokens": 1}})
    assert run_cli(capsys, str(path), "--live", "--key", str(public))[0] == 0
    status, out, _ = run_cli(capsys, str(path), *args)
    assert status == 1
    assert [line.split(" at ")[0] for line in out[:2]] == [
        f"{path}:5: rewritten: {tsa.url} time-stamped another chain",
        f"{path}:9: rewritten: {tsa.url} time-stamped another chain",
    ]
    assert out[0].endswith(
        "than its checkpoint's now (covering seq 3): the records up to there were changed after they were anchored"
    )
    # The anchors' covers_chain made the new one too: their tokens do not imprint it.
    write_rewritten(path, w.records, {1: {"input_tokens": 1}}, tsa_anchor=True)
    status, out, _ = run_cli(capsys, str(path), *args)
    assert status == 1
    assert out[:2] == [
        f"{path}:5: the token of {tsa.url} does not verify: its imprint is not the SHA-256 of its covers_chain",
        f"{path}:9: the token of {tsa.url} does not verify: its imprint is not the SHA-256 of its covers_chain",
    ]
    # Its gen_time told otherwise than its token says.
    changed = dict(w.records[4], gen_time=utc_timestamp(now - 3600))
    write_rewritten(path, [*w.records[:4], changed, *w.records[5:]], {})
    status, out, _ = run_cli(capsys, str(path), *args)
    assert (status, out[0]) == (1, f"{path}:5: its gen_time is not its token's ({w.records[4]['gen_time']}): changed")


def test_a_rewrite_with_its_anchors_removed_fails_once_the_window_has_passed(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    w = anchored_file(tsa, now)
    kept = [r for r in w.records if r["event"] != "audit_anchor"]
    path = write_rewritten(tmp_path / "audit.jsonl", kept, {1: {"input_tokens": 1}})
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0].startswith(f"{path}:1: not anchored in time: this record of gw-1 (seq 1, ")
    assert "; records after it, up to seq 6, may not be either;" in out[0]  # those more than an hour before the last
    assert out[1] == f"not anchored: gw-1: no token ({len(kept)} records not anchored yet)"


def test_a_stopped_runs_tail_is_not_anchored_and_no_fault(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint written at stop is never anchored: the run's tail, said, not a fault."""
    now = time.time()
    w = Writer(tsa)
    w.start(now - 40)
    w.calls(now - 40, 1)
    w.anchor(now - 40, w.checkpoint(now - 40))
    w.calls(now - 10, 2)
    w.stop(now)
    path = w.write(tmp_path / "audit.jsonl")
    status, out, _ = run_cli(capsys, str(path), "--anchors", str(tsa.ca_file))
    assert status == 0, out
    assert out[0].endswith("; 6 records after it not anchored yet")


def test_a_ca_file_that_cannot_be_read_is_a_clear_error(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = Writer(tsa).write(tmp_path / "audit.jsonl")
    gone = tmp_path / "gone.pem"
    assert run_cli(capsys, str(path), "--anchors", str(gone)) == (
        2, [], [f"error: --anchors: cannot read {gone}: No such file or directory"]
    )  # fmt: skip
    assert run_cli(capsys, str(path), "--anchors", str(path)) == (
        2, [], [f"error: --anchors: {path} holds no PEM certificate (the TSAs' root certificates, -----BEGIN CERTIFICATE-----)"]
    )  # fmt: skip
    assert run_cli(capsys, str(path), "--anchors", str(tsa.ca_file), "--anchor-window", "0") == (
        2, [], ["error: --anchor-window: must be more than 0 seconds, not 0"]
    )  # fmt: skip
    assert run_cli(capsys, str(path), "--anchor-window", "60") == (
        2, [], ["error: --anchor-window is the window of --anchors: give --anchors CA_FILE"]
    )  # fmt: skip


def test_the_anchors_state_is_saved_and_read_on(tsa: Tsa, tmp_path: Path) -> None:
    """The console keeps the verifier's state: its anchors read on after a restart as before."""
    now = time.time()
    w = anchored_file(tsa, now)
    rules = load_rules(tsa.ca_file)
    lines = list(read_lines([str(w.write(tmp_path / "audit.jsonl"))]))
    whole = verify(iter(lines), live=True, anchors=rules)
    half = len(lines) // 2
    from tollgate.records.audit.audit_verify import Verifier

    first = Verifier(None, True, rules)
    for place, line in lines[:half]:
        first.read(place, line)
    state = orjson.loads(orjson.dumps(saved_state(first, str)))
    again = restored_verifier(state, None, str, rules)
    for place, line in lines[half:]:
        again.read(place, line)
    kept = again.runs["gw-1"].anchors
    assert kept is not None
    assert (kept.last_seq, kept.anchors) == (whole.anchored["gw-1"].seq, 4)
    with pytest.raises(ValueError, match="other roots or another window"):
        restored_verifier(state, None, str, load_rules(tsa.ca_file, 60))
    with pytest.raises(ValueError, match="other roots or another window"):
        restored_verifier(state, None, str, None)


def test_two_tsas_each_checked_against_the_roots_of_both(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Tsa.start(tmp_path / "other", listening=False)
    try:
        now = time.time()
        w = Writer(tsa)
        w.start(now)
        checkpoint = w.checkpoint(now)
        w.anchor(now, checkpoint)  # line 3
        w.anchor(now, checkpoint, tsa=other)  # line 4
        path = w.write(tmp_path / "audit.jsonl")
        both = tmp_path / "tsa-roots.pem"
        both.write_bytes(tsa.ca_file.read_bytes() + other.ca_file.read_bytes())
        status, out, _ = run_cli(capsys, str(path), "--live", "--anchors", str(both))
        assert status == 0
        assert out[0] == (
            f"anchored: gw-1 to seq 1 of its run of {path}:1 ({path}:1), by {tsa.url} at {w.records[2]['gen_time']},"
            f" {other.url} at {w.records[3]['gen_time']}; 3 records after it not anchored yet"
        )
        # The roots of one: the other's token does not check.
        status, out = check_anchors(capsys, path, tsa)
        assert status == 1
        assert out[0].startswith(f"{path}:4: the token of {other.url} does not verify: its signature and certificate")
    finally:
        other.close()


def test_runs_each_judged_to_their_own_end_the_newest_to_the_files(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped hours ago, anchored late: its records need an anchor in time (its tail too, as
    the token is newer than its end); the instance is anchored up to its newest run's anchor."""
    now = time.time()
    w = Writer(tsa)
    w.start(now - 6 * HOUR)
    w.calls(now - 6 * HOUR, 1)
    w.anchor(now - 6 * HOUR, w.checkpoint(now - 6 * HOUR))  # anchored late: 6 hours
    w.calls(now - 4 * HOUR, 1)
    w.stop(now - 4 * HOUR)  # lines 5 to 7
    w.start(now - 60)  # line 8
    w.calls(now - 60, 1)
    w.anchor(now - 30, w.checkpoint(now - 30))
    w.calls(now, 1)
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0].startswith(f"{path}:1: not anchored in time: this record of gw-1 (seq 1, ")
    assert "; records after it, up to seq 5, may not be either;" in out[0]
    assert out[1] == (
        f"anchored: gw-1 to seq 2 of its run of {path}:8 ({path}:9), by {tsa.url} at {w.records[10]['gen_time']};"
        " 3 records after it not anchored yet"
    )
    assert len(out) == 2  # the fault and the anchored line; the summary on standard error
    # A window of seven hours: the first run's records are anchored in time.
    status, out = check_anchors(capsys, path, tsa, "--anchor-window", "25200")
    assert status == 0


def test_tokens_of_a_tsa_that_sends_its_chain_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its certificate, an intermediate CA's and the root's in each token, in the order the TSA
    sent them (not DER's): read as `openssl ts -verify` reads them, against the root alone."""
    chained = Tsa.start(tmp_path / "chained", listening=False, chain=True)
    other = Tsa.start(tmp_path / "other", listening=False)
    try:
        tokens_of_a_chain_checked(chained, other, tmp_path, capsys)
    finally:
        chained.close()
        other.close()


def tokens_of_a_chain_checked(chained: Tsa, other: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    w = Writer(chained)
    w.start(now - 10)
    w.calls(now - 10, 2)
    w.anchor(now - 9, w.checkpoint(now - 9))
    w.calls(now, 1)
    path = w.write(tmp_path / "audit.jsonl")
    status, out, err = run_cli(capsys, str(path), "--live", "--anchors", str(chained.ca_file))
    assert (status, err) == (0, [])
    assert out[0].startswith(anchored(path, 3, chained.url))
    assert out[1].endswith(", 1 anchor verified")
    # Against another TSA's root, it does not check: the chain it carries is not trusted for itself.
    status, out, _ = run_cli(capsys, str(path), "--live", "--anchors", str(other.ca_file))
    assert status == 1
    assert out[0].startswith(f"{path}:5: the token of {chained.url} does not verify: its signature and certificate")


def test_a_token_that_carries_no_certificate_does_not_verify(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TSA that sends none (its certificate not asked for): its signer cannot be checked."""
    now = time.time()
    w = Writer(tsa)
    w.start(now)
    tsa.mode = "no-certs"
    try:
        w.anchor(now, w.checkpoint(now))  # line 3
    finally:
        tsa.mode = "ok"
    path = w.write(tmp_path / "audit.jsonl")
    status, out = check_anchors(capsys, path, tsa)
    assert (status, out[0]) == (
        1, f"{path}:3: the token of {tsa.url} does not verify: it carries no certificate: its signer cannot be checked"
    )  # fmt: skip


# ---- an anchor holds the records it covers: a rewrite anchored afresh is refused


def three_hours(tsa: Tsa, now: float) -> Writer:
    """An instance's three hours: two calls and a checkpoint every half hour, each anchored (by the
    TSA now: the forger's files below keep none of them), then a call and a last checkpoint."""
    w = Writer(tsa)
    w.start(now - 3 * HOUR)
    every_half_hour(w, now - 3 * HOUR, 6, anchored_after=2)
    w.calls(now - 60, 1)
    w.checkpoint(now - 30)
    return w


def public_key(tmp_path: Path) -> Path:
    public = tmp_path / "audit-signing.pub.pem"
    public.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public


def test_a_call_rewritten_its_checkpoints_removed_and_the_last_anchored_afresh_is_refused(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key holder rewrites an old call, removes every checkpoint and anchor but the last,
    signs it again and has it time-stamped now: the key says whole; the anchor, made now, holds
    in time none of the records older than the window."""
    now = time.time()
    w = three_hours(tsa, now)
    template = next(r for r in w.records if r["event"] == "audit_anchor")
    kept = [r for r in w.records[:-1] if r["event"] not in ("audit_checkpoint", "audit_anchor")]
    forged = [*kept, w.records[-1], dict(template, ts=utc_timestamp(now))]
    path = write_rewritten(tmp_path / "audit.jsonl", forged, {1: {"input_tokens": 1}}, restamp=tsa)
    assert run_cli(capsys, str(path), "--live", "--key", str(public_key(tmp_path)))[0] == 0
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0] == not_in_time(path, now - 3 * HOUR, 14) + "," + NO_GAP
    assert out[1].startswith(anchored(path, 14, tsa.url))
    # The same file within the window of its anchor: whole (the fault is the records' age, nothing else).
    status, out = check_anchors(capsys, path, tsa, "--anchor-window", "11000")
    assert status == 0, out


def test_checkpoints_kept_but_re_timed_to_now_and_anchored_afresh_are_refused(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each checkpoint's ts moved to now and each anchored afresh: every checkpoint is in time
    with its anchor, the records they cover are not."""
    now = time.time()
    w = three_hours(tsa, now)
    moved = {i: {"ts": utc_timestamp(now)} for i, r in enumerate(w.records) if r["event"] == "audit_checkpoint"}
    change = moved | {1: {"input_tokens": 1}}  # a call rewritten too
    path = write_rewritten(tmp_path / "audit.jsonl", w.records, change, restamp=tsa)
    assert run_cli(capsys, str(path), "--live", "--key", str(public_key(tmp_path)))[0] == 0
    status, out = check_anchors(capsys, path, tsa)
    assert status == 1
    assert out[0].startswith(not_in_time(path, now - 3 * HOUR))


def test_an_honest_file_passes_its_tails_and_its_recovered_calls_held_as_written(
    tsa: Tsa, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stopped run's tail (its stop is never anchored) and the live run's are exempt; a call
    recovered at a start (`worker lost`: its ts its start, two hours ago) ended at that start; a
    long call ended at its ts plus its latency."""
    now = time.time()

    def written(error: str | None = "worker lost", latency_s: float = 3 * HOUR - 90) -> Path:
        w = Writer(tsa)
        w.start(now - 200)
        w.calls(now - 200, 2)
        w.anchor(now - 199, w.checkpoint(now - 199))
        w.calls(now - 150, 1)
        w.stop(now - 140)
        w.start(now - 100)  # line 9
        w.record(now - 2 * HOUR, "llm_call", request_id="lost", client="alice", latency_ms=None, error=error)
        w.record(now - 3 * HOUR, "llm_call", request_id="long", client="alice", latency_ms=latency_s * 1000)
        w.anchor(now - 80, w.checkpoint(now - 80))
        w.calls(now, 1)
        return w.write(tmp_path / "audit.jsonl")

    window = ("--live", "--anchors", str(tsa.ca_file), "--anchor-window", "300")
    status, out, _ = run_cli(capsys, str(written()), *window)
    assert status == 0, out
    # Were the lost call's end its ts, or the long call's its ts, neither would be in time.
    for line, changed in ((10, {"error": None}), (11, {"latency_s": 1})):
        path = written(**changed)  # type: ignore[arg-type]
        status, out, _ = run_cli(capsys, str(path), *window)
        assert (status, out[0].split(": ")[:2]) == (1, [f"{path}:{line}", "not anchored in time"]), out


def test_the_records_not_anchored_yet_are_held_as_spans() -> None:
    """Memory that grows with the checkpoints between anchors, not with the records."""
    from tollgate.records.audit.anchor_verify import KEPT_SPANS, RunAnchors

    kept = RunAnchors()
    for seq in range(1, 200_001):  # ends that go on: one span
        kept.record(seq, 1_000_000 + seq / 100, ("a", seq))
    assert kept.spans == [[1, 200_000, 1_000_000.01, 1_000_000 + 2000.0, ("a", 1)]]
    kept.record(200_002, 1_000_000.0, ("a", 200_002))  # a checkpoint between: a span of its own
    assert len(kept.spans) == 2
    for seq in range(200_003, 200_003 + 2 * KEPT_SPANS):  # ends going back at each record: bounded
        kept.record(seq, 1_000_000 - seq, ("a", seq))
    assert len(kept.spans) == KEPT_SPANS
    assert kept.spans[0][:3] == [1, kept.spans[1][0] - 1, 1_000_000 - (200_002 + 2 * KEPT_SPANS - KEPT_SPANS + 1)]


def test_a_records_end_is_its_ts_plus_its_latency_or_duration() -> None:
    from tollgate.records.audit.anchor_verify import record_end, seconds

    ts, started = "2026-11-26T10:00:00.000Z", "2026-11-26T12:00:00.000Z"
    at = seconds(ts)
    assert at is not None
    assert record_end({"ts": ts, "latency_ms": 1500.5}, started) == at + 1.5005
    assert record_end({"ts": ts, "duration_ms": 60_000}, started) == at + 60  # a connection's
    assert record_end({"ts": ts, "latency_ms": None, "error": "worker lost"}, started) == seconds(started)
    # A span that is no duration, or longer than a year, read as none: never past what a date holds.
    for span in (None, -5, True, "9", 1e300, 367 * 86_400_000):
        assert record_end({"ts": ts, "latency_ms": span}, started) == at
    assert record_end({"ts": "yesterday"}, started) == 0.0  # held in time by no token
