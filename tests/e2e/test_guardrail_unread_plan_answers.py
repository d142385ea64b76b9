"""Answers that carry what a model wrote on paths no chat format covers, under an answer rule, through
mitmdump: the plans' service paths that answer model text (Code Assist's `completeCode`), any other
service path not known to carry none (Codex's cloud tasks, on `/backend-api/wham/` too, Code
Assist's code generation, Copilot's agents), and an Assistants' code interpreter's files are refused
before they go upstream, while the agents' housekeeping service calls go on; Codex's
`responses/compact` signed in with ChatGPT and an image generation's `revised_prompt` are read
(redacted, or the answer refused 403); a HEAD, whose answer has no body, goes on; Copilot's inline
completions host is governed as Copilot, its legacy Completions stream read."""

from __future__ import annotations

import base64
import json

import pytest
from tests.support import guardrail_samples as samples
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.raw import send
from tests.support.streams import sse

VIRTUAL = "tg-unread-plans-alice-0001"
BOB = "tg-unread-plans-bob-0001"
AWS = samples.AWS_KEY_ID
TEXT = f"Here is the key from the file: {AWS} and nothing else."
KINDS = ["secrets.aws_access_key_id"]
KIND = KINDS[0]
STRICT = "gpt-5-codex-strict"  # a model whose answers' values are denied, whoever asks
WORKSPACE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
GOOGLE_TOKEN = "ya29.a0-unread-plans-token-0001"
COPILOT_TOKEN = (
    "tid=0f1e2d3c4b5a69788796a5b4c3d2e1f0;exp=4102444800;sku=copilot_for_business_seat;"
    "proxy-ep=proxy.business.githubcopilot.com;st=dotcom;chat=1;8kp=1:5ecret-copilot-mac-q7"
)


def segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


ACCESS = (
    f"{segment({'alg': 'none', 'typ': 'JWT'})}."
    + segment({"https://api.openai.com/auth": {"chatgpt_account_id": WORKSPACE, "chatgpt_plan_type": "team"},
               "exp": 4102444800})
    + ".5ecret-signature"
)  # fmt: skip


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {
            "openai": {"upstream": urls["openai"], "keys": ["sk-real-unread-0001"]},
            "chatgpt": {"upstream": urls["chatgpt"]},
            "code_assist": {"upstream": urls["code_assist"]},
            "copilot": {"upstream": urls["copilot"]},
        },
        "clients": [{"name": "alice", "keys": [VIRTUAL]}, {"name": "bob", "keys": [BOB]}],
        "allow_anonymous": True,  # the plans' tokens name no client here
        "guardrails": [
            {"on": ["answer"], "detect": KINDS, "action": "redact"},
            {"match": {"client": "bob"}, "on": ["answer"], "detect": KINDS, "action": "deny"},
            {"match": {"model": STRICT}, "on": ["answer"], "detect": KINDS, "action": "deny"},
        ],
    }


