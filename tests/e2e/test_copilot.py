"""GitHub Copilot, its calls shaped as Copilot's clients send them (VS Code's Copilot Chat headers,
the user's Copilot token as a bearer) in its three formats: raw HTTP, and the official openai and
anthropic SDKs pointed at a Copilot host; inline completions on the older completions host
(`copilot-proxy.githubusercontent.com`) as older editor plugins send them. Each governed as a
subscription call, the token and the request going upstream as they came, pinned to the company's
enterprises; a plan the company does not allow refused in the format's own error shape."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.guardrail_samples import AWS_KEY_ID, AWS_SECRET
from tests.support.leaks import stopped_texts
from tests.support.proxy import ROOT, free_port
from tests.support.streams import sse

from tollgate.common.fingerprint import fingerprint

RESOLVE = ROOT / "tests" / "support" / "resolve.py"
# A Copilot token (v2) as GitHub's token exchange mints it: fields, then its MAC.
TOKEN = (
    "tid=0f1e2d3c4b5a69788796a5b4c3d2e1f0;exp=4102444800;sku=copilot_for_business_seat;"
    "proxy-ep=proxy.business.githubcopilot.com;st=dotcom;chat=1;8kp=1:5ecret-copilot-mac-q7"
)
PERSONAL = TOKEN.replace("business", "individual").replace("5ecret-copilot-mac-q7", "5ecret-personal-mac-r8")
OAUTH = "gho_5ecretGitHubOAuthToken0123456789abcd"  # the Copilot CLI's GitHub token, which names no plan
TOKENS = [TOKEN, PERSONAL, OAUTH]
PASSWORD = "pr0xy-COPILOT-password-t0"
ENTERPRISES = ["4242", "corp-enterprise"]
PINNED = ",".join(ENTERPRISES)
BUSINESS = "https://api.business.githubcopilot.com"
METRICS = f"127.0.0.1:{free_port()}"
# What VS Code's Copilot Chat sends beside its token, and a tenant header of its own that Tollgate's replaces.
COPILOT_HEADERS = {
    "Copilot-Integration-Id": "vscode-chat",
    "Editor-Version": "vscode/1.104.1",
    "Editor-Plugin-Version": "copilot-chat/0.31.2",
    "User-Agent": "GitHubCopilotChat/0.31.2",
    "Openai-Intent": "conversation-panel",
    "X-Initiator": "user",
    "X-Interaction-Type": "conversation-panel",
    "X-GitHub-Api-Version": "2025-05-01",
    "X-Request-Id": "8a6c2f0e-1b2d-4e3f-9a8b-7c6d5e4f3a2b",
    "VScode-SessionId": "c0ffee00-1111-2222-3333-444455556666",
    "sec-GitHub-allowed-enterprise": "someone-elses",
}
# The older inline completions host, and what an older editor plugin (copilot.vim) sends beside its
# token: its own headers, a side header Tollgate takes out, and a tenant header Tollgate's replaces.
LEGACY = "https://copilot-proxy.githubusercontent.com"
SIDE_TOKEN = "ghu_5ecretSideHeaderToken0123456789"
LEGACY_HEADERS = {
    "Editor-Version": "vim/9.0.2190",
    "Editor-Plugin-Version": "copilot.vim/1.16.0",
    "User-Agent": "GithubCopilot/1.155.0",
    "Openai-Organization": "github-copilot",
    "Openai-Intent": "copilot-ghost",
    "X-Request-Id": "3f2e1d0c-9b8a-4776-8554-433221100ffe",
    "VScode-SessionId": "0d1e2f30-4152-6374-8596-a7b8c9d0e1f2",
    "VScode-MachineId": "5a4b3c2d1e0f5a4b3c2d1e0f5a4b3c2d1e0f5a4b3c2d1e0f5a4b3c2d1e0f5a4b",
    "sec-GitHub-allowed-enterprise": "someone-elses",
    "X-Copilot-Token": SIDE_TOKEN,
}
# An inline completion's answer: the model's text, an AWS key in it split across events.
INLINE_TEXT = f"key = '{AWS_KEY_ID}'  # the deploy key"
INLINE_USAGE = {"prompt_tokens": 27, "completion_tokens": 12, "total_tokens": 39}
POLICY = """package tollgate
import rego.v1

