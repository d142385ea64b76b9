"""The policy decides an answer's tool calls (`data.tollgate.tools.deny`), end to end: the official
openai SDK through mitmdump to a fake OpenAI, read whole and streamed. A call the policy denies is
refused with its reason (the agent reads it; the record keeps it with argument values as `…`); a
policy error refuses the call; a call the policy allows goes as it came."""

from __future__ import annotations

import json

import pytest
from tests.support import agents
from tests.support.answers import AWS, KINDS, answered_by
from tests.support.canned import by_model
from tests.support.configs import with_policy
from tests.support.streams import sse

KEY = "tg-agents-policy-0001"
OWN = "DE44500105175407324931"  # the one payee the policy knows
STRANGER = "XX00STRANGER9999"  # in no message: only the policy refuses it
POLICY = (
    agents.payees_policy(
        OWN, 'sprintf("send_money to %v, not a known payee (client %v)", [recipient, input.client.name])'
    )
    + """
# Not a set of strings: a policy error.
deny contains 42 if input.tool.name == "explode"
"""
)
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": p}}}
    for n, p in (("send_money", {"recipient": {"type": "string"}, "amount": {"type": "number"}}), ("explode", {}))
]
USAGE = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
MESSAGES = [{"role": "user", "content": f"Pay the rent to {OWN}."}]


def send(call_id: str, recipient: str, name: str = "send_money") -> dict:
    arguments = json.dumps({"recipient": recipient, "amount": 950})
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


ANSWERS = {
    "gpt-stranger": [send("call_1", STRANGER)],
    "gpt-payee": [send("call_1", OWN)],
    "gpt-both": [send("call_1", STRANGER), send("call_2", OWN)],
    "gpt-explode": [send("call_1", OWN, "explode")],
}
# Under an answer rule: the call kept carries a key, which the guard redacts after the policy's say.
ANSWERS["gpt-guarded"] = [
    ANSWERS["gpt-both"][0],
    {
        "id": "call_2",
        "type": "function",
        "function": {"name": "send_money", "arguments": json.dumps({"recipient": OWN, "note": AWS})},
    },
]
# Streamed, the answer ends with its finish, whose blank line never comes (nor the usage, nor [DONE]).
ANSWERS["gpt-unended"] = ANSWERS["gpt-both"]
DENIED = f"send_money to {STRANGER}, not a known payee (client agent)"
REFUSED = f"Tollgate refused the call to send_money: {DENIED}."


def answer(model: str) -> dict:
    message = {"role": "assistant", "content": None, "tool_calls": ANSWERS[model], "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
    return {"id": "chatcmpl-a", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [choice], "usage": USAGE}  # fmt: skip


def chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    head = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-s"}
    return sse({**head, "choices": [choice]})


def streamed(calls: list[dict]) -> list[bytes]:
    """A text delta, each call in two pieces, the finish, the usage."""
    events = [chunk({"role": "assistant", "content": "Paying."})]
    for index, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        head = {"index": index, "id": call["id"], "type": "function"}
        events.append(
            chunk(
                {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": arguments[:9]}}]}
            )
        )
        events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[9:]}}]}))
    tail = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-s"}
    return [*events, chunk({}, "tool_calls"), sse({**tail, "choices": [], "usage": USAGE}), sse("[DONE]")]


def streamed_as(model: str) -> list[bytes]:
    """The model's answer streamed; gpt-unended's ends with its finish, short of its blank line."""
    chunks = streamed(ANSWERS[model])
    if model == "gpt-unended":
        chunks = [*chunks[:-3], chunks[-3].removesuffix(b"\n\n")]
    return chunks


upstream = by_model("/chat/completions", answer, streamed_as)


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-agents-policy"]}},
        "clients": [{"name": "agent", "keys": [KEY]}],
        "agents": {"acting_tools": ["send_*"]},
        "policy": {"rego": ["policy.rego"]},
        "guardrails": [{"match": {"model": "gpt-guarded"}, "on": ["answer"], "detect": KINDS, "action": "redact"}],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return answered_by(with_policy(start_gateway(config, providers=("openai",)), config, POLICY), upstream)


