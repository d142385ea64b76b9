"""Prometheus metrics end to end: SDK calls through mitmdump (streamed and not, denied by the policy,
refused by a limit, failed upstream), then /metrics scraped over HTTP and read with
prometheus-client's own parser: what it counts is what was done, and what the audit says."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.configs import with_policy
from tests.support.fake_upstream import Received, Reply
from tests.support.proxy import free_port

REAL = {"openai": "sk-real-openai-metrics-0001", "anthropic": "sk-ant-real-metrics-0001"}
KEYS = {"alice": "tg-alice-metrics-key-0001", "limited": "tg-limited-metrics-key-0001"}
PROMPT = "purple elephants never forget the metrics prompt"
LISTEN = f"127.0.0.1:{free_port()}"
POLICY = 'package tollgate\nimport rego.v1\ndeny contains "model forbidden-model is not allowed" if input.model == "forbidden-model"\n'


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": urls[name], "keys": [key]} for name, key in REAL.items()},
        "clients": [
            {"name": "alice", "keys": [KEYS["alice"]], "groups": ["team"]},
            {"name": "limited", "keys": [KEYS["limited"]]},
        ],
        "limits": [
            # Priced models only: a cap on spending refuses a call whose price is unknown.
            {"name": "alice spend", "match": {"client": "alice", "model": "gpt-4o-mini"}, "usd_per_day": 1000},
            {"name": "one a day", "match": {"client": "limited"}, "requests_per_day": 1},
        ],
        "policy": {"rego": ["policy.rego"]},
        "metrics": {"listen": LISTEN},
    }


def openai_answers(r: Received) -> Reply:
    body = json.loads(r.body or b"{}")
    if body.get("model") == "gpt-fail":
        return Reply(500, {"error": {"message": "the upstream broke", "type": "server_error"}})
    if body.get("stream"):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat())
    return provider_answers(r)


@pytest.fixture(scope="module")
def g(start_gateway):
    gateway = with_policy(start_gateway(config), config, POLICY)
    gateway.fakes["openai"].handler = openai_answers
    return gateway


def scrape() -> str:
    with urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in found.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


CALLS = f"""
    import anthropic
    from openai import OpenAI
    alice = OpenAI(api_key="{KEYS["alice"]}", max_retries=0)
    messages = [{{"role": "user", "content": "{PROMPT}"}}]
    outcomes = []
    def attempt(call):
        try:
            call()
            outcomes.append(200)
        except Exception as e:
            outcomes.append(getattr(e, "status_code", type(e).__name__))
    attempt(lambda: alice.chat.completions.create(model="gpt-4o-mini", messages=messages))
    def streamed():
        for _ in alice.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                               stream_options={{"include_usage": True}}):
            pass
    attempt(streamed)
    claude = anthropic.Anthropic(api_key="{KEYS["alice"]}", max_retries=0)
    attempt(lambda: claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages))
    attempt(lambda: alice.chat.completions.create(model="forbidden-model", messages=messages))
    attempt(lambda: alice.chat.completions.create(model="gpt-fail", messages=messages))
    limited = OpenAI(api_key="{KEYS["limited"]}", max_retries=0)
    attempt(lambda: limited.chat.completions.create(model="gpt-4o-mini", messages=messages))
    attempt(lambda: limited.chat.completions.create(model="gpt-4o-mini", messages=messages))
    report(outcomes=outcomes)