deny contains "no o3 on Copilot" if {
	input.subscription.vendor == "copilot"
	input.model == "o3"
}
"""


def copilot_answers(r: Received) -> Reply:
    """Copilot's hosts: streams where asked, else whole answers, as OpenAI's and Anthropic's APIs give them."""
    body = json.loads(r.body) if r.body else {}
    path = r.path.partition("?")[0]
    if body.get("stream") and path == "/chat/completions":
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat_as_asked(body))
    if body.get("stream") and path == "/responses":
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_responses())
    if body.get("stream") and path == "/v1/messages":
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.anthropic())
    if path == "/models":
        return Reply(200, {"data": [{"id": "gpt-4o", "vendor": "Azure OpenAI"}], "object": "list"})
    if path == "/_ping":
        return Reply(200, {"now": 1700000000, "status": "ok"})
    if body.get("stream") and path.startswith("/v1/engines/"):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=inline_completion(path.split("/")[3]))
    return provider_answers(r)


def inline_completion(model: str) -> list[bytes]:
    """An inline completion's legacy Completions events: the text in 4-character pieces (the AWS key
    across several), its end, then the usage."""
    head = {"id": "cmpl-legacy", "created": 1700000000, "model": model}
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    pieces = [INLINE_TEXT[i : i + 4] for i in range(0, len(INLINE_TEXT), 4)]
    events = [sse({**head, "choices": [{**choice, "text": piece}]}) for piece in pieces]
    end = sse({**head, "choices": [{**choice, "text": "", "finish_reason": "stop"}]})
    return [*events, end, sse({**head, "choices": [], "usage": INLINE_USAGE}), sse("[DONE]")]


def config(urls: dict[str, str], policy: str, **copilot) -> dict:
    return {
        "providers": {"copilot": {"upstream": urls["copilot"]}},
        "clients": [{"name": "coder", "keys": ["tg-coder-VIRTUAL-5ecret"], "groups": ["dev"]}],
        "allow_anonymous": False,
        "subscriptions": {"copilot": {"enterprises": ENTERPRISES, "plans": ["business", "enterprise"], **copilot}},
        "policy": {"rego": [policy]},
        "guardrails": [
            {"detect": ["secrets.aws_access_key_id", "secrets.aws_secret_access_key"], "action": "deny"},
            {"detect": ["pii.email"], "action": "redact"},
            {"on": ["answer"], "detect": ["secrets.aws_access_key_id"], "action": "redact"},
        ],
        # A month's window: two calls never straddle its edge, as they may a minute's.
        "limits": [
            {"match": {"provider": "copilot", "model": "gpt-4o-mini"}, "requests_per_month": 1},
            {"match": {"provider": "copilot", "model": "copilot-codex-capped"}, "requests_per_month": 1},
        ],
        "metrics": {"listen": METRICS},
    }


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    htpasswd = tmp_path_factory.mktemp("auth") / ".htpasswd"
    htpasswd.write_text(f"coder:{{SHA}}{digest}\n")
    policy = tmp_path_factory.mktemp("policy") / "copilot.rego"
    policy.write_text(POLICY)
    gateway = start_gateway(
        lambda urls: config(urls, str(policy)),
        "--set",
        f"proxyauth=@{htpasswd}",
        providers=("copilot",),
        save_flows=True,
    )
    gateway.login_url = gateway.proxy.proxy_url.replace("http://", f"http://coder:{PASSWORD}@")
    return gateway


@pytest.fixture
def g(gw):
    gw.reset()
    gw.fakes["copilot"].handler = copilot_answers
    return gw


