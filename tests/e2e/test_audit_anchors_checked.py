"""The anchors checked on an audit a real mitmdump wrote, its checkpoints time-stamped by OpenSSL's
TSA (tests/support/tsa.py), stopped once and started again on the way: `tollgate audit verify
--anchors` says up to which record it is anchored, by which TSA and when, and the gaps; a copy
rewritten and signed again with the signing key is refused; a token of it is checked by
`openssl ts -verify` as docs/audit.md says; and the console's Audit view shows the anchor, and the
rewritten copy as a fault, in Debian's Chromium (its screenshots kept under TOLLGATE_SCREENSHOTS,
else the test's own directory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_audit_chain import key_files
from tests.support.cdp import Browser, chromium
from tests.support.cli import console_running, run_tollgate
from tests.support.proxy import free_port
from tests.support.tsa import Tsa
from tests.unit.anchored_audit import rewritten
from tests.unit.records.test_audit_anchor_docs import run as run_docs_commands

from tollgate.common.audit_chain import load_signing_key

ALICE = "tg-alice-ANCHORS-0001"
CALL = f"""
    from openai import OpenAI
    r = OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    report(tokens=r.usage.total_tokens)
"""


@dataclass
class Written:
    path: Path  # the audit file, its gateway stopped
    config: Path
    tsa: Tsa
    public: Path
    private: Path
    records: list[dict[str, Any]]


def wait_for(gw: Any, event: str, after: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The records of `event` after the first `after` records, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in gw.audit_records()[after:] if r["event"] == event]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {event} record within {timeout} s")


@pytest.fixture(scope="module")
def written(start_gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tsa = Tsa.start(tmp_path_factory.mktemp("tsa"))
    private, public = key_files(tmp_path_factory.mktemp("keys"))
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-ANCHORS"]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "audit": {
                "signing_key": str(private), "checkpoint_s": 1,
                "anchor": {"tsa": [tsa.url], "ca_file": str(tsa.ca_file), "every_s": 1},
            },
        },
        providers=("openai",),
    )  # fmt: skip
    try:
        assert gw.run(CALL) == {"tokens": 28}
        wait_for(gw, "audit_anchor", 0)
        tsa.down()  # connections refused: gaps
        before = len(gw.audit_records())
        assert gw.run(CALL) == {"tokens": 28}
        wait_for(gw, "anchor_gap", before)
        tsa.up()
        before = len(gw.audit_records())
        assert gw.run(CALL) == {"tokens": 28}
        wait_for(gw, "audit_anchor", before)
        gw.proxy.stop()
        records = [json.loads(line) for line in gw.audit_path.read_text().splitlines()]
        yield Written(gw.audit_path, gw.config_path, tsa, public, private, records)
    finally:
        tsa.close()


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tollgate("audit", "verify", *args)


def rewritten_copy(written: Written, directory: Path) -> Path:
    """The audit with the first call's tokens changed, chained again and every checkpoint signed
    again with the signing key: what an operator who holds it can do after the anchors."""
    stripped = [{k: v for k, v in r.items() if k not in ("seq", "chain")} for r in written.records]
    first_call = next(i for i, r in enumerate(stripped) if r["event"] == "llm_call")
    key = load_signing_key(written.private)
    copy = directory / "audit.jsonl"
    lines = rewritten(stripped, {first_call: {"input_tokens": 1}}, key=key)
    copy.write_bytes(b"".join(line + b"\n" for line in lines))
    return copy


def test_verify_says_up_to_where_the_audit_is_anchored_and_the_gaps(written: Written) -> None:
    records, path, tsa = written.records, written.path, written.tsa
    anchors = [(n, r) for n, r in enumerate(records, 1) if r["event"] == "audit_anchor"]
    gaps = [(n, r) for n, r in enumerate(records, 1) if r["event"] == "anchor_gap"]
    assert anchors and gaps
    _, last = anchors[-1]
    gap_line, gap = gaps[-1]
    instance = records[0]["instance"]
    done = verify(str(path), "--key", str(written.public), "--anchors", str(tsa.ca_file))
    assert done.returncode == 0, done.stdout + done.stderr
    checkpoints = sum(r["event"] == "audit_checkpoint" for r in records)
    assert done.stdout.splitlines() == [
        f"anchored: {instance} to seq {last['covers_seq']} of its run of {path}:1 ({path}:{last['covers_seq']}), by"
        f" {tsa.url} at {last['gen_time']}; {len(records) - last['covers_seq']} records after it not anchored yet",
        f"anchor gaps: {instance}: {len(gaps)} anchor_gap record{'s' if len(gaps) > 1 else ''}, the last at"
        f" {path}:{gap_line} ({tsa.url}: {gap['error']})",
        f"whole: {len(records)} records, 1 instance, 1 run, {checkpoints} checkpoints, {checkpoints} signatures"
        f" verified, {len(anchors)} anchors verified",
        f"last record: {records[-1]['ts']}; last signed checkpoint: {records[-1]['ts']}",
    ]
    # Another CA's roots: every token refused.
    done = verify(str(path), "--anchors", str(tsa.foreign_ca_file))
    assert done.returncode == 1
    refused = [line for line in done.stdout.splitlines() if " does not verify: " in line]
    assert [line.split(": ")[0] for line in refused] == [f"{path}:{n}" for n, _ in anchors]


def test_a_copy_rewritten_and_signed_again_with_the_key_is_refused(written: Written, tmp_path: Path) -> None:
    copy = rewritten_copy(written, tmp_path)
    done = verify(str(copy), "--key", str(written.public))
    assert done.returncode == 0, done.stdout  # the key alone cannot tell
    done = verify(str(copy), "--key", str(written.public), "--anchors", str(written.tsa.ca_file))
    assert done.returncode == 1
    anchors = [n for n, r in enumerate(written.records, 1) if r["event"] == "audit_anchor"]
    faults = [line for line in done.stdout.splitlines() if ": rewritten: " in line]
    assert [line.split(": ")[0] for line in faults] == [f"{copy}:{n}" for n in anchors]
    assert faults[0].endswith("the records up to there were changed after they were anchored")


def test_the_docs_openssl_commands_check_its_last_token(written: Written, tmp_path: Path) -> None:
    shutil.copy(written.path, tmp_path / "audit.jsonl")
    shutil.copy(written.tsa.ca_file, tmp_path / "tsa-roots.pem")
    done = run_docs_commands(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "Verification: OK"
    assert done.stdout.splitlines()[2] == "TSA: DirName:/O=Tollgate tests/CN=tsa test TSA"


def audit_view(written: Written, path: Path, shot: Path, profile: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`tollgate console PATH` with the gateway's configuration (its audit.anchor): /api/audit's rows
    once the chain is checked, and the Audit view's first row in Chromium (its cells by their
    column's heading), its screenshot taken."""
    port = free_port()
    pattern = rf"Tollgate console: http://127\.0\.0\.1:{port}/\?token=[\w-]{{32}}\n"
    with console_running(written.config, pattern, str(path), "--listen", f"127.0.0.1:{port}", cwd=path.parent) as run:
        base, token = run.address.split("/?token=")
        deadline = time.monotonic() + 15
        while True:  # the chain is checked behind the views
            state = api(base, token, "/api/audit")
            if all(r["state"] != "checking" for r in state) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        browser = Browser(chromium(), profile)
        try:
            browser.go(f"{run.address}#audit")
            rows = "document.querySelectorAll('#audit tbody tr')"
            browser.wait_for(f"{rows}.length > 0")
            cells = browser.evaluate(f"Array.from({rows}[0].querySelectorAll('td')).map(c => c.textContent)")
            headers = browser.evaluate("Array.from(document.querySelectorAll('#audit th')).map(c => c.textContent)")
            browser.screenshot(shot)
        finally:
            browser.close()
    return state, dict(zip(headers, cells, strict=True))