def inline_completion() -> list[bytes]:
    """Copilot's inline completion: legacy Completions events, the text in 5-character pieces (the
    key across four), then its end."""
    head = {"id": "cmpl-c", "created": 1700000000, "model": "gpt-41-copilot"}
    pieces = [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    events = [sse({**head, "choices": [{**choice, "text": p}]}) for p in pieces]
    end = sse({**head, "choices": [{**choice, "text": "", "finish_reason": "stop"}]})
    return [*events, end, sse("[DONE]")]


# A compaction's own item: only OpenAI reads its content (neither Codex nor Tollgate), whatever it holds.
COMPACTION = {"type": "compaction", "id": "cmp_1", "encrypted_content": f"gAAAAB{AWS}"}
COMPACT_USAGE = {"input_tokens": 41000, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 900,
                 "output_tokens_details": {"reasoning_tokens": 600}, "total_tokens": 41900}  # fmt: skip


def compacted(asked: dict) -> dict:
    """A compacted conversation: the user's message kept (with the key), the compaction; an item of a
    type Tollgate does not know where the instructions ask for one."""
    kept = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": TEXT}]}
    unknown = [{"type": "summary_v3", "text": "the session so far"}] if "unknown" in asked["instructions"] else []
    return {"id": "cmp_resp_1", "object": "response.compaction", "created_at": 1764300000,
            "output": [kept, *unknown, COMPACTION], "usage": COMPACT_USAGE}  # fmt: skip


def answer(received: Received) -> Reply:
    """What each upstream answers: model text everywhere a model writes some."""
    if received.path.endswith("/responses/compact"):
        return Reply(200, compacted(received.json()))
    if received.path == "/backend-api/wham/usage":
        window = {"used_percent": 12.5, "limit_window_seconds": 18000, "reset_after_seconds": 3600}
        return Reply(200, {"plan_type": "team", "rate_limit": {"allowed": True, "primary_window": window}})
    if received.path.startswith("/backend-api/wham/tasks/"):
        return Reply(200, {"task": {"id": "task_e_1", "title": TEXT}, "current_diff_task_turn": {"output_items": []}})
    if ":completeCode" in received.path:
        return Reply(200, {"completions": [{"text": TEXT}]})
    if "/engines/" in received.path:
        return Reply(200, chunks=inline_completion())
    if received.path.endswith("/images/generations"):
        image = {"b64_json": base64.b64encode(b"\x89PNG" + AWS.encode()).decode(), "revised_prompt": TEXT}
        return Reply(200, {"created": 1700000000, "data": [image, {"url": "https://img.example/1.png"}]})
    if received.method == "HEAD":
        kind = "application/json" if "/chat/completions/" in received.path else "application/octet-stream"
        return Reply(200, b"", headers={"content-type": kind})
    if "/files/" in received.path and received.path.endswith("/content"):
        return Reply(200, TEXT.encode(), headers={"content-type": "application/octet-stream"})
    if received.path.startswith(("/backend-api/codex/analytics-events/", "/v1internal", "/_ping")):
        return Reply(200, {})  # the plans' housekeeping
    return provider_answers(received)


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(config, providers=("openai", "chatgpt", "code_assist", "copilot"))
    for fake in gateway.fakes.values():
        fake.handler = answer
    return gateway


def raw(gw, host: str, path: str, token: str, body: dict | None = None, method: str = "POST"):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return send(gw.proxy.port, gw.bundle, host, path, method=method, headers=headers,
                body=json.dumps(body).encode() if body is not None else b"")  # fmt: skip


def refused_unread(gw, provider: str, answered, carried: str) -> None:
    """The call was refused 403 `content_denied` naming what it carries, and nothing went upstream."""
    seen, records = len(gw.fakes[provider].received), len(gw.audit())
    got = answered()
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")
    assert carried in got.body.decode() and AWS not in got.body.decode()
    assert len(gw.fakes[provider].received) == seen
    record = gw.wait_audit(records + 1)[-1]
    assert (record["provider"], record["status"], record["decision"]) == (provider, 403, "deny")
    assert record["deny_reasons"] == [f"an answer guardrail applies and Tollgate cannot read {carried}"]
    assert record["answer_findings"] is None


def compact(gw, model: str = "gpt-5-codex", instructions: str = "sum up"):
    """Codex's compaction as it asked for it before it compacted in its Responses stream
    (`CompactionInput`: the model, the conversation, its instructions)."""
    body = {"model": model, "input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hi"}]}], "instructions": instructions}  # fmt: skip
    return raw(gw, "chatgpt.com", "/backend-api/codex/responses/compact", ACCESS, body)


def test_codexs_compaction_signed_in_with_chatgpt_is_read_and_redacted(gw):
    seen, records = len(gw.fakes["chatgpt"].received), len(gw.audit())
    got = compact(gw)
    assert (got.status, got.headers.get("x-tollgate-error")) == (200, None)
    answered = json.loads(got.body)
    kept = {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": TEXT.replace(AWS, f"[REDACTED:{KIND}]")}]}  # fmt: skip
    assert answered["output"] == [kept, COMPACTION]  # the compaction's content as it came
    assert answered["usage"] == COMPACT_USAGE
    (received,) = gw.fakes["chatgpt"].received[seen:]
    assert (received.path, received.headers["authorization"]) == (
        "/backend-api/codex/responses/compact", f"Bearer {ACCESS}")  # fmt: skip
    record = gw.wait_audit(records + 1)[-1]
    assert (record["provider"], record["endpoint"], record["model"], record["auth"], record["account"]) == (
        "chatgpt", "responses.compact", "gpt-5-codex", "subscription", WORKSPACE)  # fmt: skip
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 1})
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"], record["reasoning_tokens"]) == (
        41000, 900, 1024, 600)  # fmt: skip


