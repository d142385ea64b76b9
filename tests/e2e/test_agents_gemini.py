"""`agents` on Gemini's answers, end to end: the official google-genai SDK through mitmdump to a
fake Gemini API (and Vertex AI). An answer's function call whose argument comes from a tool result
is refused, a text part the agent reads in its place; one whose arguments the user gave passes as
it came; whole, streamed as server-sent events, and streamed as one JSON array (no `alt=sse`), each
item decided as it comes; Code Assist's the same inside its envelope. The audit names each call's decision, never an argument's value."""

from __future__ import annotations

import json

import pytest
from tests.e2e.test_code_assist import TOKEN, URL, TokenInfo, envelope
from tests.e2e.test_code_assist import config as code_assist_config
from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.answers import AWS, gemini_item
from tests.support.canned import provider_answers
from tests.support.code_assist import code_assist_run
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

KEY = "tg-agents-gemini-0001"
USAGE = {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 52}
SSE = {"content-type": "text/event-stream"}
ARRAY = {"content-type": "application/json; charset=UTF-8"}


def send(recipient: str) -> dict:
    return {"functionCall": {"name": "send_money", "args": {"recipient": recipient, "amount": 950}}}


READ = {"functionCall": {"name": "read_inbox", "args": {"folder": "rent"}}}
# What the fake Gemini answers, by the model asked for: its one candidate's call parts.
CALLS = {
    "gemini-taint": [send(PLANTED)],
    "gemini-clean": [send(OWN)],
    "gemini-both": [send(PLANTED), READ],
    # Under an answer rule: the kept call's argument holds a key to redact.
    "gemini-guarded": [send(PLANTED), {"functionCall": {"name": "read_inbox", "args": {"folder": AWS}}}],
}


def item(*parts: dict, finish: str | None = None, usage: bool = False) -> dict:
    return gemini_item(*parts, finish=finish, usage=USAGE if usage else None)


def streamed_items(model: str) -> list[dict]:
    """Text first, then the calls whole in one item, then the finish with the usage."""
    return [item({"text": "Paying."}), item(*CALLS[model]), item({"text": ""}, finish="STOP", usage=True)]


def array(items: list[dict]) -> list[bytes]:
    """As the Gemini API writes its array: indented elements, each after a `\\r\\n,\\r\\n`."""
    texts = [json.dumps(i, indent=2).encode() for i in items]
    return [b"[" + texts[0], *(b"\r\n,\r\n" + t for t in texts[1:]), b"\r\n]"]


def claude(stream: bool) -> Reply:
    """Claude's answer to a Gemini call translated to Anthropic: text, then a tainted call."""
    usage = {"input_tokens": 30, "output_tokens": 9}
    message = {"id": "msg_g", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}
    use = {"type": "tool_use", "id": "toolu_1", "name": "send_money"}
    arguments = json.dumps({"recipient": PLANTED, "amount": 950})
    if not stream:
        content = [{"type": "text", "text": "Paying."}, {**use, "input": json.loads(arguments)}]
        return Reply(200, {**message, "content": content, "stop_reason": "tool_use", "usage": usage})
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    delta = lambda i, d: sse({"type": "content_block_delta", "index": i, "delta": d}, "content_block_delta")  # noqa: E731
    events = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        delta(0, {"type": "text_delta", "text": "Paying."}),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "content_block_start", "index": 1, "content_block": {**use, "input": {}}}, "content_block_start"),
        delta(1, {"type": "input_json_delta", "partial_json": arguments[:12]}),
        delta(1, {"type": "input_json_delta", "partial_json": arguments[12:]}),
        sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse(
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return Reply(200, headers=SSE, chunks=events)


def upstream(received: Received) -> Reply:
    path = received.path
    if path.endswith("/v1/messages"):
        return claude(bool(received.json().get("stream")))
    if ":generateContent" not in path and ":streamGenerateContent" not in path:
        return provider_answers(received)
    model = path.rpartition("/models/")[2].partition(":")[0]
    if ":generateContent" in path:
        return Reply(200, item(*CALLS[model], finish="STOP", usage=True))
    if "alt=sse" in path:
        chunks = [b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in streamed_items(model)]
        return Reply(200, headers=SSE, chunks=chunks)
    return Reply(200, headers=ARRAY, chunks=array(streamed_items(model)))


gw = agents.gateway_fixture(
    upstream,
    ("gemini", "vertex", "anthropic"),
    lambda urls: {
        "providers": {
            "gemini": {"upstream": urls["gemini"], "keys": ["AIza-real-agents-gemini-0001"]},
            "vertex": {"upstream": urls["vertex"], "keys": ["AQ.real-vertex-agents-0001"]},
            "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-agents-gemini-0001"]},
        },
        # A Gemini call to Claude goes in Anthropic's format; its answer comes back in Gemini's.
        "overrides": [{"match": {"provider": "gemini", "model": "claude-*"}, "provider": "anthropic"}],
        "clients": [{"name": "agent", "keys": [KEY]}],
    },
    guarded="gemini-guarded",
)


