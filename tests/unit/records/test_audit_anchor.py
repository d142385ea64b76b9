"""`audit.anchor`: its settings, each TSA reply checked (a wrong one is a gap with its error), and
the audit writer's checkpoints anchored by a real TSA (OpenSSL's `openssl ts -reply`, tests/support/tsa.py)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from tests.support.tsa import Tsa, openssl_verify, tsa_fixture

from tollgate.configuration.config import Config, ConfigError, load_config
from tollgate.records.audit import auditlog
from tollgate.records.audit.anchors import Anchorer, check_reply, request_for
from tollgate.records.audit.audit_verify import read_lines, verify
from tollgate.records.audit.auditlog import AuditLog
from tollgate.records.telemetry.metrics import MetricSet

CHAIN = "5f" * 32  # a checkpoint's covers_chain


tsa = tsa_fixture("tsa")
chained = tsa_fixture("chained", chain=True)  # sends its chain (an intermediate CA and the root) after its certificate


@pytest.fixture
def fresh(tsa: Tsa) -> Iterator[Tsa]:
    """The module's TSA answering well again after the test."""
    yield tsa
    tsa.mode, tsa.status, tsa.delay = "ok", 200, 0.0
    tsa.up()


def _yaml(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(json.dumps(data))
    return path


# ---- the settings


def test_the_settings_and_their_defaults(tmp_path: Path, tsa: Tsa, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "roots.pem").write_bytes(tsa.ca_file.read_bytes())
    monkeypatch.setenv("TSA_KEY", "s3cret")
    anchor = {"tsa": [tsa.url, "https://tsa.example.com/tsr?x=1"], "ca_file": "roots.pem"}
    config = load_config(_yaml(tmp_path, {"audit": {"anchor": {**anchor, "headers": {"x-key": "${TSA_KEY}"}}}}))
    settings = config.audit.anchor
    assert settings is not None
    assert settings.tsa == (tsa.url, "https://tsa.example.com/tsr?x=1")
    assert settings.ca_file == str(tmp_path / "roots.pem")  # relative to the configuration file
    assert (settings.every_s, settings.headers) == (60.0, {"x-key": "s3cret"})
    assert "s3cret" not in repr(config)
    assert len(settings.roots()) == 1
    assert Config().audit.anchor is None


@pytest.mark.parametrize(
    ("anchor", "message"),
    [
        (
            {"tsa": ["ftp://tsa.example.com/"]},
            "audit.anchor.tsa.0: must be an http(s) URL, e.g. https://freetsa.org/tsr",
        ),
        (
            {"tsa": ["https://a.example/", "a.example"]},
            "audit.anchor.tsa.1: must be an http(s) URL, e.g. https://freetsa.org/tsr",
        ),
        (
            {"tsa": ["https://user:pw@tsa.example.com/"]},
            "audit.anchor.tsa.0: must hold no user or password: give a TSA's key in audit.anchor.headers",
        ),
        ({"tsa": []}, "audit.anchor.tsa: names no TSA: list at least one URL, e.g. [https://freetsa.org/tsr]"),
        ({"tsa": ["https://a.example/", "https://a.example/"]}, "audit.anchor.tsa: names a TSA twice"),
        ({"every_s": 0}, "audit.anchor.every_s: Input should be greater than 0"),
        ({"ca_file": "missing.pem"}, "audit.anchor.ca_file: cannot read DIR/missing.pem: No such file or directory"),
        (
            {"ca_file": "tollgate.yaml"},
            "audit.anchor.ca_file: DIR/tollgate.yaml holds no PEM certificate (the TSAs' root certificates,"
            " -----BEGIN CERTIFICATE-----)",
        ),
        ({"tsa_url": "https://a.example/"}, "audit.anchor.tsa_url: unknown key (did you mean tsa?)"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_its_field(
    tmp_path: Path, tsa: Tsa, anchor: dict[str, Any], message: str
) -> None:
    (tmp_path / "roots.pem").write_bytes(tsa.ca_file.read_bytes())
    settings = {"tsa": ["https://tsa.example.com/"], "ca_file": "roots.pem", **anchor}
    path = _yaml(tmp_path, {"audit": {"anchor": settings}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: " + message.replace("DIR", str(tmp_path))


# ---- each reply checked


def _one_round(tsa: Tsa, headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One anchor of CHAIN (covers_seq 7) by `tsa`: the records written, and the TSAs told of a gap."""
    records: list[dict[str, Any]] = []
    gaps: list[str] = []
    written = threading.Event()

    def write(record: dict[str, Any]) -> None:
        records.append(record)
        written.set()

    anchorer = Anchorer([tsa.url], [*_roots(tsa)], 3600, headers or {}, write, gaps.append)
    anchorer.checkpointed(7, CHAIN)
    assert written.wait(15)
    anchorer.stop()
    return records, gaps


def _roots(tsa: Tsa):
    from tollgate.configuration.records_settings import load_roots

    return load_roots(str(tsa.ca_file))


@pytest.mark.parametrize("which", ["fresh", "chained"])
def test_a_good_reply_is_an_anchor_openssl_verifies(which: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A TSA that sends its certificate alone, and one that sends its chain after it (in no DER order)."""
    fresh: Tsa = request.getfixturevalue(which)
    records, gaps = _one_round(fresh, {"Authorization": "Bearer tsa-key"})
    assert gaps == []
    [record] = records
    assert list(record) == ["event", "ts", "covers_seq", "covers_chain", "tsa", "gen_time", "token"]
    assert (record["event"], record["covers_seq"], record["covers_chain"], record["tsa"]) == (
        "audit_anchor", 7, CHAIN, fresh.url
    )  # fmt: skip
    assert record["gen_time"].endswith(".000Z") and len(record["gen_time"]) == 24
    done = openssl_verify(base64.b64decode(record["token"]), CHAIN.encode(), fresh.ca_file, tmp_path)
    assert (done.returncode, done.stdout) == (0, "Verification: OK\n")
    asked = fresh.requests[-1]
    assert asked.headers["content-type"] == "application/timestamp-query"
    assert asked.headers["authorization"] == "Bearer tsa-key"
    assert "tsa-key" not in json.dumps(record)


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [
        ("imprint", 200, "the token's imprint is not this checkpoint's (SHA-256 of its covers_chain)"),
        ("nonce", 200, "the token's nonce is not the request's"),
        ("rejection", 200, "the TSA refused: status 2 (rejection): tests: rejected"),
        (
            "foreign",
            200,
            "the token does not verify against audit.anchor.ca_file: Verify error: unable to get local issuer"
            " certificate",
        ),
        ("no-certs", 200, "the token carries no certificate: the TSA did not send its own, as asked"),
        ("garbage", 200, "the reply is no RFC 3161 TimeStampResp: ASN.1 parse error: ParseError { kind: ShortData"),
        ("ok", 503, "the TSA answered HTTP 503"),
    ],
)
def test_a_reply_that_does_not_check_is_a_gap_with_its_error(fresh: Tsa, mode: str, status: int, error: str) -> None:
    fresh.mode, fresh.status = mode, status
    records, gaps = _one_round(fresh)
    [record] = records
    assert list(record) == ["event", "ts", "covers_seq", "tsa", "error"]
    assert (record["event"], record["covers_seq"], record["tsa"]) == ("anchor_gap", 7, fresh.url)
    assert record["error"].startswith(error), record["error"]
    if mode != "garbage":
        assert record["error"] == error
    assert gaps == [fresh.url]


def test_a_tsa_that_cannot_be_reached_is_a_gap(fresh: Tsa) -> None:
    fresh.down()
    records, gaps = _one_round(fresh)
    assert [(r["event"], r["error"]) for r in records] == [("anchor_gap", "cannot reach the TSA: Connection refused")]
    assert gaps == [fresh.url]


def test_check_reply_takes_only_its_own_request(fresh: Tsa) -> None:
    from tollgate.records.audit.anchors import AnchorError, ask

    query, nonce = request_for(CHAIN)
    reply = ask(fresh.url, query, {})
    assert check_reply(reply, CHAIN, nonce, _roots(fresh)).der
    with pytest.raises(AnchorError, match="nonce is not the request's"):
        check_reply(reply, CHAIN, nonce + 1, _roots(fresh))
    with pytest.raises(AnchorError, match="imprint is not this checkpoint's"):
        check_reply(reply, "00" * 32, nonce, _roots(fresh))


def test_the_gaps_metric() -> None:
    metrics = MetricSet()
    metrics.anchor_gap("https://tsa.example.com/")
    metrics.anchor_gap("https://tsa.example.com/")
    text = generate_latest(metrics.registry).decode()
    assert 'tollgate_audit_anchor_gaps_total{tsa="https://tsa.example.com/"} 2.0' in text


# ---- the writer's checkpoints anchored


def _wait_for(path: Path, predicate, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        if predicate(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _events(records: list[dict[str, Any]]) -> list[str]:
    return [r["event"] for r in records]


@pytest.mark.slow
def test_checkpoints_are_anchored_and_anchors_make_no_checkpoint_due(fresh: Tsa, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", checkpoint_s=0.2)
    log.anchor_with(Anchorer([fresh.url], _roots(fresh), 0.01, {}, log.write_anchor))
    log.begin(auditlog.started_record([], None))
    records = _wait_for(path, lambda rs: "audit_anchor" in _events(rs))
    assert _events(records) == ["tollgate_started", "audit_checkpoint", "audit_anchor"]
    time.sleep(0.6)  # three checkpoint_s: the anchor record alone makes no checkpoint
    assert len(path.read_text().splitlines()) == 3
    log.write({"event": "llm_call"})
    records = _wait_for(path, lambda rs: _events(rs).count("audit_anchor") == 2)
    log.stop()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert _events(records) == [
        "tollgate_started",
        "audit_checkpoint",
        "audit_anchor",
        "llm_call",
        "audit_checkpoint",
        "audit_anchor",
        "tollgate_stopped",
        "audit_checkpoint",
    ]  # fmt: skip  (the checkpoint written at stop is not anchored)
    checkpoints = [r for r in records if r["event"] == "audit_checkpoint"]
    anchors = [r for r in records if r["event"] == "audit_anchor"]
    assert [(a["covers_seq"], a["covers_chain"]) for a in anchors] == [
        (c["covers_seq"], c["covers_chain"]) for c in checkpoints[:2]
    ]
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert anchors[0]["instance"] == "gw-1"
    assert [str(f) for f in verify(read_lines([str(path)])).faults] == []
    for anchor in anchors:
        done = openssl_verify(
            base64.b64decode(anchor["token"]), anchor["covers_chain"].encode(), fresh.ca_file, tmp_path
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_at_most_one_anchor_per_every_s_and_a_gap_asked_again(fresh: Tsa, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", checkpoint_s=0.1)
    gaps: list[str] = []
    log.anchor_with(Anchorer([fresh.url], _roots(fresh), 1.0, {}, log.write_anchor, gaps.append))
    fresh.down()
    log.begin(auditlog.started_record([], None))
    records = _wait_for(path, lambda rs: "anchor_gap" in _events(rs))
    assert _events(records) == ["tollgate_started", "audit_checkpoint", "anchor_gap"]
    fresh.up()
    for i in range(6):  # checkpoints every 0.1 s: one anchor of the newest each second, at most
        log.write({"event": "llm_call", "n": i})
        time.sleep(0.15)
    records = _wait_for(path, lambda rs: "audit_anchor" in _events(rs))
    log.stop()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    rounds = [r for r in records if r["event"] in ("anchor_gap", "audit_anchor")]
    assert [r["event"] for r in rounds[:2]] == ["anchor_gap", "audit_anchor"]
    assert gaps == [fresh.url]
    times = [datetime.fromisoformat(r["ts"]).timestamp() for r in rounds]
    assert all(later - earlier >= 0.8 for earlier, later in itertools.pairwise(times)), times
    checkpoints = {r["covers_seq"]: r["covers_chain"] for r in records if r["event"] == "audit_checkpoint"}
    assert all(checkpoints[r["covers_seq"]] == r.get("covers_chain", checkpoints[r["covers_seq"]]) for r in rounds)
    # Asked again for the newest checkpoint then: a later one than the gap's, written meanwhile.
    assert rounds[1]["covers_seq"] > rounds[0]["covers_seq"]


def test_a_reload_keeps_the_anchorer_of_the_same_tsas_and_roots(tsa: Tsa, tmp_path: Path) -> None:
    from tollgate.configuration.records_settings import AuditAnchorConfig
    from tollgate.proxy.stages.process.settings import anchor

    log = AuditLog(str(tmp_path / "audit.jsonl"), instance="gw-1")
    try:
        settings = AuditAnchorConfig(tsa=(tsa.url,), ca_file=str(tsa.ca_file))
        anchor(log, settings, lambda tsa: None)
        first = log.anchorer
        assert first is not None and (first.tsa, first.every_s, first.headers) == ((tsa.url,), 60.0, {})
        anchor(log, settings.model_copy(update={"every_s": 5.0, "headers": {"x-key": "k"}}), lambda tsa: None)
        assert log.anchorer is first and (first.every_s, first.headers) == (5.0, {"x-key": "k"})
        anchor(log, settings.model_copy(update={"tsa": (tsa.url, "https://tsa.example.com/")}), lambda tsa: None)
        second = log.anchorer
        assert second is not first and second is not None and second.tsa == (tsa.url, "https://tsa.example.com/")
        assert not first._thread.is_alive()  # stopped
        anchor(log, None, lambda tsa: None)
        assert log.anchorer is None and not second._thread.is_alive()
    finally:
        log.close()


@pytest.mark.slow
def test_a_slow_tsa_holds_up_no_record_and_nothing_follows_the_stop(fresh: Tsa, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw-1", checkpoint_s=0.1)
    log.anchor_with(Anchorer([fresh.url], _roots(fresh), 0.01, {}, log.write_anchor))
    fresh.delay = 3.0  # the TSA answers in 3 s
    log.begin(auditlog.started_record([], None))
    _wait_for(path, lambda rs: "audit_checkpoint" in _events(rs))
    asked = time.monotonic()
    while not fresh.requests and time.monotonic() - asked < 5:
        time.sleep(0.02)
    written = time.monotonic()
    log.write({"event": "llm_call"})
    records = _wait_for(path, lambda rs: "llm_call" in _events(rs))
    assert time.monotonic() - written < 1.0  # written while the TSA has yet to answer
    stopping = time.monotonic()
    log.stop()
    assert time.monotonic() - stopping < 2.5
    time.sleep(3.0)  # the TSA's answer comes after the stop: not written
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert _events(records)[-2:] == ["tollgate_stopped", "audit_checkpoint"]
    assert "audit_anchor" not in _events(records) and "anchor_gap" not in _events(records)
