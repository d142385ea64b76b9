"""No real key, virtual key, proxy password, prompt or completion text in the audit, the console,
or a saved flow — searched for in every output, at mitmdump's most verbose flow detail."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Reply
from tests.support.leaks import assert_no_secret, saved_flows, stopped_outputs

REAL = {
    "openai": "sk-REAL-openai-5ecret-a1",
    "gemini": "AIza-REAL-gemini-5ecret-b2",
    "anthropic": "sk-ant-REAL-5ecret-c3",
    "bedrock": "ABSK-REAL-bedrock-5ecret-d4",
    "groq": "gsk_REAL-groq-5ecret-d5",  # an OpenAI-compatible preset
    "acme": "sk-REAL-acme-5ecret-d6",  # an OpenAI-compatible vendor the configuration adds
}
ACME = {"kind": "openai_compatible", "hosts": ["api.acme.example"]}
OWN_VENDOR = "sk-CALLERS-OWN-vendor-5ecret-h9"
VIRTUAL = "tg-VIRTUAL-alice-5ecret-e5"
CAROL = "tg-VIRTUAL-carol-5ecret-f6"
PASSWORD = "pr0xy-PASSWORD-5ecret-g7"
OWN = "sk-CALLERS-OWN-5ecret-h8"
PROMPT = "PROMPT-TEXT-that-must-not-leak-i9"
SYSTEM = "SYSTEM-PROMPT-that-must-not-leak-j0"
TOOL_ARGS = "TOOL-ARGUMENT-that-must-not-leak-k1"
COMPLETION = "COMPLETION-TEXT-that-must-not-leak-l2"
OAUTH = "ya29.CALLERS-OAUTH-token-5ecret-m0"  # Google reads an OAuth token from ?access_token= too
SECRETS = [*REAL.values(), VIRTUAL, CAROL, PASSWORD, OWN, OWN_VENDOR, OAUTH, PROMPT, SYSTEM, TOOL_ARGS, COMPLETION]


def answers(received):
    reply = provider_answers(received)
    if isinstance(reply.body, dict):
        text = (
            repr(reply.body)
            .replace("Hi there.", COMPLETION)
            .replace("Hello!", COMPLETION)
            .replace("Hello.", COMPLETION)
        )
        import ast

        reply = Reply(reply.status, ast.literal_eval(text), reply.headers)
    return reply


def _start(start_gateway, tmp_path_factory, *extra: str, drain_s: float | None = None):

    def config(urls: dict[str, str]) -> dict:
        providers = {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()}
        providers["acme"].update(ACME)
        return {
            "providers": providers,
            "clients": [
                {"name": "alice", "keys": [VIRTUAL], "groups": ["research"]},
                {"name": "carol", "keys": [CAROL]},
            ],
            **({} if drain_s is None else {"drain_s": drain_s}),
        }

    gateway = start_gateway(
        config, *extra, providers=("openai", "gemini", "anthropic", "bedrock", "groq", "acme"), save_flows=True
    )
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
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key={VIRTUAL}&access_token={OAUTH}",
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
        f"""
        from openai import OpenAI
        r = OpenAI(base_url="https://api.groq.com/openai/v1", api_key="{VIRTUAL}", max_retries=0
            ).chat.completions.create(model="llama-3.3-70b-versatile",
            messages=[{{"role": "system", "content": "{SYSTEM}"}}, {{"role": "user", "content": "{PROMPT}"}}])
        report(ok=r.choices[0].message.content == "{COMPLETION}")
        """,
        f"""
        from openai import OpenAI
        r = OpenAI(base_url="https://api.acme.example/v1", api_key="{VIRTUAL}", max_retries=0,
            default_headers={{"X-Vendor-Key": "{OWN_VENDOR}"}}).chat.completions.create(model="acme-1",
            messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(ok=r.choices[0].message.content == "{COMPLETION}")
        """,
        f"""
        import openai
        try:
            openai.OpenAI(api_key="tg-unknown-key", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": "{PROMPT}"}}])
            report(ok=False)
        except openai.AuthenticationError:
            report(ok=True)
        """,
    ]
    env = {"AWS_BEARER_TOKEN_BEDROCK": VIRTUAL}
    for code in calls:
        assert gw.run(code, env=env) == {"ok": True}
    # The caller's own credentials stay behind, the OAuth token in the query too.
    (gemini,) = gw.fakes["gemini"].received
    assert gemini.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert gemini.headers["x-goog-api-key"] == REAL["gemini"]
    # A preset's call goes with its real key; a configured vendor's with the caller's own from its side header.
    assert gw.fakes["groq"].received[-1].headers["authorization"] == f"Bearer {REAL['groq']}"
    (acme,) = gw.fakes["acme"].received
    assert acme.headers["authorization"] == f"Bearer {OWN_VENDOR}" and "x-vendor-key" not in acme.headers
    # carol logs in at the proxy: the login wins over the virtual key she also sends.
    from tests.support.clients import run_client

    result = run_client(
        f"""
        from openai import OpenAI
        OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="gpt-4o",
            messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(ok=True)
    """,
        proxy,
        gw.bundle,
    )
    assert result == {"ok": True}
    assert gw_login.fakes["openai"].received[-1].headers["authorization"] == f"Bearer {REAL['openai']}"
    login_record = gw_login.last_audit()
    assert (login_record["client"], login_record["auth"], login_record["groups"]) == ("carol", "proxyauth", [])

    records = gw.wait_audit(len(calls))
    assert [r["client"] for r in records] == ["alice", "alice", "alice", "alice", "alice", "alice", None]
    assert [r["provider"] for r in records[4:6]] == ["groq", "acme"]
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
    assert_no_secret(outputs, SECRETS)
    # The saved flows still say where the caller's credential was, and carry the audit record.

    flows = saved_flows(gw.saved)
    assert len(flows) == len(calls)
    assert flows[0].request.headers["authorization"] == "[redacted by Tollgate]"
    assert flows[0].metadata["tollgate"]["client"] == "alice"
    assert flows[0].comment.startswith("alice · 21→7 $0.00011625 · openai/gpt-4o")
    (login_flow,) = saved_flows(gw_login.saved)
    assert list(login_flow.metadata["proxyauth"]) == ["carol", ""]


# ---- refused and failed calls: every credential-bearing header, whatever happened to the call

SIDE = {
    "X-OpenAI-Key": "sk-SIDE-openai-5ecret-m1",
    "X-Gemini-Key": "AIza-SIDE-gemini-5ecret-m2",
    "X-Anthropic-Key": "sk-ant-SIDE-5ecret-m3",
    "X-AWS-Bearer-Token": "ABSK-SIDE-bedrock-5ecret-m4",
    "X-AWS-Access-Key": "AKIASIDE5ECRETM5",
    "X-AWS-Secret-Key": "aws-SIDE-secret-5ecret-m6",
    "X-AWS-Session-Token": "aws-SIDE-session-5ecret-m7",
    "X-Groq-Key": "gsk_SIDE-groq-5ecret-m8",
    "X-Mistral-Key": "SIDE-mistral-5ecret-m9",
    "X-Vendor-Key": "sk-SIDE-vendor-5ecret-m0",
}
COOKIE = "COOKIE-session-5ecret-n1"
WS_KEY = "sk-WEBSOCKET-5ecret-n2"
UNKNOWN = "tg-UNKNOWN-5ecret-n3"
WRONG_PASSWORD = "WRONG-proxy-PASSWORD-5ecret-n4"
ALICE_AWS = ("TGALICE0000000000000", "alice-aws-SECRET-5ecret-n5")
WRONG_AWS_SECRET = "wrong-aws-SECRET-5ecret-n6"
OWN_AWS = ("AKIDOWN0000000000000", "own-aws-SECRET-5ecret-n7")
# Credentials that go in a query: Gemini's key and OAuth token, a presigned AWS URL's signature and token.
QUERY_SECRETS = {
    "key": VIRTUAL,
    "access_token": "ya29.QUERY-oauth-5ecret-n8",
    "oauth_token": "ya29.QUERY-oauth-5ecret-n9",
    "X-Amz-Signature": "QUERY-aws-signature-5ecret-o1",
    "X-Amz-Security-Token": "QUERY-aws-session-5ecret-o2",
}
REFUSAL_SECRETS = [
    *SIDE.values(),
    *QUERY_SECRETS.values(),
    COOKIE,
    WS_KEY,
    UNKNOWN,
    ALICE_AWS[1],
    WRONG_AWS_SECRET,
    VIRTUAL,
    CAROL,
    PROMPT,
    *REAL.values(),
]
PROTOCOLS = f"realtime, openai-insecure-api-key.{WS_KEY}, openai-beta.realtime-v1"


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in SIDE.items() if k not in names}


@pytest.fixture(scope="module")
def gw_refusing(start_gateway, tmp_path_factory):
    """OpenAI and Anthropic have keys, Gemini and Bedrock none (a client's call there has no upstream
    credential); the policy denies one model."""
    policy = tmp_path_factory.mktemp("policy") / "deny.rego"
    policy.write_text(
        'package tollgate\nimport rego.v1\ndeny contains "denied model" if input.model == "claude-denied"\n'
    )
    gateway = start_gateway(
        lambda urls: {
            "providers": {
                name: {"upstream": url, **({"keys": [REAL[name]]} if name in ("openai", "anthropic") else {})}
                for name, url in urls.items()
            },
            "clients": [
                {
                    "name": "alice",
                    "keys": [VIRTUAL],
                    "aws_credentials": [{"access_key_id": ALICE_AWS[0], "secret_access_key": ALICE_AWS[1]}],
                },
                {"name": "carol", "keys": [CAROL]},
            ],
            "policy": {"rego": [str(policy)]},
        },
        "--set",
        "termlog_verbosity=debug",
        save_flows=True,
    )
    return gateway


def _boto3_with_headers(headers: dict[str, str], key: tuple[str, str] | None = None) -> str:
    credentials = f", aws_access_key_id='{key[0]}', aws_secret_access_key='{key[1]}'" if key else ""
    return f"""
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1",
            config=Config(retries={{"total_max_attempts": 1}}){credentials})
        def add_headers(request, **kwargs):
            for name, value in {headers!r}.items():
                request.headers[name] = value
        client.meta.events.register("before-send.bedrock-runtime.*", add_headers)
        client.converse(modelId="amazon.nova-lite-v1:0",
                        messages=[{{"role": "user", "content": [{{"text": "{PROMPT}"}}]}}])
    """


REFUSED_CALLS = [
    # 401: an unknown key, with every side header, virtual keys where OpenAI takes none (x-api-key,
    # x-goog-api-key), credentials in the query, a cookie and a Realtime key as a WebSocket subprotocol.
    (
        f"""
        import openai
        openai.OpenAI(api_key="{UNKNOWN}", max_retries=0, default_query={QUERY_SECRETS!r},
            default_headers={{**{SIDE!r}, "x-api-key": "{VIRTUAL}", "x-goog-api-key": "{CAROL}",
                              "Cookie": "session={COOKIE}", "Sec-WebSocket-Protocol": "{PROTOCOLS}"}},
        ).chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "{PROMPT}"}}])
    """,
        {},
        ("AuthenticationError", 401),
    ),
    # 403: the policy denies the model; a virtual key where Anthropic takes none.
    (
        f"""
        import anthropic
        anthropic.Anthropic(api_key="{VIRTUAL}", max_retries=0,
            default_headers={{**{SIDE!r}, "x-goog-api-key": "{CAROL}", "Cookie": "session={COOKIE}"}},
        ).messages.create(model="claude-denied", max_tokens=10, messages=[{{"role": "user", "content": "{PROMPT}"}}])
    """,
        {},
        ("PermissionDeniedError", 403),
    ),
    # 500: no Gemini credential for a client (its own Gemini side header would be one).
    (
        f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{VIRTUAL}", http_options=types.HttpOptions(headers={{
            **{_without("X-Gemini-Key")!r}, "x-api-key": "{CAROL}", "Cookie": "session={COOKIE}"}}))
        client.models.generate_content(model="gemini-2.0-flash", contents="{PROMPT}")
    """,
        {},
        ("ServerError", 500),
    ),
    # 500: no Bedrock credential for a client with a Bedrock API key.
    (
        _boto3_with_headers(
            {
                **_without("X-AWS-Bearer-Token", "X-AWS-Access-Key", "X-AWS-Secret-Key"),
                "x-api-key": CAROL,
                "x-goog-api-key": CAROL,
                "Cookie": f"session={COOKIE}",
            }
        ),
        {"AWS_BEARER_TOKEN_BEDROCK": VIRTUAL},
        ("InternalServerException", 500),
    ),
    # 403: virtual AWS credentials signed with the wrong secret, with the AWS side headers.
    (
        _boto3_with_headers(
            {**SIDE, "x-api-key": VIRTUAL, "Cookie": f"session={COOKIE}"}, (ALICE_AWS[0], WRONG_AWS_SECRET)
        ),
        {},
        ("ClientError", 403),
    ),
    # 401: an unknown key to an OpenAI-compatible preset, with every side header and a cookie.
    (
        f"""
        import openai
        openai.OpenAI(base_url="https://api.groq.com/openai/v1", api_key="{UNKNOWN}", max_retries=0,
            default_headers={{**{SIDE!r}, "x-api-key": "{VIRTUAL}", "Cookie": "session={COOKIE}"}},
        ).chat.completions.create(model="llama-3.3-70b-versatile", messages=[{{"role": "user", "content": "{PROMPT}"}}])
    """,
        {},
        ("AuthenticationError", 401),
    ),
]


