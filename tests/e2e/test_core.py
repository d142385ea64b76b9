"""The core chain end to end: official SDKs through a real mitmdump running addons/gateway.py."""

from __future__ import annotations

import textwrap

import pytest
from tests.support.audit_fields import assert_fields
from tests.support.canned import (
    ANTHROPIC_MESSAGE,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE_BODY,
    GEMINI_GENERATE,
    OPENAI_CHAT,
)
from tests.support.fake_upstream import Reply

REAL = {
    "openai": "sk-real-openai-000000000001",
    "gemini": "AIza-real-gemini-000000000001",
    "anthropic": "sk-ant-real-000000000001",
    "bedrock": "ABSK-real-bedrock-000000000001",
}
ALICE = "tg-alice-0123456789"
BOB = "tg-bob-9876543210"


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
        "clients": [
            {"name": "alice", "keys": [ALICE], "groups": ["research"]},
            {"name": "bob", "keys": [BOB]},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    # Debug log: mitmproxy says there when it streams a request body instead of reading it whole.
    return start_gateway(config, "--set", "termlog_verbosity=debug")


def test_openai_chat_with_virtual_key(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
            messages=[{{"role": "system", "content": "be brief"}}, {{"role": "user", "content": "hi"}}])
        report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
    """)
    assert result == {"text": "Hi there.", "tokens": 28}
    seen = g.fakes["openai"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {REAL['openai']}"
    assert seen.path == "/v1/chat/completions"
    assert seen.sni is None  # an IP address is never sent as SNI; a hostname upstream gets its own
    assert seen.headers["host"] == f"127.0.0.1:{g.fakes['openai'].port}"
    record = g.last_audit()
    assert record["event"] == "llm_call"
    assert (record["client"], record["auth"], record["provider"], record["endpoint"]) == (
        "alice",
        "virtual_key",
        "openai",
        "chat.completions",
    )
    assert (record["requested_model"], record["model"]) == ("gpt-4o-mini", "gpt-4o-mini")
    assert (record["message_count"], record["has_system"], record["has_tools"], record["stream"]) == (
        2,
        True,
        False,
        False,
    )
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (21, 7, 28)
    assert (record["cached_tokens"], record["reasoning_tokens"], record["finish_reason"]) == (5, 2, "stop")
    # gpt-4o-mini ($ per Mtok): 16 x 0.15 + 5 cache reads x 0.075 + 7 x 0.60
    assert (record["cache_write_tokens"], record["cost_usd"]) == (None, 0.000006975)
    assert record["status"] == 200 and record["decision"] == "allow" and record["error"] is None
    assert record["upstream"] == g.fakes["openai"].url
    assert record["upstream_key"].startswith("sha256:")
    assert record["ttfb_ms"] is not None and record["latency_ms"] >= record["ttfb_ms"]
    # Every answer is streamed: mitmproxy's per-response notice of it is not repeated on the console.
    # The call's line is Tollgate's (mitmdump's own left out at its default detail).
    console = g.proxy.console()
    assert (
        "Tollgate: alice · 21→7 $0.000006975 · openai/gpt-4o-mini · " in console
        and "Streaming response from" not in console
    )


def test_an_openai_call_is_priced_at_the_service_tier_it_ran_at(g):
    g.fakes["openai"].handler = lambda r: Reply(
        200, {**OPENAI_CHAT, "model": "gpt-4.1-2025-04-14", "service_tier": r.json()["service_tier"]}
    )
    result = g.run(f"""
        from openai import OpenAI
        r = OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
            model="gpt-4.1", service_tier="priority", messages=[{{"role": "user", "content": "hi"}}])
        report(tier=r.service_tier)
    """)
    assert result == {"tier": "priority"}
    record = g.last_audit()
    assert (record["model"], record["service_tier"], record["input_tokens"], record["output_tokens"]) == (
        "gpt-4.1",
        "priority",
        21,
        7,
    )
    # gpt-4.1 at priority ($ per Mtok): 16 x 3.50 + 5 cache reads x 0.875 + 7 x 14.00 (standard: 0.0000905)
    assert record["cost_usd"] == 0.000158375


def test_openai_responses_and_embeddings(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0)
        r = client.responses.create(model="gpt-4.1", instructions="be brief", input="hello", max_output_tokens=64)
        e = client.embeddings.create(model="text-embedding-3-small", input="hello")
        report(text=r.output_text, dims=len(e.data[0].embedding))
    """)
    assert result == {"text": "Hello.", "dims": 3}
    responses, embeddings = g.new_audit(2)
    assert (responses["endpoint"], responses["model"], responses["has_system"], responses["message_count"]) == (
        "responses",
        "gpt-4.1",
        True,
        1,
    )
    assert (responses["input_tokens"], responses["output_tokens"], responses["total_tokens"]) == (31, 9, 40)
    assert responses["finish_reason"] == "completed"
    assert (embeddings["endpoint"], embeddings["input_tokens"], embeddings["total_tokens"]) == ("embeddings", 4, 4)