def test_codexs_compaction_with_a_value_to_deny_is_refused_403(gw):
    records = len(gw.audit())
    got = compact(gw, STRICT)
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")
    error = json.loads(got.body)["error"]
    assert (error["code"], AWS in got.body.decode()) == ("content_denied", False)
    record = gw.wait_audit(records + 1)[-1]
    assert (record["endpoint"], record["status"], record["decision"], record["answer_findings"]) == (
        "responses.compact", 403, "deny", {KIND: 1})  # fmt: skip


def test_a_compaction_holding_an_item_not_known_is_refused_unread(gw):
    records = len(gw.audit())
    got = compact(gw, instructions="sum up, unknown items welcome")
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")
    assert AWS not in got.body.decode() and "the session so far" not in got.body.decode()
    record = gw.wait_audit(records + 1)[-1]
    assert (record["endpoint"], record["status"], record["decision"]) == ("responses.compact", 403, "deny")


def test_code_assists_code_completion_is_refused_unread(gw):
    body = {"project": "p-1", "request": {"prefix": "def f():", "suffix": ""}}
    refused_unread(
        gw,
        "code_assist",
        lambda: raw(gw, "cloudcode-pa.googleapis.com", "/v1internal:completeCode", GOOGLE_TOKEN, body),
        "a code completion (Code Assist's completeCode)",
    )


def service_refused(gw, provider: str, host: str, path: str, token: str, method: str, endpoint: str) -> dict:
    """A plan's service call not known to carry no model text: refused unread, its endpoint named;
    the error in the provider's shape."""
    carried = f"the answer of the service call {endpoint}, which may carry model text"
    got: list = []
    body = {"project": "p-1", "prompt": "hi"} if method == "POST" else None
    refused_unread(gw, provider, lambda: got.append(raw(gw, host, path, token, body, method)) or got[0], carried)
    assert gw.last_audit()["endpoint"] == endpoint
    return json.loads(got[0].body)


def test_codexs_cloud_task_turns_are_refused_unread(gw):
    error = service_refused(gw, "chatgpt", "chatgpt.com", "/backend-api/codex/tasks/task_e_68a1b2c3d4/turns",
                            ACCESS, "GET", "codex.tasks.turns")  # fmt: skip
    assert (error["error"]["code"], error["error"]["type"]) == ("content_denied", "permission_denied")


def test_codexs_cloud_task_details_on_wham_are_refused_unread(gw):
    """A cloud task's details (its diff, its messages: what the model wrote), as Codex signed in with
    ChatGPT asks for them: a Codex service call, refused in OpenAI's error shape, never sent."""
    error = service_refused(gw, "chatgpt", "chatgpt.com", "/backend-api/wham/tasks/task_e_68a1b2c3d4",
                            ACCESS, "GET", "wham.tasks")  # fmt: skip
    assert (error["error"]["code"], error["error"]["type"]) == ("content_denied", "permission_denied")
    record = gw.last_audit()
    assert (record["auth"], record["account"], record["model"]) == ("subscription", WORKSPACE, None)


def test_code_assists_code_generation_is_refused_unread(gw):
    error = service_refused(gw, "code_assist", "cloudcode-pa.googleapis.com", "/v1internal:generateCode",
                            GOOGLE_TOKEN, "POST", "generateCode")  # fmt: skip
    assert (error["error"]["code"], error["error"]["status"]) == (403, "PERMISSION_DENIED")


def test_a_copilot_agents_chat_is_refused_unread(gw):
    error = service_refused(gw, "copilot", "api.business.githubcopilot.com", "/agents/github", COPILOT_TOKEN,
                            "POST", "agents.github")  # fmt: skip
    assert (error["error"]["code"], error["error"]["type"]) == ("content_denied", "permission_denied")