def test_refused_calls_keep_no_credential_in_any_output(gw_refusing):
    from tests.support.clients import run_client

    for code, env, (error, status) in REFUSED_CALLS:
        result = run_client(code, gw_refusing.proxy.proxy_url, gw_refusing.bundle, env)
        assert (result.get("error"), result.get("status")) == (error, status), str(result)
    records = gw_refusing.wait_audit(len(REFUSED_CALLS))
    assert [r["status"] for r in records] == [401, 403, 500, 500, 403, 401]
    assert [r["decision"] for r in records] == ["deny"] * 6  # each a refusal of Tollgate's
    assert not any(fake.received for fake in gw_refusing.fakes.values())
    gw_refusing.proxy.stop()  # flushes the saved flows

    console = gw_refusing.proxy.output.read_bytes()
    assert b"x-tollgate-error: unauthenticated" in console.lower()  # the flows were printed in full
    assert_no_secret(
        {
            "console": console,
            "saved flows": gw_refusing.saved.read_bytes(),
            "audit": gw_refusing.audit_path.read_bytes(),
        },
        REFUSAL_SECRETS,
    )

    flows = saved_flows(gw_refusing.saved)
    assert [f.response.status_code for f in flows] == [401, 403, 500, 500, 403, 401]
    unknown, denied, gemini, bedrock, badly_signed, groq = (f.request for f in flows)
    # Where the credentials were stays visible.
    for name in (*SIDE, "authorization", "x-api-key", "x-goog-api-key", "cookie"):
        assert unknown.headers[name] == "[redacted by Tollgate]", name
    for name in (*SIDE, "authorization", "x-api-key", "cookie"):
        assert groq.headers[name] == "[redacted by Tollgate]", name
    # The Realtime subprotocol key is taken out of every call before it is read: it is never forwarded.
    assert unknown.headers["sec-websocket-protocol"] == "realtime, openai-beta.realtime-v1"
    assert dict(unknown.query) == dict.fromkeys(QUERY_SECRETS, "[redacted by Tollgate]")
    assert denied.headers["authorization"] == denied.headers["x-goog-api-key"] == "[redacted by Tollgate]"
    assert gemini.headers["x-goog-api-key"] == gemini.headers["x-api-key"] == "[redacted by Tollgate]"
    assert bedrock.headers["authorization"] == bedrock.headers["x-goog-api-key"] == "[redacted by Tollgate]"
    assert badly_signed.headers["x-aws-secret-key"] == badly_signed.headers["authorization"] == "[redacted by Tollgate]"
    assert all(f.request.raw_content is None for f in flows)


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_wrong_proxy_password_is_not_shown(start_gateway, tmp_path_factory):
    """mitmproxy's proxyauth answers 407, and its console prints the request it refused."""
    from tests.support.exchange import http_request, proxy_exchange

    gw_login = _start(
        start_gateway,
        tmp_path_factory,
        "--set",
        f"proxyauth=@{_htpasswd(tmp_path_factory)}",
        "--set",
        "termlog_verbosity=debug",
    )

    wrong = _basic("carol", WRONG_PASSWORD)
    before = len(gw_login.proxy.console())
    answer = proxy_exchange(
        gw_login.proxy.port,
        (
            f"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\nProxy-Authorization: {wrong}\r\n\r\n"
        ).encode(),
    )
    assert answer.startswith(b"HTTP/1.1 407")
    # A plain HTTP request through the proxy, refused at its headers.
    answer = proxy_exchange(
        gw_login.proxy.port,
        http_request(
            "GET", "example.com", "http://example.com/", {"Proxy-Authorization": wrong, "x-goog-api-key": VIRTUAL}
        ),
    )
    assert answer.startswith(b"HTTP/1.1 407")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and gw_login.proxy.console()[before:].count("407") < 2:
        time.sleep(0.05)
    console = gw_login.proxy.console()[before:]
    assert console.count("proxy-authorization: [redacted by Tollgate]") == 2
    for secret in (WRONG_PASSWORD, wrong.removeprefix("Basic "), VIRTUAL):
        assert secret not in console


