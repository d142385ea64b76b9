"""Conversation roll-up end to end: a long conversation from each official SDK goes upstream with its
earlier turns summarized by another provider's model (each summarizer in its own format, with
Tollgate's credential for it), the summary kept for the conversation's next call."""

from __future__ import annotations

import json

import pytest
from tests.support.canned import provider_answers
from tests.support.configs import with_policy
from tests.support.fake_upstream import Received, Reply

from tollgate.governance.limits.rollup import SUMMARIZER_SYSTEM, SUMMARY_HEADING

REAL = {
    "openai": "sk-real-openai-rollup-0001",
    "gemini": "AIza-real-gemini-rollup-0001",
    "anthropic": "sk-ant-real-rollup-0001",
    "bedrock": "ABSK-real-bedrock-rollup-0001",
}
ALICE = "tg-alice-rollup-0123456789"
# Who summarizes whose conversations: every summarizer in another format than the call it serves.
SUMMARIZERS = {
    "openai": ("openai", "gpt-4o-mini"),
    "anthropic": ("gemini", "gemini-2.5-flash"),
    "gemini": ("bedrock", "amazon.nova-lite-v1:0"),
    "bedrock": ("anthropic", "claude-haiku-4-5"),
}
# What each summarizer's fake answers (tests/support/canned.py).
SUMMARY = {"openai": "Hi there.", "gemini": "Hello!", "bedrock": "Hello!", "anthropic": "Hello!"}


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
        "clients": [{"name": "alice", "keys": [ALICE]}],
        "overrides": [{"match": {"provider": "openai", "model": "claude-*"}, "provider": "anthropic", "api": "native"}],
        "rollup": [
            {
                "match": {"provider": caller},
                "above_messages": 10,
                "keep_last": 4,
                "summarizer": {"provider": provider, "model": model},
            }
            for caller, (provider, model) in SUMMARIZERS.items()
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config)


def is_summary_request(r: Received) -> bool:
    return SUMMARIZER_SYSTEM[:40] in r.body.decode(errors="replace")


def calls(g, provider: str) -> tuple[list[Received], list[Received]]:
    """What the provider's fake received: the summarizer's requests, and the callers'."""
    received = g.fakes[provider].received
    return [r for r in received if is_summary_request(r)], [r for r in received if not is_summary_request(r)]


TURNS = 12  # 12 turns: past 10, the last 4 kept


