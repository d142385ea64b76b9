"""Traces end to end: official SDK calls through mitmdump with `metrics.otlp` set (or only the
OTEL_EXPORTER_OTLP_* variables) export one span per call, in the GenAI conventions, to a collector
stand-in that decodes the OTLP protobuf; its numbers are the audit's; no key and no prompt text
in any span; a collector that is down or hangs slows and fails no call."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from tests.support import streams
from tests.support.fake_upstream import Reply
from tests.support.otlp import Collector

REAL = {
    "openai": "sk-real-openai-traces-0001",
    "gemini": "AIza-real-gemini-traces-0001",
    "anthropic": "sk-ant-real-traces-0001",
    "bedrock": "ABSK-real-bedrock-traces-0001",
}
KEY = "tg-traced-app-key-0001"
COLLECTOR_KEY = "collector-secret-0001"
PROMPT = "tell-nobody-this-prompt-text"
SYSTEM = "secret-system-instructions-text"
# The exporter's batch is sent every 100 ms here (5 s by default).
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}

POLICY = """
package tollgate
import rego.v1

deny contains "model gpt-forbidden is not allowed" if input.model == "gpt-forbidden"
"""


def config_with(otlp: dict | None, policy: str | None = None):
    def build(urls: dict[str, str]) -> dict:
        data = {
            "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
            "clients": [{"name": "traced-app", "keys": [KEY], "groups": ["research", "eu"]}],
        }
        if otlp is not None:
            data["metrics"] = {"otlp": otlp}
        if policy is not None:
            data["policy"] = {"rego": [policy]}
        return data

    return build


@pytest.fixture(scope="module")
def collector():
    collector = Collector.start()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def gw(start_gateway, collector, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "deny.rego"
    policy.write_text(POLICY)
    otlp = {"endpoint": collector.url, "headers": {"x-collector-key": COLLECTOR_KEY}, "service_name": "tollgate-e2e"}
    return start_gateway(config_with(otlp, str(policy)), env=FAST_EXPORT)


@pytest.fixture
def g(gw, collector):
    gw.reset()
    time.sleep(0.3)  # spans of an earlier test still on their way
    collector.clear()
    return gw


def span_of(collector: Collector, record: dict) -> dict:
    """The one span of the call the audit record is of; after a while, still the only one."""
    collector.wait_spans(1)
    time.sleep(0.4)  # three more export rounds: a second span of the call would be here
    spans = [s for s in collector.spans if s["attributes"]["tollgate.request_id"] == record["request_id"]]
    assert len(spans) == 1 == len(collector.spans), collector.spans
    return spans[0]


CALLS = {
    "openai": """
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
            messages=[{{"role": "system", "content": "{system}"}}, {{"role": "user", "content": "{prompt}"}}])
        report()
    """,
    "openai-stream": """
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        for _ in client.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={{"include_usage": True}},
                messages=[{{"role": "user", "content": "{prompt}"}}]):
            pass
        report()
    """,
    "anthropic": """
        import anthropic
        client = anthropic.Anthropic(api_key="{key}", max_retries=0)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="{system}",
                               messages=[{{"role": "user", "content": "{prompt}"}}])
        report()
    """,
    "gemini": """
        from google import genai
        client = genai.Client(api_key="{key}")
        client.models.generate_content(model="gemini-2.0-flash", contents="{prompt}")
        report()
    """,
    "bedrock": """
        import boto3
        client = boto3.client("bedrock-runtime", region_name="us-east-1")
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[{{"role": "user", "content": [{{"text": "{prompt}"}}]}}],
                        inferenceConfig={{"maxTokens": 99}})
        report()
    """,
}
# sdk: provider, gen_ai.operation.name, gen_ai.provider.name
EXPECTED = {
    "openai": ("openai", "chat", "openai"),
    "openai-stream": ("openai", "chat", "openai"),
    "anthropic": ("anthropic", "chat", "anthropic"),
    "gemini": ("gemini", "generate_content", "gcp.gemini"),
    "bedrock": ("bedrock", "chat", "aws.bedrock"),
}


@pytest.mark.parametrize("sdk", list(CALLS))
def test_each_call_makes_one_span_with_the_audits_numbers(g, collector, sdk):
    provider, operation, provider_name = EXPECTED[sdk]
    if sdk == "openai-stream":
        g.fakes["openai"].handler = lambda r: Reply(
            200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat()
        )
    env = {"AWS_BEARER_TOKEN_BEDROCK": KEY} if sdk == "bedrock" else None
    g.run(CALLS[sdk].format(key=KEY, prompt=PROMPT, system=SYSTEM), env=env)
    record = g.last_audit()
    assert (record["provider"], record["status"], record["decision"]) == (provider, 200, "allow")
    span = span_of(collector, record)
    assert (span["name"], span["kind"], span["status"]) == (
        f"{operation} {record['requested_model']}",
        "CLIENT",
        "UNSET",
    )
    a = span["attributes"]
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"]) == (operation, provider_name)
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == (record["requested_model"], record["model"])
    # Exactly the audit's token counts, which the fake upstream's canned usage gave.
    assert record["input_tokens"] and record["output_tokens"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        record["input_tokens"],
        record["output_tokens"],
    )
    assert a["gen_ai.response.finish_reasons"] == [record["finish_reason"]]
    assert a.get("gen_ai.request.max_tokens") == record["max_tokens"]
    assert a.get("tollgate.cost_usd") == record["cost_usd"]
    assert (a["http.response.status_code"], a["server.address"]) == (200, "127.0.0.1")
    assert a["server.port"] == g.fakes[provider].port
    assert (a["tollgate.client"], a["tollgate.groups"], a["tollgate.decision"]) == (
        "traced-app",
        ["research", "eu"],
        "allow",
    )
    assert (a["tollgate.endpoint"], a["tollgate.deny_reasons"]) == (record["endpoint"], [])
    assert "error.type" not in a
    # The span lasts as long as the call did.
    assert abs((span["end_ns"] - span["start_ns"]) / 1e6 - record["latency_ms"]) < 1
    assert span["resource"]["service.name"] == "tollgate-e2e"
    assert all(r.headers["x-collector-key"] == COLLECTOR_KEY for r in collector.requests)


TRACE_ID, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("traceparent", "joins"),
    [
        (f"00-{TRACE_ID}-{CLIENT_SPAN}-01", True),
        (f"00-{'0' * 32}-{CLIENT_SPAN}-01", False),
        ("garbage", False),
        (None, False),
    ],
    ids=["valid", "zero-trace-id", "malformed", "none"],
)
def test_a_clients_traceparent_makes_the_span_its_child_and_the_span_the_upstreams_parent(
    g, collector, traceparent, joins
):
    headers = {"tracestate": "vendor=opaque"} | ({"traceparent": traceparent} if traceparent else {})
    g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{KEY}", max_retries=0, default_headers={headers!r})
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report()
    """)
    span = span_of(collector, g.last_audit())
    if joins:
        assert (span["trace_id"], span["parent_span_id"], span["trace_state"]) == (
            TRACE_ID,
            CLIENT_SPAN,
            "vendor=opaque",
        )
        assert span["span_id"] != CLIENT_SPAN
    else:  # not valid: a trace of its own
        assert span["parent_span_id"] == "" and span["trace_id"] not in (TRACE_ID, "0" * 32)
    # What the upstream does is a child of Tollgate's span, in the same trace; a trace of Tollgate's
    # own has a random trace id (W3C trace context level 2's flag 02, as the SDK sets it).
    received = g.fakes["openai"].received[-1].headers
    assert received["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-{'01' if joins else '03'}"
    assert received["tracestate"] == "vendor=opaque"


def test_a_client_that_does_not_sample_gets_no_span_and_the_upstream_its_choice(g, collector):
    g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{KEY}", max_retries=0, default_headers={{"traceparent": "00-{TRACE_ID}-{CLIENT_SPAN}-00"}})
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report()
    """)
    record = g.last_audit()
    assert record["status"] == 200
    time.sleep(0.7)  # several export rounds
    assert collector.spans == []
    upstream = g.fakes["openai"].received[-1].headers["traceparent"]
    assert re.fullmatch(f"00-{TRACE_ID}-[0-9a-f]{{16}}-00", upstream) and CLIENT_SPAN not in upstream


def failing_chat(g, model: str, content: str) -> dict:
    """An OpenAI chat call through `g` that is to fail: the status it failed with."""
    return g.run(f"""
        from openai import OpenAI
        try:
            OpenAI(api_key="{KEY}", max_retries=0).chat.completions.create(
                model="{model}", messages=[{{"role": "user", "content": "{content}"}}])
        except Exception as e:
            report(status=e.status_code)
    """)


def test_a_denied_call_is_an_error_span_with_the_policys_reasons(g, collector):
    result = failing_chat(g, "gpt-forbidden", PROMPT)
    assert result == {"status": 403}
    record = g.last_audit()
    span = span_of(collector, record)
    a = span["attributes"]
    assert (span["name"], span["status"]) == ("chat gpt-forbidden", "ERROR")
    assert (a["error.type"], a["http.response.status_code"], a["tollgate.decision"]) == ("policy_denied", 403, "deny")
    assert a["tollgate.deny_reasons"] == record["deny_reasons"] == ["model gpt-forbidden is not allowed"]
    assert "gen_ai.usage.input_tokens" not in a
    assert len(g.fakes["openai"].received) == 0


def test_an_upstream_error_is_an_error_span(g, collector):
    g.fakes["anthropic"].handler = lambda r: Reply(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    result = g.run(f"""
        import anthropic
        try:
            anthropic.Anthropic(api_key="{KEY}", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "{PROMPT}"}}])
        except Exception as e:
            report(status=e.status_code)
    """)
    assert result == {"status": 529}
    record = g.last_audit()
    span = span_of(collector, record)
    a = span["attributes"]
    assert (span["status"], a["error.type"], a["http.response.status_code"]) == ("ERROR", "529", 529)
    assert a["tollgate.decision"] == "allow"


def test_an_unreachable_upstream_is_an_error_span_of_its_kind(gw, collector, start_gateway):
    # The provider's upstream closed: Tollgate answers 502 itself.
    g = start_gateway(
        lambda urls: config_with({"endpoint": collector.url})({**urls, "openai": "https://127.0.0.1:9"}),
        env=FAST_EXPORT,
    )
    time.sleep(0.3)
    collector.clear()
    result = failing_chat(g, "gpt-4o-mini", "hi")
    assert result == {"status": 502}
    span = span_of(collector, g.last_audit())
    assert (span["status"], span["attributes"]["error.type"]) == ("ERROR", "upstream_unreachable")


def test_no_span_holds_a_key_or_prompt_text(gw, collector):
    """After the calls above (the module's spans kept from here on): every attribute searched."""
    g = gw
    g.reset()
    collector.clear()
    for sdk in ("openai", "anthropic"):
        g.run(CALLS[sdk].format(key=KEY, prompt=PROMPT, system=SYSTEM))
    spans = collector.wait_spans(2)
    text = json.dumps(spans)
    for secret in (*REAL.values(), KEY, COLLECTOR_KEY, PROMPT, SYSTEM, "Hi there."):
        assert secret not in text, secret
    assert COLLECTOR_KEY in json.dumps([r.headers for r in collector.requests])  # sent as a header, only


def test_the_otel_endpoint_variable_alone_turns_traces_on(start_gateway):
    collector = Collector.start()
    try:
        g = start_gateway(
            config_with(None),
            env={
                **FAST_EXPORT,
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20env-collector-token",
            },
        )
        g.run(CALLS["openai"].format(key=KEY, prompt=PROMPT, system=SYSTEM))
        record = g.last_audit()
        span = span_of(collector, record)
        assert span["attributes"]["gen_ai.usage.input_tokens"] == record["input_tokens"]
        assert span["resource"]["service.name"] == "tollgate"
        assert {r.path for r in collector.requests} == {"/v1/traces"}
        assert collector.requests[0].headers["authorization"] == "Bearer env-collector-token"
        assert "traces exported over OTLP/HTTP to " in g.proxy.console()
        assert "env-collector-token" not in g.proxy.console()
    finally:
        collector.close()


@pytest.mark.parametrize("collector_state", ["refusing", "hanging"])
def test_a_collector_that_is_down_slows_and_fails_no_call(start_gateway, collector_state):
    # Refusing: nothing listens. Hanging: it accepts connections and never answers.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    if collector_state == "hanging":
        hanging.listen(64)
    port = hanging.getsockname()[1]
    try:
        g = start_gateway(config_with({"endpoint": f"http://127.0.0.1:{port}"}), env=FAST_EXPORT)
        code = f"""
            import time
            from openai import OpenAI
            client = OpenAI(api_key="{KEY}", max_retries=0)
            seconds = []
            for _ in range(30):
                start = time.perf_counter()
                client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
                seconds.append(time.perf_counter() - start)
                time.sleep(0.02)  # spread over several export rounds
            report(seconds=seconds)
        """
        first = g.run(code)["seconds"]
        second = g.run(code)["seconds"]  # the exporter retrying meanwhile
        assert len(first) == len(second) == 30
        assert max(first[1:] + second) < 0.5, (first, second)
        records = g.wait_audit(60)
        assert all(r["status"] == 200 for r in records)
        # Stopping it waits for the exporter only so long.
        start = time.monotonic()
        g.proxy.stop()
        assert time.monotonic() - start < 8.5
    finally:
        hanging.close()
