"""The audit anchored outside the operator's reach: a real mitmdump with `audit.anchor` and a real
TSA (OpenSSL's `openssl ts -reply`, tests/support/tsa.py). Its checkpoints are time-stamped, each
token checked by `openssl ts -verify` as docs/audit.md says; a TSA stopped and started again leaves
`anchor_gap` records while down, counted on /metrics, and anchors the later checkpoints."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_tollgate
from tests.support.metrics import scrape
from tests.support.proxy import free_port
from tests.support.tsa import Tsa, openssl_verify

ALICE = "tg-alice-anchor-0123456789"
TSA_KEY = "tsa-secret-key-0001"
CALLS = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    report(tokens=r.usage.total_tokens)
"""


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[Tsa]:
    tsa = Tsa.start(tmp_path / "tsa")
    yield tsa
    tsa.close()


@pytest.fixture(params=[False, True], ids=["its certificate alone", "its chain sent"])
def either_tsa(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Tsa]:
    """A TSA that sends its certificate alone, and one that sends its chain after it (an
    intermediate CA and the root, as OpenSSL's `certs =` does: not in DER's order)."""
    tsa = Tsa.start(tmp_path / "tsa", chain=request.param)
    yield tsa
    tsa.close()


def gateway(start_gateway, tsa: Tsa, metrics_listen: str | None = None):
    def build(urls: dict[str, str]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-0001"]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "audit": {
                "checkpoint_s": 0.5,
                "anchor": {
                    "tsa": [tsa.url],
                    "ca_file": str(tsa.ca_file),
                    "every_s": 0.5,
                    "headers": {"authorization": "Bearer ${TSA_KEY}"},
                },
            },
        }
        if metrics_listen is not None:
            config["metrics"] = {"listen": metrics_listen}
        return config

    return start_gateway(build, providers=("openai",), env={"TSA_KEY": TSA_KEY})


def records_until(gw, done, what: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The audit's records once `done(records)` holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        records = gw.audit_records()
        if done(records):
            return records
        assert time.monotonic() < deadline, f"no {what} within {timeout} s: {[r['event'] for r in records]}"
        time.sleep(0.1)


def of(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == event]


def gaps_counted(listen: str, tsa: Tsa) -> float:
    found = re.search(
        rf'^tollgate_audit_anchor_gaps_total\{{tsa="{re.escape(tsa.url)}"\}} (\S+)$', scrape(listen), re.M
    )
    return 0.0 if found is None else float(found.group(1))


def test_checkpoints_are_anchored_and_openssl_verifies_each_token(
    start_gateway, either_tsa: Tsa, tmp_path: Path
) -> None:
    tsa = either_tsa
    gw = gateway(start_gateway, tsa)
    records_until(gw, lambda rs: len(of(rs, "audit_anchor")) >= 1, "first anchor")  # the started record's checkpoint
    assert gw.run(CALLS.format(key=ALICE)) == {"tokens": 28}
    records_until(gw, lambda rs: len(of(rs, "audit_anchor")) >= 2, "second anchor")
    console = gw.proxy.console()
    gw.proxy.stop()

    records = gw.audit_records()
    checkpoints = {r["covers_seq"]: r for r in of(records, "audit_checkpoint")}
    anchors = of(records, "audit_anchor")
    assert of(records, "anchor_gap") == []
    assert [r["event"] for r in records[-2:]] == ["tollgate_stopped", "audit_checkpoint"]
    assert records[-1]["covers_seq"] not in {a["covers_seq"] for a in anchors}  # the stop's is not anchored
    for anchor in anchors:
        assert list(anchor) == [
            "event", "instance", "ts", "covers_seq", "covers_chain", "tsa", "gen_time", "token", "seq", "chain"
        ]  # fmt: skip
        assert anchor["covers_chain"] == checkpoints[anchor["covers_seq"]]["covers_chain"]
        assert anchor["tsa"] == tsa.url
        # As docs/audit.md says an auditor checks one: FILE holds the 64 characters of covers_chain.
        done = openssl_verify(base64.b64decode(anchor["token"]), anchor["covers_chain"].encode(), tsa.ca_file, tmp_path)
        assert (done.returncode, done.stdout) == (0, "Verification: OK\n"), done.stderr
    assert len(anchors) == tsa.replies  # each token the TSA gave is recorded
    assert {r.headers["authorization"] for r in tsa.requests} == {f"Bearer {TSA_KEY}"}
    assert TSA_KEY not in gw.audit_path.read_text() and TSA_KEY not in console
    verified = run_tollgate("audit", "verify", str(gw.audit_path), "--anchors", str(tsa.ca_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"whole: {len(records)} records, 1 instance, 1 run," in verified.stdout, verified.stdout
    assert verified.stdout.rstrip().splitlines()[-2].endswith(f", {len(anchors)} anchors verified"), verified.stdout


def test_a_tsa_stopped_and_started_again(start_gateway, tsa: Tsa, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    tsa.down()
    gw = gateway(start_gateway, tsa, listen)
    records = records_until(gw, lambda rs: len(of(rs, "anchor_gap")) >= 1, "gap")
    assert gw.run(CALLS.format(key=ALICE)) == {"tokens": 28}
    records = records_until(gw, lambda rs: len(of(rs, "anchor_gap")) >= 2, "second gap")
    gaps = of(records, "anchor_gap")
    assert {(g["tsa"], g["error"]) for g in gaps} == {(tsa.url, "cannot reach the TSA: Connection refused")}
    assert of(records, "audit_anchor") == []
    assert list(gaps[0]) == ["event", "instance", "ts", "covers_seq", "tsa", "error", "seq", "chain"]
    checkpoints = {r["covers_seq"] for r in of(records, "audit_checkpoint")}
    assert {g["covers_seq"] for g in gaps} <= checkpoints
    gw.wait_console(f"not anchored by {tsa.url}: cannot reach the TSA: Connection refused")

    tsa.up()
    last_gap = max(g["covers_seq"] for g in gaps)
    assert gw.run(CALLS.format(key=ALICE)) == {"tokens": 28}
    records = records_until(
        gw, lambda rs: any(a["covers_seq"] > last_gap for a in of(rs, "audit_anchor")), "anchor after the TSA came back"
    )
    gw.wait_console(f"the audit is anchored by {tsa.url} again")
    counted = gaps_counted(listen, tsa)
    gw.proxy.stop()

    records = gw.audit_records()
    gaps = of(records, "anchor_gap")
    assert counted == len(gaps)
    checkpoints_by_seq = {r["covers_seq"]: r for r in of(records, "audit_checkpoint")}
    for anchor in of(records, "audit_anchor"):
        assert anchor["covers_chain"] == checkpoints_by_seq[anchor["covers_seq"]]["covers_chain"]
        done = openssl_verify(base64.b64decode(anchor["token"]), anchor["covers_chain"].encode(), tsa.ca_file, tmp_path)
        assert done.returncode == 0, done.stderr
    verified = run_tollgate("audit", "verify", str(gw.audit_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