# A request as Copilot's clients send it, raw: their headers, the token as a bearer, a JSON body.
RAW_CALL = """
    import requests
    with requests.request({method!r}, {url!r}, headers={headers!r}, data={body!r}, stream=True, timeout=20) as r:
        answer = b"".join(r.iter_content(None))
    report(status=r.status_code, kind=r.headers.get("x-tollgate-error"), answer=answer.decode("utf-8", "replace"))
"""


def raw_call(gateway, url: str, body: dict | None = None, token: str = TOKEN, method: str = "POST",
             login: bool = True, sent: dict[str, str] = COPILOT_HEADERS) -> dict:  # fmt: skip
    headers = {**sent, "Authorization": f"Bearer {token}"}
    content = b""
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body).encode()
    code = RAW_CALL.format(method=method, url=url, headers=headers, body=content)
    result = gateway.run(code, proxy_url=gateway.login_url if login else None)
    assert "answer" in result, result  # the client got an answer
    return result


def chat(model: str = "gpt-4o", content: str = "hi", stream: bool = True) -> dict:
    body: dict = {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0.1,
                  "top_p": 1, "n": 1, "max_tokens": 4096, "stream": stream}  # fmt: skip
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def deltas(answer: str) -> str:
    """The text of an OpenAI chat stream's deltas."""
    text = ""
    for line in answer.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def assert_as_sent(seen: Received, token: str = TOKEN) -> None:
    """The token unchanged, every Copilot header as the client sent it, but the tenant header, Tollgate's."""
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert seen.headers["sec-github-allowed-enterprise"] == PINNED
    for name, value in COPILOT_HEADERS.items():
        if name.lower() != "sec-github-allowed-enterprise":
            assert seen.headers[name.lower()] == value, name


def test_a_streamed_chat_call_goes_upstream_as_it_came_pinned_and_audited(g):
    body = chat()
    result = raw_call(g, f"{BUSINESS}/chat/completions", body)
    assert (result["status"], deltas(result["answer"])) == (200, "Hello"), result
    assert '"prompt_tokens":19' in result["answer"]  # the usage the client asked for, as it came
    [seen] = g.fakes["copilot"].received
    assert (seen.method, seen.path) == ("POST", "/chat/completions")
    assert seen.body == json.dumps(body).encode()  # byte for byte: no usage asked for on its behalf
    assert_as_sent(seen)
    record = g.last_audit()
    assert (record["client"], record["auth"], record["groups"]) == ("coder", "subscription", ["dev"])
    assert (record["account"], record["plan"], record["tenant"]) == (None, "business", None)
    assert (record["provider"], record["endpoint"], record["model"], record["stream"]) == (
        "copilot", "chat.completions", "gpt-4o", True
    )  # fmt: skip
    assert (record["decision"], record["status"], record["upstream_key"]) == ("allow", 200, fingerprint(TOKEN))
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (19, 5, 3)
    # gpt-4o, which Copilot's price table leaves unpriced, at OpenAI's list price ($ per Mtok):
    # 16 x 2.50 + 3 cached x 1.25 + 5 x 10
    assert record["cost_usd"] == 0.00009375


def test_a_side_header_token_is_taken_out_on_the_plan_hosts(g):
    """A token sent beside the plan's own (`X-Copilot-Token`) goes no further than Tollgate, on the
    current hosts as on the older one."""
    result = raw_call(
        g, f"{BUSINESS}/chat/completions", chat(), sent={**COPILOT_HEADERS, "X-Copilot-Token": SIDE_TOKEN}
    )
    assert (result["status"], deltas(result["answer"])) == (200, "Hello"), result
    [seen] = g.fakes["copilot"].received
    assert "x-copilot-token" not in seen.headers and seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert SIDE_TOKEN.encode() not in seen.body