def contents(user: str) -> list[dict]:
    return [
        {"role": "user", "parts": [{"text": user}]},
        {"role": "model", "parts": [{"function_call": {"name": "read_inbox", "args": {}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "read_inbox", "response": {"result": INBOX}}}]},
    ]


TOOLS = [
    {
        "function_declarations": [
            {"name": "read_inbox", "parameters": {"type": "OBJECT", "properties": {"folder": {"type": "STRING"}}}},
            {
                "name": "send_money",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"recipient": {"type": "STRING"}, "amount": {"type": "NUMBER"}},
                },
            },
        ]
    }
]
CALL = """
from google import genai
client = genai.Client({vertex}api_key={key!r})
config = {{"tools": {tools!r}}}
if {stream!r}:
    text, calls, finish = "", [], None
    for chunk in client.models.generate_content_stream(model={model!r}, contents={contents!r}, config=config):
        parts = chunk.candidates[0].content.parts or []
        text += "".join(p.text or "" for p in parts)
        calls += [[c.name, dict(c.args)] for c in chunk.function_calls or ()]
        finish = chunk.candidates[0].finish_reason or finish
    report(text=text, calls=calls, finish=str(finish))
else:
    r = client.models.generate_content(model={model!r}, contents={contents!r}, config=config)
    parts = r.candidates[0].content.parts
    report(text="".join(p.text or "" for p in parts), calls=[[c.name, dict(c.args)] for c in r.function_calls or ()],
           finish=str(r.candidates[0].finish_reason), total=r.usage_metadata.total_token_count)
"""


def ask(gw, model: str, user: str, stream: bool = False, vertex: bool = False) -> dict:
    code = CALL.format(
        vertex="vertexai=True, " if vertex else "",
        key=KEY,
        tools=TOOLS,
        stream=stream,
        model=model,
        contents=contents(user),
    )
    return gw.run(code)


def test_a_call_whose_argument_comes_from_a_tool_result_is_refused_with_its_reason(gw):
    before = len(gw.fakes["gemini"].received)
    result = ask(gw, "gemini-taint", "Pay the rent as my landlord asks.")
    assert result == {"text": REFUSED, "calls": [], "finish": "FinishReason.STOP", "total": 52}
    sent = gw.fakes["gemini"].received[before:]
    assert len(sent) == 1 and sent[0].json()["contents"][2]["parts"][0]["functionResponse"]["name"] == "read_inbox"
    assert agents.refused_record(gw)["total_tokens"] == 52
    agents.assert_no_argument_value(gw)


def test_a_call_the_user_gave_the_arguments_of_passes_as_it_came(gw):
    result = ask(gw, "gemini-clean", f"Pay the rent to {OWN}.")
    assert result == {
        "text": "",
        "calls": [["send_money", {"recipient": OWN, "amount": 950}]],
        "finish": "FinishReason.STOP",
        "total": 52,
    }
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]
    agents.assert_no_argument_value(gw)


@pytest.mark.parametrize("vertex", [False, True])
def test_a_streamed_tainted_call_is_refused_in_its_place_the_other_kept(gw, vertex):
    result = ask(gw, "gemini-both", "Pay the rent as my landlord asks.", stream=True, vertex=vertex)
    assert result == {
        "text": f"Paying.{REFUSED}",
        "calls": [["read_inbox", {"folder": "rent"}]],
        "finish": "FinishReason.STOP",
    }
    record = gw.last_audit()
    assert record["provider"] == ("vertex" if vertex else "gemini")
    assert [(c["name"], c["decision"], c["tainted"]) for c in record["tool_calls"]] == [
        ("send_money", "deny", ["recipient"]),
        ("read_inbox", "allow", []),
    ]
    agents.assert_no_argument_value(gw)


def test_a_streamed_untainted_call_passes_as_it_came(gw):
    before = len(gw.fakes["gemini"].received)
    result = ask(gw, "gemini-clean", f"Pay the rent to {OWN}.", stream=True)
    assert result == {
        "text": "Paying.",
        "calls": [["send_money", {"recipient": OWN, "amount": 950}]],
        "finish": "FinishReason.STOP",
    }
    sent = gw.fakes["gemini"].received[before:]
    assert len(sent) == 1 and sent[0].headers.get("accept-encoding") == "identity"


