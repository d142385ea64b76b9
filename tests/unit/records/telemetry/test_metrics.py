"""The metric families (`tollgate.records.telemetry.metrics`) from synthetic call records, read back through
prometheus-client's own text parser; the examples in docs/examples name only metrics Tollgate exports."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tollgate.calls.call import Call, Failure, Route, Target
from tollgate.console.invoice import metrics_text
from tollgate.credentials.keypool import KeyPool
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.usage import Usage
from tollgate.governance.limits.limits import Estimate
from tollgate.governance.routing.failover import Attempt
from tollgate.records.audit.audit_record import audit_record
from tollgate.records.telemetry.metrics import OTHER, LabelCap, MetricSet, error_kind, remaining, status_class

ROOT = Path(__file__).resolve().parents[4]


def call(
    client: str | None = "app",
    model: str | None = "gpt-4o",
    provider: str = "openai",
    endpoint: str = "chat.completions",
    status: int | None = 200,
    stream: bool | None = False,
    usage: Usage | None = None,
    groups: tuple[str, ...] = (),
    **fields: Any,
) -> Call:
    c = Call(
        Route.as_called(provider, model),
        "api.example",
        "POST",
        "/v1/x",
        Classification(endpoint, model, RequestFacts(stream=stream)),
    )
    c.caller.client, c.caller.groups, c.answer.status, c.answer.usage = client, groups, status, usage
    c.answer.ended = c.started + 0.5
    for name, value in fields.items():  # on the call, or on the part of it that holds the field
        setattr(
            next(
                part
                for part in (c, c.caller, c.route, c.verdict, c.answer, c.ledger, c.failover)
                if hasattr(part, name)
            ),
            name,
            value,
        )
    return c


def record(c: Call, cost: float | None = None) -> dict[str, Any]:
    r = audit_record(c)
    r["cost_usd"] = cost  # no prices loaded in these calls
    return r


def samples(metrics: MetricSet) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by its name, as Prometheus reads the exposition."""
    text = generate_latest(metrics.registry).decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def value(metrics: MetricSet, name: str, **labels: str) -> float:
    return sum(v for ls, v in samples(metrics).get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def test_status_classes() -> None:
    assert [status_class(s) for s in (None, 101, 200, 204, 302, 404, 429, 500, 504)] == [
        "none", "1xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx",
    ]  # fmt: skip


def test_error_kinds() -> None:
    assert error_kind(call()) == ""
    assert error_kind(call(status=404)) == ""  # the upstream's answer
    assert error_kind(call(status=502)) == "upstream_5xx"
    refused = call(status=403, answered_by_tollgate=True, refused="policy_denied")
    assert error_kind(refused) == "policy_denied"
    timed_out = call(
        status=504, answered_by_tollgate=True, refused="upstream_timeout", failure=Failure.UPSTREAM_TIMEOUT
    )
    assert error_kind(timed_out) == "upstream_timeout"
    assert error_kind(call(status=200, failure=Failure.CLIENT_DISCONNECTED)) == "client_disconnected"


def test_label_cap_keeps_the_first_values_then_other() -> None:
    cap = LabelCap(2)
    assert [cap("client", v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]
    assert cap("model", "c") == "c"  # each label has its own
    cap.limit = 3
    assert cap("client", "e") == "e"


def test_clients_and_models_past_the_cap_are_other() -> None:
    metrics = MetricSet(max_label_values=3)
    for i in range(6):
        metrics.observe(
            call(client=f"client-{i}", model=f"model-{i}"), record(call(client=f"client-{i}", model=f"model-{i}"))
        )
    calls = samples(metrics)["tollgate_calls_total"]
    assert sorted(ls["client"] for ls, _ in calls) == ["client-0", "client-1", "client-2", OTHER]
    assert sum(v for ls, v in calls if ls["client"] == OTHER) == 3
    assert {ls["gen_ai_request_model"] for ls, _ in samples(metrics)["gen_ai_client_operation_duration_seconds_count"]} == {
        "model-0", "model-1", "model-2", OTHER,
    }  # fmt: skip


def test_each_call_family() -> None:
    metrics = MetricSet()
    usage = Usage(input_tokens=100, output_tokens=20)
    streamed = call(stream=True, usage=usage, groups=("a", "b"))
    streamed.answer.first_chunk = streamed.started + 0.25
    metrics.observe(streamed, record(streamed, cost=0.0012))
    plain = call(usage=Usage(input_tokens=7, output_tokens=3), first_chunk=None)
    plain.answer.first_chunk = plain.started + 0.1  # not a stream: no time to first token
    metrics.observe(plain, record(plain, cost=0.0001))
    anonymous = call(client=None, provider="bedrock", endpoint="converse", model="anthropic.claude", status=None)
    metrics.observe(anonymous, record(anonymous))

    assert value(metrics, "tollgate_calls_total") == 3
    assert value(metrics, "tollgate_calls_total", groups="a,b", status_class="2xx", decision="allow") == 1
    assert value(metrics, "tollgate_calls_total", client="anonymous", provider="bedrock", status_class="none") == 1
    assert value(metrics, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 107
    assert value(metrics, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 23
    assert value(metrics, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 2
    assert value(metrics, "tollgate_tokens_total", client="app", gen_ai_token_type="input") == 107
    assert value(metrics, "tollgate_cost_usd_total", client="app", model="gpt-4o") == pytest.approx(0.0013)
    ttft = samples(metrics)["gen_ai_server_time_to_first_token_seconds_count"]
    assert ttft == [
        ({"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o"}, 1)
    ]
    assert value(metrics, "gen_ai_server_time_to_first_token_seconds_sum") == pytest.approx(0.25)
    duration = samples(metrics)["gen_ai_client_operation_duration_seconds_count"]
    assert {(ls["gen_ai_provider_name"], ls["gen_ai_operation_name"], ls["endpoint"]) for ls, _ in duration} == {
        ("openai", "chat", "chat.completions"),
        ("aws.bedrock", "chat", "converse"),
    }
    assert value(metrics, "gen_ai_client_operation_duration_seconds_sum") == pytest.approx(1.5)
    # The semantic conventions' buckets, cumulative, ending at +Inf.
    buckets = [
        (ls["le"], v)
        for ls, v in samples(metrics)["gen_ai_client_token_usage_bucket"]
        if ls["gen_ai_token_type"] == "input" and v
    ]
    assert buckets[0] == ("16.0", 1) and buckets[-1] == ("+Inf", 2)


def test_tokens_unknown_are_not_observed() -> None:
    metrics = MetricSet()
    c = call(usage=None)
    metrics.observe(c, record(c))
    assert value(metrics, "gen_ai_client_token_usage_count") == 0
    assert value(metrics, "tollgate_calls_total") == 1


def test_denials_and_upstream_errors() -> None:
    metrics = MetricSet()
    denied = call(status=403, decision="deny", answered_by_tollgate=True, refused="policy_denied")
    unreachable = call(
        status=502, answered_by_tollgate=True, refused="upstream_unreachable", failure=Failure.UPSTREAM_UNREACHABLE
    )
    failing = call(status=500)
    for c in (denied, unreachable, failing):
        metrics.observe(c, record(c))
    assert value(metrics, "tollgate_calls_total", decision="deny", error_kind="policy_denied", status_class="4xx") == 1
    errors = {ls["kind"]: v for ls, v in samples(metrics)["tollgate_upstream_errors_total"]}
    assert errors == {"upstream_unreachable": 1, "upstream_5xx": 1}
    assert value(metrics, "gen_ai_client_operation_duration_seconds_count", error_type="upstream_5xx") == 1


def test_retries_are_counted_by_what_failed() -> None:
    metrics = MetricSet()
    c = call(status=200)
    c.failover.attempts = [
        Attempt("openai", "gpt-4o", 429, "fp", "upstream answered 429", 3.0),
        Attempt("openai", "gpt-4o", None, "fp", "upstream timeout: no response within 1 s", 1000.0),
        Attempt("openai", "gpt-4o", None, "fp", "upstream unreachable: connection refused", 1.0),
    ]
    metrics.observe(c, record(c))
    metrics.observe(call(status=200), record(call(status=200)))  # went once: no retry
    retries = {ls["failed"]: v for ls, v in samples(metrics)["tollgate_retries_total"]}
    assert retries == {"429": 1, "timeout": 1, "connect": 1}


def test_limit_remaining_after_the_call() -> None:
    metrics = MetricSet()
    c = call(
        usage_counters=(
            ("daily", "app", "requests_per_day", 4, 10, "requests"),
            ("daily", "app", "tokens_per_day", 1000, 5000, "tokens"),
            ("spend", "team", "usd_per_day", 2_000_000_000, 5_000_000_000, "usd"),
        )
    )
    metrics.observe(c, record(c), Estimate(1, 300, 500_000_000))
    remaining = {(ls["limit"], ls["subject"], ls["cap"]): v for ls, v in samples(metrics)["tollgate_limit_remaining"]}
    assert remaining == {
        ("daily", "app", "requests_per_day"): 5,
        ("daily", "app", "tokens_per_day"): 3700,
        ("spend", "team", "usd_per_day"): 2.5,
    }
    # Without a reservation (no limit applied), nothing is set.
    other = MetricSet()
    other.observe(c, record(c))
    assert "tollgate_limit_remaining" not in samples(other)


def test_policy_seconds() -> None:
    metrics = MetricSet()
    metrics.policy_evaluated(0.002, "allow")
    metrics.policy_evaluated(0.004, "deny")
    metrics.policy_evaluated(1.0, "error")
    counts = {ls["outcome"]: v for ls, v in samples(metrics)["tollgate_policy_seconds_count"]}
    assert counts == {"allow": 1, "deny": 1, "error": 1}
    assert value(metrics, "tollgate_policy_seconds_sum") == pytest.approx(1.006)


def test_scrape_time_state() -> None:
    clock = [100.0]
    pool = KeyPool(["k1", "k2", "k3"], clock=lambda: clock[0])
    pool.rest("k2", 30)
    metrics = MetricSet(pools=lambda: {"openai": pool, "gemini": KeyPool([])}, audit_depth=lambda: 7)
    assert samples(metrics)["tollgate_pool_keys_resting"] == [({"provider": "openai"}, 1)]
    assert samples(metrics)["tollgate_pool_keys"] == [({"provider": "openai"}, 3)]
    assert samples(metrics)["tollgate_audit_queue_depth"] == [({}, 7)]
    clock[0] += 31
    assert samples(metrics)["tollgate_pool_keys_resting"] == [({"provider": "openai"}, 0)]
    # `agents`' kept Responses conversations: absent without `agents`.
    assert "tollgate_agents_responses_kept" not in samples(metrics)
    kept = MetricSet(agents_kept=lambda: (3, 1200))
    assert samples(kept)["tollgate_agents_responses_kept"] == [({}, 3)]
    assert samples(kept)["tollgate_agents_responses_kept_chars"] == [({}, 1200)]
    # The process's own metrics, from prometheus-client's collectors on Tollgate's registry.
    assert "process_cpu_seconds_total" in samples(metrics)
    assert "python_info" in samples(metrics)


def test_no_secret_or_text_in_labels() -> None:
    """Label values come from names: a call's key, credentials and body never reach them."""
    metrics = MetricSet()
    c = call(usage=Usage(input_tokens=1, output_tokens=1), upstream_key="sk-real-secret-1234")
    c.request.body = {"messages": [{"role": "user", "content": "the secret prompt"}]}
    c.request.headers = {b"authorization": b"Bearer tg-virtual-key"}
    metrics.observe(c, record(c))
    text = generate_latest(metrics.registry).decode()
    for secret in ("sk-real-secret", "secret prompt", "tg-virtual-key", "sha256:"):
        assert secret not in text


# ---- the examples in docs/examples use only metrics Tollgate exports

EXAMPLES = ROOT / "docs" / "examples"
_NAME = re.compile(r"\b((?:gen_ai|tollgate|process|python)_[a-z0-9_]+)")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exports() -> tuple[set[str], set[str]]:
    """The names of every metric and sample, and of every label, Tollgate exports once each family has a series."""
    metrics = MetricSet(pools=lambda: {"openai": KeyPool(["k"])}, audit_depth=lambda: 0)
    c = call(stream=True, usage=Usage(input_tokens=1, output_tokens=1), first_chunk=None)
    c.answer.first_chunk = c.started
    c.ledger.usage_counters = (("l", "s", "requests_per_day", 0, 1, "requests"),)
    metrics.observe(c, record(c, cost=0.1), Estimate(1, 1, 1))
    failed = call(status=500)
    metrics.observe(failed, record(failed))
    metrics.policy_evaluated(0.001, "allow")
    metrics.anchor_gap("https://tsa.example.com/")
    names, labels = set(), set()
    # And the console's: the spend metrics of `tollgate reconcile`'s results (`console/invoice.py`).
    console = metrics_text([("openai", Decimal("0.9"), Decimal("0.1"))]).decode()
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode() + console):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        labels.update(name for s in family.samples for name in s.labels)
    return names, labels


def promql_expressions() -> list[str]:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    found = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    found += [v["query"] for v in dashboard.get("templating", {}).get("list", []) if "query" in v]
    alerts = yaml.safe_load((EXAMPLES / "prometheus-alerts.yaml").read_text())
    found += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    return [e if isinstance(e, str) else e.get("query", "") for e in found]


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    exported_metrics, exported_labels = exports()
    expressions = promql_expressions()
    assert len(expressions) >= 10
    used = {name for e in expressions for name in _NAME.findall(e)} - exported_labels
    assert used
    missing = {n for n in used if n not in exported_metrics and not any(n + s in exported_metrics for s in _SUFFIXES)}
    assert not missing
    # Every family of Tollgate's own is on the dashboard or in an alert.
    for family in ("gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds",
                   "gen_ai_server_time_to_first_token_seconds", "tollgate_calls_total", "tollgate_cost_usd_total",
                   "tollgate_limit_remaining", "tollgate_upstream_errors_total", "tollgate_pool_keys_resting",
                   "tollgate_policy_seconds", "tollgate_audit_queue_depth",
                   "tollgate_audit_export_lag_records", "tollgate_audit_anchor_gaps_total",
                   "tollgate_spend_coverage_ratio", "tollgate_spend_around_usd"):  # fmt: skip
        assert any(family in e for e in expressions), family


def test_a_batch_leaves_its_minute_window_all_but_one_request() -> None:
    job = Estimate(1000, 64_000, 0, job=True)
    assert remaining(10, 100, "requests", job, minute=True) == 89
    assert remaining(10, 100_000, "tokens", job, minute=True) == 99_990
    assert remaining(10, 100_000, "tokens", job) == 35_990


def test_fallbacks_are_counted_by_the_model_that_ended_the_call() -> None:
    metrics = MetricSet()
    c = call(status=200)
    c.route.target = Target("openai", "o3")
    c.failover.attempts = [
        Attempt("openai", "gpt-4o", 503, "fp", "upstream answered 503", 3.0),
        Attempt("openai", "gpt-4o", 429, "fp", "upstream answered 429", 3.0),  # a retry, no fallback
        Attempt("openai", "gpt-4o-mini", 503, "fp", "upstream answered 503", 3.0),
    ]
    metrics.observe(c, record(c))
    retried = call(status=200)
    retried.failover.attempts = [Attempt("openai", "gpt-4o", 429, "fp", "upstream answered 429", 3.0)]
    metrics.observe(retried, record(retried))  # went again to the same model: no fallback
    assert [(ls["model"], v) for ls, v in samples(metrics)["tollgate_fallbacks_total"]] == [("o3", 2)]


def test_a_failed_attempt_is_counted_by_its_own_provider_and_model() -> None:
    metrics = MetricSet()
    c = call(status=200, provider="anthropic", model="claude-haiku-4-5")
    c.failover.attempts = [
        Attempt("openai", "gpt-4o", 503, "fp", "upstream answered 503", 3.0),
        Attempt("openai", "gpt-4o-mini", 503, "fp", "upstream answered 503", 3.0),
    ]
    metrics.observe(c, record(c))
    retries = {(ls["provider"], ls["model"], ls["failed"]): v for ls, v in samples(metrics)["tollgate_retries_total"]}
    assert retries == {("openai", "gpt-4o", "503"): 1, ("openai", "gpt-4o-mini", "503"): 1}
    # Two fallbacks: to gpt-4o-mini, then to another provider.
    assert [(ls["provider"], ls["model"], v) for ls, v in samples(metrics)["tollgate_fallbacks_total"]] == [
        ("anthropic", "claude-haiku-4-5", 2)
    ]


def test_a_fallback_to_the_same_model_of_another_provider_is_counted() -> None:
    metrics = MetricSet()
    c = call(status=200, provider="azure", model="gpt-4o")
    c.failover.attempts = [Attempt("openai", "gpt-4o", 503, "fp", "upstream answered 503", 3.0)]
    metrics.observe(c, record(c))
    assert [(ls["provider"], ls["model"], v) for ls, v in samples(metrics)["tollgate_fallbacks_total"]] == [
        ("azure", "gpt-4o", 1)
    ]


def test_guardrail_findings_by_provider_kind_and_action() -> None:
    metrics = MetricSet()
    c = call(provider="anthropic")
    c.request.finding_actions = (("secrets.github_token", "redact", 2), ("pii.email", "audit", 1))
    metrics.observe(c, record(c))
    metrics.found("mcp", (("pii.payment_card", "deny", 1),))
    metrics.found("mcp", ())
    found = {
        (ls["provider"], ls["kind"], ls["action"]): v for ls, v in samples(metrics)["tollgate_guardrail_findings_total"]
    }
    assert found == {
        ("anthropic", "secrets.github_token", "redact"): 2,
        ("anthropic", "pii.email", "audit"): 1,
        ("mcp", "pii.payment_card", "deny"): 1,
    }


def test_answer_findings_and_answers_cut_by_provider_and_kind() -> None:
    metrics = MetricSet()
    c = call(provider="openai")
    c.answer.finding_actions = (("secrets.aws_access_key_id", "deny", 1), ("pii.email", "redact", 2))
    c.answer.cut = "secrets.aws_access_key_id"
    metrics.observe(c, record(c))
    unread = call(provider="openai")
    unread.answer.cut = "unread"  # a JSON answer too large to read, refused
    metrics.observe(unread, record(unread))
    metrics.found_in_answer("mcp", (("pii.payment_card", "deny", 1),), ("pii.payment_card",))
    metrics.found_in_answer("mcp", ())
    found = {
        (ls["provider"], ls["kind"], ls["action"]): v
        for ls, v in samples(metrics)["tollgate_guardrail_answer_findings_total"]
    }
    assert found == {
        ("openai", "secrets.aws_access_key_id", "deny"): 1,
        ("openai", "pii.email", "redact"): 2,
        ("mcp", "pii.payment_card", "deny"): 1,
    }
    cut = {(ls["provider"], ls["kind"]): v for ls, v in samples(metrics)["tollgate_guardrail_answers_cut_total"]}
    assert cut == {("openai", "secrets.aws_access_key_id"): 1, ("openai", "unread"): 1, ("mcp", "pii.payment_card"): 1}
    # Request findings are not answer findings.
    assert "tollgate_guardrail_findings_total" not in samples(metrics)