def test_the_openai_sdk_pointed_at_copilot_is_governed(g):
    result = g.run(
        f"""
        import openai
        client = openai.OpenAI(api_key={TOKEN!r}, base_url={BUSINESS!r}, max_retries=0,
                               default_headers={COPILOT_HEADERS!r})
        r = client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        e = client.embeddings.create(model="text-embedding-3-small", input="hi")
        report(text=r.choices[0].message.content, dims=len(e.data[0].embedding))
        """,
        proxy_url=g.login_url,
    )
    assert result == {"text": "Hi there.", "dims": 3}
    chat_seen, embeddings_seen = g.fakes["copilot"].received
    assert (chat_seen.path, embeddings_seen.path) == ("/chat/completions", "/embeddings")
    assert_as_sent(chat_seen)
    assert_as_sent(embeddings_seen)
    records = g.new_audit(2)
    assert [(r["endpoint"], r["auth"], r["plan"], r["input_tokens"], r["output_tokens"]) for r in records] == [
        ("chat.completions", "subscription", "business", 21, 7),
        ("embeddings", "subscription", "business", 4, 0),
    ]


def test_a_streamed_responses_call_on_the_enterprise_host(g):
    body = {"model": "gpt-5-mini", "input": [{"role": "user", "content": "hi"}], "stream": True}
    result = raw_call(g, "https://api.enterprise.githubcopilot.com/responses", body)
    assert result["status"] == 200 and '"delta": "Hel"' in result["answer"], result
    [seen] = g.fakes["copilot"].received
    assert seen.path == "/responses" and seen.body == json.dumps(body).encode()
    assert_as_sent(seen)
    record = g.last_audit()
    assert (record["endpoint"], record["model"], record["plan"], record["stream"]) == (
        "responses", "gpt-5-mini", "enterprise", True
    )  # fmt: skip
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (11, 4, 2)


# The anthropic SDK as a Messages client of Copilot's: the token as a bearer, Copilot's headers.
MESSAGES_CALL = """
    import anthropic
    client = anthropic.Anthropic(auth_token={token!r}, base_url={base!r}, max_retries=0,
                                 default_headers={headers!r})
    try:
        text = ""
        with client.messages.stream(model="claude-sonnet-4", max_tokens=64,
                                    messages=[{{"role": "user", "content": "hi"}}]) as s:
            for piece in s.text_stream:
                text += piece
        report(text=text)
    except anthropic.APIStatusError as e:
        report(error=type(e).__name__, status=e.status_code, kind=e.response.headers.get("x-tollgate-error"),
               type=e.body.get("error", {{}}).get("type") if isinstance(e.body, dict) else None)
"""


def test_a_streamed_messages_call_with_the_anthropic_sdk(g):
    code = MESSAGES_CALL.format(token=TOKEN, base="https://api.enterprise.githubcopilot.com", headers=COPILOT_HEADERS)
    assert g.run(code, proxy_url=g.login_url) == {"text": "Hello"}
    [seen] = g.fakes["copilot"].received
    assert seen.path == "/v1/messages" and "x-api-key" not in seen.headers
    assert_as_sent(seen)
    record = g.last_audit()
    assert (record["endpoint"], record["model"], record["plan"], record["stream"]) == (
        "messages", "claude-sonnet-4", "enterprise", True
    )  # fmt: skip
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (80, 9, 50)
    # claude-sonnet-4 at Copilot's list price ($ per Mtok): 30 x 3 + 50 cache reads x 0.30 + 9 x 15
    assert record["cost_usd"] == 0.00024


def test_the_shared_host_takes_the_plan_the_copilot_token_names(g):
    result = raw_call(g, "https://api.githubcopilot.com/chat/completions", chat(stream=False))
    assert result["status"] == 200, result
    assert g.last_audit()["plan"] == "business"