def test_gemini_generate_content(g):
    result = g.run(f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{ALICE}")
        r = client.models.generate_content(model="gemini-2.0-flash", contents="hello",
            config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=100))
        report(text=r.text, tokens=r.usage_metadata.total_token_count)
    """)
    assert result == {"text": "Hello!", "tokens": 15}
    seen = g.fakes["gemini"].received[-1]
    assert seen.headers["x-goog-api-key"] == REAL["gemini"]
    assert seen.path.split("?")[0].endswith("/models/gemini-2.0-flash:generateContent")
    record = g.last_audit()
    assert_fields(record, provider="gemini", endpoint="generateContent", model="gemini-2.0-flash", client="alice")
    assert_fields(record, message_count=1, has_system=True, input_tokens=12, output_tokens=3)
    assert record["finish_reason"] == "STOP"


def test_a_gemini_call_is_priced_at_the_tier_its_answer_names(g):
    # A priority call over its priority limit runs at standard: the answer's header tells which.
    tiers = []

    def answer(r):
        tiers.append(r.json()["serviceTier"])
        return Reply(200, GEMINI_GENERATE, {"x-gemini-service-tier": "priority" if len(tiers) == 1 else "standard"})

    g.fakes["gemini"].handler = answer
    result = g.run(f"""
        from google import genai
        client = genai.Client(api_key="{ALICE}")
        for _ in range(2):
            client.models.generate_content(model="gemini-3.8-flash-tts", contents="hello",
                                           config={{"service_tier": "priority"}})
        report(ok=True)
    """)
    assert result == {"ok": True} and tiers == ["priority", "priority"]
    priority, standard = g.new_audit(2)
    # gemini-3.8-flash-tts ($ per Mtok): 12 x 0.90 + 3 x 16.20 at priority; 12 x 0.50 + 3 x 9.00 at standard
    assert (priority["service_tier"], priority["cost_usd"]) == ("priority", 0.0000594)
    assert (standard["service_tier"], standard["cost_usd"]) == ("standard", 0.000033)


def test_gemini_key_in_query_parameter(g):
    result = g.run(f"""
        import json, urllib.request
        req = urllib.request.Request(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro:generateContent?key={ALICE}&alt=json",
            data=json.dumps({{"contents": [{{"parts": [{{"text": "hi"}}]}}]}}).encode(),
            headers={{"content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status)
    """)
    assert result == {"status": 200}
    seen = g.fakes["gemini"].received[-1]
    assert "key=" not in seen.path and ALICE not in seen.path
    assert "alt=json" in seen.path
    assert seen.headers["x-goog-api-key"] == REAL["gemini"]
    record = g.last_audit()
    assert (record["client"], record["model"], record["path"]) == (
        "alice",
        "gemini-1.5-pro",
        "/v1beta/models/gemini-1.5-pro:generateContent",
    )


def test_anthropic_messages(g):
    answer = {**ANTHROPIC_MESSAGE, "usage": {**ANTHROPIC_MESSAGE["usage"], "cache_creation_input_tokens": 40}}
    g.fakes["anthropic"].handler = lambda r: Reply(200, answer)
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{BOB}", max_retries=0)
        r = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, system="be brief",
            messages=[{{"role": "user", "content": "hello"}}],
            tools=[{{"name": "lookup", "description": "d", "input_schema": {{"type": "object", "properties": {{}}}}}}])
        report(text=r.content[0].text, input=r.usage.input_tokens)
    """)
    assert result == {"text": "Hello!", "input": 25}
    seen = g.fakes["anthropic"].received[-1]
    assert seen.headers["x-api-key"] == REAL["anthropic"]
    assert "authorization" not in seen.headers
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["model"]) == (
        "bob",
        "anthropic",
        "messages",
        "claude-sonnet-4-5",
    )
    assert (record["has_system"], record["has_tools"], record["message_count"]) == (True, True, 1)
    # Anthropic reports cache reads and writes apart; the audit's input_tokens counts every prompt token.
    assert (record["input_tokens"], record["cached_tokens"], record["output_tokens"], record["total_tokens"]) == (
        165,
        100,
        11,
        176,
    )
    assert record["finish_reason"] == "end_turn"
    # claude-sonnet-4-5 ($ per Mtok): 25 x 3 + 100 cache reads x 0.30 + 40 cache writes x 3.75 + 11 x 15
    assert (record["cache_write_tokens"], record["cost_usd"]) == (40, 0.00042)


def test_an_anthropic_call_in_fast_mode_is_priced_at_the_fast_rate(g):
    def fast(r):
        speed = r.json()["speed"]
        return Reply(200, {**ANTHROPIC_MESSAGE, "usage": {**ANTHROPIC_MESSAGE["usage"], "speed": speed}})

    g.fakes["anthropic"].handler = fast
    result = g.run(f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{BOB}", max_retries=0).beta.messages.create(
            model="claude-opus-5", max_tokens=256, speed="fast", betas=["fast-mode-2026-02-01"],
            messages=[{{"role": "user", "content": "hello"}}])
        report(speed=r.usage.speed)
    """)
    assert result == {"speed": "fast"}
    record = g.last_audit()
    assert (record["model"], record["speed"], record["input_tokens"], record["output_tokens"]) == (
        "claude-opus-5",
        "fast",
        125,
        11,
    )
    # claude-opus-5 in fast mode ($ per Mtok): 25 x 10 + 100 cache reads x 1 + 11 x 50 (standard: half)
    assert record["cost_usd"] == 0.0009


BEDROCK_PROFILE = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"
)


def test_bedrock_converse_with_virtual_bearer_key(g):
    result = g.run(
        f"""
        import boto3
        client = boto3.client("bedrock-runtime", region_name="us-east-1")
        r = client.converse(modelId="{BEDROCK_PROFILE}",
            messages=[{{"role": "user", "content": [{{"text": "hello"}}]}}], inferenceConfig={{"maxTokens": 99}})
        report(text=r["output"]["message"]["content"][0]["text"], tokens=r["usage"]["totalTokens"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": ALICE},
    )
    assert result == {"text": "Hello!", "tokens": 23}
    seen = g.fakes["bedrock"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {REAL['bedrock']}"
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["model"]) == (
        "alice",
        "bedrock",
        "converse",
        BEDROCK_PROFILE,
    )
    assert record["host"] == "bedrock-runtime.us-east-1.amazonaws.com"
    assert (record["input_tokens"], record["output_tokens"], record["max_tokens"], record["finish_reason"]) == (
        17,
        6,
        99,
        "end_turn",
    )
    # A us. profile is priced as a regional call: 17 x $3 + 6 x $15 per Mtok.
    assert (record["cache_write_tokens"], record["cost_usd"]) == (None, 0.000141)


def test_a_bedrock_call_names_the_tier_and_latency_it_asked_for_and_ran_at(g):
    # Converse asks in its body and is answered in it; InvokeModel asks and is answered in headers.
    asked = []
    tier, latency = "x-amzn-bedrock-service-tier", "x-amzn-bedrock-performanceconfig-latency"

    def answer(r):
        if r.path.endswith("/converse"):
            asked.append((r.json()["serviceTier"], r.json()["performanceConfig"]))
            ran = {"serviceTier": {"type": "priority"}, "performanceConfig": {"latency": "optimized"}}
            return Reply(200, {**BEDROCK_CONVERSE, **ran})
        asked.append((r.headers[tier], r.headers[latency]))
        counts = {"x-amzn-bedrock-input-token-count": "13", "x-amzn-bedrock-output-token-count": "64"}
        return Reply(200, BEDROCK_INVOKE_BODY, {tier: "flex", latency: "standard", **counts})

    g.fakes["bedrock"].handler = answer
    result = g.run(
        f"""
        import boto3, json
        client = boto3.client("bedrock-runtime", region_name="us-east-1")
        r = client.converse(modelId="{BEDROCK_PROFILE}", serviceTier={{"type": "priority"}},
            performanceConfig={{"latency": "optimized"}}, messages=[{{"role": "user", "content": [{{"text": "hello"}}]}}])
        i = client.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", serviceTier="flex",
            performanceConfigLatency="standard", body=json.dumps({{"anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64, "messages": [{{"role": "user", "content": "hi"}}]}}))
        report(converse=[r["serviceTier"]["type"], r["performanceConfig"]["latency"]],
               invoke=[i["serviceTier"], i["performanceConfigLatency"]])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": ALICE},
    )
    assert result == {"converse": ["priority", "optimized"], "invoke": ["flex", "standard"]}
    assert asked == [({"type": "priority"}, {"latency": "optimized"}), ("flex", "standard")]
    converse, invoke = g.new_audit(2)
    assert (converse["endpoint"], converse["service_tier"], converse["speed"]) == ("converse", "priority", "optimized")
    assert (invoke["endpoint"], invoke["service_tier"], invoke["speed"]) == ("invoke", "flex", "standard")
    assert (converse["input_tokens"], invoke["output_tokens"]) == (17, 64)


def test_bedrock_invoke_model_usage_from_headers(g):
    counts = {"input": "13", "output": "64", "cache-read-input": "100", "cache-write-input": "20"}
    headers = {f"x-amzn-bedrock-{kind}-token-count": n for kind, n in counts.items()}
    g.fakes["bedrock"].handler = lambda r: Reply(200, BEDROCK_INVOKE_BODY, headers)
    result = g.run(
        """
        import boto3, json
        client = boto3.client("bedrock-runtime", region_name="eu-west-1")
        r = client.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=json.dumps(
            {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}))
        report(stop=json.loads(r["body"].read())["stop_reason"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": BOB},
    )
    assert result == {"stop": "max_tokens"}
    record = g.last_audit()
    assert (record["endpoint"], record["model"], record["host"]) == (
        "invoke",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "bedrock-runtime.eu-west-1.amazonaws.com",
    )
    # The input token count header counts neither cache reads nor writes; input_tokens counts all.
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["finish_reason"]) == (
        133,
        64,
        197,
        "max_tokens",
    )
    # Claude 3 Haiku on Bedrock prices no cache apart: 133 x $0.25 + 64 x $1.25 per Mtok.
    assert (record["cached_tokens"], record["cache_write_tokens"], record["cost_usd"]) == (100, 20, 0.00011325)


def test_side_header_wins_and_is_stripped(g):
    own = "sk-callers-own-openai-key-42"
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0, default_headers={{"X-OpenAI-Key": "{own}"}})
        r = client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        report(ok=True)
    """)
    assert result == {"ok": True}
    seen = g.fakes["openai"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {own}"
    assert "x-openai-key" not in seen.headers
    assert ALICE not in str(seen.headers)


@pytest.mark.parametrize(
    ("sdk", "code", "expected"),
    [
        (
            "openai",
            """
            import openai
            openai.OpenAI(api_key="tg-nobody", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        """,
            ("AuthenticationError", 401),
        ),
        (
            "anthropic",
            """
            import anthropic
            anthropic.Anthropic(api_key="tg-nobody", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        """,
            ("AuthenticationError", 401),
        ),
        (
            "gemini",
            """
            from google import genai
            client = genai.Client(api_key="tg-nobody")
            client.models.generate_content(model="gemini-2.0-flash", contents="hi")
        """,
            ("ClientError", 401),
        ),
        (
            "bedrock",
            """
            import boto3
            boto3.client("bedrock-runtime", region_name="us-east-1").converse(
                modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        """,
            ("ClientError", 403),
        ),
    ],
)
def test_unknown_virtual_key_gets_the_sdks_own_exception(g, sdk, code, expected):
    env = {"AWS_BEARER_TOKEN_BEDROCK": "tg-nobody"} if sdk == "bedrock" else None
    result = g.run(textwrap.dedent(code) + "\nreport(error=None)", env=env)
    assert (result["error"], result["status"]) == expected, str(result)
    if sdk == "bedrock":
        assert result["code"] == "UnrecognizedClientException"
    assert "unknown or missing API key" in result["message"]
    assert g.fakes[sdk].received == []
    record = g.last_audit()
    assert (record["provider"], record["decision"], record["client"], record["auth"]) == (
        sdk,
        "deny",
        None,
        "anonymous",
    )
    assert record["status"] == (403 if sdk == "bedrock" else 401)


@pytest.mark.parametrize(
    ("provider", "url", "headers", "upstream_header", "upstream_value"),
    [
        ("anthropic", "https://api.anthropic.com/v1/messages", {"x-api-key": ALICE}, "x-api-key", REAL["anthropic"]),
        (
            "gemini",
            "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-pro:generateContent",
            {"x-goog-api-key": ALICE, "X-Gemini-Key": "AIza-callers-own"},
            "x-goog-api-key",
            "AIza-callers-own",
        ),
        (
            "bedrock",
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse",
            {"authorization": f"Bearer {BOB}", "X-AWS-Bearer-Token": "ABSK-callers-own"},
            "authorization",
            "Bearer ABSK-callers-own",
        ),
        (
            "openai",
            "https://api.openai.com/v1/chat/completions",
            {"authorization": f"Bearer {BOB}"},
            "authorization",
            f"Bearer {REAL['openai']}",
        ),
    ],
)
def test_every_credential_position_and_side_header(g, provider, url, headers, upstream_header, upstream_value):
    result = g.run(f"""
        import json, urllib.request
        req = urllib.request.Request({url!r}, data=json.dumps({{"model": "m", "messages": []}}).encode(),
            headers={{**{headers!r}, "content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status, request_id=resp.headers["x-tollgate-request-id"])
    """)
    seen = g.fakes[provider].received[-1]
    assert seen.headers[upstream_header] == upstream_value
    assert not {"x-gemini-key", "x-aws-bearer-token"} & set(seen.headers)
    assert ALICE not in str(seen.headers) and BOB not in str(seen.headers)
    record = g.last_audit()
    assert record["request_id"] == result["request_id"] and result["status"] == 200
    assert record["client"] == ("alice" if ALICE in str(headers) else "bob")


def test_large_upload_is_streamed_upstream_with_credentials_swapped(g):
    result = g.run(f"""
        import io
        from openai import OpenAI
        audio = io.BytesIO(bytes(range(256)) * (6 * 4096))  # 6 MiB
        audio.name = "meeting.wav"
        r = OpenAI(api_key="{ALICE}", max_retries=0).audio.transcriptions.create(model="whisper-1", file=audio)
        report(text=r.text)
    """)
    seen = g.fakes["openai"].received[-1]
    assert result == {"text": f"{len(seen.body)} bytes heard"} and len(seen.body) > 6 * 1024 * 1024
    assert seen.headers["authorization"] == f"Bearer {REAL['openai']}"
    assert "Streaming request to" in g.proxy.console()
    record = g.last_audit()
    assert (record["client"], record["endpoint"], record["status"], record["model"]) == (
        "alice",
        "audio.transcriptions",
        200,
        None,
    )
