"""`agents` on the OpenAI Responses API, end to end: the official openai SDK through mitmdump to a
fake OpenAI. A `function_call` whose argument comes from a tool result is replaced by a message the
agent reads, one whose arguments the user gave passes as it came; streamed, the refused call's
events become a message's at its place, and the last event's response says the same (the SDK's
stream helper checks it). A turn that continues an earlier one by `previous_response_id` is judged
on what Tollgate saw of it. The audit names each call's decision, never an argument's value."""

from __future__ import annotations

import itertools
import json

import pytest
from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REASON, REFUSED
from tests.support.answers import AWS
from tests.support.canned import by_model
from tests.support.configs import openai_with_clients
from tests.support.metrics import scrape
from tests.support.proxy import free_port
from tests.support.streams import responses_call_events, sse
from tests.support.usage import responses_usage

from tollgate.governance.agents.provider_mcp import UNDECIDED

KEY = "tg-agents-responses-0001"
METRICS = f"127.0.0.1:{free_port()}"
TOOLS = [
    {"type": "function", "name": n, "parameters": {"type": "object", "properties": p}}
    for n, p in (
        ("read_inbox", {}),
        ("send_money", {"recipient": {"type": "string"}, "amount": {"type": "number"}}),
    )
]
USAGE = responses_usage(40, 12)


def conversation(user: str, result: str) -> list[dict]:
    return [
        {"role": "user", "content": user},
        {"type": "function_call", "call_id": "call_r", "name": "read_inbox", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_r", "output": result},
    ]


def call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": f"fc_{call_id}", "type": "function_call", "status": "completed", "call_id": call_id,
            "name": name, "arguments": json.dumps(arguments)}  # fmt: skip


def send(call_id: str, recipient: str) -> dict:
    return call(call_id, "send_money", {"recipient": recipient, "amount": 950})