def test_a_call_with_text_that_is_not_unicode_is_saved_with_its_call(start_gateway, tmp_path_factory):
    """mitmproxy reads a path byte that is not UTF-8 as a lone surrogate, and its flow writer cannot
    encode one: the refused call's flow must still be saved."""
    from tests.support.exchange import http_request, https_exchange

    gateway = _start(start_gateway, tmp_path_factory)
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "%s"}]}' % PROMPT.encode()
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    request = http_request("POST", "api.openai.com", "/v1/chat/completions", headers, body)
    request = request.replace(b"/v1/chat/completions", b"/v1/chat/compl\xffetions", 1)
    for _ in range(2):
        answer = https_exchange(gateway.proxy.port, "api.openai.com", request, gateway.bundle)
        assert answer.startswith(b"HTTP/1.1 400")
    assert gateway.fakes["openai"].received == []
    records = gateway.wait_audit(2)
    assert records[-1]["path"] == "/v1/chat/compl\udcffetions"  # the audit keeps the path as read
    gateway.proxy.stop()
    flows = saved_flows(gateway.saved)
    assert len(flows) == 2
    assert flows[0].metadata["tollgate"]["path"] == "/v1/chat/compl\\udcffetions"
    assert PROMPT.encode() not in gateway.saved.read_bytes()