def api(base: str, token: str, path: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_the_console_shows_the_last_anchor_and_a_rewrite_as_a_fault(written: Written, tmp_path: Path) -> None:
    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    records = written.records
    last = [r for r in records if r["event"] == "audit_anchor"][-1]
    gaps = [r for r in records if r["event"] == "anchor_gap"]
    whole = tmp_path / "whole"
    whole.mkdir()
    shutil.copy(written.path, whole / "audit.jsonl")
    state, row = audit_view(written, whole / "audit.jsonl", shots / "console-audit-anchored.png", tmp_path / "p1")
    assert [(r["state"], r["anchor"]["seq"], r["anchor"]["gen_time"], r["anchor_gaps"]) for r in state] == [
        ("whole", last["covers_seq"], last["gen_time"], len(gaps))
    ]
    assert row["state"] == "whole"
    when, to, by, after = row["last anchor"].split("\n")
    assert when.startswith(f"{last['gen_time']} (") and when.endswith(" s ago)")
    assert (to, by) == (f"to seq {last['covers_seq']} (audit.jsonl:{last['covers_seq']})", f"by {written.tsa.url}")
    assert after == f"{len(records) - last['covers_seq']} records after it not anchored yet"
    gap_line = max(n for n, r in enumerate(records, 1) if r["event"] == "anchor_gap")
    assert (
        row["anchor gaps"] == f"{len(gaps)}, the last at audit.jsonl:{gap_line}\n{written.tsa.url}: {gaps[-1]['error']}"
    )
    assert (shots / "console-audit-anchored.png").stat().st_size > 10_000

    copy_dir = tmp_path / "rewritten"
    copy_dir.mkdir()
    copy = rewritten_copy(written, copy_dir)
    state, row = audit_view(written, copy, shots / "console-audit-rewritten.png", tmp_path / "p2")
    assert [r["state"] for r in state] == ["fault"]
    assert row["state"] == "fault"
    assert ": rewritten: " in row["first fault"]
    assert row["last anchor"] == f"none\n{len(records)} records after it not anchored yet"
