"""No real key, virtual key, proxy password, prompt or completion text in the audit, the console,
or a saved flow — searched for in every output, at mitmdump's most verbose flow detail."""

from __future__ import annotations

import pytest

from tests.support.fake_upstream import Reply
from tests.support.canned import provider_answers

REAL = {
    "openai": "sk-REAL-openai-5ecret-a1",
    "gemini": "AIza-REAL-gemini-5ecret-b2",
    "anthropic": "sk-ant-REAL-5ecret-c3",
    "bedrock": "ABSK-REAL-bedrock-5ecret-d4",
}
VIRTUAL = "tg-VIRTUAL-alice-5ecret-e5"
CAROL = "tg-VIRTUAL-carol-5ecret-f6"
PASSWORD = "pr0xy-PASSWORD-5ecret-g7"
OWN = "sk-CALLERS-OWN-5ecret-h8"
PROMPT = "PROMPT-TEXT-that-must-not-leak-i9"
SYSTEM = "SYSTEM-PROMPT-that-must-not-leak-j0"
TOOL_ARGS = "TOOL-ARGUMENT-that-must-not-leak-k1"
COMPLETION = "COMPLETION-TEXT-that-must-not-leak-l2"
SECRETS = [*REAL.values(), VIRTUAL, CAROL, PASSWORD, OWN, PROMPT, SYSTEM, TOOL_ARGS, COMPLETION]


def answers(received):
    reply = provider_answers(received)
    if isinstance(reply.body, dict):
        text = repr(reply.body).replace("Hi there.", COMPLETION).replace("Hello!", COMPLETION).replace("Hello.", COMPLETION)
        import ast

        reply = Reply(reply.status, ast.literal_eval(text), reply.headers)
    return reply


def _start(start_gateway, tmp_path_factory, *extra: str):
    saved = tmp_path_factory.mktemp("saved") / "flows.mitm"

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
            "clients": [{"name": "alice", "keys": [VIRTUAL], "groups": ["research"]},
                        {"name": "carol", "keys": [CAROL]}],
        }

    gateway = start_gateway(config, "--set", f"save_stream_file={saved}", "--set", "flow_detail=4", *extra)
    gateway.saved = saved
    for fake in gateway.fakes.values():
        fake.handler = answers
    return gateway


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    return _start(start_gateway, tmp_path_factory)


@pytest.fixture(scope="module")
def gw_login(start_gateway, tmp_path_factory):
    return _start(start_gateway, tmp_path_factory, "--set", f"proxyauth=@{_htpasswd(tmp_path_factory)}")


def _htpasswd(tmp_path_factory) -> str:
    # mitmproxy's htpasswd support takes {SHA} entries; carol logs in, the others use virtual keys.
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    path = tmp_path_factory.mktemp("auth") / ".htpasswd"
    path.write_text(f"carol:{{SHA}}{digest}\n")
    return str(path)