def test_a_call_open_at_shutdown_is_saved_without_its_credentials(start_gateway, tmp_path_factory):
    """mitmproxy saves the flows still open when it stops: the real key had gone upstream in them.
    (drain_s 0: SIGTERM stops it at once, without waiting for the call.)"""
    from tests.support.exchange import http_request

    gateway = _start(start_gateway, tmp_path_factory, "--set", "termlog_verbosity=debug", drain_s=0)
    reached = threading.Event()

    def stall(received):
        reached.set()
        return Reply(200, {}, delay=30)

    gateway.fakes["openai"].handler = stall
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "%s"}]}' % PROMPT.encode()
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    request = http_request("POST", "api.openai.com", "/v1/chat/completions", headers, body)
    client = threading.Thread(target=_ignoring_errors, args=(gateway.proxy.port, request, gateway.bundle))
    client.start()
    assert reached.wait(20)
    gateway.proxy.stop()
    client.join(30)
    saved = gateway.saved.read_bytes()
    for secret in (REAL["openai"], VIRTUAL, PROMPT):
        assert secret.encode() not in saved and secret.encode() not in gateway.proxy.output.read_bytes(), secret
    (flow,) = saved_flows(gateway.saved)
    assert flow.request.headers["authorization"] == "[redacted by Tollgate]"
    assert flow.metadata["tollgate"]["error"] == "proxy shut down during the call"


def _ignoring_errors(port: int, request: bytes, bundle) -> None:
    from tests.support.exchange import https_exchange

    try:
        https_exchange(port, "api.openai.com", request, bundle)
    except OSError:
        pass  # the proxy went away


# ---- Azure: a resource's key, Tollgate's Entra ID client secret and the tokens it gets

