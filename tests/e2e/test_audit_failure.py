"""A call that cannot be recorded is not served: while the audit file cannot be written, calls are
refused with a 503 in the provider's shape before anything goes upstream; once it can, calls are
served again and every record — the refused calls' too — is in the file, whole and in order."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

REAL = {"openai": "sk-REAL-openai-audit-1", "anthropic": "sk-ant-REAL-audit-2"}
ALICE = "tg-alice-audit-0123456789"
PROMPT = "PROMPT-TEXT-while-the-audit-fails"


def _wait_for(condition, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")


def _point(link: Path, target: str) -> None:
    """Swap what the symlink names in one step, as an operator's `ln -sfn` does."""
    new = link.with_name(link.name + ".new")
    new.symlink_to(target)
    os.replace(new, link)


OPENAI_CALL = f"""
    import openai
    client = openai.OpenAI(api_key="{ALICE}", max_retries=0)
    try:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(status=200, tokens=r.usage.total_tokens)
    except openai.APIStatusError as e:
        report(error=type(e).__name__, status=e.status_code, reason=e.response.headers.get("x-tollgate-error"),
               body=e.response.json())
"""

ANTHROPIC_CALL = f"""
    import anthropic
    client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
    try:
        r = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                   messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(status=200)
    except anthropic.APIStatusError as e:
        report(error=type(e).__name__, status=e.status_code, reason=e.response.headers.get("x-tollgate-error"),
               body=e.response.json())
"""


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    directory = tmp_path_factory.mktemp("audit")
    link = directory / "audit.jsonl"
    link.symlink_to(directory / "first.jsonl")  # the file Tollgate starts with, then a full disk

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {name: {"upstream": urls[name], "keys": [key]} for name, key in REAL.items()},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "audit": {"path": str(link)},
        }

    gateway = start_gateway(config, "--set", "flow_detail=4", "--set", "termlog_verbosity=debug")
    gateway.link = link
    return gateway


def test_calls_are_refused_while_the_audit_cannot_be_written_and_every_record_follows(gw):
    openai_fake, anthropic_fake = gw.fakes["openai"], gw.fakes["anthropic"]
    first_file = gw.link.with_name("first.jsonl")
    # Written as Tollgate loads (mitmdump may take a connection before then).
    started = _wait_for(lambda: first_file.exists() and first_file.read_text(), "the started record")
    assert [json.loads(line)["event"] for line in started.splitlines()] == ["tollgate_started"]
    # The disk fills up (every write fails with ENOSPC): the audit writer follows the path there.
    _point(gw.link, "/dev/full")
    # The first call is served: nothing has failed yet. Its record is the one that cannot be written.
    first = gw.run(OPENAI_CALL)
    assert first == {"status": 200, "tokens": 28}
    assert len(openai_fake.received) == 1
    _wait_for(lambda: "cannot write the audit to" in gw.proxy.console(), "the audit writer to fail")

    refused = gw.run(OPENAI_CALL)
    assert (refused["error"], refused["status"], refused["reason"]) == ("InternalServerError", 503, "audit_unavailable")
    error = refused["body"]["error"]
    assert (error["type"], error["code"]) == ("server_error", "audit_unavailable") and "audit" in error["message"]

    refused = gw.run(ANTHROPIC_CALL)
    assert (refused["error"], refused["status"], refused["reason"]) == (
        "ServiceUnavailableError",
        503,
        "audit_unavailable",
    )
    assert refused["body"]["type"] == "error" and refused["body"]["error"]["type"] == "api_error"

    assert len(openai_fake.received) == 1 and anthropic_fake.received == []  # nothing went upstream

    real = gw.link.with_name("real.jsonl")
    real.write_bytes(b"")
    _point(gw.link, str(real))
    _wait_for(lambda: "is written to" in gw.proxy.console(), "the audit writer to recover")

    served = gw.run(ANTHROPIC_CALL)
    assert served == {"status": 200}
    assert len(anthropic_fake.received) == 1

    def records() -> list[dict] | None:
        data = real.read_bytes()
        lines = data.split(b"\n")
        return [json.loads(line) for line in lines[:-1]] if len(lines) == 5 else None

    first_record, refused_openai, refused_anthropic, served_record = _wait_for(records, "four audit records")
    assert real.read_bytes().endswith(b"\n")
    assert (first_record["provider"], first_record["status"], first_record["error"]) == ("openai", 200, None)
    assert (refused_openai["provider"], refused_openai["status"], refused_openai["error"]) == (
        "openai",
        503,
        "audit unavailable",
    )
    assert (refused_anthropic["provider"], refused_anthropic["status"], refused_anthropic["error"]) == (
        "anthropic",
        503,
        "audit unavailable",
    )
    assert (served_record["provider"], served_record["status"], served_record["error"]) == ("anthropic", 200, None)
    assert first_record["ts"] <= refused_openai["ts"] <= refused_anthropic["ts"] <= served_record["ts"]
    assert refused_openai["client"] == "alice"  # refused before Identify ran, and named by its key all the same

    console = gw.proxy.console()
    assert console.count("cannot write the audit to") == 1 and console.count("is written to") == 1
    for secret in (*REAL.values(), ALICE, PROMPT):
        assert secret not in console