WHOLE = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
r = client.chat.completions.create(model={model!r}, messages={messages!r}, tools={tools!r})
m = r.choices[0].message
report(content=m.content, calls=[[c.id, c.function.name, c.function.arguments] for c in m.tool_calls or []],
       finish=r.choices[0].finish_reason)
"""
STREAM = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
with client.chat.completions.stream(model={model!r}, messages={messages!r}, tools={tools!r}) as s:
    for _ in s:
        pass
    final = s.get_final_completion()
m = final.choices[0].message
report(content=m.content, calls=[[c.id, c.function.name, c.function.arguments] for c in m.tool_calls or []],
       finish=final.choices[0].finish_reason)
"""


def ask(gw, model: str, stream: bool) -> dict:
    code = (STREAM if stream else WHOLE).format(key=KEY, model=model, messages=MESSAGES, tools=TOOLS)
    return gw.run(code)


def lead(stream: bool) -> str:
    return "Paying.\n\n" if stream else ""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_call_the_policy_denies_is_refused_with_its_reason_redacted_in_the_record(gw, stream):
    result = ask(gw, "gpt-stranger", stream)
    assert result == {"content": lead(stream) + REFUSED, "calls": [], "finish": "stop"}
    record = gw.last_audit()
    assert record["tool_calls"] == [
        {
            "name": "send_money",
            "decision": "deny",
            "reasons": ["send_money to …, not a known payee (client agent)"],
            "tainted": [],
        }
    ]
    assert (record["status"], record["decision"]) == (200, "allow")
    assert STRANGER not in gw.audit_path.read_text()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_policy_decides_each_call_of_an_answer(gw, stream):
    result = ask(gw, "gpt-both", stream)
    kept = ANSWERS["gpt-both"][1]
    assert result == {
        "content": lead(stream) + REFUSED,
        "calls": [[kept["id"], "send_money", kept["function"]["arguments"]]],
        "finish": "tool_calls",
    }
    assert [(c["name"], c["decision"]) for c in gw.last_audit()["tool_calls"]] == [
        ("send_money", "deny"),
        ("send_money", "allow"),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_call_the_policy_allows_goes_as_it_came(gw, stream):
    result = ask(gw, "gpt-payee", stream)
    call = ANSWERS["gpt-payee"][0]
    assert result == {
        "content": "Paying." if stream else None,
        "calls": [[call["id"], "send_money", call["function"]["arguments"]]],
        "finish": "tool_calls",
    }
    assert gw.last_audit()["tool_calls"] == [{"name": "send_money", "decision": "allow", "reasons": [], "tainted": []}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_policy_error_refuses_the_call(gw, stream):
    result = ask(gw, "gpt-explode", stream)
    assert result == {
        "content": lead(stream) + "Tollgate refused the call to explode: policy error.",
        "calls": [],
        "finish": "stop",
    }
    assert gw.last_audit()["tool_calls"] == [
        {"name": "explode", "decision": "deny", "reasons": ["policy error"], "tainted": []}
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_under_an_answer_rule_the_guard_reads_what_the_policy_let_go(gw, stream):
    result = ask(gw, "gpt-guarded", stream)
    redacted = json.dumps({"recipient": OWN, "note": "[REDACTED:secrets.aws_access_key_id]"})
    assert result == {
        "content": lead(stream) + REFUSED,
        "calls": [["call_2", "send_money", redacted]],
        "finish": "tool_calls",
    }
    agents.redacted_record(gw, "send_money")


def test_a_stream_ending_without_its_blank_line_is_decided_by_the_policy(gw):
    """Its last event, the finish, comes without its blank line: the policy is asked about the
    calls held at the end, not refused unasked as a policy error."""
    result = ask(gw, "gpt-unended", True)
    kept = ANSWERS["gpt-both"][1]
    assert result == {
        "content": lead(True) + REFUSED,
        "calls": [[kept["id"], "send_money", kept["function"]["arguments"]]],
        "finish": "tool_calls",
    }
    assert [(c["name"], c["decision"], c["reasons"]) for c in gw.last_audit()["tool_calls"]] == [
        ("send_money", "deny", ["send_money to …, not a known payee (client agent)"]),
        ("send_money", "allow", []),
    ]