@pytest.mark.parametrize(
    ("provider", "host", "path", "method", "endpoint"),
    [
        ("chatgpt", "chatgpt.com", "/backend-api/codex/models?client_version=0.169.0", "GET", "codex.models"),
        ("chatgpt", "chatgpt.com", "/backend-api/codex/analytics-events/events", "POST", "codex.analytics-events.events"),
        ("chatgpt", "chatgpt.com", "/backend-api/wham/usage", "GET", "wham.usage"),
        ("code_assist", "cloudcode-pa.googleapis.com", "/v1internal:loadCodeAssist", "POST", "loadCodeAssist"),
        ("code_assist", "cloudcode-pa.googleapis.com", "/v1internal:retrieveUserQuota", "POST", "retrieveUserQuota"),
        ("code_assist", "cloudcode-pa.googleapis.com", "/v1internal/operations/onboard-1", "GET", "operations"),
        ("copilot", "api.business.githubcopilot.com", "/models", "GET", "models"),
        ("copilot", "api.business.githubcopilot.com", "/_ping", "GET", "_ping"),
    ],
)  # fmt: skip
def test_the_plans_housekeeping_service_calls_go_on(gw, provider, host, path, method, endpoint):
    """What the agents call at start-up and for their housekeeping carries no model text: it goes on
    under an answer rule, unread."""
    token = {"chatgpt": ACCESS, "code_assist": GOOGLE_TOKEN, "copilot": COPILOT_TOKEN}[provider]
    seen, records = len(gw.fakes[provider].received), len(gw.audit())
    got = raw(gw, host, path, token, {} if method == "POST" else None, method)
    assert (got.status, got.headers.get("x-tollgate-error")) == (200, None)
    (received,) = gw.fakes[provider].received[seen:]
    assert (received.method, received.path) == (method, path)
    record = gw.wait_audit(records + 1)[-1]
    assert (record["endpoint"], record["status"], record["decision"], record["deny_reasons"]) == (
        endpoint, 200, "allow", [])  # fmt: skip


def test_codexs_usage_on_wham_is_a_service_call_of_its_account(gw):
    """Codex's rate limits (`/backend-api/wham/usage`): a Codex service call, identified by the
    plan's token, audited with its endpoint and account, no model; it carries no model text, so it
    goes on under the answer rule, its answer as it came."""
    seen, records = len(gw.fakes["chatgpt"].received), len(gw.audit())
    headers = {"Authorization": f"Bearer {ACCESS}", "ChatGPT-Account-ID": WORKSPACE}
    got = send(gw.proxy.port, gw.bundle, "chatgpt.com", "/backend-api/wham/usage", method="GET", headers=headers)
    assert (got.status, json.loads(got.body)["plan_type"]) == (200, "team")
    (received,) = gw.fakes["chatgpt"].received[seen:]
    assert (received.path, received.headers["authorization"]) == ("/backend-api/wham/usage", f"Bearer {ACCESS}")
    record = gw.wait_audit(records + 1)[-1]
    assert (record["provider"], record["endpoint"], record["auth"], record["account"], record["tenant"]) == (
        "chatgpt", "wham.usage", "subscription", WORKSPACE, WORKSPACE)  # fmt: skip
    assert (record["model"], record["input_tokens"], record["status"], record["decision"]) == (None, None, 200, "allow")
    assert record["answer_findings"] is None


def test_a_code_interpreters_file_content_is_refused_unread(gw):
    refused_unread(
        gw,
        "openai",
        lambda: raw(gw, "api.openai.com", "/v1/containers/cntr_1/files/cfile_1/content", VIRTUAL, method="GET"),
        "a code interpreter's output file",
    )


def test_a_head_of_an_answer_refused_unread_goes_on(gw):
    """A HEAD's answer has no body: no model text to read. Its GET is still refused."""
    seen, records = len(gw.fakes["openai"].received), len(gw.audit())
    got = raw(gw, "api.openai.com", "/v1/files/file-batch-out/content", VIRTUAL, method="HEAD")
    assert (got.status, got.body, got.headers.get("x-tollgate-error")) == (200, b"", None)
    (received,) = gw.fakes["openai"].received[seen:]
    assert (received.method, received.path) == ("HEAD", "/v1/files/file-batch-out/content")
    record = gw.wait_audit(records + 1)[-1]
    assert (record["method"], record["status"], record["decision"]) == ("HEAD", 200, "allow")
    got = raw(gw, "api.openai.com", "/v1/files/file-batch-out/content", VIRTUAL, method="GET")
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")


