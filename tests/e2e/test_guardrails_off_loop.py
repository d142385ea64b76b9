"""A large body is scanned off the event loop, with the official SDK through mitmdump: while its
scan is under way (held there by `tests/support/held_scan.py` until the test lets it go, so that
the test knows it is, whatever the machine's load), a small call is answered; the large call then
goes on redacted, or refused, as the guardrails say."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from tests.support import guardrail_samples as samples
from tests.support.clients import run_client

VIRTUAL = "tg-off-loop-alice-0001"
HELD_SCAN = Path(__file__).resolve().parents[1] / "support" / "held_scan.py"
PAIR = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"
CARD = samples.SAMPLES["pii.payment_card"][0]
# Made by the client, before what it names: 300 KB of code, larger than the size from which a
# body is scanned in a worker thread (64 KiB).
FILLER = '"def f(x):\\n    return x * 2\\n" * (300_000 // 28)'
WAIT_S = 20.0  # the longest any step waits for another


def config(urls: dict[str, str], secrets: str = "redact") -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-off-loop-0001"]}},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "guardrails": [
            {"detect": ["secrets", "pii"], "action": "redact"},
            {"detect": ["pii.payment_card"], "action": "deny"},
            {"detect": ["secrets"], "action": secrets},
        ],
    }


@pytest.fixture
def held(start_gateway, tmp_path):
    scanning, release = tmp_path / "scanning", tmp_path / "release"
    gateway = start_gateway(
        config,
        "-s",
        str(HELD_SCAN),
        env={"TOLLGATE_TEST_SCANNING": str(scanning), "TOLLGATE_TEST_RELEASE": str(release)},
        providers=("openai",),
    )
    gateway.scanning, gateway.release = scanning, release
    yield gateway
    release.touch()  # a held scan let go, whatever the test did


def large_call(gw, tail: str) -> tuple[threading.Thread, dict]:
    """The large call (FILLER, then `tail`), made from a thread: what its client reported, once
    the thread has ended."""
    reported: dict = {}
    code = f"""
        import openai
        try:
            r = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0, timeout={WAIT_S * 2}).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": {FILLER} + {json.dumps(tail)}}}])
            report(status=200)
        except openai.APIStatusError as e:
            report(status=e.status_code, error=e.response.headers.get("x-tollgate-error"))
        """

    def call() -> None:
        reported.update(run_client(code, gw.proxy.proxy_url, gw.bundle, timeout=WAIT_S * 3))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, reported


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"no scan under way within {WAIT_S} s"
        time.sleep(0.02)


def small_call(gw) -> dict:
    return run_client(
        f"""
        import openai
        try:
            r = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0, timeout={WAIT_S}).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": "hello"}}])
            report(ok=r.choices[0].message.content is not None)
        except openai.APIError as e:
            report(ok=False, error=type(e).__name__)
        """,
        gw.proxy.proxy_url,
        gw.bundle,
        timeout=WAIT_S * 2,
    )


def test_a_small_call_is_answered_while_a_large_body_is_scanned(held):
    thread, reported = large_call(held, "HOLD-SCAN\n" + PAIR)
    wait_for(held.scanning)
    # The large call's scan is held: the small one is answered meanwhile, and is the only call
    # the upstream has seen and the audit has written.
    assert small_call(held) == {"ok": True}
    assert [r.json()["messages"][0]["content"] for r in held.fakes["openai"].received] == ["hello"]
    assert held.wait_audit(1, WAIT_S)[0]["findings"] == {}
    assert not reported
    held.release.touch()
    thread.join(WAIT_S * 3)
    assert reported == {"status": 200}
    # Its scan applied once it ended: the upstream got it redacted, the audit counts its findings.
    sent = held.fakes["openai"].received[-1].json()["messages"][0]["content"]
    assert sent.endswith(
        "HOLD-SCAN\nAWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
    )
    records = held.wait_audit(2, WAIT_S)
    assert [r["findings"] for r in records] == [
        {},
        {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1},
    ]
    assert records[1]["redacted"] == 2


def test_a_large_body_denied_once_scanned_is_refused_and_never_sent(held):
    thread, reported = large_call(held, f"HOLD-SCAN\ncard {CARD}\n")
    wait_for(held.scanning)
    assert small_call(held) == {"ok": True}
    held.release.touch()
    thread.join(WAIT_S * 3)
    assert reported == {"status": 403, "error": "content_denied"}
    assert [r.json()["messages"][0]["content"] for r in held.fakes["openai"].received] == ["hello"]
    record = held.wait_audit(2, WAIT_S)[1]
    assert (record["decision"], record["status"], record["findings"]) == ("deny", 403, {"pii.payment_card": 1})


def test_a_reload_while_a_large_body_is_scanned_leaves_its_scan_to_the_rules_it_began_with(held):
    thread, reported = large_call(held, "HOLD-SCAN\n" + PAIR)
    wait_for(held.scanning)
    # Reloaded while the scan is held (the proxy reads its file and swaps the rules meanwhile):
    # secrets are denied from now on.
    held.reconfigure(lambda urls: config(urls, secrets="deny"), timeout=WAIT_S)
    held.release.touch()
    thread.join(WAIT_S * 3)
    assert reported == {"status": 200}
    sent = held.fakes["openai"].received[-1].json()["messages"][0]["content"]
    assert sent.endswith("AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n")
    # The next call is read by the rules now in force.
    held.scanning.unlink()
    thread, reported = large_call(held, "HOLD-SCAN\n" + PAIR)
    thread.join(WAIT_S * 3)
    assert reported == {"status": 403, "error": "content_denied"}
    assert len(held.fakes["openai"].received) == 1