AZURE_KEY = "azure-REAL-resource-5ecret-p1"
AZURE_OWN = "azure-CALLERS-own-5ecret-p2"


def test_azure_keys_and_entra_id_secrets_reach_no_output(start_gateway, tmp_path_factory, upstream_ca_pem):
    from tests.support.azure import CLIENT_SECRET, ENTRA_TOKEN, FakeAzure, entra_env

    env: dict[str, str] = {}

    def config(urls: dict[str, str]) -> dict:
        # mitmdump starts after the configuration is written: the token endpoint is the fake's.
        env.update(entra_env(upstream_ca_pem), AZURE_AUTHORITY_HOST=urls["azure"])
        return {
            "providers": {
                "azure": {
                    "credentials": "default",
                    "upstream": urls["azure"],
                    "resources": {"contoso": {"keys": [AZURE_KEY], "upstream": urls["azure"]}},
                }
            },
            "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        }

    gw = start_gateway(
        config,
        "--set", "termlog_verbosity=debug",
        env=env, providers=("azure",), save_flows=True,
    )  # fmt: skip
    gw.fakes["azure"].handler = FakeAzure(gw.fakes["azure"].url)
    chat = """
        import openai
        client = openai.AzureOpenAI(api_key="{key}", azure_endpoint="https://{resource}.openai.azure.com",
            api_version="2024-10-21", max_retries=0)
        try:
            client.chat.completions.create(model="prod", messages=[{{"role": "user", "content": "{prompt}"}}])
            report(status=200)
        except openai.APIStatusError as e:
            report(status=e.status_code)
    """
    own = f"""
        import urllib.request, urllib.error
        req = urllib.request.Request("https://contoso.cognitiveservices.azure.com/language/:analyze-text",
            data=b"{{}}", headers={{"content-type": "application/json", "api-key": "{AZURE_OWN}"}})
        try:
            urllib.request.urlopen(req)
            report(status=200)
        except urllib.error.HTTPError as e:
            report(status=e.code)
    """
    assert gw.run(chat.format(key=VIRTUAL, resource="contoso", prompt=PROMPT)) == {"status": 200}
    assert gw.run(chat.format(key=VIRTUAL, resource="fabrikam", prompt=PROMPT)) == {"status": 200}
    assert gw.run(chat.format(key=UNKNOWN, resource="contoso", prompt=PROMPT)) == {"status": 401}
    assert gw.run(own) == {"status": 404}
    model_calls = [r for r in gw.fakes["azure"].received if r.path.startswith("/openai/")]
    assert [r.headers.get("api-key") or r.headers.get("authorization") for r in model_calls] == [
        AZURE_KEY,
        f"Bearer {ENTRA_TOKEN}",
    ]
    gw.wait_audit(4)
    outputs = stopped_outputs(gw)
    assert len(outputs["saved flows"]) > 1000
    assert_no_secret(outputs, (AZURE_KEY, AZURE_OWN, CLIENT_SECRET, ENTRA_TOKEN, VIRTUAL, UNKNOWN, PROMPT))


# ---- every provider's credential positions, on calls sent, refused (401, 400, 421) and passed through

MCP_HOST = "mcp.example.test"
MCP_REAL = "mcp-REAL-server-key-5ecret-q1"
POSITIONS = {  # a distinct secret for each place a test puts one
    "apim_virtual": VIRTUAL,
    "apim_unknown": "tg-UNKNOWN-apim-5ecret-q2",
    "apim_own": "azure-OWN-apim-5ecret-q3",
    "apim_query": "azure-OWN-query-5ecret-q0",
    "azure_side": "azure-SIDE-5ecret-q4",
    "query_upper": "QUERY-KEY-upper-5ecret-q5",
    "query_dollar": "QUERY-KEY-dollar-5ecret-q6",
    "sigv4": "SIGV4-signature-5ecret-q7",
    "amz_token": "AMZ-session-TOKEN-5ecret-q8",
    "openai_side": "sk-SIDE-misdirected-5ecret-q9",
    "mcp_own_bearer": "mcp-OWN-bearer-5ecret-r1",
    "mcp_own_key": "mcp-OWN-key-5ecret-r2",
    "mcp_cookie": "mcp-COOKIE-5ecret-r3",
}
RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"


def mcp_answers(received):
    if received.path == "/mcp":
        message = json.loads(received.body)
        return Reply(200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}})
    return Reply(404, {"error": "not found"})