def test_nothing_secret_reaches_any_output(gw, gw_login):
    proxy = gw_login.proxy.proxy_url.replace("http://", f"http://carol:{PASSWORD}@")
    calls = [
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="gpt-4o",
            messages=[{{"role": "system", "content": "{SYSTEM}"}}, {{"role": "user", "content": "{PROMPT}"}},
                      {{"role": "assistant", "tool_calls": [{{"id": "c1", "type": "function",
                        "function": {{"name": "f", "arguments": "{TOOL_ARGS}"}}}}]}}])
        report(ok=r.choices[0].message.content == "{COMPLETION}")
        """,
        f"""
        import json, urllib.request
        req = urllib.request.Request(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key={VIRTUAL}",
            data=json.dumps({{"contents": [{{"parts": [{{"text": "{PROMPT}"}}]}}],
                              "systemInstruction": {{"parts": [{{"text": "{SYSTEM}"}}]}}}}).encode(),
            headers={{"content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:
            report(ok=resp.status == 200)
        """,
        f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{VIRTUAL}", max_retries=0, default_headers={{"X-Anthropic-Key": "{OWN}"}}
            ).messages.create(model="claude-sonnet-4-5", max_tokens=10, system="{SYSTEM}",
            messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(ok=r.content[0].text == "{COMPLETION}")
        """,
        f"""
        import boto3
        r = boto3.client("bedrock-runtime", region_name="us-east-1").converse(modelId="amazon.nova-lite-v1:0",
            system=[{{"text": "{SYSTEM}"}}], messages=[{{"role": "user", "content": [{{"text": "{PROMPT}"}}]}}])
        report(ok=r["output"]["message"]["content"][0]["text"] == "{COMPLETION}")
        """,
        """
        import openai
        try:
            openai.OpenAI(api_key="tg-unknown-key", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "%s"}])
            report(ok=False)
        except openai.AuthenticationError:
            report(ok=True)
        """ % PROMPT,
    ]
    env = {"AWS_BEARER_TOKEN_BEDROCK": VIRTUAL}
    for code in calls:
        assert gw.run(code, env=env) == {"ok": True}
    # carol logs in at the proxy: the login wins over the virtual key she also sends.
    from tests.support.clients import run_client

    result = run_client(f"""
        from openai import OpenAI
        OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="gpt-4o",
            messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(ok=True)
    """, proxy, gw.bundle)
    assert result == {"ok": True}
    assert gw_login.fakes["openai"].received[-1].headers["authorization"] == f"Bearer {REAL['openai']}"
    login_record = gw_login.last_audit()
    assert (login_record["client"], login_record["auth"], login_record["groups"]) == ("carol", "proxyauth", [])

    records = gw.wait_audit(len(calls))
    assert [r["client"] for r in records] == ["alice", "alice", "alice", "alice", None]
    for gateway in (gw, gw_login):
        gateway.proxy.stop()  # flushes the saved flows

    outputs = {
        f"{name} {kind}": content
        for name, gateway in (("virtual keys", gw), ("proxy login", gw_login))
        for kind, content in (
            ("audit", gateway.audit_path.read_bytes()),
            ("console", gateway.proxy.output.read_bytes()),
            ("saved flows", gateway.saved.read_bytes()),
        )
    }
    assert len(outputs["virtual keys saved flows"]) > 1000 and b"tollgate" in outputs["virtual keys saved flows"]
    for where, content in outputs.items():
        for secret in SECRETS:
            assert secret.encode() not in content, f"{secret} found in {where}"
    # The saved flows still say where the caller's credential was, and carry the audit record.
    from mitmproxy import io

    with open(gw.saved, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert len(flows) == len(calls)
    assert flows[0].request.headers["authorization"] == "[redacted by Tollgate]"
    assert flows[0].metadata["tollgate"]["client"] == "alice"
    assert flows[0].comment.startswith("alice · openai/gpt-4o · 21→7 tokens · allow")
    with open(gw_login.saved, "rb") as f:
        (login_flow,) = list(io.FlowReader(f).stream())
    assert list(login_flow.metadata["proxyauth"]) == ["carol", ""]


def test_a_model_with_a_lone_surrogate_is_saved_with_its_call(start_gateway, tmp_path_factory):
    """JSON may hold a lone surrogate (no SDK sends one); mitmproxy's flow writer cannot encode it."""
    from mitmproxy import io

    from tests.support.raw import http_request, https_exchange

    gateway = _start(start_gateway, tmp_path_factory)
    body = b'{"model": "gpt-4o\\ud800", "messages": [{"role": "user", "content": "%s"}]}' % PROMPT.encode()
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    request = http_request("POST", "api.openai.com", "/v1/chat/completions", headers, body)
    for _ in range(2):
        answer = https_exchange(gateway.proxy.port, "api.openai.com", request, gateway.bundle)
        assert answer.startswith(b"HTTP/1.1 200")
    assert gateway.fakes["openai"].received[-1].body == body
    records = gateway.wait_audit(2)
    assert records[-1]["model"] == "gpt-4o\ud800"  # the audit keeps the model as sent
    gateway.proxy.stop()
    with open(gateway.saved, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert len(flows) == 2
    assert flows[0].comment == "alice · openai/gpt-4o\\ud800 · 21→7 tokens · allow"
    assert flows[0].metadata["tollgate"]["model"] == "gpt-4o\\ud800"
