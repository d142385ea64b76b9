"""`agents` on Bedrock's InvokeModel for the model families other than Claude, end to end: boto3 as
the agent, through mitmdump to a fake Bedrock that checks Tollgate's signature. Amazon Nova's body
is Converse's, Mistral's OpenAI chat's: a call whose argument comes from a tool result is replaced
by its refusal's text, whole or in the stream's `chunk` frames; one the user gave the argument of
passes as it came. A family whose body Tollgate does not read (here a Llama prompt) is refused
where its call gives the model tools; Cohere's Command R is `test_agents_cohere_on_bedrock`'s. The
audit names each decision, never an argument's value."""

from __future__ import annotations

import json

from tests.support import agents
from tests.support.agents import INBOX, METRICS, OWN, PLANTED, REFUSED
from tests.support.fake_upstream import Received

from tollgate.governance.agents.agents_formats import UNREAD_FAMILY

VIRTUAL = ("TGFAMILIES0000000000", "families-virtual-SECRET-0000")
REAL = ("AKIAREALFAMILIES0000", "real-aws-SECRET-families-000")
NOVA, MISTRAL = "amazon.nova-pro-v1:0", "mistral.mistral-large-2407-v1:0"
SEND = {"type": "object", "properties": {"recipient": {"type": "string"}}}


def recipient_of(received: Received) -> str:
    return PLANTED if b"taint" in (received.headers.get("x-test-case") or "").encode() else OWN


def nova_answer(recipient: str) -> dict:
    use = {"toolUse": {"toolUseId": "t1", "name": "send_money", "input": {"recipient": recipient}}}
    message = {"role": "assistant", "content": [{"text": "Paying."}, use]}
    return {"output": {"message": message}, "stopReason": "tool_use", "usage": {"inputTokens": 40, "outputTokens": 12}}


def nova_events(recipient: str) -> list[dict]:
    arguments = json.dumps({"recipient": recipient})
    start = {"start": {"toolUse": {"toolUseId": "t1", "name": "send_money"}}, "contentBlockIndex": 1}
    return [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Paying."}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockStart": start},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": arguments}}, "contentBlockIndex": 1}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 40, "outputTokens": 12}}, "amazon-bedrock-invocationMetrics": METRICS},
    ]


def mistral_call(recipient: str) -> dict:
    return {"id": "c1", "function": {"name": "send_money", "arguments": json.dumps({"recipient": recipient})}}


def mistral_answer(recipient: str) -> dict:
    message = {"role": "assistant", "content": "", "tool_calls": [mistral_call(recipient)]}
    return {
        "id": "m1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "stop_reason": "tool_calls"}],
    }


def mistral_events(recipient: str) -> list[dict]:
    def choice(message: dict, stop: str | None) -> dict:
        return {
            "id": "m1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "message": message, "stop_reason": stop}],
        }

    last = choice({"content": ""}, "tool_calls")
    return [
        choice({"role": "assistant", "content": "Paying."}, None),
        choice({"content": "", "tool_calls": [mistral_call(recipient)]}, None),
        {**last, "amazon-bedrock-invocationMetrics": METRICS},
    ]


def answer(received: Received) -> dict:
    recipient = recipient_of(received)
    return nova_answer(recipient) if "amazon.nova" in received.path else mistral_answer(recipient)


def events(received: Received) -> list[dict]:
    recipient = recipient_of(received)
    return nova_events(recipient) if "amazon.nova" in received.path else mistral_events(recipient)


upstream = agents.invoke_upstream(REAL, answer, events)


gw = agents.bedrock_gateway(upstream, REAL, VIRTUAL)


CLIENT = agents.boto3_agent(
    VIRTUAL,
    f"""
case = {{}}
def tell(request, **_):
    request.headers["x-test-case"] = case["name"]
client.meta.events.register("before-sign.bedrock-runtime.*", tell)
NOVA = json.dumps({{
    "schemaVersion": "messages-v1", "inferenceConfig": {{"maxTokens": 256}},
    "toolConfig": {{"tools": [{{"toolSpec": {{"name": "read_inbox", "inputSchema": {{"json": {{"type": "object"}}}}}}}},
                             {{"toolSpec": {{"name": "send_money", "inputSchema": {{"json": {SEND!r}}}}}}}]}},
    "messages": [
        {{"role": "user", "content": [{{"text": "Pay the rent; my own account is {OWN}."}}]}},
        {{"role": "assistant", "content": [{{"toolUse": {{"toolUseId": "t0", "name": "read_inbox", "input": {{}}}}}}]}},
        {{"role": "user", "content": [{{"toolResult": {{"toolUseId": "t0", "content": [{{"text": {INBOX!r}}}]}}}}]}},
    ],
}})
MISTRAL = json.dumps({{
    "max_tokens": 256,
    "tools": [{{"type": "function", "function": {{"name": "read_inbox", "parameters": {{"type": "object"}}}}}},
              {{"type": "function", "function": {{"name": "send_money", "parameters": {SEND!r}}}}}],
    "messages": [
        {{"role": "user", "content": "Pay the rent; my own account is {OWN}."}},
        {{"role": "assistant", "content": "", "tool_calls": [{{"id": "c0", "function": {{"name": "read_inbox", "arguments": "{{}}"}}}}]}},
        {{"role": "tool", "tool_call_id": "c0", "content": {INBOX!r}}},
    ],
}})
""",
)