def test_every_credential_position_is_redacted_from_saved_flows(start_gateway, tmp_path_factory, upstream_ca):
    from tests.support.azure import FakeAzure
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.raw import send

    mcp = FakeUpstream(upstream_ca, mcp_answers, names=(MCP_HOST,))
    governed = ("api.openai.com", "bedrock-runtime.us-east-1.amazonaws.com", MCP_HOST)
    elsewhere = FakeUpstream(upstream_ca, provider_answers, names=governed)
    docs = {"name": "docs", "url": f"https://{MCP_HOST}/mcp", "credential": {"header": {"name": "X-Docs-Key", "value": MCP_REAL}}}  # fmt: skip

    def config(urls: dict[str, str]) -> dict:
        providers = {name: {"upstream": url, "keys": [REAL.get(name, AZURE_KEY)]} for name, url in urls.items()}
        # A CONNECT to `elsewhere` (loopback) is let through, for the misdirected calls inside it to be refused.
        return {
            "providers": providers,
            "clients": [{"name": "alice", "keys": [VIRTUAL]}],
            "mcp": {"servers": [docs]},
            "egress": {"allow": ["127.0.0.1"]},
        }

    chat = json.dumps({"messages": [{"role": "user", "content": PROMPT}]}).encode()
    tools_list = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    azure, language = "contoso.openai.azure.com", "contoso.cognitiveservices.azure.com"
    deployment = "/openai/deployments/prod/chat/completions?api-version=2024-10-21"
    analyze = "/language/:analyze-text?api-version=2023-04-01"
    gemini = "generativelanguage.googleapis.com"
    bedrock = "bedrock-runtime.us-east-1.amazonaws.com"
    sigv4 = (
        "AWS4-HMAC-SHA256 Credential=AKIDOWN0000000000000/20250101/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders=host, Signature={POSITIONS['sigv4']}"
    )
    accepts = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
    own_mcp = [
        ("Authorization", f"Bearer {POSITIONS['mcp_own_bearer']}"),
        ("X-Docs-Key", POSITIONS["mcp_own_key"]),
        ("Cookie", f"s={POSITIONS['mcp_cookie']}"),
    ]
    # (host, target, body, headers, CONNECT target or None, the status expected)
    requests = [
        # Azure's key in Ocp-Apim-Subscription-Key: a virtual one is the caller's key, an unknown
        # one is refused; on a path outside the model API the caller's own passes (the fake has no
        # such path: 404), a virtual one is refused.
        (azure, deployment, chat, [("Ocp-Apim-Subscription-Key", VIRTUAL)], None, 200),
        (
            azure,
            deployment,
            chat,
            [("Ocp-Apim-Subscription-Key", POSITIONS["apim_unknown"]), ("X-Azure-Key", POSITIONS["azure_side"])],
            None,
            401,
        ),
        (language, analyze, b"{}", [("Ocp-Apim-Subscription-Key", POSITIONS["apim_own"])], None, 404),
        (language, analyze, b"{}", [("Ocp-Apim-Subscription-Key", VIRTUAL)], None, 401),
        (language, f"{analyze}&subscription-key={POSITIONS['apim_query']}", b"{}", [], None, 404),
        # Gemini's key in the query, written otherwise, on a path Tollgate cannot read.
        (
            gemini,
            f"/v1beta/models/gemini-2.0-flash:GenerateContent?KEY={POSITIONS['query_upper']}"
            f"&%24key={POSITIONS['query_dollar']}",
            chat,
            [],
            None,
            400,
        ),
        # Misdirected: Bedrock's signature and session token; OpenAI's key and side header.
        (
            bedrock,
            "/model/amazon.nova-lite-v1%3A0/converse",
            chat,
            [("Authorization", sigv4), ("X-Amz-Security-Token", POSITIONS["amz_token"])],
            "elsewhere",
            421,
        ),
        (
            "api.openai.com",
            "/v1/chat/completions",
            chat,
            [("Authorization", f"Bearer {VIRTUAL}"), ("X-OpenAI-Key", POSITIONS["openai_side"])],
            "elsewhere",
            421,
        ),
        # An MCP server: a call sent with Tollgate's credential; one it cannot read; another path of
        # its host, with the caller's own credentials; one misdirected.
        (MCP_HOST, "/mcp", tools_list, [*accepts, ("Authorization", f"Bearer {VIRTUAL}")], None, 200),
        (MCP_HOST, "/mcp", b"not json", [*accepts, *own_mcp], None, 400),
        (MCP_HOST, "/.well-known/oauth-authorization-server", b"", own_mcp, None, 404),
        (MCP_HOST, "/mcp", tools_list, [*accepts, *own_mcp], "elsewhere", 421),
        (MCP_HOST, "/.well-known/oauth-authorization-server", b"", own_mcp, "elsewhere", 421),
    ]
    try:
        g = start_gateway(
            config,
            "--set", "termlog_verbosity=debug",
            "-s", str(RESOLVE), env={"TOLLGATE_TEST_RESOLVE": json.dumps({MCP_HOST: mcp.port})},
            providers=("openai", "gemini", "bedrock", "azure"), save_flows=True,
        )  # fmt: skip
        g.fakes["azure"].handler = FakeAzure(g.fakes["azure"].url)
        statuses = []
        for host, target, body, headers, connect, _ in requests:
            answer = send(
                g.proxy.port, g.bundle, host, target, body=body, headers=headers, method="POST" if body else "GET",
                connect=f"127.0.0.1:{elsewhere.port}" if connect else None,
            )  # fmt: skip
            statuses.append(answer.status)
        assert statuses == [r[-1] for r in requests]
        # Tollgate's Azure key went upstream in api-key, without the caller's Ocp-Apim-Subscription-Key.
        model_call, own_call, own_in_query = g.fakes["azure"].received
        assert model_call.headers["api-key"] == AZURE_KEY and "ocp-apim-subscription-key" not in model_call.headers
        assert own_call.headers["ocp-apim-subscription-key"] == POSITIONS["apim_own"]
        assert own_in_query.path.endswith(f"&subscription-key={POSITIONS['apim_query']}")
        assert [r.path for r in mcp.received] == ["/mcp", "/.well-known/oauth-authorization-server"]
        assert mcp.received[0].headers["x-docs-key"] == MCP_REAL and elsewhere.received == []
        g.wait_audit(11)  # each LLM call's record (8), and each MCP request's but the other path's (3)
        g.proxy.stop()  # flushes the saved flows

        secrets = [*POSITIONS.values(), AZURE_KEY, MCP_REAL, PROMPT, *REAL.values()]
        assert_no_secret(
            {
                "saved flows": g.saved.read_bytes(),
                "console": g.proxy.output.read_bytes(),
                "audit": g.audit_path.read_bytes(),
            },
            secrets,
        )
        flows = saved_flows(g.saved)
        assert len(flows) == len(requests)
        redacted = "[redacted by Tollgate]"
        for flow in flows[:4]:
            assert flow.request.headers["ocp-apim-subscription-key"] == redacted
        assert flows[4].request.query["subscription-key"] == redacted
        assert dict(flows[5].request.query) == {"KEY": redacted, "$key": redacted}
        assert flows[6].request.headers["x-amz-security-token"] == flows[6].request.headers["authorization"] == redacted
        assert flows[8].request.headers["x-docs-key"] == redacted  # Tollgate's credential for the server
        for flow in flows[9:]:
            assert flow.request.headers["x-docs-key"] == flow.request.headers["cookie"] == redacted
            assert flow.request.headers["authorization"] == redacted
        assert all(f.request.raw_content is None for f in flows)
    finally:
        mcp.close()
        elsewhere.close()