def openai_call(headers: dict[str, str] | None = None, turn: str = "turn", turns: int = TURNS) -> str:
    return f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0)
    messages = [{{"role": "system", "content": "be brief"}}] + [
        {{"role": "user" if i % 2 == 0 else "assistant", "content": f"{turn} {{i}}"}} for i in range({turns})]
    r = client.chat.completions.create(model="gpt-4o", messages=messages, extra_headers={headers or {}!r})
    report(text=r.choices[0].message.content)
    """


def test_an_openai_sdk_conversation_is_rolled_up_and_its_summary_kept(g):
    assert g.run(openai_call()) == {"text": "Hi there."}
    (summarized,), (sent,) = calls(g, "openai")
    asked = summarized.json()
    assert asked["model"] == "gpt-4o-mini" and summarized.headers["authorization"] == f"Bearer {REAL['openai']}"
    conversation = json.loads(asked["messages"][-1]["content"].split("\n\n", 1)[1])
    assert [m["content"] for m in conversation] == [f"turn {i}" for i in range(8)]
    messages = sent.json()["messages"]
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert messages[1] == {"role": "system", "content": SUMMARY_HEADING + SUMMARY["openai"]}
    assert [m["content"] for m in messages[2:]] == [f"turn {i}" for i in range(8, 12)]
    record = g.last_audit()
    assert (record["message_count"], record["rolled_up_messages"], record["total_tokens"]) == (13, 8, 28)
    # gpt-4o-mini ($ per Mtok): 16 x 0.15 + 5 cache reads x 0.075 + 7 x 0.60
    assert record["rollup"] == {
        "summarizer": "openai/gpt-4o-mini", "cached": False, "input_tokens": 21, "output_tokens": 7,
        "cost_usd": 0.000006975,
    }  # fmt: skip
    # The conversation's next call: the same earlier turns, summarized already.
    g.fakes["openai"].received.clear()
    assert g.run(openai_call()) == {"text": "Hi there."}
    summarized, (sent,) = calls(g, "openai")
    assert not summarized and sent.json()["messages"][1]["content"] == SUMMARY_HEADING + SUMMARY["openai"]
    record = g.last_audit()
    assert (record["rolled_up_messages"], record["rollup"]["cached"], record["rollup"]["cost_usd"]) == (8, True, 0.0)


def test_a_caller_opts_out_with_its_header(g):
    assert g.run(openai_call({"X-Tollgate-Rollup": "off"})) == {"text": "Hi there."}
    summarized, (sent,) = calls(g, "openai")
    assert not summarized and len(sent.json()["messages"]) == 13
    assert "x-tollgate-rollup" not in sent.headers
    assert g.last_audit()["rolled_up_messages"] is None


def test_an_anthropic_sdk_conversation_summarized_by_gemini(g):
    result = g.run(f"""
    import anthropic
    client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
    messages = [{{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {{i}}"}} for i in range({TURNS})]
    r = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, system="be brief", messages=messages)
    report(text=r.content[0].text)
    """)
    assert result == {"text": "Hello!"}
    (summarized,), _ = calls(g, "gemini")
    assert summarized.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert summarized.headers["x-goog-api-key"] == REAL["gemini"]
    (sent,) = g.fakes["anthropic"].received
    body = sent.json()
    assert body["system"] == "be brief\n\n" + SUMMARY_HEADING + SUMMARY["gemini"]
    assert [m["content"] for m in body["messages"]] == [f"turn {i}" for i in range(8, 12)]
    record = g.last_audit()
    assert (record["rolled_up_messages"], record["rollup"]["summarizer"], record["rollup"]["input_tokens"]) == (
        8, "gemini/gemini-2.5-flash", 12,
    )  # fmt: skip


def test_a_gemini_sdk_conversation_summarized_by_bedrock(g):
    result = g.run(f"""
    from google import genai
    from google.genai import types
    client = genai.Client(api_key="{ALICE}")
    contents = [types.Content(role="user" if i % 2 == 0 else "model", parts=[types.Part(text=f"turn {{i}}")])
                for i in range({TURNS})]
    r = client.models.generate_content(model="gemini-2.5-flash", contents=contents)
    report(text=r.text)
    """)
    assert result == {"text": "Hello!"}
    (summarized,), _ = calls(g, "bedrock")
    assert summarized.path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert summarized.headers["authorization"] == f"Bearer {REAL['bedrock']}"
    (sent,) = [r for r in g.fakes["gemini"].received if not is_summary_request(r)]
    body = sent.json()
    assert body["systemInstruction"]["parts"][-1] == {"text": SUMMARY_HEADING + SUMMARY["bedrock"]}
    assert [c["parts"][0]["text"] for c in body["contents"]] == [f"turn {i}" for i in range(8, 12)]
    assert g.last_audit()["rolled_up_messages"] == 8


def test_a_boto3_conversation_summarized_by_anthropic(g):
    result = g.run(
        f"""
    import boto3
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    messages = [{{"role": "user" if i % 2 == 0 else "assistant", "content": [{{"text": f"turn {{i}}"}}]}}
                for i in range({TURNS})]
    r = client.converse(modelId="amazon.nova-lite-v1:0", messages=messages, system=[{{"text": "be brief"}}])
    report(text=r["output"]["message"]["content"][0]["text"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": ALICE},
    )
    assert result == {"text": "Hello!"}
    (summarized,), _ = calls(g, "anthropic")
    assert summarized.path == "/v1/messages" and summarized.headers["x-api-key"] == REAL["anthropic"]
    assert summarized.headers["anthropic-version"] == "2023-06-01"
    (sent,) = [r for r in g.fakes["bedrock"].received if not is_summary_request(r)]
    body = sent.json()
    assert body["system"] == [{"text": "be brief"}, {"text": SUMMARY_HEADING + SUMMARY["anthropic"]}]
    assert [m["content"][0]["text"] for m in body["messages"]] == [f"turn {i}" for i in range(8, 12)]


def test_a_summarizer_that_fails_leaves_the_call_as_it_came(g):
    def failing(r: Received) -> Reply:
        return Reply(500, {"error": {"message": "down"}}) if is_summary_request(r) else provider_answers(r)

    g.fakes["openai"].handler = failing
    before = g.proxy.console()
    result = g.run(openai_call(turn="other turn"))
    assert result == {"text": "Hi there."}
    summarized, (sent,) = calls(g, "openai")
    assert len(summarized) == 1 and len(sent.json()["messages"]) == 13
    assert g.last_audit()["rolled_up_messages"] is None
    console = g.wait_console("was not rolled up", after=before)[len(before) :]
    assert "the summarizer (openai/gpt-4o-mini) answered HTTP 500" in console
    assert "other turn" not in console


def test_a_routed_call_is_rolled_up_as_its_client_sent_it(g):
    # The rule of the provider called (OpenAI's, summarized by gpt-4o-mini); the client's turns cut,
    # then translated.
    call = openai_call(turn="routed turn").replace(
        'model="gpt-4o"', 'model="claude-sonnet-4-5", max_tokens=100, seed=7'
    )
    assert g.run(call) == {"text": "Hello!"}
    # Translated twice (as it came, then rolled up): what Anthropic has no field for is told once.
    assert g.wait_console("without seed").count("openai call routed to anthropic without seed") == 1
    (summarized,), _ = calls(g, "openai")
    asked = summarized.json()
    assert asked["model"] == "gpt-4o-mini"
    conversation = json.loads(asked["messages"][-1]["content"].split("\n\n", 1)[1])
    assert conversation == [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"routed turn {i}"} for i in range(8)
    ]  # OpenAI's messages, as the client sent them
    (sent,) = g.fakes["anthropic"].received
    body = sent.json()
    assert body["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": SUMMARY_HEADING + SUMMARY["openai"]},
    ]
    assert [m["content"][0]["text"] for m in body["messages"]] == [f"routed turn {i}" for i in range(8, 12)]
    record = g.last_audit()
    assert (record["requested_provider"], record["provider"], record["rolled_up_messages"]) == (
        "openai",
        "anthropic",
        8,
    )
    # The same conversation called unrouted: the summary made for the route serves it.
    g.fakes["openai"].received.clear()
    assert g.run(openai_call(turn="routed turn")) == {"text": "Hi there."}
    summarized, (sent,) = calls(g, "openai")
    assert not summarized and sent.json()["messages"][1]["content"] == SUMMARY_HEADING + SUMMARY["openai"]
    assert (g.last_audit()["rolled_up_messages"], g.last_audit()["rollup"]["cached"]) == (8, True)


def test_a_growing_conversation_asks_for_a_summary_once_every_so_many_turns(g):
    # 12 turns: the first 8 summarized; up to 18, the same summary; at 20, one of 16 from it.
    asked, rolled = [], []
    for n in range(12, 22, 2):
        g.fakes["openai"].received.clear()
        assert g.run(openai_call(turn="growing turn", turns=n)) == {"text": "Hi there."}
        summarized, (sent,) = calls(g, "openai")
        asked.append([json.loads(r.json()["messages"][-1]["content"].rsplit("\n\n", 1)[1]) for r in summarized])
        rolled.append(g.last_audit()["rolled_up_messages"])
        assert len(sent.json()["messages"]) == 2 + n - rolled[-1]  # the caller's system prompt, the summary
    assert rolled == [8, 8, 8, 8, 16]
    assert [len(a) for a in asked] == [1, 0, 0, 0, 1]
    assert [m["content"] for m in asked[0][0]] == [f"growing turn {i}" for i in range(8)]
    assert [m["content"] for m in asked[4][0]] == [f"growing turn {i}" for i in range(8, 16)]  # after the first summary


def test_claudes_invoke_model_body_is_rolled_up_on_bedrock(g):
    result = g.run(
        f"""
    import boto3, json
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    messages = [{{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {{i}}"}} for i in range({TURNS})]
    body = {{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": messages}}
    r = client.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=json.dumps(body))
    report(status=r["ResponseMetadata"]["HTTPStatusCode"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": ALICE},
    )
    assert result == {"status": 200}
    (sent,) = [r for r in g.fakes["bedrock"].received if not is_summary_request(r)]
    body = sent.json()
    assert body["system"] == SUMMARY_HEADING + SUMMARY["anthropic"]
    assert [m["content"] for m in body["messages"]] == [f"turn {i}" for i in range(8, 12)]
    assert g.last_audit()["rolled_up_messages"] == 8


def test_a_summarizers_key_it_refuses_rests(start_gateway):
    keys = ["sk-real-openai-rollup-first", "sk-real-openai-rollup-second"]

    def settings(urls: dict[str, str]) -> dict:
        return {
            "providers": {
                "anthropic": {"upstream": urls["anthropic"], "keys": [REAL["anthropic"]]},
                "openai": {"upstream": urls["openai"], "keys": keys},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "rollup": [
                {"above_messages": 3, "keep_last": 2, "summarizer": {"provider": "openai", "model": "gpt-4o-mini"}}
            ],
        }

    gw = start_gateway(settings)

    def answers(r: Received) -> Reply:
        if r.headers.get("authorization") == f"Bearer {keys[0]}":
            return Reply(429, {"error": {"message": "slow down", "type": "requests"}}, {"retry-after": "60"})
        return provider_answers(r)

    gw.fakes["openai"].handler = answers
    for conversation in range(3):  # three conversations: no summary kept serves another
        result = gw.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
        messages = [{{"role": "user" if i % 2 == 0 else "assistant", "content": f"talk {conversation} turn {{i}}"}}
                    for i in range(6)]
        r = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages)
        report(text=r.content[0].text)
        """)
        assert result == {"text": "Hello!"}
    used = [r.headers["authorization"].removeprefix("Bearer ") for r in gw.fakes["openai"].received]
    # The first key, refused, rests for its Retry-After: the second serves the rest (in turn: 1, 2, 1).
    assert used == [keys[0], keys[1], keys[1]]
    records = gw.wait_audit(3)[-3:]
    assert [r["rolled_up_messages"] for r in records] == [None, 4, 4]


# A rolled-up call whose target fails: its fallback to another provider goes with the same summary,
# and the summary counts on the caller's limits once, whatever follows.
DAVE = "tg-dave-rollup-0123456789"
FAILOVER_POLICY = """
package tollgate
import rego.v1

deny contains "dave may not fall back" if {
    input.client.name == "dave"
    input.fallback_of != null
}

deny contains sprintf("dave used %d tokens", [input.usage.dave.dave.tokens_per_day.used]) if {
    input.client.name == "dave"
    input.usage.dave.dave.tokens_per_day.used > 0
}
"""


def failover_config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": urls[name], "keys": [REAL[name]]} for name in ("openai", "anthropic")},
        "clients": [{"name": "alice", "keys": [ALICE]}, {"name": "dave", "keys": [DAVE]}],
        "overrides": [
            {"match": {"provider": "openai", "model": "gpt-4o"}, "fallbacks": [{"provider": "anthropic", "model": "claude-haiku-4-5"}]}
        ],
        "rollup": [{"above_messages": 10, "keep_last": 4, "summarizer": {"provider": "openai", "model": "gpt-4o-mini"}}],
        "limits": [{"name": "dave", "match": {"client": "dave"}, "tokens_per_day": 100_000}],
        "policy": {"rego": ["policy.rego"]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def failing(start_gateway):
    gateway = with_policy(
        start_gateway(failover_config, providers=("openai", "anthropic")), failover_config, FAILOVER_POLICY
    )

    def gpt_4o_unavailable(r: Received) -> Reply:
        if is_summary_request(r):
            return provider_answers(r)
        return Reply(503, {"error": {"message": "The server is overloaded", "type": "server_error"}})

    gateway.fakes["openai"].handler = gpt_4o_unavailable
    return gateway


def test_a_fallback_to_another_provider_goes_with_the_summary_made_for_the_first(failing):
    call = openai_call(turn="failing turn").replace('model="gpt-4o"', 'model="gpt-4o", max_tokens=100')
    assert failing.run(call) == {"text": "Hello!"}
    summarized, (first,) = calls(failing, "openai")
    assert len(summarized) == 1  # asked once, for both targets
    assert [m["content"] for m in first.json()["messages"][2:]] == [f"failing turn {i}" for i in range(8, 12)]
    (sent,) = failing.fakes["anthropic"].received
    body = sent.json()
    assert (body["model"], body["max_tokens"]) == ("claude-haiku-4-5", 100)
    assert body["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": SUMMARY_HEADING + SUMMARY["openai"]},
    ]
    assert [m["content"][0]["text"] for m in body["messages"]] == [f"failing turn {i}" for i in range(8, 12)]
    record = failing.last_audit()
    assert [(a["provider"], a["status"]) for a in record["attempts"]] == [("openai", 503), ("anthropic", 200)]
    assert (record["provider"], record["rolled_up_messages"], record["rollup"]["cached"]) == ("anthropic", 8, False)
    assert (record["rollup"]["input_tokens"], record["rollup"]["output_tokens"]) == (21, 7)


def test_a_fallback_of_a_call_that_opted_out_goes_in_full_without_the_header(failing):
    failing.fakes["anthropic"].received.clear()
    call = openai_call({"X-Tollgate-Rollup": "off"}, turn="opted out").replace(
        'model="gpt-4o"', 'model="gpt-4o", max_tokens=100'
    )
    assert failing.run(call) == {"text": "Hello!"}
    (sent,) = failing.fakes["anthropic"].received
    assert len(sent.json()["messages"]) == TURNS and "x-tollgate-rollup" not in sent.headers
    assert failing.last_audit()["rolled_up_messages"] is None


def test_a_summary_counts_on_the_limits_when_no_fallback_goes(failing):
    failing.fakes["anthropic"].received.clear()
    result = failing.run(f"""
    from openai import OpenAI, InternalServerError
    client = OpenAI(api_key="{DAVE}", max_retries=0)
    messages = [{{"role": "system", "content": "be brief"}}] + [
        {{"role": "user" if i % 2 == 0 else "assistant", "content": f"dave turn {{i}}"}} for i in range({TURNS})]
    try:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    except InternalServerError as e:
        report(error=type(e).__name__, status=e.status_code)
    """)
    assert result == {"error": "InternalServerError", "status": 503}  # its fallback denied: the 503 stands
    assert not failing.fakes["anthropic"].received
    assert failing.last_audit()["rollup"]["input_tokens"] == 21
    # The failed attempt was answered (no tokens), the summary was made for it: 21 + 7 tokens used.
    second = failing.run(f"""
    from openai import OpenAI, PermissionDeniedError
    client = OpenAI(api_key="{DAVE}", max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    except PermissionDeniedError as e:
        report(status=e.status_code, message=e.body["message"])
    """)
    assert second["status"] == 403 and "dave used 28 tokens" in second["message"], second
