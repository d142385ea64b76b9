"""The per-call record: its audit form, the credential fingerprint, the one-line summary and the flow marker."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.utils.emoji import emoji
from tests.support.examples import examples

from tollgate.calls.call import Answer, Call, Caller, Failure, Route, Target, Verdict
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import Config, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.usage import Usage
from tollgate.records.audit.audit_record import audit_record, utc_timestamp
from tollgate.records.audit.summary import FAILED_MARKER, REFUSED_MARKER, flow_marker, summary

LOADED = Loaded.build(Config())

# The fields of a call neither classified nor answered yet: null in its record.
NULL_ON_A_BARE_CALL = (
    "endpoint",
    "requested_model",
    "model",
    "message_count",
    "has_system",
    "has_tools",
    "stream",
    "status",
    "upstream",
    "upstream_key",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "finish_reason",
    "error",
)

# Every field DESIGN.md's "Audit record" table names.
DESIGN_FIELDS = {
    "event",
    "ts",
    "request_id",
    "client",
    "auth",
    "provider",
    "method",
    "host",
    "path",
    "decision",
    "deny_reasons",
    "findings",
    "redacted",
    "answer_findings",
    "latency_ms",
    "cache_write_tokens",
    "service_tier",
    "speed",
    "cost_usd",
    "ledger_error",
    "rolled_up_messages",
    "rollup",
    "attempts",
    "account",
    "plan",
    "tenant",
    *NULL_ON_A_BARE_CALL,
}

STARTED = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC).timestamp()


def full_call() -> Call:
    return Call(
        Route(Target("openai", "gpt-4o"), Target("openai", "gpt-4o-mini"), "https://api.openai.com"),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        request_id="0123456789abcdef0123456789abcdef",
        started=STARTED,
        classification=Classification(
            endpoint="chat.completions",
            model="gpt-4o",
            facts=RequestFacts(message_count=3, has_system=True, has_tools=False, stream=True, max_tokens=256),
            wire_format="openai-api",
        ),
        caller=Caller("alice", ("research",), "virtual_key", credential_positions=("authorization",)),
        verdict=Verdict("allow", ()),
        loaded=LOADED,
        answer=Answer(
            upstream_key=fingerprint("sk-real-key-000000000000"),
            status=200,
            first_byte=STARTED + 0.25,
            ended=STARTED + 1.5,
            findings={"pii.email": 2, "secrets.github_token": 1},
            finding_actions=(("pii.email", "redact", 2), ("secrets.github_token", "audit", 1)),
            bytes_sent=812,
            bytes_received=4096,
            usage=Usage(
                input_tokens=100,
                output_tokens=50,
                total_tokens=150,
                cached_tokens=64,
                reasoning_tokens=10,
                finish_reason="stop",
            ),
            error=None,
        ),
    )


def test_audit_record_has_every_design_field() -> None:
    record = audit_record(full_call())
    missing = DESIGN_FIELDS - record.keys()
    assert not missing


def test_audit_record_values() -> None:
    record = audit_record(full_call())
    assert record == {
        "event": "llm_call",
        "ts": "2025-03-04T05:06:07.891Z",
        "request_id": "0123456789abcdef0123456789abcdef",
        "client": "alice",
        "auth": "virtual_key",
        "groups": ["research"],
        "account": None,
        "plan": None,
        "tenant": None,
        "provider": "openai",
        "requested_provider": "openai",
        "endpoint": "chat.completions",
        "upstream_endpoint": "chat.completions",
        "method": "POST",
        "transport": "http",
        "host": "api.openai.com",
        "path": "/v1/chat/completions",
        "requested_model": "gpt-4o",
        "publisher": None,
        "model": "gpt-4o-mini",
        "message_count": 3,
        "has_system": True,
        "has_tools": False,
        "stream": True,
        "max_tokens": 256,
        "decision": "allow",
        "deny_reasons": [],
        "findings": None,
        "redacted": None,
        "answer_findings": {"pii.email": 2, "secrets.github_token": 1},
        "answer_redacted": 2,  # the findings whose rule redacts
        "tool_calls": None,
        "tool_findings": None,
        "unread": [],
        "status": 200,
        "upstream": "https://api.openai.com",
        "upstream_key": fingerprint("sk-real-key-000000000000"),
        "latency_ms": 1500.0,
        "ttfb_ms": 250.0,
        "bytes_sent": 812,
        "bytes_received": 4096,
        "input_tokens": 100,
        "output_tokens": 50,
        "total_tokens": 150,
        "cached_tokens": 64,
        "reasoning_tokens": 10,
        "cache_write_tokens": None,
        "service_tier": None,
        "speed": None,
        # gpt-4o-mini ($ per Mtok): 36 x 0.15 + 64 cache reads x 0.075 + 50 x 0.6
        "cost_usd": 0.0000402,
        "finish_reason": "stop",
        "error": None,
        "refusal": None,
        "ledger_error": None,
        "rolled_up_messages": None,
        "rollup": None,
        "attempts": None,
    }


def test_cost_of_a_call_uses_its_configuration_and_start() -> None:
    call = full_call()
    assert call.cost_nanousd() == 40_200
    call.loaded = Loaded.build(
        parse_config({"prices": [{"match": {"group": "research"}, "input_per_mtok": 1, "output_per_mtok": 2}]}, {})
    )
    assert call.cost_nanousd() == 100_000 + 100_000
    assert audit_record(call)["cost_usd"] == 0.0002
    call.answer.usage = None
    assert audit_record(call)["cost_usd"] is None
    unloaded = full_call()
    unloaded.loaded = None  # type: ignore[assignment]  # a call refused for want of a configuration
    assert unloaded.cost_nanousd() is None


def test_cache_writes_and_unknown_prices_in_the_record() -> None:
    call = full_call()
    call.route.target = Target("anthropic", "claude-sonnet-4-5")
    call.answer.usage = Usage(input_tokens=165, cached_tokens=100, cache_write_tokens=40, output_tokens=11)
    record = audit_record(call)
    # 25 x 3 + 100 reads x 0.3 + 40 writes x 3.75 + 11 x 15 ($ per Mtok)
    assert (record["cache_write_tokens"], record["cost_usd"]) == (40, 0.00042)
    call.route.target = Target("anthropic", "claude-unreleased")
    assert audit_record(call)["cost_usd"] is None


def test_audit_record_is_json_serialisable() -> None:
    record = audit_record(full_call())
    assert json.loads(json.dumps(record)) == record


def test_audit_record_of_a_bare_call() -> None:
    call = Call(Route.as_called("gemini"), "generativelanguage.googleapis.com", "GET", "/v1beta/models")
    record = audit_record(call)
    assert record.keys() >= DESIGN_FIELDS
    assert record["event"] == "llm_call"
    assert record["client"] is None
    assert record["auth"] == "anonymous"
    assert record["decision"] == "allow"
    assert record["deny_reasons"] == []
    for field in NULL_ON_A_BARE_CALL:
        assert record[field] is None, field
    assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    # Not ended yet: latency so far.
    assert 0.0 <= record["latency_ms"] < 5000.0


def test_request_ids_differ() -> None:
    ids = {Call(Route.as_called("openai"), "h", "POST", "/").request_id for _ in range(50)}
    assert len(ids) == 50


def test_ts_is_the_start_time_in_utc() -> None:
    call = Call(Route.as_called("openai"), "h", "POST", "/", started=0.0, answer=Answer(ended=0.001))
    assert audit_record(call)["ts"] == "1970-01-01T00:00:00.000Z"
    before = time.time()
    record = audit_record(Call(Route.as_called("openai"), "h", "POST", "/"))
    parsed = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert before - 0.002 <= parsed <= time.time()


def test_model_is_the_requested_one_where_no_rule_changed_it() -> None:
    call = full_call()
    call.route.target = call.route.requested
    record = audit_record(call)
    assert record["requested_model"] == record["model"] == "gpt-4o"


def test_target_model_is_the_overrides_else_the_requested_one() -> None:
    call = Call(Route.as_called("openai"), "h", "POST", "/")
    call.classified(Classification(model="gpt-4o"))
    assert (call.target_model, call.route.target, call.route.requested) == ("gpt-4o", *[Target("openai", "gpt-4o")] * 2)
    call.route.target = Target("openai", "gpt-4o-mini")  # an override changed it
    assert (call.target_model, call.route.requested.model) == ("gpt-4o-mini", "gpt-4o")
    assert Call(Route.as_called("openai"), "h", "GET", "/v1/files").target_model is None


def test_requested_provider_is_the_one_whose_host_the_client_called() -> None:
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/")
    assert (call.route.requested.provider, call.route.rerouted) == ("openai", False)
    call.route.target = Target("anthropic", None)  # a route sent it to Anthropic
    assert call.route.rerouted
    record = audit_record(call)
    assert (record["provider"], record["requested_provider"]) == ("anthropic", "openai")


def test_denied_call() -> None:
    call = full_call()
    call.verdict.decision = "deny"
    call.verdict.deny_reasons = ("model gpt-4o is not allowed for group research",)
    call.answer.status = 403
    call.answer.first_byte = None
    call.answer.usage = Usage()
    record = audit_record(call)
    assert record["decision"] == "deny"
    assert record["deny_reasons"] == ["model gpt-4o is not allowed for group research"]
    assert record["status"] == 403
    assert record["ttfb_ms"] is None
    # The record is a copy: changing it does not change the call.
    record["deny_reasons"].append("x")
    assert call.verdict.deny_reasons == ("model gpt-4o is not allowed for group research",)


def test_broken_stream_keeps_status_and_sets_error() -> None:
    call = full_call()
    call.answer.error = "upstream broke off the response: connection reset"
    record = audit_record(call)
    assert record["status"] == 200
    assert record["error"] == "upstream broke off the response: connection reset"


def test_latency_rounding() -> None:
    call = Call(
        Route.as_called("openai"), "h", "POST", "/", started=100.0, answer=Answer(first_byte=100.01234, ended=100.98764)
    )
    record = audit_record(call)
    assert record["latency_ms"] == 987.6
    assert record["ttfb_ms"] == 12.3


def test_audit_record_never_holds_a_secret() -> None:
    secret = "sk-proj-THISISAREALKEY1234567890"
    call = full_call()
    call.answer.upstream_key = fingerprint(secret)
    text = json.dumps(audit_record(call))
    assert secret not in text
    assert secret[-12:] not in text


# --- fingerprint -------------------------------------------------------------------------------------


def test_fingerprint_is_a_known_value() -> None:
    # The first 12 hex digits of sha256("sk-test").
    assert fingerprint("sk-test") == "sha256:f3abf2a6cc4f"


def test_fingerprint_tells_keys_apart_and_is_stable() -> None:
    assert fingerprint("sk-a") == fingerprint("sk-a")
    assert fingerprint("sk-a") != fingerprint("sk-b")
    assert len(fingerprint("x" * 10_000)) == len("sha256:") + 12


@settings(max_examples=examples(200), deadline=None)
@given(st.text(min_size=20, max_size=200))
def test_fingerprint_is_short_and_never_contains_the_key(secret: str) -> None:
    tag = fingerprint(secret)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", tag)
    assert secret not in tag
    assert len(tag) == 19


@settings(max_examples=examples(100), deadline=None)
@given(st.text(min_size=16, max_size=64, alphabet=st.characters(codec="utf-8")))
def test_fingerprint_handles_any_text(secret: str) -> None:
    assert fingerprint(secret).startswith("sha256:")


# --- summary -----------------------------------------------------------------------------------------


def test_summary_puts_tokens_and_cost_first() -> None:
    assert summary(full_call()) == (
        "alice · 100→50 $0.0000402 · openai/gpt-4o-mini · answer found pii.email 2, secrets.github_token 1 (2 redacted)"
    )


def test_summary_anonymous_without_usage_names_the_endpoint() -> None:
    call = Call(Route.as_called("gemini"), "h", "GET", "/", classification=Classification(endpoint="models"))
    assert summary(call) == "(anonymous) · no tokens · gemini models"


def test_summary_names_the_findings_of_the_request_and_of_the_answer() -> None:
    call = full_call()
    call.request.findings, call.request.redacted = {"pii.email": 2}, 2
    call.answer.findings = {"secrets.aws_access_key_id": 1, "pii.email": 1}
    call.answer.finding_actions = (("secrets.aws_access_key_id", "redact", 1), ("pii.email", "audit", 1))
    assert summary(call) == (
        "alice · 100→50 $0.0000402 · openai/gpt-4o-mini · found pii.email 2 (2 redacted)"
        " · answer found pii.email 1, secrets.aws_access_key_id 1 (1 redacted)"
    )
    call.answer.findings, call.answer.finding_actions = {"pii.email": 1}, (("pii.email", "audit", 1),)
    assert summary(call).endswith(" · answer found pii.email 1")


def test_summary_requested_model_and_partial_tokens() -> None:
    call = Call(
        Route.as_called("anthropic", "claude-sonnet-4"),
        "h",
        "POST",
        "/",
        classification=Classification(model="claude-sonnet-4"),
        answer=Answer(usage=Usage(input_tokens=42)),
    )
    assert summary(call) == "(anonymous) · 42→0 · anthropic/claude-sonnet-4"


def test_summary_of_a_refusal_starts_with_its_reason_and_ends_with_the_policys() -> None:
    call = full_call()
    call.answer.usage, call.answer.findings = None, None  # refused: no answer read
    call.answer.refused, call.verdict.decision, call.verdict.deny_reasons = (
        "policy_denied",
        "deny",
        ("model gpt-4o-mini is not allowed",),
    )
    assert summary(call) == "alice · ⛔ policy_denied · openai/gpt-4o-mini · model gpt-4o-mini is not allowed"
    call.answer.refused, call.verdict.deny_reasons = "unauthenticated", ("unauthenticated",)
    assert summary(call) == "alice · ⛔ unauthenticated · openai/gpt-4o-mini"


def test_summary_of_a_failure_starts_with_it_and_ends_with_the_error() -> None:
    call = full_call()
    call.answer.findings = None  # no answer read
    call.answer.failure, call.answer.error = Failure.UPSTREAM_UNREACHABLE, "upstream unreachable: connection refused"
    call.answer.refused = "upstream_unreachable"
    assert summary(call) == (
        "alice · ⚠ upstream_unreachable · openai/gpt-4o-mini · upstream unreachable: connection refused"
    )
    call = full_call()
    call.answer.status, call.answer.findings = 503, None
    assert summary(call) == "alice · ⚠ 503 · openai/gpt-4o-mini"


@pytest.mark.parametrize("auth", ["virtual_key", "sigv4", "proxyauth", "anonymous"])
def test_auth_values_pass_through(auth: str) -> None:
    call = Call(Route.as_called("bedrock"), "h", "POST", "/", caller=Caller(auth=auth))  # type: ignore[arg-type]
    assert audit_record(call)["auth"] == auth


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1795163455.062, "2026-11-20T08:30:55.062Z"),
        (1.3259997, "1970-01-01T00:00:01.326Z"),  # to the microsecond first, then the millisecond cut
        (59.9999996, "1970-01-01T00:01:00.000Z"),
        (951782400.5, "2000-02-29T00:00:00.500Z"),
    ],
)
def test_timestamps_are_utc_to_the_millisecond(seconds: float, expected: str) -> None:
    assert utc_timestamp(seconds) == expected


# --- flow marker -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answered_by_tollgate", "failure", "marker"),
    [
        (200, False, None, ""),
        (429, False, None, ""),  # the provider's own answer
        (503, False, None, FAILED_MARKER),
        (401, True, None, REFUSED_MARKER),
        (500, True, None, REFUSED_MARKER),  # Tollgate's own error: it refused to forward the call
        (502, True, Failure.UPSTREAM_UNREACHABLE, FAILED_MARKER),
        (504, True, Failure.UPSTREAM_TIMEOUT, FAILED_MARKER),
        (200, False, Failure.UPSTREAM_BROKE_OFF, FAILED_MARKER),
        (200, False, Failure.CLIENT_DISCONNECTED, FAILED_MARKER),
    ],
)
def test_flow_marker(status: int, answered_by_tollgate: bool, failure: Failure | None, marker: str) -> None:
    call = Call(Route.as_called("openai"), "h", "POST", "/", answer=Answer(status=status, failure=failure))
    call.answer.answered_by_tollgate = answered_by_tollgate
    assert flow_marker(call) == marker


def test_flow_markers_are_mitmproxys() -> None:
    assert (emoji[REFUSED_MARKER], emoji[FAILED_MARKER]) == ("⛔", "⚠")