WHOLE = """
case["name"] = {case!r}
r = client.invoke_model(modelId={model!r}, body={body})
report(answer=json.loads(r["body"].read()))
"""

STREAMED = """
case["name"] = {case!r}
r = client.invoke_model_with_response_stream(modelId={model!r}, body={body})
report(events=[json.loads(e["chunk"]["bytes"]) for e in r["body"]])
"""


def test_a_nova_call_whose_argument_comes_from_a_tool_result_is_refused_and_the_turn_ends(gw):
    got = gw.run(CLIENT + WHOLE.format(case="taint", model=NOVA, body="NOVA"))["answer"]
    assert got["output"]["message"]["content"] == [{"text": "Paying."}, {"text": REFUSED}]
    assert (got["stopReason"], got["usage"]) == ("end_turn", {"inputTokens": 40, "outputTokens": 12})
    agents.refused_record(gw)
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_nova_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + WHOLE.format(case="clean", model=NOVA, body="NOVA"))["answer"] == nova_answer(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


def test_a_streamed_nova_call_whose_argument_comes_from_a_tool_result_becomes_text(gw):
    got = gw.run(CLIENT + STREAMED.format(case="taint", model=NOVA, body="NOVA"))["events"]
    expected = nova_events(PLANTED)
    assert got[:3] == expected[:3]  # the text before the call, as it came
    assert got[3:] == [
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": REFUSED}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "end_turn"}},
        expected[-1],
    ]
    record = gw.last_audit()
    assert [c["decision"] for c in record["tool_calls"]] == ["deny"]
    assert (record["input_tokens"], record["output_tokens"]) == (40, 12)
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_streamed_nova_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + STREAMED.format(case="clean", model=NOVA, body="NOVA"))["events"] == nova_events(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


def test_a_mistral_call_whose_argument_comes_from_a_tool_result_is_refused(gw):
    got = gw.run(CLIENT + WHOLE.format(case="taint", model=MISTRAL, body="MISTRAL"))["answer"]
    assert got["choices"] == [{"index": 0, "message": {"role": "assistant", "content": REFUSED}, "stop_reason": "stop"}]
    agents.refused_record(gw)
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_mistral_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + WHOLE.format(case="clean", model=MISTRAL, body="MISTRAL"))["answer"] == mistral_answer(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


def test_a_streamed_mistral_call_whose_argument_comes_from_a_tool_result_becomes_text(gw):
    got = gw.run(CLIENT + STREAMED.format(case="taint", model=MISTRAL, body="MISTRAL"))["events"]
    assert got[0] == mistral_events(PLANTED)[0]
    choices = [c for e in got for c in e["choices"]]
    assert [c["message"]["content"] for c in choices if c["message"].get("content")] == ["Paying.", "\n\n" + REFUSED]
    assert not any("tool_calls" in c["message"] for c in choices) and choices[-1]["stop_reason"] == "stop"
    assert [c["decision"] for c in gw.last_audit()["tool_calls"]] == ["deny"]
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_streamed_mistral_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + STREAMED.format(case="clean", model=MISTRAL, body="MISTRAL"))["events"] == mistral_events(
        OWN
    )
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


def test_a_family_whose_body_is_not_read_is_refused_when_it_gives_its_model_tools(gw):
    before = len(gw.fakes["bedrock"].received)
    got = gw.run(
        CLIENT
        + """
from botocore.exceptions import ClientError
case["name"] = "llama"
body = json.dumps({"prompt": "Pay the rent", "tools": [{"name": "send_money"}]})
try:
    client.invoke_model(modelId="meta.llama3-1-70b-instruct-v1:0", body=body)
except ClientError as e:
    report(code=e.response["ResponseMetadata"]["HTTPStatusCode"], error=e.response["Error"]["Code"],
           message=e.response["Error"]["Message"])
"""
    )
    assert (got["code"], got["error"]) == (403, "AccessDeniedException")
    assert "not read for its tool calls" in got["message"]
    assert len(gw.fakes["bedrock"].received) == before  # it never went upstream
    assert gw.last_audit()["deny_reasons"] == [UNREAD_FAMILY]
