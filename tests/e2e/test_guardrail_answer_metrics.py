"""Guardrails on answers, counted: after a streamed OpenAI chat answer redacted (an AWS key in its
text, a card number in a tool call's arguments) and one cut at an AWS key, the metrics endpoint
counts each finding by provider, kind and action, and the answer cut by its kind; a JSON answer
too large to read, refused under `unread: deny`, is counted cut as `unread`."""

from __future__ import annotations

import pytest
from tests.e2e.test_guardrail_answers import READ_JSON, READ_STREAM, Upstream
from tests.e2e.test_guardrail_answers import config as answers_config
from tests.support.answers import answer_samples, answered_by
from tests.support.proxy import free_port

METRICS = f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def gw(start_gateway):
    config = lambda urls: {**answers_config(urls), "metrics": {"listen": METRICS}}  # noqa: E731
    return answered_by(start_gateway(config, providers=("openai", "anthropic")), Upstream())


def test_answer_findings_and_answers_cut_are_counted(gw) -> None:
    before = answer_samples(METRICS)
    redacted = gw.run("MODEL = 'gpt-4o'\n" + READ_STREAM)
    assert redacted["error"] is None and "[REDACTED:pii.payment_card]" in redacted["args"]
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    denied = gw.run("MODEL = 'gpt-deny-stream'\n" + READ_STREAM)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert gw.last_audit()["error"] == "content_denied"
    unread = gw.run("MODEL = 'gpt-huge-deny'\n" + READ_JSON)
    assert unread["status"] == 403 and gw.last_audit()["answer_findings"] is None
    after = answer_samples(METRICS)
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("tollgate_guardrail_answer_findings_total", "openai", "secrets.aws_access_key_id", "redact"): 1,
        ("tollgate_guardrail_answer_findings_total", "openai", "pii.payment_card", "redact"): 1,
        ("tollgate_guardrail_answer_findings_total", "openai", "secrets.aws_access_key_id", "deny"): 1,
        ("tollgate_guardrail_answers_cut_total", "openai", "secrets.aws_access_key_id"): 1,
        ("tollgate_guardrail_answers_cut_total", "openai", "unread"): 1,
    }
