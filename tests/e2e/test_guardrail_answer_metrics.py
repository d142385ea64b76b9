"""Guardrails on answers, counted: after a streamed OpenAI chat answer redacted (an AWS key in its
text, a card number in a tool call's arguments) and one cut at an AWS key, the metrics endpoint
counts each finding by provider, kind and action, and the answer cut by its kind; a JSON answer
too large to read, refused under `unread: deny`, is counted cut as `unread`."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.test_guardrail_answers import READ_JSON, READ_STREAM, Upstream
from tests.e2e.test_guardrail_answers import config as answers_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS = f"127.0.0.1:{_free_port()}"
FAMILIES = ("tollgate_guardrail_answer_findings_total", "tollgate_guardrail_answers_cut_total")


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(
        lambda urls: {**answers_config(urls), "metrics": {"listen": METRICS}}, providers=("openai", "anthropic")
    )
    upstream = Upstream()
    for fake in gateway.fakes.values():
        fake.handler = upstream
    return gateway


def answer_samples() -> dict[tuple[str, ...], float]:
    deadline = time.monotonic() + 10  # the metrics' server opens once the configuration has loaded
    while True:
        try:
            with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
                text = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in FAMILIES:
                labels = sample.labels
                action = (labels["action"],) if "action" in labels else ()
                found[(sample.name, labels["provider"], labels["kind"], *action)] = sample.value
    return found


def test_answer_findings_and_answers_cut_are_counted(gw) -> None:
    before = answer_samples()
    redacted = gw.run("MODEL = 'gpt-4o'\n" + READ_STREAM)
    assert redacted["error"] is None and "[REDACTED:pii.payment_card]" in redacted["args"]
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    denied = gw.run("MODEL = 'gpt-deny-stream'\n" + READ_STREAM)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert gw.last_audit()["error"] == "content_denied"
    unread = gw.run("MODEL = 'gpt-huge-deny'\n" + READ_JSON)
    assert unread["status"] == 403 and gw.last_audit()["answer_findings"] is None
    after = answer_samples()
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("tollgate_guardrail_answer_findings_total", "openai", "secrets.aws_access_key_id", "redact"): 1,
        ("tollgate_guardrail_answer_findings_total", "openai", "pii.payment_card", "redact"): 1,
        ("tollgate_guardrail_answer_findings_total", "openai", "secrets.aws_access_key_id", "deny"): 1,
        ("tollgate_guardrail_answers_cut_total", "openai", "secrets.aws_access_key_id"): 1,
        ("tollgate_guardrail_answers_cut_total", "openai", "unread"): 1,
    }
