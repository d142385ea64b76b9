"""`agents` on Bedrock Converse, end to end: boto3 through mitmdump with virtual AWS credentials to
a fake Bedrock. A tool use whose input comes from a tool result is refused, a text block the agent
reads in its place, the turn ending with `end_turn` only when every call was refused; one whose
input the user gave passes as it came. Streamed (ConverseStream's AWS event stream), each tool
block is held until its stop, the text before it not held. The audit names each call's decision,
never an argument's value."""

from __future__ import annotations

import json

import pytest
from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.answers import AWS
from tests.support.eventstream import event
from tests.support.fake_upstream import Received, Reply

VIRTUAL = ("TGAGENT0000000000000", "agent-virtual-SECRET-0000")
REAL = ("AKIAREAL000000000001", "real-aws-SECRET-key-0001")
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}
USAGE = {"inputTokens": 40, "outputTokens": 12, "totalTokens": 52}


def send(call_id: str, recipient: str) -> dict:
    return {"toolUseId": call_id, "name": "send_money", "input": {"recipient": recipient, "amount": 950}}


READ = {"toolUseId": "t2", "name": "read_inbox", "input": {"folder": "rent"}}
# What the fake Bedrock answers, by the model asked for: its message's tool uses.
CALLS = {
    "amazon.nova-taint-v1:0": [send("t1", PLANTED)],
    "amazon.nova-clean-v1:0": [send("t1", OWN)],
    "amazon.nova-both-v1:0": [send("t1", PLANTED), READ],
    # Under an answer rule: the kept call's input holds a key to redact.
    "amazon.nova-guarded-v1:0": [send("t1", PLANTED), {**READ, "input": {"folder": AWS}}],
}


def converse(model: str) -> dict:
    content = [{"text": "Paying."}, *({"toolUse": use} for use in CALLS[model])]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use",
        "usage": USAGE,
        "metrics": {"latencyMs": 9},
    }


def delta(block: int, body: dict) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": block, "delta": body, "p": "abcdef"})


def converse_stream(model: str) -> list[bytes]:
    """Text, then each tool use with its input in two deltas, each frame its own write."""
    frames = [event("messageStart", {"role": "assistant"}), delta(0, {"text": "Paying."})]
    frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    for at, use in enumerate(CALLS[model], start=1):
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": at, "start": start}))
        arguments = json.dumps(use["input"])
        frames += [delta(at, {"toolUse": {"input": arguments[:9]}}), delta(at, {"toolUse": {"input": arguments[9:]}})]
        frames.append(event("contentBlockStop", {"contentBlockIndex": at}))
    frames.append(event("messageStop", {"stopReason": "tool_use"}))
    return [*frames, event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 9}})]


def upstream(received: Received) -> Reply:
    if (refused := agents.unsigned(received, REAL)) is not None:
        return refused
    model = received.path.split("/model/")[1].rpartition("/")[0].replace("%3A", ":")
    if received.path.endswith("/converse-stream"):
        return Reply(200, chunks=converse_stream(model), headers=EVENTSTREAM)
    if received.path.endswith("/converse"):
        return Reply(200, converse(model))
    return Reply(404, {"message": "no such path"})


gw = agents.bedrock_gateway(upstream, REAL, VIRTUAL, guarded="*guarded*")


MESSAGES = [
    {"role": "user", "content": [{"text": "Pay the rent as my landlord asks."}]},
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t0", "name": "read_inbox", "input": {}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "t0", "content": [{"text": INBOX}]}}]},
]
TOOLS = {
    "tools": [
        {"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object", "properties": p}}}}
        for n, p in (
            ("read_inbox", {"folder": {"type": "string"}}),
            ("send_money", {"recipient": {"type": "string"}, "amount": {"type": "number"}}),
        )
    ]
}
CALL = f"""
import json
import boto3
from botocore.config import Config
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{VIRTUAL[0]}",
    aws_secret_access_key="{VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
if STREAM:
    texts, calls, stop, usage = {{}}, {{}}, None, None
    for e in client.converse_stream(modelId=MODEL, messages=MESSAGES, toolConfig=TOOLS)["stream"]:
        if "contentBlockStart" in e:
            use = e["contentBlockStart"]["start"]["toolUse"]
            calls[e["contentBlockStart"]["contentBlockIndex"]] = [use["name"], ""]
        if "contentBlockDelta" in e:
            at, d = e["contentBlockDelta"]["contentBlockIndex"], e["contentBlockDelta"]["delta"]
            if "text" in d:
                texts[at] = texts.get(at, "") + d["text"]
            else:
                calls[at][1] += d["toolUse"]["input"]
        stop = e.get("messageStop", {{}}).get("stopReason", stop)
        usage = e.get("metadata", {{}}).get("usage", usage)
    report(texts=list(texts.values()), calls=[[n, json.loads(i)] for n, i in calls.values()], stop=stop,
           total=usage["totalTokens"])
else:
    r = client.converse(modelId=MODEL, messages=MESSAGES, toolConfig=TOOLS)
    content = r["output"]["message"]["content"]
    report(texts=[b["text"] for b in content if "text" in b],
           calls=[[b["toolUse"]["name"], b["toolUse"]["input"]] for b in content if "toolUse" in b],
           stop=r["stopReason"], total=r["usage"]["totalTokens"])
"""


def ask(gw, model: str, stream: bool) -> dict:
    return gw.run(f"MODEL, STREAM, MESSAGES, TOOLS = {model!r}, {stream!r}, {MESSAGES!r}, {TOOLS!r}\n" + CALL)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tainted_call_is_refused_in_its_place_and_the_turn_ends(gw, stream):
    result = ask(gw, "amazon.nova-taint-v1:0", stream)
    assert result == {"texts": ["Paying.", REFUSED], "calls": [], "stop": "end_turn", "total": 52}
    assert agents.refused_record(gw)["total_tokens"] == 52
    agents.assert_no_argument_value(gw)


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_call_beside_a_kept_one_leaves_the_turn_to_the_tools(gw, stream):
    result = ask(gw, "amazon.nova-both-v1:0", stream)
    assert result == {
        "texts": ["Paying.", REFUSED],
        "calls": [["read_inbox", {"folder": "rent"}]],
        "stop": "tool_use",
        "total": 52,
    }
    assert [(c["name"], c["decision"]) for c in gw.last_audit()["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]
    agents.assert_no_argument_value(gw)


@pytest.mark.parametrize("stream", [False, True])
def test_an_untainted_call_passes_as_it_came(gw, stream):
    result = ask(gw, "amazon.nova-clean-v1:0", stream)
    assert result == {
        "texts": ["Paying."],
        "calls": [["send_money", {"recipient": OWN, "amount": 950}]],
        "stop": "tool_use",
        "total": 52,
    }
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


@pytest.mark.parametrize("stream", [False, True])
def test_under_an_answer_rule_the_kept_call_comes_redacted_the_refused_one_replaced(gw, stream):
    result = ask(gw, "amazon.nova-guarded-v1:0", stream)
    assert result["texts"] == ["Paying.", REFUSED]
    assert result["calls"] == [["read_inbox", {"folder": "[REDACTED:secrets.aws_access_key_id]"}]]
    assert result["stop"] == "tool_use"
    agents.redacted_record(gw)
