"""`agents` on Claude through Bedrock's InvokeModel, end to end: boto3 as the agent, with virtual
AWS credentials, through mitmdump to a fake Bedrock that checks Tollgate's signature. The answer is
Anthropic's own, whole or as events inside `chunk` frames: a `tool_use` whose input comes from a
tool result is replaced by a text block, the answer ending on `end_turn`; one whose input the user
gave passes frame for frame. The audit names each call's decision, never an input's value."""

from __future__ import annotations

import json

from tests.support import agents
from tests.support.agents import INBOX, METRICS, OWN, PLANTED, REFUSED

VIRTUAL = ("TGCLAUDE000000000000", "claude-virtual-SECRET-0000")
REAL = ("AKIAREALCLAUDE000000", "real-aws-SECRET-claude-0000")
TAINT, CLEAN = "anthropic.claude-sonnet-4-5-taint-v1:0", "anthropic.claude-sonnet-4-5-clean-v1:0"
MESSAGE = {"id": "msg_b", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}


def recipient_of(path: str) -> str:
    return PLANTED if "taint" in path else OWN


def answer(recipient: str) -> dict:
    use = {"type": "tool_use", "id": "toolu_1", "name": "send_money", "input": {"recipient": recipient}}
    usage = {"input_tokens": 40, "output_tokens": 12}
    return {**MESSAGE, "content": [{"type": "text", "text": "Paying."}, use], "stop_reason": "tool_use",
            "stop_sequence": None, "usage": usage}  # fmt: skip


def events(recipient: str) -> list[dict]:
    arguments = json.dumps({"recipient": recipient})
    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {"input_tokens": 40, "output_tokens": 1}}
    use = {"type": "tool_use", "id": "toolu_1", "name": "send_money", "input": {}}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paying."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": use},
        *({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}
          for p in (arguments[:9], arguments[9:])),
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS},
    ]  # fmt: skip


upstream = agents.invoke_upstream(
    REAL, lambda received: answer(recipient_of(received.path)), lambda received: events(recipient_of(received.path))
)


gw = agents.bedrock_gateway(upstream, REAL, VIRTUAL)


CLIENT = agents.boto3_agent(
    VIRTUAL,
    f"""
BODY = json.dumps({{
    "anthropic_version": "bedrock-2023-05-31", "max_tokens": 256,
    "tools": [{{"name": "read_inbox", "input_schema": {{"type": "object"}}}},
              {{"name": "send_money", "input_schema": {{"type": "object", "properties": {{"recipient": {{"type": "string"}}}}}}}}],
    "messages": [
        {{"role": "user", "content": "Pay the rent; my own account is {OWN}."}},
        {{"role": "assistant", "content": [{{"type": "tool_use", "id": "toolu_r", "name": "read_inbox", "input": {{}}}}]}},
        {{"role": "user", "content": [{{"type": "tool_result", "tool_use_id": "toolu_r", "content": {INBOX!r}}}]}},
    ],
}})
""",
)

WHOLE = """
r = client.invoke_model(modelId={model!r}, body=BODY)
report(answer=json.loads(r["body"].read()))
"""

STREAMED = """
r = client.invoke_model_with_response_stream(modelId={model!r}, body=BODY)
report(events=[json.loads(e["chunk"]["bytes"]) for e in r["body"]])
"""


def test_a_tool_use_whose_input_comes_from_a_tool_result_is_refused_and_the_turn_ends(gw):
    got = gw.run(CLIENT + WHOLE.format(model=TAINT))["answer"]
    assert got["content"] == [{"type": "text", "text": "Paying."}, {"type": "text", "text": REFUSED}]
    assert (got["stop_reason"], got["usage"]) == ("end_turn", {"input_tokens": 40, "output_tokens": 12})
    agents.refused_record(gw)
    agents.assert_no_argument_value(gw, PLANTED)


def test_a_tool_use_the_user_gave_the_input_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + WHOLE.format(model=CLEAN))["answer"] == answer(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]


def test_a_streamed_tool_use_whose_input_comes_from_a_tool_result_becomes_text(gw):
    got = gw.run(CLIENT + STREAMED.format(model=TAINT))["events"]
    assert got[:4] == events(PLANTED)[:4]  # the text before the call, as it came
    assert got[4:] == [
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": REFUSED}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS},
    ]
    record = gw.last_audit()
    assert [c["decision"] for c in record["tool_calls"]] == ["deny"]
    assert (record["input_tokens"], record["output_tokens"]) == (40, 12)
    agents.assert_no_argument_value(gw, PLANTED)


def test_a_streamed_tool_use_the_user_gave_the_input_of_passes_as_it_came(gw):
    assert gw.run(CLIENT + STREAMED.format(model=CLEAN))["events"] == events(OWN)
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]