MESSAGE = {"id": "msg_ok", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Noted.", "annotations": []}]}  # fmt: skip
# What the fake OpenAI answers, by the model asked for: its output items.
ANSWERS = {
    "gpt-taint": [send("call_1", PLANTED)],
    "gpt-clean": [send("call_1", OWN)],
    "gpt-both": [send("call_1", PLANTED), call("call_2", "read_inbox", {})],
    "gpt-read": [call("call_r", "read_inbox", {})],
    "gpt-ack": [MESSAGE],
    "gpt-guarded": [send("call_1", PLANTED), call("call_2", "read_inbox", {"folder": AWS})],
    # The `mcp` tool's ask to run a server's tool: the provider runs it once the agent approves.
    "gpt-mcp": [
        {
            "id": "mcpr_1",
            "type": "mcp_approval_request",
            "server_label": "bank",
            "name": "send_money",
            "arguments": json.dumps({"recipient": PLANTED, "amount": 950}),
        }
    ],
}
_ids = itertools.count(1)


def response(model: str, status: str = "completed") -> dict:
    return {"id": f"resp_{next(_ids)}", "object": "response", "created_at": 1700000000, "model": model,
            "status": status, "output": ANSWERS[model] if status == "completed" else [], "usage": USAGE,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}  # fmt: skip


def streamed(model: str) -> list[bytes]:
    """`created`, then each item: a call added, its arguments in two deltas, done, item done (a
    message with its text); then `completed`, repeating the items."""
    done = response(model)
    events: list[dict] = [{"type": "response.created", "response": {**done, "status": "in_progress", "output": []}}]
    for at, item in enumerate(done["output"]):
        if item["type"] == "message":
            events += [{"type": "response.output_item.added", "output_index": at, "item": {**item, "content": []}},
                       {"type": "response.output_item.done", "output_index": at, "item": item}]  # fmt: skip
            continue
        events += responses_call_events(at, item)
    events.append({"type": "response.completed", "response": done})
    return [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]


upstream = by_model("/responses", response, streamed)


gw = agents.gateway_fixture(
    upstream,
    ("openai",),
    openai_with_clients("sk-real-agents-0002", {"agent": KEY}, metrics={"listen": METRICS}),
    guarded="gpt-guarded",
)


CREATE = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
try:
    r = client.responses.create(model={model!r}, input={input!r}, tools={tools!r}, **{more!r})
    report(id=r.id, output=[o.model_dump(exclude_none=True) for o in r.output], text=r.output_text,
           usage=r.usage.model_dump(include={{"input_tokens", "output_tokens"}}))
except Exception as e:
    report(error=type(e).__name__, status=getattr(e, "status_code", None), message=str(e)[:2000])
"""


def ask(gw, model: str, input: list | str, tools: list = TOOLS, **more) -> dict:
    return gw.run(CREATE.format(key=KEY, model=model, input=input, tools=tools, more=more))


def refusal(of: str, text: str = REFUSED) -> dict:
    return {"id": f"msg_tollgate_{of}", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip


def test_a_call_whose_argument_comes_from_a_tool_result_is_replaced_by_its_refusal(gw):
    before = len(gw.fakes["openai"].received)
    result = ask(gw, "gpt-both", conversation("Pay the rent as my landlord asks.", INBOX))
    assert result["output"] == [refusal("fc_call_1"), ANSWERS["gpt-both"][1]]
    assert result["text"] == REFUSED  # the SDK's `output_text` reads it
    assert result["usage"] == {"input_tokens": 40, "output_tokens": 12}
    sent = gw.fakes["openai"].received[before:]
    assert len(sent) == 1 and sent[0].json()["input"] == conversation("Pay the rent as my landlord asks.", INBOX)
    assert agents.refused_record(gw, agents.allowed("read_inbox"))["output_tokens"] == 12
    agents.assert_no_argument_value(gw, PLANTED)


def test_a_call_the_user_gave_the_arguments_of_passes_as_it_came(gw):
    result = ask(gw, "gpt-clean", conversation(f"Pay the rent to {OWN}.", INBOX))
    assert result["output"] == ANSWERS["gpt-clean"] and result["text"] == ""
    assert gw.last_audit()["tool_calls"] == [agents.allowed()]
    agents.assert_no_argument_value(gw, OWN)


def test_a_later_turn_by_previous_response_id_is_judged_on_what_tollgate_saw(gw):
    first = ask(gw, "gpt-read", [{"role": "user", "content": f"Pay the rent as my landlord asks; mine is {OWN}."}])
    assert first["output"] == ANSWERS["gpt-read"]
    # The inbox's text comes in this turn only; the next turns name the earlier ones by id.
    result = [{"type": "function_call_output", "call_id": "call_r", "output": INBOX}]
    second = ask(gw, "gpt-ack", result, previous_response_id=first["id"])
    assert second["text"] == "Noted."
    go = [{"role": "user", "content": "Go ahead."}]
    tainted = ask(gw, "gpt-taint", go, previous_response_id=second["id"])
    assert tainted["output"] == [refusal("fc_call_1")]  # the inbox's account, from two turns back
    assert gw.last_audit()["tool_calls"][0]["reasons"] == [REASON]
    # The provider kept the refused call: the next turn answers it with its refusal, first.
    before = len(gw.fakes["openai"].received)
    ask(gw, "gpt-ack", go, previous_response_id=tainted["id"])
    assert gw.fakes["openai"].received[before].json()["input"] == [
        {"type": "function_call_output", "call_id": "call_1", "output": REFUSED},
        *go,
    ]
    clean = ask(gw, "gpt-clean", go, previous_response_id=second["id"])
    assert clean["output"] == ANSWERS["gpt-clean"]  # the user's own account, from the first turn
    # A response Tollgate never saw: its turns unseen, nothing of them clears or taints.
    unknown = ask(gw, "gpt-taint", go, previous_response_id="resp_elsewhere")
    assert unknown["output"] == ANSWERS["gpt-taint"]
    agents.assert_no_argument_value(gw, PLANTED, OWN)
    # The conversations kept, measured.
    kept = {
        line.split()[0]: float(line.split()[1])
        for line in scrape(METRICS).splitlines()
        if line.startswith("tollgate_agents_responses_kept")
    }
    assert kept["tollgate_agents_responses_kept"] >= 5 and kept["tollgate_agents_responses_kept_chars"] > len(INBOX)


def test_an_mcp_approval_request_from_a_tool_result_is_refused_and_denied_next_turn(gw):
    result = ask(gw, "gpt-mcp", conversation("Pay the rent as my landlord asks.", INBOX))
    assert result["output"] == [refusal("mcpr_1")] and result["text"] == REFUSED
    assert gw.last_audit()["tool_calls"] == [agents.DENIED]
    # The provider keeps the request: the next turn tells it no, so that it never runs the call.
    before = len(gw.fakes["openai"].received)
    go = [{"role": "user", "content": "Go ahead."}]
    ask(gw, "gpt-ack", go, previous_response_id=result["id"])
    denial = {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False, "reason": REFUSED}
    assert gw.fakes["openai"].received[before].json()["input"] == [denial, *go]
    agents.assert_no_argument_value(gw, PLANTED)


def test_a_background_response_with_tools_is_refused(gw):
    # Its answer is fetched later, read back as it was made: its calls would go undecided.
    before = len(gw.fakes["openai"].received)
    result = ask(gw, "gpt-clean", "Pay the rent.", background=True)
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403)
    assert "background response's tool calls are fetched later, undecided" in result["message"]
    assert len(gw.fakes["openai"].received) == before


def test_an_mcp_server_the_provider_calls_without_approval_is_refused(gw):
    # Its calls never reach the agent: an acting one would act undecided.
    before = len(gw.fakes["openai"].received)
    server = {"type": "mcp", "server_label": "bank", "server_url": "https://bank.example/mcp"}
    never = ask(gw, "gpt-ack", "Pay the rent.", tools=[*TOOLS, {**server, "require_approval": "never"}])
    assert (never["error"], never["status"]) == ("PermissionDeniedError", 403)
    assert UNDECIDED in never["message"]
    record = gw.last_audit()
    assert (record["decision"], record["deny_reasons"], record["refusal"]) == ("deny", [UNDECIDED], "content_denied")
    assert len(gw.fakes["openai"].received) == before
    # Asked for approval, each call comes to the agent as a request, decided: it goes.
    asked = ask(gw, "gpt-ack", "Pay the rent.", tools=[*TOOLS, server])
    assert asked["text"] == "Noted."


STREAM = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
raw = []
with client.responses.stream(model={model!r}, input={input!r}, tools={tools!r}, **{more!r}) as s:
    for event in s:
        raw.append([event.type, event.sequence_number, getattr(event, "output_index", None)])
    final = s.get_final_response()
report(raw=raw, id=final.id, output=[o.model_dump(exclude_none=True, exclude={{"parsed_arguments"}}) for o in final.output],
       text=final.output_text, usage=final.usage.model_dump(include={{"input_tokens", "output_tokens"}}))
"""


def ask_streamed(gw, model: str, input: list, tools: list = TOOLS, **more) -> dict:
    return gw.run(STREAM.format(key=KEY, model=model, input=input, tools=tools, more=more))


def test_a_streamed_call_whose_argument_comes_from_a_tool_result_becomes_a_message(gw):
    before = len(gw.fakes["openai"].received)
    result = ask_streamed(gw, "gpt-both", conversation("Pay the rent as my landlord asks.", INBOX))
    assert result["output"] == [refusal("fc_call_1"), ANSWERS["gpt-both"][1]]
    assert result["text"] == REFUSED and result["usage"] == {"input_tokens": 40, "output_tokens": 12}
    # The refused call's events are a message's, at its place; the numbers follow on.
    assert [e[0] for e in result["raw"] if e[2] == 0] == list(agents.REFUSAL_EVENTS)
    assert [e[1] for e in result["raw"]] == list(range(len(result["raw"])))
    sent = gw.fakes["openai"].received[before:]
    assert len(sent) == 1 and sent[0].headers.get("accept-encoding") == "identity"
    record = gw.last_audit()
    assert [(c["name"], c["decision"]) for c in record["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]
    assert record["output_tokens"] == 12
    agents.assert_no_argument_value(gw, PLANTED)


def test_a_streamed_untainted_call_passes_as_it_came(gw):
    result = ask_streamed(gw, "gpt-clean", conversation(f"Pay the rent to {OWN}.", INBOX))
    assert result["output"] == ANSWERS["gpt-clean"]
    assert [e[0] for e in result["raw"]][1:-1] == list(agents.CALL_EVENTS)


def test_a_streamed_turn_is_kept_for_the_next_by_its_id(gw):
    first = ask_streamed(gw, "gpt-read", [{"role": "user", "content": "Pay the rent as my landlord asks."}])
    result = [{"type": "function_call_output", "call_id": "call_r", "output": INBOX}]
    # A turn without tools: nothing to hold, its conversation kept all the same.
    second = ask_streamed(gw, "gpt-ack", result, tools=[], previous_response_id=first["id"])
    tainted = ask_streamed(
        gw, "gpt-taint", [{"role": "user", "content": "Go ahead."}], previous_response_id=second["id"]
    )
    assert tainted["output"] == [refusal("fc_call_1")]


@pytest.mark.parametrize("streamed", [False, True])
def test_under_an_answer_rule_the_kept_call_comes_redacted_the_refused_one_replaced(gw, streamed):
    asked = ask_streamed if streamed else ask
    result = asked(gw, "gpt-guarded", conversation("Pay the rent as my landlord asks.", INBOX))
    kept = {**ANSWERS["gpt-guarded"][1], "arguments": '{"folder": "[REDACTED:secrets.aws_access_key_id]"}'}
    assert result["output"] == [refusal("fc_call_1"), kept]
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
    assert [(c["name"], c["decision"]) for c in record["tool_calls"]] == [
        ("send_money", "deny"),
        ("read_inbox", "allow"),
    ]