def test_a_head_of_an_answer_read_whole_goes_on(gw):
    """A stored chat completion's HEAD: its answer (no body) is not read for the guardrails."""
    seen = len(gw.fakes["openai"].received)
    got = raw(gw, "api.openai.com", "/v1/chat/completions/chatcmpl-s", VIRTUAL, method="HEAD")
    assert (got.status, got.body, got.headers.get("x-tollgate-error")) == (200, b"", None)
    (received,) = gw.fakes["openai"].received[seen:]
    assert received.method == "HEAD"


IMAGES = """
from openai import OpenAI
client = OpenAI(api_key=KEY, max_retries=0)
try:
    if STREAM:
        events = list(client.images.generate(model="gpt-image-1", prompt="a cat", stream=True))
        report(events=len(events))
    else:
        r = client.images.generate(model="dall-e-3", prompt="a cat")
        report(revised=[d.revised_prompt for d in r.data], image=r.data[0].b64_json, url=r.data[1].url)
except Exception as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=getattr(e, "status_code", None),
           tollgate=e.response.headers.get("x-tollgate-error"), message=str(e))
"""


def test_an_images_revised_prompt_comes_redacted(gw):
    result = gw.run(f"KEY, STREAM = {VIRTUAL!r}, False\n" + IMAGES)
    image = base64.b64encode(b"\x89PNG" + AWS.encode()).decode()  # an image is no text: as it came
    redacted = TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert result == {"revised": [redacted, None], "image": image, "url": "https://img.example/1.png"}
    record = gw.last_audit()
    assert (record["endpoint"], record["status"]) == ("images.generations", 200)
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


def test_an_images_revised_prompt_with_a_value_to_deny_is_refused_403(gw):
    result = gw.run(f"KEY, STREAM = {BOB!r}, False\n" + IMAGES)
    assert (result["error"], result["status"], result["tollgate"]) == (
        ["openai", "PermissionDeniedError"], 403, "content_denied")  # fmt: skip
    assert AWS not in result["message"]
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (
        403, "deny", {"secrets.aws_access_key_id": 1})  # fmt: skip


def test_a_streamed_image_generation_is_refused_unread(gw):
    seen = len(gw.fakes["openai"].received)
    result = gw.run(f"KEY, STREAM = {VIRTUAL!r}, True\n" + IMAGES)
    assert (result["error"], result["status"], result["tollgate"]) == (
        ["openai", "PermissionDeniedError"], 403, "content_denied")  # fmt: skip
    assert "a streamed image generation" in result["message"]
    assert len(gw.fakes["openai"].received) == seen


def test_copilots_inline_completion_is_governed_and_its_stream_read(gw):
    """`proxy.<plan>.githubcopilot.com`: Copilot's (its plan the host's), the model the path's, the
    legacy Completions stream read as the client gets it."""
    body = {"prompt": "# read the key\n", "suffix": "", "max_tokens": 64, "n": 1, "stream": True,
            "extra": {"language": "python"}}  # fmt: skip
    headers = {"Authorization": f"Bearer {COPILOT_TOKEN}", "Content-Type": "application/json",
               "Openai-Intent": "copilot-ghost"}  # fmt: skip
    seen, records = len(gw.fakes["copilot"].received), len(gw.audit())
    got = send(gw.proxy.port, gw.bundle, "proxy.business.githubcopilot.com", "/v1/engines/gpt-41-copilot/completions",
               headers=headers, body=json.dumps(body).encode())  # fmt: skip
    assert got.status == 200
    text = "".join(
        json.loads(line[6:])["choices"][0]["text"] for line in got.body.split(b"\n") if line.startswith(b"data: {")
    )
    assert text == TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert got.body.rstrip().endswith(b"data: [DONE]")
    (received,) = gw.fakes["copilot"].received[seen:]
    assert (received.path, received.headers["authorization"]) == (
        "/v1/engines/gpt-41-copilot/completions", f"Bearer {COPILOT_TOKEN}")  # fmt: skip
    record = gw.wait_audit(records + 1)[-1]
    assert (record["provider"], record["endpoint"], record["model"], record["auth"], record["plan"]) == (
        "copilot", "completions", "gpt-41-copilot", "subscription", "business")  # fmt: skip
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