"""


def test_metrics_count_what_was_done_and_agree_with_the_audit(g) -> None:
    before = samples(scrape())
    assert total(before, "tollgate_calls_total") == 0
    assert total(before, "tollgate_pool_keys", provider="openai") == 1

    outcomes = g.run(CALLS)["outcomes"]
    assert outcomes == [200, 200, 200, 403, 500, 200, 429]
    records = g.new_audit(7)
    text = scrape()
    found = samples(text)

    # Every call counted once, by its client, decision, status class and error kind.
    counted: Counter[tuple[str, str, str, str]] = Counter()
    for ls, v in found["tollgate_calls_total"]:
        counted[ls["client"], ls["decision"], ls["status_class"], ls["error_kind"]] += int(v)
    assert counted == Counter(
        {
            ("alice", "allow", "2xx", ""): 3,
            ("alice", "deny", "4xx", "policy_denied"): 1,
            ("alice", "allow", "5xx", "upstream_5xx"): 1,
            ("limited", "allow", "2xx", ""): 1,
            ("limited", "deny", "4xx", "budget_exceeded"): 1,
        }
    )
    assert {ls["groups"] for ls, _ in found["tollgate_calls_total"] if ls["client"] == "alice"} == {"team"}
    assert total(found, "gen_ai_client_operation_duration_seconds_count") == 7
    assert total(found, "gen_ai_client_operation_duration_seconds_count", gen_ai_provider_name="anthropic") == 1
    assert total(found, "tollgate_upstream_errors_total", provider="openai", kind="upstream_5xx") == 1

    # Tokens and cost as the audit has them.
    for kind in ("input", "output"):
        audited = sum(r[f"{kind}_tokens"] or 0 for r in records)
        assert audited > 0
        assert total(found, "gen_ai_client_token_usage_sum", gen_ai_token_type=kind) == audited
        assert total(found, "tollgate_tokens_total", gen_ai_token_type=kind) == audited
        with_tokens = sum(1 for r in records if r[f"{kind}_tokens"] is not None)
        assert total(found, "gen_ai_client_token_usage_count", gen_ai_token_type=kind) == with_tokens
    cost = sum(r["cost_usd"] or 0 for r in records)
    assert total(found, "tollgate_cost_usd_total") == pytest.approx(cost, rel=1e-9, abs=1e-12)

    # Time to first token: the one stream only.
    streamed = [r for r in records if r["stream"]]
    assert len(streamed) == 1
    ttft = found["gen_ai_server_time_to_first_token_seconds_count"]
    assert [(ls["gen_ai_request_model"], v) for ls, v in ttft if v] == [("gpt-4o-mini", 1)]
    assert 0 < total(found, "gen_ai_server_time_to_first_token_seconds_sum") <= streamed[0]["latency_ms"] / 1000

    # The limits' room left after the latest call each counted.
    remaining = {(ls["limit"], ls["subject"], ls["cap"]): v for ls, v in found["tollgate_limit_remaining"]}
    assert remaining[("one a day", "limited", "requests_per_day")] == 0
    spent = sum(r["cost_usd"] or 0 for r in records if r["client"] == "alice" and r["model"] == "gpt-4o-mini")
    assert remaining[("alice spend", "alice", "usd_per_day")] == pytest.approx(1000 - spent, abs=1e-6)

    # The policy's evaluations in its worker (a call decided like an earlier one is decided from the cache).
    assert total(found, "tollgate_policy_seconds_count") >= 1
    assert total(found, "tollgate_policy_seconds_count", outcome="deny") == 1
    assert total(found, "tollgate_audit_queue_depth") >= 0 and "tollgate_audit_queue_depth" in found
    assert "process_resident_memory_bytes" in found

    # Names only: no key, no token, no text.
    for secret in (*KEYS.values(), *REAL.values(), PROMPT, "purple", "sha256:"):
        assert secret not in text


def test_healthz_answers_ok_beside_metrics(g) -> None:
    """A balancer's or Kubernetes' probe: 200 `ok` while the proxy serves, on metrics.listen."""
    with urllib.request.urlopen(f"http://{LISTEN}/healthz", timeout=10) as r:
        assert (r.status, r.headers["content-type"], r.read()) == (200, "text/plain; charset=utf-8", b"ok\n")


ONE_CALL = f"""
    from openai import OpenAI
    served = OpenAI(api_key="{KEYS["alice"]}", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "{PROMPT}"}}])
    report(tokens=served.usage.total_tokens)
"""


def worker_config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL["openai"]]}},
        "clients": [{"name": "alice", "keys": [KEYS["alice"]]}],
        "metrics": {"listen": LISTEN},  # the fleet's: each worker serves on its own address instead
    }


def scrape_at(listen: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
        return samples(r.read().decode())


def test_two_processes_sharing_prometheus_multiproc_dir_are_summed_at_one_metrics(start_gateway, tmp_path) -> None:
    """A host's workers share one configuration: each serves /metrics on its own address
    (TOLLGATE_METRICS_LISTEN) with what all of them counted (PROMETHEUS_MULTIPROC_DIR)."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    listens = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    workers = []
    for i, listen in enumerate(listens, 1):
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(shared),
            "TOLLGATE_METRICS_LISTEN": listen,
            "TOLLGATE_INSTANCE": f"h/w{i}",
        }
        worker = start_gateway(worker_config, env=env)
        worker.wait_console(f"Prometheus metrics served on http://{listen}/metrics")
        workers.append(worker)
    for worker, calls in zip(workers, (2, 3), strict=True):
        for _ in range(calls):
            assert worker.run(ONE_CALL) == {"tokens": 28}
    for listen in listens:  # either one serves them all (the other's within the second it writes them in)
        found = scrape_at(listen)
        deadline = time.monotonic() + 5
        while total(found, "tollgate_calls_total", client="alice") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
            found = scrape_at(listen)
        assert total(found, "tollgate_calls_total", client="alice") == 5
        assert total(found, "tollgate_tokens_total", client="alice") == 5 * 28
        assert total(found, "gen_ai_client_operation_duration_seconds_count") == 5
        assert sorted(ls["instance"] for ls, _ in found["tollgate_info"]) == ["h/w1", "h/w2"]
        assert total(found, "tollgate_pool_keys", provider="openai") == 1  # the same pool in both: not 2
    # A worker that stops leaves its counts, and takes its live values (its info, its queue).
    workers[0].proxy.process.send_signal(signal.SIGTERM)
    assert workers[0].proxy.process.wait(20) == 0
    found = scrape_at(listens[1])
    assert total(found, "tollgate_calls_total", client="alice") == 5
    assert [ls["instance"] for ls, _ in found["tollgate_info"]] == ["h/w2"]
