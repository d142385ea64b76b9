"""The audit's chain, its checkpoints and `verify`: plain code, files made here record by record,
and the tamper matrix on copies of them."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.cli.main import main
from tollgate.common.audit_chain import ZERO, Chain, Signer, key_id, last_chain, load_public_key, load_signing_key
from tollgate.configuration.config import Config, ConfigError, load_config
from tollgate.records.audit import auditlog
from tollgate.records.audit.audit_verify import ChainVerdict, Place, read_copy, read_lines, verify
from tollgate.records.audit.auditlog import AuditLog
from tollgate.records.audit.in_flight import InFlight, journal_path

TS = "2026-11-26T10:00:00.000Z"
ADDONS = Path(__file__).resolve().parents[3] / "addons"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


class Writer:
    """One instance's records as AuditLog's writer makes them: rendered, then linked."""

    def __init__(self, instance: str = "gw-1", signer: Signer | None = None) -> None:
        self.instance, self.signer = instance, signer
        self.chain = Chain()
        self.lines: list[bytes] = []

    def record(self, event: str, **fields: object) -> bytes:
        rendered = orjson.dumps({"event": event, "instance": self.instance, "ts": TS, **fields})
        line = self.chain.link(rendered)
        self.lines.append(line)
        return line

    def start(self, previous_chain: str | None = None) -> None:
        self.chain = Chain()
        self.record("tollgate_started", pid=1, previous_chain=previous_chain)

    def calls(self, n: int) -> None:
        for i in range(n):
            self.record("llm_call", request_id=f"r{i}", client="alice", input_tokens=10 + i)

    def checkpoint(self) -> None:
        rendered = orjson.dumps(
            {"event": "audit_checkpoint", "instance": self.instance} | self.chain.checkpoint(self.signer, TS)
        )
        self.lines.append(self.chain.link(rendered))

    def stop(self) -> None:
        self.record("tollgate_stopped", pid=1, calls=0)
        self.checkpoint()


def started_writer(instance: str = "gw-1", calls: int = 0, signer: Signer | None = None) -> Writer:
    """An instance's writer that has started and written `calls` calls."""
    writer = Writer(instance, signer)
    writer.start()
    writer.calls(calls)
    return writer


