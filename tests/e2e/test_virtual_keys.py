"""Virtual keys the configuration holds only as their SHA-256 (`sha256:<hex>`), and keys with an
expiry: the official SDKs call with the key itself, in every provider's credential position; an
expired key is refused as an unknown one (the SDK's AuthenticationError), also when it expires while
the proxy runs; and no copy of a key reaches the audit, the console or a saved flow."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import pytest
import yaml
from tests.support.leaks import saved_flows, stopped_outputs
from tests.support.mcp_upstream import client_code

REAL = {
    "openai": "sk-REAL-openai-hashed-5ecret-a1",
    "gemini": "AIza-REAL-gemini-hashed-5ecret-b2",
    "anthropic": "sk-ant-REAL-hashed-5ecret-c3",
    "bedrock": "ABSK-REAL-bedrock-hashed-5ecret-d4",
}
ALICE = "tg-alice-HASHED-key-5ecret-e5"  # in the file as its SHA-256 alone
BOB = "tg-bob-EXPIRED-hashed-5ecret-f6"  # its SHA-256, expired
CAROL = "tg-carol-EXPIRED-plain-5ecret-g7"  # written out, expired
DANA = "tg-dana-LATER-hashed-5ecret-h8"  # its SHA-256, expiring long after this test
ERIN = "tg-erin-FLEETING-5ecret-i9"  # given an expiry a few seconds ahead while the proxy runs
PROMPT = "PROMPT-TEXT-hashed-keys-j0"
REAL_MCP = "ghp-REAL-mcp-bearer-hashed-5ecret-k1"
MCP_URL = "https://mcp.hashed-keys.example.test/mcp"
SECRETS = [*REAL.values(), REAL_MCP, ALICE, BOB, CAROL, DANA, ERIN, PROMPT]


def sha256(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def config(urls: dict[str, str], mcp_upstream: str, *more_clients: dict) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
        "mcp": {
            "servers": [{"name": "notes", "url": MCP_URL, "upstream": mcp_upstream, "credential": {"bearer": REAL_MCP}}]
        },
        "clients": [
            {"name": "alice", "keys": [sha256(ALICE)], "groups": ["research"]},
            {"name": "bob", "keys": [{"key": sha256(BOB), "expires": "2020-01-01"}]},
            {"name": "carol", "keys": [{"key": CAROL, "expires": "2020-01-01T00:00:00Z"}]},
            {"name": "dana", "keys": [{"key": sha256(DANA), "expires": "2099-01-01T00:00:00+02:00"}]},
            *more_clients,
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory, mcp_server):
    gateway = start_gateway(lambda urls: config(urls, mcp_server.url), save_flows=True)
    return gateway


OPENAI = """
    import openai
    try:
        r = openai.OpenAI(api_key="{key}", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "{prompt}"}}])
        report(ok=r.usage.total_tokens)
    except openai.AuthenticationError as e:
        report(refused=e.status_code, tollgate=e.response.headers.get("x-tollgate-error"), message=e.message)
"""


def test_a_key_written_as_its_sha256_calls_through_every_sdk(gw):
    gw.reset()
    calls = [
        OPENAI.format(key=ALICE, prompt=PROMPT),
        f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(ok=r.usage.input_tokens + r.usage.output_tokens)
        """,
        f"""
        from google import genai
        client = genai.Client(api_key="{ALICE}")
        r = client.models.generate_content(model="gemini-2.0-flash", contents="{PROMPT}")
        report(ok=r.usage_metadata.total_token_count)
        """,
        f"""
        import json, urllib.request
        req = urllib.request.Request(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key={ALICE}",
            data=json.dumps({{"contents": [{{"parts": [{{"text": "{PROMPT}"}}]}}]}}).encode(),
            headers={{"content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(ok=json.load(resp)["usageMetadata"]["totalTokenCount"])
        """,
        f"""
        import boto3
        r = boto3.client("bedrock-runtime", region_name="us-east-1").converse(modelId="amazon.nova-lite-v1:0",
            messages=[{{"role": "user", "content": [{{"text": "{PROMPT}"}}]}}])
        report(ok=r["usage"]["totalTokens"])
        """,
    ]
    results = [gw.run(code, env={"AWS_BEARER_TOKEN_BEDROCK": ALICE}) for code in calls]
    assert all(isinstance(r.get("ok"), int) and r["ok"] > 0 for r in results), results
    # Each upstream got the real key in its own position, never the virtual one.
    assert gw.fakes["openai"].received[-1].headers["authorization"] == f"Bearer {REAL['openai']}"
    assert gw.fakes["anthropic"].received[-1].headers["x-api-key"] == REAL["anthropic"]
    assert [r.headers["x-goog-api-key"] for r in gw.fakes["gemini"].received] == [REAL["gemini"]] * 2
    assert ALICE not in gw.fakes["gemini"].received[-1].path
    assert gw.fakes["bedrock"].received[-1].headers["authorization"] == f"Bearer {REAL['bedrock']}"
    records = gw.wait_audit(len(calls))[-len(calls) :]
    assert [(r["provider"], r["client"], r["auth"], r["groups"], r["status"]) for r in records] == [
        (provider, "alice", "virtual_key", ["research"], 200)
        for provider in ("openai", "anthropic", "gemini", "gemini", "bedrock")
    ]


