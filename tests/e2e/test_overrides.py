"""Model overrides and routes: the upstream receives the model the rule chose, in the place its
wire format keeps it, and a routed call reaches another provider's OpenAI-compatible API."""

from __future__ import annotations

import json

import pytest

KEYS = {"openai": "sk-real-o", "gemini": "AIza-real-g", "anthropic": "sk-ant-real-a", "bedrock": "ABSK-real-b"}
CHEAP = "tg-cheap-1"
ALICE = "tg-alice-1"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [KEYS[name]]} for name, url in urls.items()},
        "clients": [{"name": "ci-bot", "keys": [CHEAP], "groups": ["cheap"]}, {"name": "alice", "keys": [ALICE]}],
        "overrides": [
            {"match": {"provider": "openai", "model": "gpt-4*", "group": "cheap"}, "model": "gpt-4o-mini"},
            {"match": {"provider": "openai", "model": "gemini-*"}, "provider": "gemini"},
            {
                "match": {"provider": "openai", "model": "claude-*", "client": "ali*"},
                "provider": "anthropic",
                "model": "claude-haiku-4-5",
            },
            {"match": {"provider": "gemini", "model": "gemini-2.5-pro"}, "model": "gemini-2.0-flash"},
            {"match": {"provider": "anthropic", "model": "claude-opus-*"}, "model": "claude-haiku-4-5"},
            {"match": {"provider": "bedrock", "model": "anthropic.claude-3-opus*"}, "model": PROFILE},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config)


def chat(key: str, model: str) -> str:
    return f"""
        from openai import OpenAI
        r = OpenAI(api_key="{key}", max_retries=0).chat.completions.create(
            model="{model}", messages=[{{"role": "user", "content": "hi"}}])
        report(tokens=r.usage.total_tokens)
    """


def test_openai_body_override_for_a_group(g):
    assert g.run(chat(CHEAP, "gpt-4.1")) == {"tokens": 28}
    seen = g.fakes["openai"].received[-1]
    assert seen.json()["model"] == "gpt-4o-mini"
    assert int(seen.headers["content-length"]) == len(seen.body)
    record = g.last_audit()
    assert (record["requested_model"], record["model"], record["provider"]) == ("gpt-4.1", "gpt-4o-mini", "openai")


