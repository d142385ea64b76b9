"""`agents` on Cohere's Command R on Bedrock's InvokeModel, end to end: boto3 as the agent, through
mitmdump to a fake Bedrock that checks Tollgate's signature. The request goes upstream as it came;
a call whose argument comes from a tool result is taken out of the answer's `tool_calls` and its
refusal's text comes in its place, whole or in the stream's `chunk` frames; one the user gave the
argument of passes as it came, but not where the stream's chunks say another argument than the
event carrying the call whole (the agent would run the chunks' call): it is refused as unread. The audit names each decision, never an argument's value."""

from __future__ import annotations

import json

from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.eventstream import invoke_chunk
from tests.support.fake_upstream import Received, Reply

VIRTUAL = ("TGCOHERE000000000000", "cohere-virtual-SECRET-000000")
REAL = ("AKIAREALCOHERE000000", "real-aws-SECRET-cohere-00000")
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}
MODEL = "cohere.command-r-plus-v1:0"
METRICS = {"inputTokenCount": 40, "outputTokenCount": 12, "invocationLatency": 9, "firstByteLatency": 2}
READ = {"name": "read_inbox", "parameters": {}}
HISTORY = [
    {"role": "USER", "message": f"Pay the rent; my own account is {OWN}."},
    {"role": "CHATBOT", "message": "", "tool_calls": [READ]},
]
BODY = {
    "preamble": "You pay the user's bills.",
    "message": "",
    "chat_history": HISTORY,
    "tool_results": [{"call": READ, "outputs": [{"text": INBOX}]}],
    "tools": [
        {"name": "read_inbox", "description": "Reads the inbox."},
        {
            "name": "send_money",
            "description": "Pays.",
            "parameter_definitions": {"recipient": {"type": "str", "required": True}},
        },
    ],
    "max_tokens": 256,
}


def recipient_of(received: Received) -> str:
    return PLANTED if b"taint" in (received.headers.get("x-test-case") or "").encode() else OWN


def call(recipient: str) -> dict:
    return {"name": "send_money", "parameters": {"recipient": recipient}}


def answer(recipient: str) -> dict:
    turn = {"role": "CHATBOT", "message": "Paying.", "tool_calls": [call(recipient)]}
    return {
        "response_id": "r1",
        "text": "Paying.",
        "generation_id": "g1",
        "chat_history": [*HISTORY, turn],
        "finish_reason": "COMPLETE",
        "tool_calls": [call(recipient)],
    }


