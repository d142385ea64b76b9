"""`agents` on Anthropic Messages, end to end: the official anthropic SDK through mitmdump to a fake
Anthropic (and Copilot's Messages, Claude on Vertex AI). A `tool_use` block whose input comes from
a tool result is replaced by a text block the agent reads, the answer ending on `end_turn` when no
call is left; one whose input the user gave passes byte for byte. Streamed, each `tool_use` block
is held until its input is complete, the text before it not held. The audit names each call's
decision, never an input's value."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.answers import AWS
from tests.support.canned import provider_answers
from tests.support.clients import ANTHROPIC_CLIENTS
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

from tollgate.governance.agents.provider_mcp import UNDECIDED

TOOLS = [
    {"name": "read_inbox", "input_schema": {"type": "object", "properties": {}}},
    {
        "name": "send_money",
        "input_schema": {
            "type": "object",
            "properties": {"recipient": {"type": "string"}, "amount": {"type": "number"}},
        },
    },
]
USAGE = {"input_tokens": 40, "output_tokens": 12}


def messages(user: str) -> list[dict]:
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_r", "name": "read_inbox", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_r", "content": INBOX}]},
    ]


def send(call_id: str, recipient: str) -> dict:
    return {"type": "tool_use", "id": call_id, "name": "send_money", "input": {"recipient": recipient, "amount": 950}}


READ = {"type": "tool_use", "id": "toolu_2", "name": "read_inbox", "input": {}}
# The tool_use blocks the fake Claude answers, by the model asked for (after a text block).
ANSWERS = {
    "taint": [send("toolu_1", PLANTED)],
    "clean": [send("toolu_1", OWN)],
    "both": [send("toolu_1", PLANTED), READ],
}
ANSWERS["guarded"] = [send("toolu_1", PLANTED), {**READ, "input": {"folder": AWS}}]
TEXT = {"type": "text", "text": "Paying."}


def model_of(received: Received) -> str:
    path = unquote(received.path.partition("?")[0])
    if ":rawPredict" in path or ":streamRawPredict" in path:  # Vertex AI's: the model in the path
        return path.rpartition("/models/")[2].partition(":")[0]
    return received.json()["model"]


def body(model: str) -> bytes:
    answer = {
        "id": "msg_a",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [TEXT, *ANSWERS[model.removeprefix("claude-").partition("@")[0]]],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE,
    }
    return json.dumps(answer, indent=1).encode()  # spaced: bytes the proxy would not write


def events(model: str) -> list[bytes]:
    """Claude's stream: a text block, then each tool_use block (its input in pieces, a ping among
    them), the stop reason and the usage."""
    start = {"id": "msg_s", "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 40, "output_tokens": 1}}  # fmt: skip
    out = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paying."}},
        {"type": "content_block_stop", "index": 0},
    ]
    for index, block in enumerate(ANSWERS[model.removeprefix("claude-").partition("@")[0]], 1):
        arguments = json.dumps(block["input"]) if block["input"] else ""
        out.append({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
        for piece in ("", arguments[:9], arguments[9:]):
            piece_delta = {"type": "input_json_delta", "partial_json": piece}
            out.append({"type": "content_block_delta", "index": index, "delta": piece_delta})
            if piece == "":
                out.append({"type": "ping"})
        out.append({"type": "content_block_stop", "index": index})
    end = {"stop_reason": "tool_use", "stop_sequence": None}
    out.append({"type": "message_delta", "delta": end, "usage": {"output_tokens": 12}})
    out.append({"type": "message_stop"})
    return [sse(e, e["type"]) for e in out]


def upstream(received: Received) -> Reply:
    path = received.path.partition("?")[0]
    if not (path.endswith("/v1/messages") or "Predict" in path):
        return provider_answers(received)
    model = model_of(received)
    if path.endswith(":streamRawPredict") or (received.json().get("stream") and "Predict" not in path):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=events(model))
    return Reply(200, body(model), {"content-type": "application/json"})


gw = agents.gateway_fixture(
    upstream,
    ("anthropic", "vertex", "copilot"),
    lambda urls: {
        "providers": {name: {"upstream": url} for name, url in urls.items()},
        "subscriptions": {"copilot": {"plans": ["business"]}},
    },
    guarded="claude-guarded",
)


MODELS = {"anthropic": "claude-{}", "vertex": "claude-{}@2025", "copilot": "claude-{}"}

WHOLE = """
import anthropic
client = {client}
r = client.messages.with_raw_response.create(model={model!r}, max_tokens=100, messages={messages!r}, tools={tools!r})
m = r.parse()
report(raw=r.http_response.content.decode(),
       content=[b.model_dump(include={{"type", "text", "id", "name", "input"}}) for b in m.content], stop=m.stop_reason, usage=m.usage.model_dump(include={{"input_tokens", "output_tokens"}}))