def test_an_overridden_body_keeps_every_number_and_escape_the_client_sent(g):
    assert g.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{CHEAP}", max_retries=0).chat.completions.create(
            model="gpt-4.1", seed=2**70, messages=[{{"role": "user", "content": "grüß dich"}}])
        report(tokens=r.usage.total_tokens)
    """
    ) == {"tokens": 28}
    seen = g.fakes["openai"].received[-1].json()
    assert (seen["model"], seen["seed"], seen["messages"][0]["content"]) == ("gpt-4o-mini", 2**70, "grüß dich")
    # What no SDK sends but a hand-made client may: NaN and a lone surrogate, escaped.
    sent = b'{"model":"gpt-4.1","temperature":NaN,"user":"\\ud800","messages":[{"role":"user","content":"hi"}]}'
    result = g.run(f"""
        import urllib.request
        req = urllib.request.Request("https://api.openai.com/v1/chat/completions", data={sent!r},
            headers={{"authorization": "Bearer {CHEAP}", "content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status)
    """)
    assert result == {"status": 200}
    assert g.fakes["openai"].received[-1].body == sent.replace(b'"gpt-4.1"', b'"gpt-4o-mini"')
    assert g.last_audit()["model"] == "gpt-4o-mini"


def test_a_rule_that_matches_nothing_changes_nothing(g):
    sent = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}, indent=3)
    result = g.run(f"""
        import urllib.request
        req = urllib.request.Request("https://api.openai.com/v1/chat/completions", data={sent.encode()!r},
            headers={{"authorization": "Bearer {ALICE}", "content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status)
    """)
    assert result == {"status": 200}
    assert g.fakes["openai"].received[-1].body == sent.encode()  # alice is not in group cheap
    record = g.last_audit()
    assert record["requested_model"] == record["model"] == "gpt-4.1"


def test_openai_sdk_call_for_gemini_goes_to_geminis_openai_endpoint(g):
    assert g.run(chat(ALICE, "gemini-2.0-flash")) == {"tokens": 28}
    assert g.fakes["openai"].received == []
    seen = g.fakes["gemini"].received[-1]
    assert seen.path == "/v1beta/openai/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEYS['gemini']}"
    assert KEYS["openai"] not in str(seen.headers) and ALICE not in str(seen.headers)
    record = g.last_audit()
    assert (record["requested_provider"], record["provider"], record["upstream"]) == (
        "openai",
        "gemini",
        g.fakes["gemini"].url,
    )
    assert (record["host"], record["model"], record["total_tokens"]) == ("api.openai.com", "gemini-2.0-flash", 28)


def test_openai_sdk_call_for_claude_is_routed_and_overridden(g):
    assert g.run(chat(ALICE, "claude-sonnet-4-5")) == {"tokens": 28}
    seen = g.fakes["anthropic"].received[-1]
    assert (seen.path, seen.json()["model"]) == ("/v1/chat/completions", "claude-haiku-4-5")
    assert seen.headers["authorization"] == f"Bearer {KEYS['anthropic']}"
    record = g.last_audit()
    assert (record["provider"], record["requested_model"], record["model"]) == (
        "anthropic",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    )


def test_gemini_path_override(g):
    result = g.run(f"""
        from google import genai
        client = genai.Client(api_key="{ALICE}")
        report(text=client.models.generate_content(model="gemini-2.5-pro", contents="hi").text)
    """)
    assert result == {"text": "Hello!"}
    path = g.fakes["gemini"].received[-1].path
    assert path.split("?")[0].endswith("/models/gemini-2.0-flash:generateContent")
    assert g.last_audit()["model"] == "gemini-2.0-flash"


def test_anthropic_body_override(g):
    result = g.run(f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
            model="claude-opus-4-1", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
        report(text=r.content[0].text)
    """)
    assert result == {"text": "Hello!"}
    assert g.fakes["anthropic"].received[-1].json()["model"] == "claude-haiku-4-5"


def test_bedrock_path_override_encodes_like_botocore(g):
    result = g.run(
        """
        import boto3
        r = boto3.client("bedrock-runtime", region_name="us-east-1").converse(
            modelId="anthropic.claude-3-opus-20240229-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        report(stop=r["stopReason"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": ALICE},
    )
    assert result == {"stop": "end_turn"}
    seen = g.fakes["bedrock"].received[-1]
    assert seen.path == "/model/" + PROFILE.replace(":", "%3A").replace("/", "%2F") + "/converse"
    assert seen.headers["authorization"] == f"Bearer {KEYS['bedrock']}"
    record = g.last_audit()
    assert (record["requested_model"], record["model"]) == ("anthropic.claude-3-opus-20240229-v1:0", PROFILE)


def test_model_listing_passes_untouched(g):
    g.run(f"""
        from openai import OpenAI
        report(n=len(OpenAI(api_key="{CHEAP}", max_retries=0).models.list().data))
    """)
    seen = g.fakes["openai"].received[-1]
    assert (seen.method, seen.path) == ("GET", "/v1/models")


def test_changed_sigv4_request_is_refused_not_forwarded_with_a_broken_signature(start_gateway):
    gw = start_gateway(
        lambda urls: {
            "providers": {"bedrock": {"upstream": urls["bedrock"]}},
            "overrides": [{"match": {"provider": "bedrock"}, "model": "amazon.nova-micro-v1:0"}],
        }
    )
    result = gw.run("""
        import boto3
        boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="s").converse(modelId="amazon.nova-pro-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}])
        report(error=None)
    """)
    assert (result["status"], result["code"]) == (500, "InternalServerException"), str(result)
    assert "cannot re-sign" in result["message"] and "providers.bedrock.keys" in result["message"]
    assert gw.fakes["bedrock"].received == []