def test_a_token_naming_no_plan_on_the_shared_host_is_refused(g):
    result = raw_call(g, "https://api.githubcopilot.com/chat/completions", chat(stream=False), token=OAUTH)
    assert (result["status"], result["kind"]) == (403, "tenant_denied")
    assert json.loads(result["answer"])["error"]["code"] == "tenant_denied"
    assert g.fakes["copilot"].received == []
    record = g.last_audit()
    assert (record["auth"], record["plan"], record["decision"], record["upstream_key"]) == (
        "subscription", None, "deny", None
    )  # fmt: skip
    assert record["deny_reasons"] == [
        "the Copilot call names no plan (neither its host nor its token), and subscriptions.copilot.plans are set"
    ]


def test_a_host_of_a_plan_not_allowed_is_refused_in_each_formats_shape(g):
    openai = raw_call(g, "https://api.individual.githubcopilot.com/chat/completions", chat(), token=PERSONAL)
    assert (openai["status"], openai["kind"]) == (403, "tenant_denied")
    assert json.loads(openai["answer"])["error"]["code"] == "tenant_denied"
    record = g.last_audit()
    assert (record["client"], record["auth"], record["plan"], record["decision"], record["status"]) == (
        "coder", "subscription", "individual", "deny", 403
    )  # fmt: skip
    assert record["deny_reasons"] == ["Copilot plan individual is not one of subscriptions.copilot.plans"]
    code = MESSAGES_CALL.format(token=PERSONAL, base="https://api.individual.githubcopilot.com", headers={})
    anthropic = g.run(code, proxy_url=g.login_url)
    assert anthropic == {"error": "PermissionDeniedError", "status": 403, "kind": "tenant_denied",
                         "type": "permission_error"}  # fmt: skip
    assert g.last_audit()["endpoint"] == "messages"
    assert g.fakes["copilot"].received == []


def test_models_is_a_service_call_audited_without_a_model(g):
    result = raw_call(g, f"{BUSINESS}/models", method="GET")
    assert result["status"] == 200 and json.loads(result["answer"])["data"][0]["id"] == "gpt-4o", result
    [seen] = g.fakes["copilot"].received
    assert (seen.method, seen.path) == ("GET", "/models")
    assert_as_sent(seen)
    record = g.last_audit()
    assert (record["auth"], record["endpoint"], record["model"], record["plan"]) == (
        "subscription", "models", None, "business"
    )  # fmt: skip
    assert (record["decision"], record["status"], record["input_tokens"]) == ("allow", 200, None)


def test_a_virtual_key_gets_no_copilot_token_and_does_not_travel(g):
    result = raw_call(g, f"{BUSINESS}/chat/completions", chat(), token="tg-coder-VIRTUAL-5ecret")
    assert (result["status"], result["kind"]) == (500, "no_upstream_credential"), result
    assert g.fakes["copilot"].received == []
    record = g.last_audit()
    assert (record["client"], record["auth"], record["plan"]) == ("coder", "proxyauth", None)


def test_the_policy_reads_the_vendor(g):
    result = raw_call(g, f"{BUSINESS}/chat/completions", chat("o3"))
    assert (result["status"], result["kind"]) == (403, "policy_denied")
    assert g.fakes["copilot"].received == []
    assert g.last_audit()["deny_reasons"] == ["no o3 on Copilot"]


def test_a_guardrail_refuses_a_secret_and_redacts_an_email(g):
    secret = f"deploy with AWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    refused = raw_call(g, f"{BUSINESS}/chat/completions", chat(content=secret))
    assert (refused["status"], refused["kind"]) == (403, "content_denied")
    assert g.fakes["copilot"].received == []
    record = g.last_audit()
    assert (record["auth"], record["decision"]) == ("subscription", "deny")
    assert record["findings"] == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}
    redacted = raw_call(g, f"{BUSINESS}/chat/completions", chat(content="write to bob@acme-corp.com"))
    assert redacted["status"] == 200, redacted
    [seen] = g.fakes["copilot"].received
    assert seen.json()["messages"][0]["content"] == "write to [REDACTED:pii.email]"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert (g.last_audit()["findings"], g.last_audit()["redacted"]) == ({"pii.email": 1}, 1)


