"""`tollgate console` follows the audit across a real rotation while mitmdump runs: the file moved
to `audit.jsonl.1` (logrotate's `create`), Tollgate opens a new one at its next record, and the
console reads what is left of the old file, then the new one. Restarted, it reads its index saved
beside the audit (which still fits the file, now `.1`) and only what came since."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest
from tests.support.cli import console_process
from tests.support.configs import openai_with_clients
from tests.support.proxy import free_port

ALICE = "tg-alice-ROTATION-0001"
REAL_KEY = "sk-real-ROTATION-KEY-0002"
CALL = f"""
import openai
openai.OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{{"role": "user", "content": "hello"}}])
report(ok=True)
"""


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        openai_with_clients(REAL_KEY, {"alice": ALICE}),
        providers=("openai",),
    )


def start_console(gw) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    process, line = console_process(gw.config_path, "--listen", f"127.0.0.1:{port}")
    assert re.fullmatch(rf"Tollgate console: http://127\.0\.0\.1:{port}/\?token=[\w-]{{32}}\n", line), line
    return process, f"http://127.0.0.1:{port}", line.rsplit("=", 1)[1].strip()


def api(base: str, token: str, path: str):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def alice_calls(base: str, token: str, expected: int, seconds: float = 5.0) -> int:
    """Alice's calls as the People view counts them, once they are `expected` (or the last count)."""
    deadline = time.monotonic() + seconds
    while True:
        calls = sum(p["calls"] for p in api(base, token, "/api/people") if p["client"] == "alice")
        if calls == expected or time.monotonic() > deadline:
            return calls
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    _, err = process.communicate(timeout=10)
    return err


def console_after_a_call(gw) -> tuple[subprocess.Popen, str, str]:
    """One call of Alice's audited, then a console started that counts it; stopped if it does not."""
    assert gw.run(CALL) == {"ok": True}
    gw.wait_audit(1)
    process, base, token = start_console(gw)
    try:
        assert alice_calls(base, token, 1) == 1
    except BaseException:
        stop(process)
        raise
    return process, base, token


def test_the_console_follows_a_rotation_and_remembers_its_index(gw) -> None:
    audit = gw.audit_path
    process, base, token = console_after_a_call(gw)
    try:
        audit.rename(audit.with_name("audit.jsonl.1"))  # logrotate's create: the file moved away
        assert gw.run(CALL) == {"ok": True}
        deadline = time.monotonic() + 10
        while not (audit.exists() and '"llm_call"' in audit.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alice_calls(base, token, 2) == 2
        events = api(base, token, "/api/events")["events"]
        assert [e["event"] for e in events].count("llm_call") == 2
        files = {row["file"] for row in api(base, token, "/api/audit")}
        assert files == {str(audit.with_name("audit.jsonl.1")), str(audit)}
    finally:
        stop(process)
    remembered = audit.with_name("audit.jsonl.console-index")
    assert remembered.is_file() and remembered.stat().st_mode & 0o777 == 0o600
    assert b"hello" not in remembered.read_bytes() and REAL_KEY.encode() not in remembered.read_bytes()
    assert ALICE.encode() not in remembered.read_bytes()
    assert gw.run(CALL) == {"ok": True}  # written while no console runs
    deadline = time.monotonic() + 10
    while audit.read_text().count('"llm_call"') < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process, base, token = start_console(gw)
    try:
        assert alice_calls(base, token, 3) == 3
    finally:
        err = stop(process)
    assert re.search(rf"records read in [\d.]+ s from .* \(\d+ of them from {re.escape(str(remembered))}\)", err), err