def signed_run(calls: int = 6, key: Ed25519PrivateKey = KEY) -> list[bytes]:
    w = started_writer(calls=calls // 2, signer=Signer(key))
    w.checkpoint()
    w.calls(calls - calls // 2)
    w.checkpoint()
    w.calls(2)
    w.stop()
    return w.lines


def check(
    lines: list[bytes], key: Ed25519PrivateKey | None = KEY, live: bool = False, name: str = "a.jsonl"
) -> ChainVerdict:
    return verify(
        ((Place(name, i), line) for i, line in enumerate(lines, 1)), None if key is None else key.public_key(), live
    )


def faults(verdict: ChainVerdict) -> list[str]:
    return [str(f) for f in verdict.faults]


def test_the_chain_is_as_the_docs_define_it() -> None:
    lines = signed_run()
    previous = ZERO
    for n, line in enumerate(lines, 1):
        record = json.loads(line)
        assert list(record)[-2:] == ["seq", "chain"] and record["seq"] == n
        content = line[: line.rindex(b',"chain":"')]
        assert record["chain"] == hashlib.sha256(f"{previous}\n".encode() + content).hexdigest()
        previous = record["chain"]


def test_a_checkpoint_covers_the_record_before_it_and_is_signed() -> None:
    lines = signed_run()
    records = [json.loads(line) for line in lines]
    checkpoints = [r for r in records if r["event"] == "audit_checkpoint"]
    assert len(checkpoints) == 3
    for c in checkpoints:
        covered = records[c["seq"] - 2]
        assert (c["covers_seq"], c["covers_chain"]) == (covered["seq"], covered["chain"])
        public = KEY.public_key()
        public.verify(base64.b64decode(c["signature"]), c["covers_chain"].encode("ascii"))
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert c["key_id"] == hashlib.sha256(raw).hexdigest()[:16] == key_id(public)
    # Each counts what it covers that the one before did not (that one among them).
    assert [c["records"] for c in checkpoints] == [4, 4, 4]
    assert [c["covers_seq"] for c in checkpoints] == [4, 8, 12]


def test_a_whole_run_verifies_with_and_without_the_key() -> None:
    lines = signed_run()
    verdict = check(lines)
    assert faults(verdict) == []
    s = verdict.summary
    assert (s.records, s.instances, s.runs, s.checkpoints, s.signed) == (len(lines), 1, 1, 3, 3)
    unkeyed = check(lines, key=None)
    assert faults(unkeyed) == [] and unkeyed.summary.unchecked_signatures == 3


def test_unsigned_checkpoints_verify_without_a_key_and_fail_with_one() -> None:
    w = started_writer(calls=3)
    w.stop()
    assert faults(check(w.lines, key=None)) == []
    assert faults(check(w.lines)) == ["a.jsonl:6: checkpoint not signed"]


# ---- the tamper matrix


def test_a_byte_of_one_field_changed() -> None:
    lines = signed_run()
    lines[2] = lines[2].replace(b'"input_tokens":11', b'"input_tokens":91')
    assert faults(check(lines)) == ["a.jsonl:3: changed: its chain does not match its content and the record before it"]


def test_a_line_removed() -> None:
    lines = signed_run()
    del lines[2]
    assert faults(check(lines)) == ["a.jsonl:3: 1 record missing before this line (seq 3–3)"]


def test_two_lines_swapped() -> None:
    lines = signed_run()
    lines[2], lines[3] = lines[3], lines[2]
    assert faults(check(lines)) == ["a.jsonl:4: out of order: seq 3 after seq 4 (a.jsonl:3)"]


def rechained(records: list[dict]) -> list[bytes]:
    """`records` numbered and chained again, their checkpoints' covers recomputed, as who can write
    the file but not read the key would."""
    chain, lines = Chain(), []
    for whole in records:
        record = {k: v for k, v in whole.items() if k not in ("seq", "chain")}
        if record["event"] == "audit_checkpoint":
            record["covers_seq"], record["covers_chain"] = chain.seq, chain.last.decode()
            record["records"] = chain.seq - chain.covered
            chain.covered, chain.checkpoint_seq = chain.seq, chain.seq + 1
        lines.append(chain.link(orjson.dumps(record)))
    return lines


def test_a_forged_line_with_a_recomputed_chain_is_found_by_the_signed_checkpoint() -> None:
    """Who can write the file but not read the key inserts a record, renumbers and rechains the
    rest, checkpoints included: each chain holds, the signature over the next checkpoint does not."""
    original = [json.loads(line) for line in signed_run()]
    forged = {**original[2], "request_id": "forged"}
    records = [*original[:3], forged, *original[3:]]
    lines = rechained(records)
    assert faults(check(lines)) == [
        "a.jsonl:6: bad signature: the checkpoint or the records it covers were changed",
        "a.jsonl:10: bad signature: the checkpoint or the records it covers were changed",
        "a.jsonl:14: bad signature: the checkpoint or the records it covers were changed",
    ]
    # Without the key, nothing can tell.
    assert faults(check(lines, key=None)) == []


def test_the_file_cut_after_a_checkpoint(tmp_path: Path) -> None:
    lines = signed_run()[:9]  # up to and with the second checkpoint
    assert faults(check(lines)) == [
        "a.jsonl:9: cut off after this line: the run of gw-1 has no tollgate_stopped (0 records after the last"
        " checkpoint); if it is still being written, verify with --live"
    ]
    assert faults(check(lines, live=True)) == []  # still being written
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + signed_run()[9][:30])  # a line being written
    assert faults(verify(read_lines([str(path)], live=True), KEY.public_key(), live=True)) == []
    assert f"{path}:10: not a JSON record: changed, cut or inserted" in faults(
        verify(read_lines([str(path)]), KEY.public_key())
    )
    assert faults(check(signed_run()[:11])) == [
        "a.jsonl:9: cut off after this line: the run of gw-1 has no tollgate_stopped (2 records after the last"
        " checkpoint); if it is still being written, verify with --live"
    ]


def test_a_stopped_run_without_its_last_checkpoint_is_cut_off() -> None:
    lines = signed_run()[:-1]
    assert faults(check(lines)) == [
        "a.jsonl:9: cut off after this line: 3 records after the last checkpoint not covered by a checkpoint"
    ]


def test_a_checkpoint_signed_with_another_key() -> None:
    lines = signed_run(key=OTHER_KEY)
    other = key_id(OTHER_KEY.public_key())
    assert faults(check(lines)) == [
        f"a.jsonl:{n}: checkpoint signed by another key (key_id {other}, not {key_id(KEY.public_key())})"
        for n in (5, 9, 13)
    ]
    assert faults(check(lines, key=OTHER_KEY)) == []


def test_a_line_copied_and_a_line_that_is_not_chained() -> None:
    lines = signed_run()
    assert faults(check([*lines[:3], lines[2], *lines[3:]])) == ["a.jsonl:4: inserted: a copy of line 3 of a.jsonl"]
    plain = b'{"event":"llm_call","instance":"gw-1","client":"mallory"}'
    assert faults(check([*lines[:3], plain, *lines[3:]])) == [
        "a.jsonl:4: not a chained record (no instance, seq or chain last): inserted, or changed"
    ]
    assert faults(check([*lines[:3], b"{not json", *lines[3:]])) == [
        "a.jsonl:4: not a JSON record: changed, cut or inserted"
    ]


# ---- instances, runs and files


def test_two_instances_interleaved_verify_as_two_chains() -> None:
    a, b = (
        started_writer("host/w0", calls=2, signer=Signer(KEY)),
        started_writer("host/w1", calls=3, signer=Signer(KEY)),
    )
    a.stop()
    b.stop()
    merged = [a.lines[0], b.lines[0], a.lines[1], b.lines[1], b.lines[2], a.lines[2], *b.lines[3:], *a.lines[3:]]
    verdict = check(merged)
    assert faults(verdict) == []
    assert (verdict.summary.instances, verdict.summary.runs, verdict.summary.records) == (2, 2, len(merged))
    # A line of one moved among the other's is no fault; one moved within its own chain is.
    del merged[4]
    assert faults(check(merged)) == ["a.jsonl:6: 1 record missing before this line (seq 3–3)"]


def test_runs_across_rotated_files(tmp_path: Path) -> None:
    w = started_writer(calls=3, signer=Signer(KEY))
    w.checkpoint()
    w.calls(2)
    w.stop()
    old, new = tmp_path / "audit.jsonl.1", tmp_path / "audit.jsonl"
    old.write_bytes(b"\n".join(w.lines[:4]) + b"\n")
    new.write_bytes(b"\n".join(w.lines[4:]) + b"\n")
    assert faults(verify(read_lines([str(old), str(new)]), KEY.public_key())) == []
    wrong_order = faults(verify(read_lines([str(new), str(old)]), KEY.public_key()))
    assert wrong_order and all(f.startswith((str(new), str(old))) for f in wrong_order)


def test_a_killed_run_followed_by_a_run_naming_its_last_chain_is_whole() -> None:
    w = started_writer(calls=3, signer=Signer(KEY))
    w.checkpoint()
    w.calls(1)  # then killed: no stopped record, nor a last checkpoint
    killed = list(w.lines)
    last = json.loads(killed[-1])["chain"]
    w.start(previous_chain=last)
    w.calls(1)
    w.stop()
    assert faults(check(w.lines)) == []
    # One whose next run names nothing (or another chain) is cut off.
    w2 = Writer(signer=Signer(KEY))
    w2.lines = list(killed)
    w2.start(previous_chain=None)
    w2.stop()
    assert faults(check(w2.lines)) == [
        "a.jsonl:5: cut off after this line: the run of gw-1 has no tollgate_stopped (1 record after the last"
        " checkpoint)",
        "a.jsonl:7: previous_chain is not the chain of the instance's last record before it (a.jsonl:6): records"
        " or a run missing",
    ]


def test_a_removed_run_shows_in_the_next_runs_previous_chain() -> None:
    w = Writer(signer=Signer(KEY))
    runs = []
    previous = None
    for _ in range(3):
        start = len(w.lines)
        w.start(previous_chain=previous)
        w.calls(1)
        w.stop()
        runs.append(w.lines[start:])
        previous = json.loads(w.lines[-1])["chain"]
    assert faults(check(w.lines)) == []
    assert faults(check([*runs[0], *runs[2]])) == [
        "a.jsonl:5: previous_chain is not the chain of the instance's last record before it (a.jsonl:4): records"
        " or a run missing"
    ]


def signed_runs(runs: int = 3, calls: int = 2, key: Ed25519PrivateKey = KEY) -> list[list[bytes]]:
    """An instance's runs one after the other, each naming the last chain of the one before, as the
    writer makes them; the first names none."""
    w = Writer(signer=Signer(key))
    out: list[list[bytes]] = []
    previous = None
    for _ in range(runs):
        start = len(w.lines)
        w.start(previous_chain=previous)
        w.calls(calls)
        w.checkpoint()
        w.calls(1)
        w.stop()
        out.append(w.lines[start:])
        previous = json.loads(w.lines[-1])["chain"]
    return out


def flat(runs: list[list[bytes]]) -> list[bytes]:
    return [line for run in runs for line in run]


HEAD_MISSING = (
    "previous_chain names a record of gw-1 that the files do not hold: its records before this run are missing"
    " (give every file since the instance began)"
)


def test_the_first_run_removed_is_found_with_and_without_the_key() -> None:
    runs = signed_runs()
    assert faults(check(flat(runs))) == []
    for key in (KEY, None):
        assert faults(check(flat(runs[1:]), key=key)) == [f"a.jsonl:1: {HEAD_MISSING}"]
        assert faults(check(flat(runs[2:]), key=key, live=True)) == [f"a.jsonl:1: {HEAD_MISSING}"]


def test_a_runs_previous_chain_naming_another_record_or_none_is_found() -> None:
    runs = signed_runs()
    elsewhere = json.loads(runs[0][2])["chain"]  # a record of the run before, not its last
    for previous in (elsewhere, None, "f" * 64):
        record = json.loads(runs[1][0])
        record["previous_chain"] = previous
        w = Writer(signer=Signer(KEY))
        w.chain = Chain()
        w.record("tollgate_started", pid=1, previous_chain=previous)
        relinked = [*runs[0], w.lines[0]]
        assert faults(check(relinked, live=True)) == [
            "a.jsonl:8: previous_chain is not the chain of the instance's last record before it (a.jsonl:7): records"
            " or a run missing"
        ], previous


def test_the_last_runs_removed_verify_alone_and_are_found_against_the_collectors_copy(tmp_path: Path) -> None:
    """A file cut after a whole run is whole as far as it can tell: only a copy kept elsewhere shows
    the cut. The copy is the collector's OTLP JSON export, or the audit lines as a log store keeps them."""
    runs = signed_runs()
    cut = flat(runs[:1])
    assert faults(check(cut)) == []  # the file alone cannot tell
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b"\n".join(flat(runs)) + b"\n")
    against = list(read_copy(str(copy)))
    verdict = verify(((Place("a.jsonl", i), line) for i, line in enumerate(cut, 1)), KEY.public_key(), against=against)
    missing = [f"{copy}:{n}: the copy holds a checkpoint of gw-1 (seq {s}) that the files do not: records after the"
               " files' last ones, or a run, removed" for n, s in ((11, 4), (14, 7), (18, 4), (21, 7))]  # fmt: skip
    assert faults(verdict) == missing
    whole = verify(
        ((Place("a.jsonl", i), line) for i, line in enumerate(flat(runs), 1)), KEY.public_key(), against=against
    )
    assert faults(whole) == [] and whole.summary.copy_checkpoints == 6

    # The collector's file exporter: one ExportLogsServiceRequest a line, each record's line its body.
    export = tmp_path / "export.json"
    export.write_text(json.dumps(otlp_json(flat(runs))) + "\n")
    verdict = verify(
        ((Place("a.jsonl", i), line) for i, line in enumerate(cut, 1)), KEY.public_key(), against=read_copy(str(export))
    )
    assert len(verdict.faults) == 4 and all(str(f).startswith(f"{export}:1: the copy holds") for f in verdict.faults)

    # Only the last checkpoint removed (the stop's), and the stop: the run is cut off by itself.
    assert faults(check(flat(runs)[:-2])) == [
        "a.jsonl:18: cut off after this line: the run of gw-1 has no tollgate_stopped (1 record after the last"
        " checkpoint); if it is still being written, verify with --live"
    ]