def test_a_limit_counts_copilots_calls(g):
    first = raw_call(g, f"{BUSINESS}/chat/completions", chat("gpt-4o-mini"))
    assert first["status"] == 200, first
    counted = g.last_audit()
    second = raw_call(g, f"{BUSINESS}/chat/completions", chat("gpt-4o-mini"))
    assert (second["status"], second["kind"]) == (429, "budget_exceeded")
    assert len(g.fakes["copilot"].received) == 1
    assert [(r["auth"], r["decision"], r["status"]) for r in (counted, g.last_audit())] == [
        ("subscription", "allow", 200),
        ("subscription", "deny", 429),
    ]


def inline(prompt: str = "def read_key(") -> dict:
    """An inline completion's body as an older editor plugin sends it: the model only in the path."""
    return {"prompt": f"# Path: deploy.py\n{prompt}", "suffix": "\n", "max_tokens": 500, "temperature": 0,
            "top_p": 1, "n": 1, "stop": ["\n"], "nwo": "acme/deploy", "stream": True,
            "extra": {"language": "python", "next_indent": 0, "trim_by_indentation": True}}  # fmt: skip


def texts(answer: str) -> str:
    """The text of a legacy Completions stream's events."""
    text = ""
    for line in answer.splitlines():
        if line.startswith("data: {"):
            text += "".join(choice["text"] for choice in json.loads(line[6:])["choices"])
    return text


def test_an_inline_completion_on_the_older_host_goes_upstream_as_it_came_and_is_audited(g):
    body = inline()
    result = raw_call(g, f"{LEGACY}/v1/engines/copilot-codex/completions", body, sent=LEGACY_HEADERS)
    assert result["status"] == 200, result
    assert texts(result["answer"]) == INLINE_TEXT.replace(AWS_KEY_ID, "[REDACTED:secrets.aws_access_key_id]")
    assert result["answer"].rstrip().endswith("data: [DONE]")
    [seen] = g.fakes["copilot"].received
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/engines/copilot-codex/completions",
                                                   json.dumps(body).encode())  # fmt: skip
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"  # as it came
    assert "x-copilot-token" not in seen.headers  # the side header taken out
    assert seen.headers["sec-github-allowed-enterprise"] == PINNED
    for name, value in LEGACY_HEADERS.items():
        if name.lower() not in ("sec-github-allowed-enterprise", "x-copilot-token"):
            assert seen.headers[name.lower()] == value, name
    record = g.last_audit()
    assert (record["client"], record["auth"], record["plan"], record["decision"], record["status"]) == (
        "coder", "subscription", "business", "allow", 200
    )  # fmt: skip
    assert (record["provider"], record["endpoint"], record["model"], record["stream"]) == (
        "copilot", "completions", "copilot-codex", True
    )  # fmt: skip
    assert (record["input_tokens"], record["output_tokens"], record["upstream_key"]) == (27, 12, fingerprint(TOKEN))
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


def test_the_policy_refuses_an_inline_completion_on_the_older_host_in_openais_shape(g):
    result = raw_call(g, f"{LEGACY}/v1/engines/o3/completions", inline(), sent=LEGACY_HEADERS)
    assert (result["status"], result["kind"]) == (403, "policy_denied"), result
    assert json.loads(result["answer"]) == {"error": {
        "message": "Tollgate policy denied this call: no o3 on Copilot", "type": "permission_denied", "param": None,
        "code": "policy_denied"}}  # fmt: skip
    assert g.fakes["copilot"].received == []
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["auth"], record["plan"]) == (
        "copilot", "completions", "o3", "subscription", "business"
    )  # fmt: skip
    assert (record["decision"], record["status"], record["deny_reasons"]) == ("deny", 403, ["no o3 on Copilot"])