def events(recipient: str, chunked: str | None = None) -> list[dict]:
    """The stream of an answer calling send_money for `recipient`, its chunks saying `chunked`."""
    arguments = json.dumps(call(chunked or recipient)["parameters"])
    end = {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": answer(recipient)}
    return [
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g1"},
        {"is_finished": False, "event_type": "text-generation", "text": "Paying."},
        {"is_finished": False, "event_type": "tool-calls-chunk", "tool_call_delta": {"index": 0, "name": "send_money"}},
        {
            "is_finished": False,
            "event_type": "tool-calls-chunk",
            "tool_call_delta": {"index": 0, "parameters": arguments},
        },
        {
            "is_finished": False,
            "event_type": "tool-calls-generation",
            "text": "Paying.",
            "tool_calls": [call(recipient)],
        },
        {**end, "amazon-bedrock-invocationMetrics": METRICS},
    ]


def upstream(received: Received) -> Reply:
    if (refused := agents.unsigned(received, REAL)) is not None:
        return refused
    recipient = recipient_of(received)
    if received.path.endswith("/invoke-with-response-stream"):
        # "chunks": the whole event says the user's account, the chunks the planted one.
        chunked = PLANTED if received.headers.get("x-test-case") == "chunks" else None
        streamed = events(recipient, chunked)
        return Reply(200, chunks=[invoke_chunk(e) for e in streamed], headers=EVENTSTREAM)
    if received.path.endswith("/invoke"):
        return Reply(200, answer(recipient))
    return Reply(404, {"message": "no such path"})


gw = agents.bedrock_gateway(upstream, REAL, VIRTUAL)


CLIENT = f"""
import json
import boto3
from botocore.config import Config
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{VIRTUAL[0]}",
    aws_secret_access_key="{VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
case = {{}}
def tell(request, **_):
    request.headers["x-test-case"] = case["name"]
client.meta.events.register("before-sign.bedrock-runtime.*", tell)
BODY = json.dumps({BODY!r})
"""

WHOLE = """
case["name"] = {case!r}
r = client.invoke_model(modelId={model!r}, body=BODY)
report(answer=json.loads(r["body"].read()))
"""

STREAMED = """
case["name"] = {case!r}
r = client.invoke_model_with_response_stream(modelId={model!r}, body=BODY)
report(events=[json.loads(e["chunk"]["bytes"]) for e in r["body"]])
"""


def sent_upstream(gw, before: int) -> dict:
    """The one request Bedrock got since `before`: the agent's body as it came."""
    sent = gw.fakes["bedrock"].received[before:]
    assert len(sent) == 1
    return sent[0].json()


def test_a_call_whose_argument_comes_from_a_tool_result_is_refused_and_the_answer_ends_as_text(gw):
    before = len(gw.fakes["bedrock"].received)
    got = gw.run(CLIENT + WHOLE.format(case="taint", model=MODEL))["answer"]
    assert sent_upstream(gw, before) == BODY
    assert "tool_calls" not in got and got["text"] == "Paying.\n\n" + REFUSED
    assert got["chat_history"][-1] == {"role": "CHATBOT", "message": "Paying.\n\n" + REFUSED}
    assert got["finish_reason"] == "COMPLETE"
    agents.refused_record(gw)
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + WHOLE.format(case="clean", model=MODEL))["answer"] == answer(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_streamed_call_whose_argument_comes_from_a_tool_result_becomes_text(gw):
    before = len(gw.fakes["bedrock"].received)
    got = gw.run(CLIENT + STREAMED.format(case="taint", model=MODEL))["events"]
    assert sent_upstream(gw, before) == BODY
    expected = events(PLANTED)
    assert got[:2] == expected[:2]  # the text before the call, as it came
    assert got[2] == {"is_finished": False, "event_type": "text-generation", "text": "\n\n" + REFUSED}
    assert [e["event_type"] for e in got] == ["stream-start", "text-generation", "text-generation", "stream-end"]
    end = got[-1]
    assert "tool_calls" not in end["response"] and end["response"]["text"] == "Paying.\n\n" + REFUSED
    assert end["amazon-bedrock-invocationMetrics"] == METRICS
    record = agents.refused_record(gw)
    assert (record["input_tokens"], record["output_tokens"]) == (40, 12)
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_streamed_call_the_user_gave_the_argument_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + STREAMED.format(case="clean", model=MODEL))["events"] == events(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_streamed_call_whose_chunks_say_other_parameters_than_the_whole_event_is_refused(gw):
    """The whole event carries the payment to the user's own account, the chunks (what an agent
    that builds its calls from them runs) to the planted one: the call is refused as unread."""
    before = len(gw.fakes["bedrock"].received)
    got = gw.run(CLIENT + STREAMED.format(case="chunks", model=MODEL))["events"]
    assert sent_upstream(gw, before) == BODY
    unread = "Tollgate refused the call to send_money: its arguments cannot be read (unread)."
    assert got[:2] == events(OWN)[:2]
    assert got[2] == {"is_finished": False, "event_type": "text-generation", "text": "\n\n" + unread}
    assert [e["event_type"] for e in got] == ["stream-start", "text-generation", "text-generation", "stream-end"]
    end = got[-1]
    assert "tool_calls" not in end["response"] and end["response"]["text"] == "Paying.\n\n" + unread
    assert PLANTED not in json.dumps(got)
    record = gw.last_audit()
    assert record["tool_calls"] == [
        {"name": "send_money", "decision": "deny", "reasons": ["its arguments cannot be read (unread)"], "tainted": []}
    ]
    assert (record["status"], record["decision"]) == (200, "allow")
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")