# ---- requests mitmproxy refuses before Tollgate reads them: their head is malformed

PLAN = "sk-ant-oat01-PLAN-malformed-5ecret-s1"
CODEX_JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxmb3JtZWQifQ.CODEX-5ecret-signature-s2"
PLACEHOLDER = "ghp_placeholder_malformed_5ecret_s3"
UPLOADS_PLACEHOLDER = "upl_placeholder_malformed_5ecret_s4"
BROKERED_TOKEN = "ghp_the_real_token_malformed_5ecret_s5"
# What makes mitmproxy refuse a request head (400) before any addon has read it.
MALFORMED = (
    "X Bad Name: 1\r\nContent-Length: 2\r\n",  # a header name with a space
    "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",  # both framings
    "Content-Length: abc\r\n",  # a length that is no number
)


def test_a_request_mitmproxy_refuses_keeps_no_credential(start_gateway, tmp_path_factory):
    """A malformed head is refused by mitmproxy itself (400) before Tollgate reads the request, and
    before its host is known: the flow it saves and prints holds no credential all the same."""
    from tests.support.exchange import https_exchange, proxy_exchange

    brokered = [
        {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"},
        {"host": "uploads.example.com", "header": "X-Upload-Token", "virtual": UPLOADS_PLACEHOLDER,
         "value": "${GITHUB_TOKEN}"},
    ]  # fmt: skip
    gateway = start_gateway(
        lambda urls: {
            "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
            "clients": [{"name": "alice", "keys": [VIRTUAL]}],
            "egress": {"credentials": brokered},
        },
        env={"GITHUB_TOKEN": BROKERED_TOKEN}, providers=("openai", "gemini", "anthropic"), save_flows=True,
    )  # fmt: skip
    # (host, path, credential headers)
    requests = [
        ("api.openai.com", "/v1/chat/completions", f"Authorization: Bearer {VIRTUAL}\r\nX-OpenAI-Key: {OWN}\r\n"),
        ("generativelanguage.googleapis.com", f"/v1beta/models/gemini-2.0-flash:generateContent?key={CAROL}", ""),
        ("api.anthropic.com", "/v1/messages", f"Authorization: Bearer {PLAN}\r\n"),
        ("chatgpt.com", "/backend-api/codex/responses", f"Authorization: Bearer {CODEX_JWT}\r\n"),
        ("api.github.com", "/user", f"Authorization: Bearer {PLACEHOLDER}\r\n"),
        ("uploads.example.com", f"/up?to={PLACEHOLDER}", f"X-Upload-Token: {UPLOADS_PLACEHOLDER}\r\n"),
    ]
    sent = 0
    for host, path, credentials in requests:
        for malformed in MALFORMED:
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{credentials}{malformed}Connection: close\r\n\r\n"
            answer = https_exchange(gateway.proxy.port, host, head.encode() + b"{}", gateway.bundle)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
            sent += 1
    # Plain HTTP sent to the proxy for a brokered credential's host.
    for malformed in MALFORMED:
        head = (
            f"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
            f"Authorization: token {PLACEHOLDER}\r\n{malformed}\r\n"
        )
        assert proxy_exchange(gateway.proxy.port, head.encode()).startswith(b"HTTP/1.1 400")
        sent += 1
    assert not any(fake.received for fake in gateway.fakes.values())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and gateway.proxy.console().count("refusing to prevent") < sent:
        time.sleep(0.05)
    gateway.proxy.stop()  # flushes the saved flows

    console = gateway.proxy.output.read_bytes()
    assert console.count(b"authorization: [redacted by Tollgate]") == 5 * len(MALFORMED)  # printed in full
    secrets = [VIRTUAL, OWN, CAROL, PLAN, CODEX_JWT, PLACEHOLDER, UPLOADS_PLACEHOLDER, BROKERED_TOKEN]
    assert_no_secret({"console": console, "saved flows": gateway.saved.read_bytes()}, secrets)
    flows = saved_flows(gateway.saved)
    assert len(flows) == sent and all(f.error is not None and f.response is None for f in flows)
    redacted = "[redacted by Tollgate]"
    openai, gemini, anthropic, chatgpt, github, uploads, plain = (flows[i] for i in range(0, sent, len(MALFORMED)))
    assert openai.request.headers["authorization"] == openai.request.headers["x-openai-key"] == redacted
    assert "key=%5Bredacted" in gemini.request.path
    for flow in (anthropic, chatgpt, github, plain):
        assert flow.request.headers["authorization"] == redacted
    assert uploads.request.headers["x-upload-token"] == redacted
    assert uploads.request.path == "/up?to=[PLACEHOLDER]"


# ---- a secret where the model's name goes

MODEL_SECRET = "sk-proj-MODEL5ecretMODEL5ecretAB" + "T3BlbkFJ" + "MODEL5ecretMODEL5ecretCD"
GEMINI_MODEL_SECRET = "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"  # a Gemini model id is lower-case


def test_a_secret_in_the_model_is_recorded_as_its_kind(start_gateway, tmp_path_factory):
    """No guardrail covers the caller: Tollgate's own secret detectors read the model all the same,
    and the audit, the console and the saved flow show its kind, never its text."""
    from tests.support.raw import send

    gateway = _start(start_gateway, tmp_path_factory)
    result = gateway.run(f"""
        import openai
        try:
            openai.OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(
                model="{MODEL_SECRET}", messages=[{{"role": "user", "content": "hi"}}])
        except openai.APIStatusError as e:
            pass
        report(ok=True)
    """)
    assert result == {"ok": True}
    # Gemini names its model in the path.
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    target = f"/v1beta/models/{GEMINI_MODEL_SECRET}:generateContent"
    send(gateway.proxy.port, gateway.bundle, "generativelanguage.googleapis.com", target, body=body,
         headers={"x-goog-api-key": VIRTUAL, "Content-Type": "application/json"})  # fmt: skip
    openai_record, gemini_record = gateway.wait_audit(2)
    assert openai_record["client"] == "alice"
    assert openai_record["model"] == openai_record["requested_model"] == "[REDACTED:secrets.openai_api_key]"
    assert gemini_record["model"] == "[REDACTED:secrets.huggingface_token]"
    assert gemini_record["path"] == "/v1beta/models/[REDACTED:secrets.huggingface_token]:generateContent"
    # The request went as it came: the model is the provider's to refuse.
    assert gateway.fakes["openai"].received[0].json()["model"] == MODEL_SECRET
    gateway.proxy.stop()  # flushes the saved flows
    console, saved = gateway.proxy.output.read_bytes(), gateway.saved.read_bytes()
    assert b"[REDACTED:secrets.openai_api_key]" in console
    assert_no_secret(
        {"audit": gateway.audit_path.read_bytes(), "console": console, "saved": saved},
        (MODEL_SECRET, GEMINI_MODEL_SECRET),
    )
    flows = saved_flows(gateway.saved)
    assert flows[0].metadata["tollgate"]["model"] == "[REDACTED:secrets.openai_api_key]"
    assert flows[1].request.path == "/v1beta/models/[REDACTED:secrets.huggingface_token]:generateContent"


def test_a_secret_in_a_path_refused_before_it_was_read_is_recorded_as_its_kind(start_gateway, tmp_path_factory):
    """A Gemini model id in capitals is refused for its shape (400) before any model is read: the
    path, which holds the secret, is read by Tollgate's own secret detectors all the same, and the
    audit, the console and the saved flow show its kind, never its text."""
    from tests.support.raw import send

    gateway = _start(start_gateway, tmp_path_factory)
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    target = f"/v1beta/models/{MODEL_SECRET}:generateContent?alt=sse"
    answer = send(gateway.proxy.port, gateway.bundle, "generativelanguage.googleapis.com", target, body=body,
                  headers={"x-goog-api-key": VIRTUAL, "Content-Type": "application/json"})  # fmt: skip
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    [record] = gateway.wait_audit(1)
    assert (record["client"], record["decision"], record["model"]) == ("alice", "deny", None)
    assert record["error"] == "bad request: Gemini model ids are lower-case letters, digits, '.', '_' and '-'"
    assert record["path"] == "/v1beta/models/[REDACTED:secrets.openai_api_key]:generateContent"
    assert gateway.fakes["gemini"].received == []
    gateway.proxy.stop()  # flushes the saved flows
    console, saved = gateway.proxy.output.read_bytes(), gateway.saved.read_bytes()
    for where, content in (("audit", gateway.audit_path.read_bytes()), ("console", console), ("saved", saved)):
        assert MODEL_SECRET.encode() not in content, f"the secret found in {where}"
    [flow] = saved_flows(gateway.saved)
    assert flow.request.path == "/v1beta/models/[REDACTED:secrets.openai_api_key]:generateContent?alt=sse"