def test_a_key_that_has_not_expired_yet_calls(gw):
    gw.reset()
    assert gw.run(OPENAI.format(key=DANA, prompt="x")) == {"ok": 28}
    assert gw.last_audit()["client"] == "dana"


def test_an_expired_key_is_refused_as_an_unknown_one_and_audited_as_whose_it_was(gw):
    gw.reset()
    refused = {
        "refused": 401,
        "tollgate": "unauthenticated",
        "message": "Error code: 401 - Tollgate: unknown or missing API key. Use the virtual key Tollgate's operator gave you.",
    }
    assert gw.run(OPENAI.format(key=BOB, prompt="x")) == refused
    assert gw.run(f"""
        import anthropic
        try:
            anthropic.Anthropic(api_key="{CAROL}", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "x"}}])
        except anthropic.AuthenticationError as e:
            report(refused=e.status_code, type=e.body["error"]["type"])
    """) == {"refused": 401, "type": "authentication_error"}
    assert not any(fake.received for fake in gw.fakes.values())  # nothing went upstream
    gw.last_audit()  # carol's record is written
    bob, carol = gw.audit()[-2:]
    assert [(r["client"], r["decision"], r["status"], r["deny_reasons"]) for r in (bob, carol)] == [
        (None, "deny", 401, ["virtual key of bob expired 2020-01-01T00:00:00Z"]),
        (None, "deny", 401, ["virtual key of carol expired 2020-01-01T00:00:00Z"]),
    ]
    # At start-up the console named them, by their place in the file.
    console = gw.proxy.console()
    assert "Tollgate: virtual key clients.1.keys.0 (bob) expired 2020-01-01T00:00:00Z: it is refused" in console
    assert "Tollgate: virtual key clients.2.keys.0 (carol) expired 2020-01-01T00:00:00Z: it is refused" in console


def mcp_add(key: str) -> str:
    """Client code: the SDK adding 2 and 3 with the MCP server's tool, as `key`."""
    return client_code(
        MCP_URL,
        'added = await client.call_tool("add", {"a": 2, "b": 3})\nreport(added=[c.text for c in added.content])',
        key,
    )


def test_an_mcp_servers_caller_is_known_by_a_hashed_key_and_refused_once_it_has_expired(gw, mcp_server):
    mcp_server.clear()
    assert gw.run(mcp_add(ALICE)) == {"added": ["5"]}
    received = mcp_server.received()
    assert received and {r["headers"]["authorization"] for r in received} == {f"Bearer {REAL_MCP}"}
    tool = next(r for r in gw.new_audit(3) if r.get("tool") == "add")
    assert (tool["event"], tool["client"], tool["auth"], tool["status"]) == ("mcp_call", "alice", "virtual_key", 200)

    mcp_server.clear()
    result = gw.run(mcp_add(BOB))
    assert "added" not in result
    assert mcp_server.received() == []
    record = gw.last_audit()
    assert (record["event"], record["client"], record["decision"], record["status"]) == ("mcp_call", None, "deny", 401)
    assert record["deny_reasons"] == ["virtual key of bob expired 2020-01-01T00:00:00Z"]


def test_a_key_stops_working_when_it_expires_while_the_proxy_runs(gw, mcp_server):
    gw.reset()
    # Erin's key is given an expiry a few seconds ahead; no restart nor reload follows.
    expires = int(time.time()) + 15
    when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    erin = {"name": "erin", "keys": [{"key": sha256(ERIN), "expires": when}]}
    console = gw.reconfigure(lambda urls: config(urls, mcp_server.url, erin))
    assert f"Tollgate: virtual key clients.4.keys.0 (erin) expires {when}, in " in console
    reloaded = gw.proxy.console()
    result = gw.run(
        f"""
        import time, openai
        client = openai.OpenAI(api_key="{ERIN}", max_retries=0)
        ask = lambda: client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "x"}}])
        first = ask().usage.total_tokens
        first_ended = time.time()
        time.sleep(max(0, {expires} - time.time()) + 0.5)
        try:
            ask()
            report(first=first, first_ended=first_ended, second="served")
        except openai.AuthenticationError as e:
            report(first=first, first_ended=first_ended, second=e.status_code)
    """,
        timeout=90,
    )
    assert result["first_ended"] < expires, "the first call ended after the key expired: nothing was shown"
    assert (result["first"], result["second"]) == (28, 401)
    assert len(gw.fakes["openai"].received) == 1
    served, refused = gw.new_audit(2)
    assert (served["client"], served["status"]) == ("erin", 200)
    assert (refused["client"], refused["status"], refused["deny_reasons"]) == (
        None,
        401,
        [f"virtual key of erin expired {when}"],
    )
    assert "configuration reloaded" not in gw.proxy.console()[len(reloaded) :]


def test_the_configuration_and_every_output_hold_no_usable_copy_of_a_hashed_key(gw):
    written = yaml.safe_load(gw.config_path.read_text())
    assert ALICE not in gw.config_path.read_text() and written["clients"][0]["keys"] == [sha256(ALICE)]
    outputs = stopped_outputs(gw)
    assert len(outputs["saved flows"]) > 1000
    for where, content in outputs.items():
        for secret in SECRETS:
            assert secret.encode() not in content, f"{secret} found in {where}"

    flows = saved_flows(gw.saved)
    first = flows[0]
    assert first.request.headers["authorization"] == "[redacted by Tollgate]"
    assert first.metadata["tollgate"]["client"] == "alice"