def test_a_token_naming_no_plan_on_the_older_host_is_refused(g):
    result = raw_call(g, f"{LEGACY}/v1/engines/copilot-codex/completions", inline(), token=OAUTH, sent=LEGACY_HEADERS)
    assert (result["status"], result["kind"]) == (403, "tenant_denied"), result
    assert g.fakes["copilot"].received == []
    assert (g.last_audit()["plan"], g.last_audit()["decision"]) == (None, "deny")


def test_another_path_on_the_older_host_is_a_service_call(g):
    result = raw_call(g, f"{LEGACY}/_ping", method="GET", sent=LEGACY_HEADERS)
    assert result["status"] == 200, result
    [seen] = g.fakes["copilot"].received
    assert (seen.method, seen.path, seen.headers["authorization"]) == ("GET", "/_ping", f"Bearer {TOKEN}")
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["plan"], record["input_tokens"]) == (
        "copilot", "_ping", None, "business", None
    )  # fmt: skip


def test_a_limit_counts_the_older_hosts_inline_completions(g):
    url = f"{LEGACY}/v1/engines/copilot-codex-capped/completions"
    first = raw_call(g, url, inline(), sent=LEGACY_HEADERS)
    assert first["status"] == 200, first
    second = raw_call(g, url, inline(), sent=LEGACY_HEADERS)
    assert (second["status"], second["kind"]) == (429, "budget_exceeded"), second
    assert len(g.fakes["copilot"].received) == 1
    assert (g.last_audit()["model"], g.last_audit()["decision"]) == ("copilot-codex-capped", "deny")


@pytest.fixture(scope="module")
def gw_tunnelled(start_gateway, upstream_ca, tmp_path_factory):
    """`govern: false`: Copilot's business host resolved to a fake whose certificate names it."""
    named = FakeUpstream(
        upstream_ca, lambda r: Reply(200, {"tunnelled": True}), names=("api.business.githubcopilot.com",)
    )
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps({"api.business.githubcopilot.com": named.port})}
    policy = tmp_path_factory.mktemp("policy") / "copilot.rego"
    policy.write_text(POLICY)

    def tunnelled(urls: dict[str, str]) -> dict:
        data = config({"copilot": "https://127.0.0.1:9"}, str(policy), govern=False)
        del data["metrics"]
        data["egress"] = {"allow": ["api.business.githubcopilot.com"]}  # a private address, named
        return data

    gateway = start_gateway(tunnelled, "-s", str(RESOLVE), env=env, providers=())
    gateway.named = named
    yield gateway
    named.close()


def test_govern_false_leaves_copilots_hosts_tunnelled(gw_tunnelled, upstream_ca_pem):
    result = gw_tunnelled.run(
        f"""
        import requests
        r = requests.get("{BUSINESS}/models", headers={{"Authorization": "Bearer {TOKEN}"}},
                         verify={str(upstream_ca_pem)!r}, timeout=20)
        report(status=r.status_code, body=r.json())
        """
    )
    assert result == {"status": 200, "body": {"tunnelled": True}}  # the fake's own certificate, trusted as such
    [seen] = gw_tunnelled.named.received
    assert seen.headers["authorization"] == f"Bearer {TOKEN}" and "sec-github-allowed-enterprise" not in seen.headers
    assert gw_tunnelled.audit() == []


def test_no_token_reaches_the_console_the_audit_the_metrics_or_saved_flows(gw):
    """Last: it stops the gateway (flushing the saved flows)."""
    outputs = stopped_texts(gw, METRICS)
    assert 'provider="copilot"' in outputs["metrics"] or "copilot" in outputs["metrics"]
    assert '"auth":"subscription"' in outputs["audit"] and "/chat/completions" in outputs["saved flows"]
    for name, text in outputs.items():
        for secret in [*TOKENS, SIDE_TOKEN, "5ecret", PASSWORD]:
            assert secret not in text, (name, secret[:12])