def test_a_copys_checkpoint_not_signed_by_the_key_is_a_fault(tmp_path: Path) -> None:
    runs = signed_runs(runs=1)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b"\n".join(signed_runs(runs=1, key=OTHER_KEY)[0]) + b"\n")
    lines = ((Place("a.jsonl", i), line) for i, line in enumerate(runs[0], 1))
    verdict = verify(lines, KEY.public_key(), against=read_copy(str(copy)))
    assert faults(verdict) == [f"{copy}:{n}: the copy's checkpoint is not signed by the key" for n in (4, 7)]


def otlp_json(lines: list[bytes]) -> dict:
    """What the OpenTelemetry Collector's file exporter writes of the records (protobuf's JSON)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from tollgate.records.senders.otlp_logs import export_body

    request = ExportLogsServiceRequest()
    request.ParseFromString(export_body(lines, 0))
    return MessageToDict(request)


def fabricated(checkpoint: bool) -> list[bytes]:
    """A file made up whole by someone without the key: its chains hold; its checkpoints, if any, unsigned."""
    w = started_writer(calls=3)
    if checkpoint:
        w.checkpoint()
    return w.lines


def test_a_fabricated_file_is_never_whole_with_the_key() -> None:
    for checkpoint in (False, True):
        lines = fabricated(checkpoint)
        assert faults(check(lines, key=None, live=True)) == []  # without the key, nothing can tell
        for live in (False, True):
            found = faults(check(lines, live=live))
            assert found, (checkpoint, live)
    assert faults(check(fabricated(False), live=True)) == [
        "a.jsonl:1: the run of gw-1 has no checkpoint signed by the key: its 4 records are vouched for by no signature"
    ]
    assert faults(check(fabricated(True), live=True)) == ["a.jsonl:5: checkpoint not signed"]


def test_with_the_key_live_the_newest_run_may_await_its_first_checkpoint() -> None:
    runs = signed_runs(runs=1)
    w = Writer(signer=Signer(KEY))
    w.start(previous_chain=json.loads(runs[0][-1])["chain"])
    w.calls(2)  # no checkpoint yet
    lines = [*runs[0], *w.lines]
    assert faults(check(lines, live=True)) == []
    assert faults(check(lines)) == [
        "a.jsonl:8: cut off after this line: the run of gw-1 has no tollgate_stopped (3 records, no checkpoint);"
        " if it is still being written, verify with --live",
        "a.jsonl:8: the run of gw-1 has no checkpoint signed by the key: its 3 records are vouched for by no signature",
    ]


def test_a_killed_run_without_a_checkpoint_is_vouched_for_by_the_next_runs() -> None:
    w = Writer(signer=Signer(KEY))
    w.start()
    w.calls(2)  # killed before its first checkpoint
    last = json.loads(w.lines[-1])["chain"]
    w.start(previous_chain=last)
    w.calls(1)
    w.stop()
    assert faults(check(w.lines)) == []


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.slow
def test_any_head_or_tail_removed_is_found(data: st.DataObject) -> None:
    """Lines removed from the head are found by the file alone; from the tail, against the copy."""
    runs = signed_runs(runs=data.draw(st.integers(1, 4)), calls=data.draw(st.integers(0, 3)))
    lines = flat(runs)
    k = data.draw(st.integers(1, len(lines) - 1), label="removed")
    keyed = data.draw(st.booleans(), label="key")
    key = KEY if keyed else None
    if data.draw(st.booleans(), label="head"):
        assert faults(check(lines[k:], key=key)), k
    else:
        copy = [(Place("copy", i), line) for i, line in enumerate(lines, 1)]
        left = ((Place("a.jsonl", i), line) for i, line in enumerate(lines[:-k], 1))
        assert faults(verify(left, None if key is None else key.public_key(), against=copy)), k


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.slow
def test_any_single_line_changed_removed_or_swapped_is_found(data: st.DataObject) -> None:
    lines = signed_run(calls=data.draw(st.integers(1, 8)))
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    kind = data.draw(st.sampled_from(["change", "remove", "swap"]))
    if kind == "change":
        line = bytearray(lines[i])
        j = data.draw(st.integers(0, len(line) - 1), label="byte")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != line[j]), label="value")
        line[j] = byte
        lines[i] = bytes(line)
    elif kind == "remove":
        del lines[i]
    else:
        k = data.draw(st.integers(0, len(lines) - 1).filter(lambda k: lines[k] != lines[i]), label="other")
        lines[i], lines[k] = lines[k], lines[i]
    assert faults(check(lines)), (kind, i)


# ---- keys and the file's tail


def test_keys_load_from_pem_and_bad_ones_say_why(tmp_path: Path) -> None:
    private = tmp_path / "audit.key"
    private.write_bytes(
        KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = tmp_path / "audit.pub"
    public.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert (
        Signer(load_signing_key(private)).key_id == key_id(load_public_key(public)) == key_id(load_public_key(private))
    )
    with pytest.raises(ValueError, match="cannot read"):
        load_signing_key(tmp_path / "missing.key")
    with pytest.raises(ValueError, match="no PEM private key"):
        load_signing_key(public)
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_signing_key(ec_key)


def test_the_last_chain_of_an_instance_is_read_from_the_files_tail(tmp_path: Path) -> None:
    a, b = started_writer("a", calls=2), started_writer("b", calls=1)
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join([*a.lines, *b.lines, b'{"event":"llm_call","instance":"c"}']) + b"\n")
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        assert last_chain(fd, size, "a") == json.loads(a.lines[-1])["chain"]
        assert last_chain(fd, size, "b") == json.loads(b.lines[-1])["chain"]
        assert last_chain(fd, size, "c") is None  # not chained
        assert last_chain(fd, size, "d") is None
    finally:
        os.close(fd)


# ---- the writer


def _started(log: AuditLog) -> None:
    log.begin(auditlog.started_record(["127.0.0.1:8080"], None))


def test_the_writer_chains_every_record_and_checkpoints_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", signer=Signer(KEY))
    _started(log)
    for i in range(20):
        log.write({"event": "llm_call", "n": i})
    log.stop()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 24))
    assert [r["event"] for r in records[-2:]] == ["tollgate_stopped", "audit_checkpoint"]
    assert records[0]["previous_chain"] is None
    verdict = verify(read_lines([str(path)]), KEY.public_key())
    assert faults(verdict) == [] and (verdict.summary.runs, verdict.summary.signed) == (1, 1)

    # The next run names where this one ended; a run killed outright is whole when the next names it.
    log = AuditLog(str(path), instance="gw-1", signer=Signer(KEY))
    _started(log)
    log.write({"event": "llm_call", "n": 0})
    log.close()  # as if killed: no stopped record, no last checkpoint
    again = [json.loads(line) for line in path.read_text().splitlines()]
    assert again[len(records)]["previous_chain"] == records[-1]["chain"]
    assert faults(verify(read_lines([str(path)]), KEY.public_key(), live=True)) == []
    log = AuditLog(str(path), instance="gw-1", signer=Signer(KEY))
    _started(log)
    log.stop()
    assert faults(verify(read_lines([str(path)]), KEY.public_key())) == []


@pytest.mark.slow
def test_a_checkpoint_every_checkpoint_s_while_records_come(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", checkpoint_s=0.2)
    _started(log)
    deadline = time.monotonic() + 10
    while b"audit_checkpoint" not in path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["tollgate_started", "audit_checkpoint"]
    time.sleep(0.5)  # nothing written since: no other checkpoint
    assert len(path.read_text().splitlines()) == 2
    log.write({"event": "llm_call"})
    while path.read_bytes().count(b"audit_checkpoint") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.stop()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == [
        "tollgate_started", "audit_checkpoint", "llm_call", "audit_checkpoint", "tollgate_stopped", "audit_checkpoint"
    ]  # fmt: skip
    assert [r.get("records") for r in records if r["event"] == "audit_checkpoint"] == [1, 2, 2]
    assert records[1]["signature"] is None and records[1]["key_id"] is None
    assert faults(verify(read_lines([str(path)]))) == []


def test_a_shorter_checkpoint_s_set_by_a_reload_applies_at_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", checkpoint_s=3600)
    _started(log)
    log.write({"event": "llm_call"})
    time.sleep(0.3)  # the writer waits for the hour's checkpoint
    assert b"audit_checkpoint" not in path.read_bytes()
    log.configure(0.2, None)  # as a reload of `audit.checkpoint_s: 0.2` does
    deadline = time.monotonic() + 5
    while b"audit_checkpoint" not in path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
        assert events == ["tollgate_started", "llm_call", "audit_checkpoint"]
    finally:
        log.stop()


def test_a_reload_to_another_file_goes_on_with_the_chain(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    log = AuditLog(str(first), instance="gw-1")
    _started(log)
    for i in range(50):
        log.write({"event": "llm_call", "n": i})
    replacement = AuditLog(str(second), instance="gw-1", follows=log)
    _started(replacement)
    log.close()
    replacement.write({"event": "llm_call", "n": 50})
    replacement.stop()
    b = [json.loads(line) for line in second.read_text().splitlines()]
    assert b[0]["seq"] == 52  # not a new run
    assert faults(verify(read_lines([str(first), str(second)]))) == []


def test_standard_output_is_chained_too(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # The log writes to standard output's file descriptor, which capfd holds: no process needed.
    capfd.readouterr()
    log = AuditLog("-", instance="gw-1")
    log.begin(auditlog.started_record([], None))
    log.write({"event": "llm_call", "client": "grüß"})
    log.stop()
    out = capfd.readouterr().out.encode()
    path = tmp_path / "out.jsonl"
    path.write_bytes(out)
    assert len(out.splitlines()) == 4
    assert faults(verify(read_lines([str(path)]))) == []


# ---- the settings


def test_the_signing_key_is_checked_when_the_configuration_loads(tmp_path: Path) -> None:
    private = tmp_path / "audit.key"
    private.write_bytes(
        KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    # Named relative to the configuration file, as the policy's files are.
    config = load_config(_yaml(tmp_path, {"audit": {"signing_key": "audit.key", "checkpoint_s": 5}}))
    assert (config.audit.checkpoint_s, config.audit.signing_key) == (5, str(private))
    signer = config.audit.signer()
    assert signer is not None and signer.key_id == key_id(KEY.public_key())
    assert Config().audit.checkpoint_s == 60 and Config().audit.signer() is None
    for bad, words in (
        ({"signing_key": str(tmp_path / "missing.pem")}, "cannot read"),
        ({"signing_key": str(_yaml(tmp_path, {}))}, "no PEM private key"),
        ({"checkpoint_s": 0}, "greater than 0"),
    ):
        with pytest.raises(ConfigError) as e:
            load_config(_yaml(tmp_path, {"audit": bad}))
        assert f"audit.{next(iter(bad))}" in str(e.value) and words in str(e.value)


def _yaml(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(json.dumps(data))
    return path


# ---- the command


def test_audit_verify_says_whole_or_names_each_fault_and_never_a_value(tmp_path: Path, capsys) -> None:
    public = tmp_path / "audit.pub"
    public.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "audit.jsonl"
    lines = signed_run()
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["audit", "verify", str(path), "--key", str(public)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "whole: 13 records, 1 instance, 1 run, 3 checkpoints, 3 signatures verified",
        f"last record: {TS}; last signed checkpoint: {TS}",
    ]
    assert main(["audit", "verify", str(path)]) == 0
    assert "signatures not checked (no --key; 3 signed)" in capsys.readouterr().out

    lines[2] = lines[2].replace(b'"client":"alice"', b'"client":"mallory"')
    del lines[5]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["audit", "verify", str(path), "--key", str(public)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{path}:3: changed: its chain does not match its content and the record before it",
        f"{path}:6: 1 record missing before this line (seq 6–6)",
    ]
    assert "alice" not in captured.out + captured.err and "mallory" not in captured.out + captured.err

    assert main(["audit", "verify", str(tmp_path / "gone.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["audit", "verify", str(path), "--key", str(path)]) == 2
    assert "--key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["audit", "verify"])
    assert e.value.code == 2


def test_audit_verify_on_a_file_still_being_written_names_live(tmp_path: Path, capsys) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(signed_run()[:9]) + b"\n")  # a run not stopped yet
    writing = InFlight(journal_path(str(path), "gw-1"), b"s" * 32, "gw-1")  # as its running process holds it
    try:
        assert main(["audit", "verify", str(path)]) == 1
        captured = capsys.readouterr()
        assert captured.out == (
            f"{path}:9: cut off after this line: the run of gw-1 has no tollgate_stopped (0 records after the last"
            " checkpoint); if it is still being written, verify with --live\n"
        )
        assert captured.err.splitlines() == [
            "1 fault in 9 records, 1 instance, 1 run, 2 checkpoints, signatures not checked (no --key; 2 signed)",
            f"{path} is still being written (Tollgate runs beside it: instance gw-1): verify it with --live, which"
            " takes a run not yet stopped as no fault",
        ]
        assert main(["audit", "verify", "--live", str(path)]) == 0
    finally:
        writing.close()
    capsys.readouterr()
    # Its process gone, the file is no longer said to be written.
    assert main(["audit", "verify", str(path)]) == 1
    assert "still being written (" not in capsys.readouterr().err


def test_the_docs_example_checks_a_chain(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "audit.md").read_text()
    after = docs.index("Checking a chain takes a few lines")
    start = docs.index("```python\n", after) + len("```python\n")
    example = docs[start : docs.index("```", start)]
    a, b = started_writer("a", calls=2), started_writer("b", calls=2)
    path = tmp_path / "audit.jsonl"
    lines = [a.lines[0], b.lines[0], *a.lines[1:], *b.lines[1:]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    script = tmp_path / "check.py"
    script.write_text(example)
    run = [sys.executable, str(script), str(path)]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == ""
    lines[3] = lines[3].replace(b'"client":"alice"', b'"client":"bob"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "line 4: broken chain\n"


def test_audit_verify_against_a_copy(tmp_path: Path, capsys) -> None:
    runs = signed_runs(runs=2)
    path, copy = tmp_path / "audit.jsonl", tmp_path / "copy.jsonl"
    copy.write_bytes(b"\n".join(flat(runs)) + b"\n")
    path.write_bytes(b"\n".join(flat(runs)) + b"\n")
    assert main(["audit", "verify", str(path), "--against", str(copy)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "the copy's 4 checkpoints are all in the files"
    path.write_bytes(b"\n".join(runs[0]) + b"\n")  # the last run removed
    assert main(["audit", "verify", str(path)]) == 0  # the file alone cannot tell
    capsys.readouterr()
    assert main(["audit", "verify", str(path), "--against", str(copy)]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 2  # the removed run's two checkpoints
    copy.write_text("not json\n")
    assert main(["audit", "verify", str(path), "--against", str(copy)]) == 2
    assert "--against" in capsys.readouterr().err
    assert main(["audit", "verify", str(path), "--against", str(tmp_path / "gone")]) == 2
    assert "cannot read" in capsys.readouterr().err


# ---- a signing key set on a file that was written without one


def key_set_later(restart: bool) -> list[bytes]:
    """Two checkpoints unsigned, then the key set: by a restart (a new run naming the last), or by a
    reload (the same run goes on); then signed checkpoints."""
    w = started_writer(calls=3)
    w.checkpoint()
    w.calls(2)
    if restart:
        w.stop()
        w.signer = Signer(KEY)
        w.start(previous_chain=json.loads(w.lines[-1])["chain"])
    else:
        w.checkpoint()
        w.signer = Signer(KEY)
    w.calls(2)
    w.checkpoint()
    w.calls(1)
    w.stop()
    return w.lines


@pytest.mark.parametrize("restart", [True, False])
def test_a_key_set_later_judges_what_follows_its_first_signed_checkpoint(restart: bool) -> None:
    lines = key_set_later(restart)
    verdict = check(lines)
    assert faults(verdict) == []
    signed_at = next(n for n, line in enumerate(lines, 1) if b'"signature":"' in line)
    last_unsigned = max(n for n, line in enumerate(lines[: signed_at - 1], 1) if b'"audit_checkpoint"' in line)
    assert (signed_at, last_unsigned) == ((13, 9) if restart else (11, 8))
    assert [str(p) for p in verdict.before_key] == [
        f"a.jsonl:1: records 1–{last_unsigned} of gw-1 (to a.jsonl:{last_unsigned}) precede its first checkpoint"
        f" signed by the key (a.jsonl:{signed_at}): not covered by the key as they were written; their chain is"
        " checked, and that checkpoint's signature holds them as they stood then"
    ]
    assert check(lines, key=None).before_key == []  # without a key, nothing is said of keys


@pytest.mark.parametrize("restart", [True, False])
def test_after_a_key_set_later_the_files_are_judged_as_ever(restart: bool) -> None:
    lines = key_set_later(restart)
    # A byte changed before the key: the first signed checkpoint's chain no longer holds it.
    changed = list(lines)
    changed[1] = changed[1].replace(b'"client":"alice"', b'"client":"alicf"')
    assert "a.jsonl:2: changed: its chain does not match its content and the record before it" in faults(check(changed))
    # A checkpoint after the first signed one left unsigned (its signature taken out) is a fault.
    last_checkpoint = len(lines)
    record = json.loads(lines[-1])
    stripped = lines[-1].replace(f'"signature":"{record["signature"]}"'.encode(), b'"signature":null')
    found = faults(check([*lines[:-1], stripped]))
    assert f"a.jsonl:{last_checkpoint}: checkpoint not signed" in found
    # Judged with another key, no checkpoint is signed by it: the unsigned part is a fault too.
    wrong = [f.split(": ", 1)[1].split(" (")[0] for f in faults(check(lines, key=OTHER_KEY))]
    assert wrong == ["checkpoint not signed"] * 2 + ["checkpoint signed by another key"] * 2


def test_a_record_forged_before_the_key_and_the_rest_rechained_is_found_by_the_first_signature() -> None:
    original = [json.loads(line) for line in key_set_later(restart=False)]
    records = [*original[:2], {**original[2], "client": "mallory"}, *original[3:]]
    lines = rechained(records)
    # No signature holds, so nothing is judged from a first signed checkpoint: the unsigned ones fail too.
    assert faults(check(lines)) == [
        "a.jsonl:5: checkpoint not signed",
        "a.jsonl:8: checkpoint not signed",
        "a.jsonl:11: bad signature: the checkpoint or the records it covers were changed",
        "a.jsonl:14: bad signature: the checkpoint or the records it covers were changed",
    ]


def test_a_file_with_no_signed_checkpoint_still_fails_with_the_key() -> None:
    w = started_writer(calls=3)
    w.checkpoint()
    w.calls(1)
    w.stop()
    verdict = check(w.lines)
    assert faults(verdict) == ["a.jsonl:5: checkpoint not signed", "a.jsonl:8: checkpoint not signed"]
    assert verdict.before_key == []


def test_audit_verify_says_the_part_before_the_key_apart(tmp_path: Path, capsys) -> None:
    pem = tmp_path / "audit.pub.pem"
    pem.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"".join(line + b"\n" for line in key_set_later(restart=True)))
    assert main(["audit", "verify", str(audit), "--key", str(pem)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"before the key: {audit}:1: records 1–9 of gw-1 (to {audit}:9) precede its first")
    assert out[1] == "whole: 16 records, 1 instance, 2 runs, 4 checkpoints, 2 signatures verified"


def test_a_runs_last_records_are_kept_as_a_dict_of_them_would_keep_them(monkeypatch) -> None:
    """`LastRecords` in its columns answers as the dict of seq to chain and place it stands for,
    which drops seq - WINDOW as seq comes: in order, out of order, far out of order, with gaps."""
    import random

    from tollgate.records.audit import last_records

    monkeypatch.setattr(last_records, "WINDOW", 8)
    rng = random.Random(5)
    for _ in range(200):
        kept, model = last_records.LastRecords(), {}
        seqs = list(range(1, 60))
        for _ in range(15):  # some far out of order
            i, j = rng.randrange(len(seqs)), rng.randrange(len(seqs))
            seqs[i], seqs[j] = seqs[j], seqs[i]
        for seq in seqs:
            if rng.random() < 0.1:
                continue  # a gap: seq + 8 will not drop seq
            place = Place(f"f{seq % 3}", seq * 10)
            chain = f"{seq:064x}"
            kept.add(seq, chain, place)
            model[seq] = (chain, place)
            model.pop(seq - 8, None)
            for probe in range(62):
                found = kept.get(probe)
                assert (None if found is None else (found.chain, found.place)) == model.get(probe)
                assert kept.chain(probe) == (model[probe][0] if probe in model else None)
                assert (probe in kept) is (probe in model)
                assert kept.below(probe) == max((s for s in model if s < probe), default=0)


def test_a_record_whose_event_is_malformed_is_a_fault_as_the_console_counts_it() -> None:
    """`malformed` is the console's marker of a line that is no record: Tollgate never writes it, so
    a chained record that says it was written by someone else (with the key, its chain holds)."""
    w = started_writer(calls=1, signer=Signer(KEY))
    w.record("malformed", file="a.jsonl", offset=0, length=3)
    w.calls(1)
    w.stop()
    assert faults(check(w.lines)) == [
        "a.jsonl:3: a record whose event is malformed, the console's marker of a line that is no record:"
        " Tollgate never writes it (inserted, or changed)"
    ]
    assert faults(check(w.lines, key=None)) == faults(check(w.lines))
