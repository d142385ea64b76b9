"""One request cannot blind the console: a call refused 401 with a 2.2 MB `model` writes an audit
line of at most 64 KiB (the model cut to 256 characters), the proxy's console line is cut the same
way, a normal call after it shows in `tollgate console`, and the console restarts. A line longer
than what the console reads at once, written into the file by another hand, is listed as
`malformed` and the console goes on following the file."""

from __future__ import annotations

import time

import pytest
from tests.e2e.test_console_rotation import (
    CALL,
    alice_calls,
    api,
    console_after_a_call,
    start_console,
    stop,
)
from tests.support.configs import openai_with_clients

ALICE = "tg-alice-ROTATION-0001"  # CALL's key
REAL_KEY = "sk-real-BOUNDS-KEY-0003"
WRONG = "tg-nobody-BOUNDS-0004"
HUGE = 2_200_000
BIG_MODEL = f"""
import openai
try:
    openai.OpenAI(api_key="{WRONG}", max_retries=0).chat.completions.create(
        model="m" * {HUGE}, messages=[{{"role": "user", "content": "hello"}}])
except openai.APIStatusError as e:
    report(status=e.status_code)
"""


@pytest.fixture
def gw(start_gateway):
    return start_gateway(
        openai_with_clients(REAL_KEY, {"alice": ALICE}),
        providers=("openai",),
    )


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_huge_model_neither_fills_the_audit_nor_blinds_the_console(gw) -> None:
    audit = gw.audit_path
    process, base, token = console_after_a_call(gw)
    try:
        assert gw.run(BIG_MODEL) == {"status": 401}
        refused = gw.last_audit()
        assert (refused["refusal"], refused["model"]) == ("unauthenticated", "m" * 255 + "…")
        assert max(len(line) for line in audit.read_bytes().splitlines()) <= 64 * 1024
        assert gw.run(CALL) == {"ok": True}
        assert alice_calls(base, token, 2) == 2
        assert wait_for(lambda: [e["model"] for e in api(base, token, "/api/events")["events"]
                                 if e["event"] == "llm_call"][-2:] == ["m" * 255 + "…", "gpt-4o-mini"])  # fmt: skip
        assert wait_for(lambda: {row["state"] for row in api(base, token, "/api/audit")} == {"whole"})
    finally:
        assert "longer than" not in stop(process)
    # The proxy's own line for the call names the model cut likewise.
    lines = [line for line in gw.proxy.console().splitlines() if "unauthenticated" in line]
    assert len(lines) == 1 and f"openai/{'m' * 255}… ·" in lines[0] and len(lines[0]) < 400, lines
    process, base, token = start_console(gw)
    try:
        assert alice_calls(base, token, 2) == 2
    finally:
        assert "longer than" not in stop(process)


def test_a_line_longer_than_a_read_is_malformed_and_the_console_goes_on(gw) -> None:
    audit = gw.audit_path
    process, base, token = console_after_a_call(gw)
    try:
        offset = audit.stat().st_size
        long_line = b'{"event":"llm_call","model":"' + b"x" * (5 << 20) + b'"}\n'
        with audit.open("ab") as f:  # another hand than Tollgate's writes into the file
            f.write(long_line)
        assert gw.run(CALL) == {"ok": True}
        assert alice_calls(base, token, 2) == 2
        # Never "whole" over it: a fault of the chain, checked behind the index.
        assert wait_for(lambda: [row["state"] for row in api(base, token, "/api/audit")] == ["fault"])
        events = api(base, token, "/api/events")["events"]
        bad = [e for e in events if e["event"] == "malformed"]
        assert bad == [{"event": "malformed", "file": str(audit), "offset": offset, "length": len(long_line),
                        "unverified": True}]  # fmt: skip
    finally:
        assert "longer than" not in stop(process)
    process, base, token = start_console(gw)  # a restart reads past it too
    try:
        assert alice_calls(base, token, 2) == 2
        assert [e["event"] for e in api(base, token, "/api/events")["events"]].count("malformed") == 1
    finally:
        assert "longer than" not in stop(process)


def test_records_after_a_fault_of_the_chain_are_marked_unverified_in_the_page(gw, tmp_path) -> None:
    """In Chromium: a record changed after it was written makes it, and what comes after it in its
    file, unverified: its row in Live and its person's row in People are marked; the records
    before it are not."""
    from tests.e2e.test_web_console import chromium
    from tests.support.cdp import Browser

    audit = gw.audit_path
    assert gw.run(CALL) == {"ok": True}
    gw.wait_audit(1)
    written = audit.read_bytes()
    assert written.count(b'"client":"alice"') == 1
    audit.write_bytes(written.replace(b'"client":"alice"', b'"client":"carol"'))  # forged in place
    process, base, token = start_console(gw)
    browser = Browser(chromium(), tmp_path / "profile")
    try:
        assert wait_for(lambda: [r["state"] for r in api(base, token, "/api/audit")] == ["fault"])
        browser.go(f"{base}/?token={token}#people")
        people = "document.querySelectorAll('#people tbody tr')"
        browser.wait_for(f"{people}.length === 1")
        rows = f"Array.from({people}).map(r => [r.querySelector('td').textContent, r.classList.contains('unverified')])"
        assert browser.evaluate(rows) == [["carol", True]]
        browser.evaluate("location.hash = 'live'")
        live = "document.querySelectorAll('#live tbody tr')"
        browser.wait_for(f"{live}.length === 2")
        marks = browser.evaluate(
            f"Array.from({live}).map(r => [r.querySelectorAll('td')[1].textContent, r.classList.contains('unverified')])"
        )
        assert marks == [["llm_call", True], ["tollgate_started", False]]
    finally:
        browser.close()
        stop(process)