"""

STREAM = """
import anthropic
client = {client}
seen = []
with client.messages.stream(model={model!r}, max_tokens=100, messages={messages!r}, tools={tools!r}) as s:
    for e in s:
        if e.type == "content_block_start":
            seen.append([e.type, e.index, e.content_block.type])
        elif e.type == "content_block_delta":
            seen.append([e.type, e.index, getattr(e.delta, "text", None) or e.delta.partial_json])
        elif e.type in ("content_block_stop", "message_delta"):
            seen.append([e.type, getattr(e, "index", None)])
    m = s.get_final_message()
report(seen=seen, content=[b.model_dump(include={{"type", "text", "id", "name", "input"}}) for b in m.content],
       stop=m.stop_reason, usage=m.usage.model_dump(include={{"input_tokens", "output_tokens"}}))
"""

RAW_STREAM = """
import anthropic
client = {client}
with client.messages.with_streaming_response.create(model={model!r}, max_tokens=100, stream=True,
                                                    messages={messages!r}, tools={tools!r}) as r:
    raw = b"".join(r.iter_bytes())
report(raw=raw.decode())
"""


def ask(gw, code: str, where: str, model: str, user: str = "Pay the rent as my landlord asks.") -> dict:
    model = MODELS[where].format(model)
    return gw.run(code.format(client=ANTHROPIC_CLIENTS[where], model=model, messages=messages(user), tools=TOOLS))


def denied_record(gw) -> None:
    assert agents.refused_record(gw)["output_tokens"] == 12
    agents.assert_no_argument_value(gw, PLANTED)


@pytest.mark.parametrize("where", ["anthropic", "vertex", "copilot"])
def test_a_call_whose_input_comes_from_a_tool_result_is_replaced_by_its_reason(gw, where):
    result = ask(gw, WHOLE, where, "taint")
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}]
    assert (result["stop"], result["usage"]) == ("end_turn", USAGE)
    denied_record(gw)


def test_a_call_the_user_gave_the_input_of_passes_byte_for_byte(gw):
    result = ask(gw, WHOLE, "anthropic", "clean", f"Pay the rent to {OWN}.")
    assert result["raw"].encode() == body("claude-clean")
    record = gw.last_audit()
    assert record["tool_calls"] == [agents.allowed()]
    agents.assert_no_argument_value(gw, OWN)


def test_a_refused_call_beside_a_kept_one_leaves_it_and_the_stop_reason(gw):
    result = ask(gw, WHOLE, "anthropic", "both")
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}, READ]
    assert result["stop"] == "tool_use"
    assert [(c["name"], c["decision"]) for c in gw.last_audit()["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]


@pytest.mark.parametrize("where", ["anthropic", "vertex", "copilot"])
def test_a_streamed_tainted_call_comes_as_a_text_block_at_its_index(gw, where):
    result = ask(gw, STREAM, where, "taint")
    assert result["seen"] == [
        ["content_block_start", 0, "text"],
        ["content_block_delta", 0, "Paying."],
        ["content_block_stop", 0],
        ["content_block_start", 1, "text"],
        ["content_block_delta", 1, REFUSED],
        ["content_block_stop", 1],
        ["message_delta", None],
    ]
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}]
    assert (result["stop"], result["usage"]) == ("end_turn", USAGE)
    denied_record(gw)


def test_a_streamed_refused_call_beside_a_kept_one(gw):
    result = ask(gw, STREAM, "anthropic", "both")
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}, READ]
    assert (result["stop"], result["usage"]) == ("tool_use", USAGE)
    assert [s for s in result["seen"] if s[1] == 2] == [
        ["content_block_start", 2, "tool_use"],
        ["content_block_delta", 2, ""],
        ["content_block_delta", 2, ""],
        ["content_block_delta", 2, ""],
        ["content_block_stop", 2],
    ]


def test_a_streamed_untainted_call_passes_byte_for_byte(gw):
    before = len(gw.fakes["anthropic"].received)
    result = ask(gw, RAW_STREAM, "anthropic", "clean", f"Pay the rent to {OWN}.")
    assert result["raw"].encode() == b"".join(events("claude-clean"))
    sent = gw.fakes["anthropic"].received[before:]
    assert len(sent) == 1 and sent[0].headers.get("accept-encoding") == "identity"
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


@pytest.mark.parametrize("code", [WHOLE, STREAM])
def test_under_an_answer_rule_the_kept_call_comes_redacted_the_refused_one_replaced(gw, code):
    result = ask(gw, code, "anthropic", "guarded")
    kept = {**READ, "input": {"folder": "[REDACTED:secrets.aws_access_key_id]"}}
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}, kept]
    assert result["stop"] == "tool_use"
    agents.redacted_record(gw)


# An Anthropic call a rule sends to OpenAI's chat API: decided as the client reads its answer.
VIRTUAL = "tg-agents-messages-0001"
SENT = {"name": "send_money", "arguments": json.dumps(send("c", PLANTED)["input"])}
CHAT_CALL = {"id": "call_1", "type": "function", "function": SENT}


def chat_upstream(received: Received) -> Reply:
    if not received.path.endswith("/chat/completions"):
        return provider_answers(received)
    head = {"id": "chatcmpl-r", "created": 1700000000, "model": "gpt-4o"}
    usage = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
    if not received.json().get("stream"):
        message = {"role": "assistant", "content": "Paying.", "tool_calls": [CHAT_CALL]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return Reply(200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})
    arguments = CHAT_CALL["function"]["arguments"]
    deltas = [
        {"role": "assistant", "content": "Paying."},
        {"tool_calls": [{"index": 0, **CHAT_CALL, "function": {"name": "send_money", "arguments": arguments[:9]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[9:]}}]},
    ]
    chunks = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
    chunks.append({"index": 0, "delta": {}, "finish_reason": "tool_calls"})
    events = [sse({**head, "object": "chat.completion.chunk", "choices": [c]}) for c in chunks]
    events.append(sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
    return Reply(200, headers={"content-type": "text/event-stream"}, chunks=[*events, sse("[DONE]")])


@pytest.fixture(scope="module")
def routed(start_gateway):
    return agents.gateway(
        start_gateway,
        chat_upstream,
        ("openai", "anthropic"),
        lambda urls: {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": ["sk-real-agents-0002"]},
                "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-agents-0002"]},
            },
            "clients": [{"name": "agent", "keys": [VIRTUAL]}],
            "overrides": [{"match": {"provider": "anthropic", "model": "gpt-*"}, "provider": "openai"}],
        },
    )


@pytest.mark.parametrize("code", [WHOLE, STREAM])
def test_a_call_routed_to_another_format_is_decided_as_the_client_reads_it(routed, code):
    client = f"anthropic.Anthropic(api_key={VIRTUAL!r}, max_retries=0)"
    result = routed.run(code.format(client=client, model="gpt-4o", messages=messages("Pay it."), tools=TOOLS))
    assert result["content"] == [TEXT, {"type": "text", "text": REFUSED}]
    assert result["stop"] == "end_turn" and result["usage"]["output_tokens"] == 12
    record = routed.last_audit()
    assert (record["provider"], record["upstream_endpoint"]) == ("openai", "chat.completions")
    assert [(c["name"], c["decision"]) for c in record["tool_calls"]] == [("send_money", "deny")]


MCP = """
import anthropic
client = {client}
try:
    client.beta.messages.create(model={model!r}, max_tokens=100, messages={messages!r}, mcp_servers={servers!r},
                                betas=["mcp-client-2025-04-04"])
except anthropic.APIStatusError as e:
    report(status=e.status_code, kind=type(e).__name__, message=str(e)[:2000])
"""


def test_mcp_servers_anthropic_calls_without_approval_are_refused_where_a_tool_may_act(gw):
    # Anthropic calls their tools itself: none reaches the agent, an acting one would act undecided.
    before = len(gw.fakes["anthropic"].received)
    server = {"type": "url", "url": "https://bank.example/mcp", "name": "bank"}
    code = MCP.format(
        client=ANTHROPIC_CLIENTS["anthropic"], model="claude-ok", messages=messages("Pay."), servers=[server]
    )
    result = gw.run(code)
    assert (result["kind"], result["status"]) == ("PermissionDeniedError", 403) and UNDECIDED in result["message"]
    assert gw.last_audit()["deny_reasons"] == [UNDECIDED]
    assert len(gw.fakes["anthropic"].received) == before