@pytest.mark.parametrize("stream", [False, True])
def test_under_an_answer_rule_the_kept_call_comes_redacted_the_refused_one_replaced(gw, stream):
    result = ask(gw, "gemini-guarded", "Pay the rent as my landlord asks.", stream=stream)
    assert result["text"] == (f"Paying.{REFUSED}" if stream else REFUSED)
    assert result["calls"] == [["read_inbox", {"folder": "[REDACTED:secrets.aws_access_key_id]"}]]
    agents.redacted_record(gw)


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_translated_from_claude_is_decided_as_the_client_gets_it(gw, stream):
    result = ask(gw, "claude-sonnet-4-5", "Pay the rent as my landlord asks.", stream=stream)
    assert (result["text"], result["calls"]) == (f"Paying.{REFUSED}", [])
    record = gw.last_audit()
    assert record["provider"] == "anthropic"
    assert [(c["name"], c["decision"]) for c in record["tool_calls"]] == [("send_money", "deny")]
    agents.assert_no_argument_value(gw)


# The JSON array (no alt=sse), as a raw client reads it: the SDK always asks for server-sent events.
RAW = """
import http.client, json, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port,
    context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("generativelanguage.googleapis.com", 443)
conn.request("POST", f"/v1beta/models/{MODEL}:streamGenerateContent", body=json.dumps(BODY).encode(),
             headers={"x-goog-api-key": KEY, "content-type": "application/json"})
response = conn.getresponse()
report(status=response.status, body=response.read().decode())
"""


def raw(gw, model: str, user: str) -> dict:
    body = {"contents": contents(user), "tools": TOOLS}  # the API reads snake_case too
    return gw.run(f"MODEL, KEY, BODY = {model!r}, {KEY!r}, {body!r}\n" + RAW)


def test_a_json_array_stream_is_decided_item_by_item(gw):
    result = raw(gw, "gemini-both", "Pay the rent as my landlord asks.")
    assert result["status"] == 200
    items = json.loads(result["body"])  # still one array, closed
    assert [i["candidates"][0]["content"]["parts"] for i in items] == [
        [{"text": "Paying."}],
        [{"text": REFUSED}, READ],
        [{"text": ""}],
    ]
    assert [(c["name"], c["decision"]) for c in gw.last_audit()["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]
    clean = raw(gw, "gemini-clean", f"Pay the rent to {OWN}.")
    assert clean["body"].encode() == b"".join(array(streamed_items("gemini-clean")))  # byte for byte
    agents.assert_no_argument_value(gw)


# ---------------------------------------------------------------------------------------------
# Code Assist (Gemini CLI signed in with Google): the same answers inside `{"response": …}`, its
# requests made as Gemini CLI makes them (urllib, as in test_code_assist).


def code_assist(received: Received) -> Reply:
    method = received.path.partition(":")[2].partition("?")[0]
    wrap = lambda i: {"response": i, "traceId": "t1"}  # noqa: E731
    if method == "streamGenerateContent":
        chunks = [b"data: " + json.dumps(wrap(i)).encode() + b"\r\n\r\n" for i in streamed_items("gemini-both")]
        return Reply(200, headers=SSE, chunks=chunks)
    if method == "generateContent":
        return Reply(200, wrap(item(*CALLS["gemini-both"], finish="STOP", usage=True)))
    return Reply(200, {})


@pytest.fixture(scope="module")
def code_assist_gw(start_gateway, upstream_ca, upstream_ca_pem):
    info = TokenInfo(upstream_ca)
    gateway = start_gateway(
        lambda urls: (
            code_assist_config(urls, f"{info.fake.url}/tokeninfo", str(upstream_ca_pem))
            | {"agents": {"acting_tools": ["send_*"]}, "guardrails": []}
        ),
        providers=("code_assist",),
    )
    gateway.fakes["code_assist"].handler = code_assist
    yield gateway
    info.fake.close()


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent"])
def test_code_assists_calls_are_decided_inside_its_envelope(code_assist_gw, method):
    body = envelope()
    body["request"] |= {"contents": contents("Pay the rent as my landlord asks."), "tools": TOOLS}
    result = code_assist_run(code_assist_gw, method, body, URL, TOKEN)
    assert result["status"] == 200
    if method == "generateContent":
        answers = [json.loads(result["body"])]
    else:
        answers = [json.loads(line[6:]) for line in result["body"].splitlines() if line.startswith("data: ")]
    assert all(a["traceId"] == "t1" for a in answers)
    parts = [p for a in answers for p in a["response"]["candidates"][0]["content"]["parts"]]
    assert [p for p in parts if p.get("text")] == ([{"text": "Paying."}] if method != "generateContent" else []) + [
        {"text": REFUSED}
    ]
    assert [p for p in parts if "functionCall" in p] == [READ]
    record = code_assist_gw.last_audit()
    assert [(c["name"], c["decision"]) for c in record["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]
    agents.assert_no_argument_value(code_assist_gw)
