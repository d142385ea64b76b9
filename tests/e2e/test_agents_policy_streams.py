"""The policy decides a streamed answer's tool calls in every format (`data.tollgate.tools.deny`),
end to end: each official SDK through mitmdump to its fake provider, the stream held until the
policy has answered on its calls: anthropic (Messages), openai (Responses), google-genai (Gemini)
and boto3 (ConverseStream). The call the policy denies is refused with its reason, the one it
allows goes as it came; the record keeps the reason with argument values as `…`."""

from __future__ import annotations

import pytest
from tests.e2e import test_agents_converse as converse
from tests.e2e import test_agents_gemini as gemini
from tests.e2e import test_agents_messages as messages
from tests.e2e import test_agents_responses as responses
from tests.support import agents
from tests.support.answers import answered_by
from tests.support.canned import provider_answers
from tests.support.configs import with_policy
from tests.support.fake_upstream import Received, Reply

OWN = "DE44500105175407324931"  # the one payee the policy knows, the account the user names
STRANGER = "XX00STRANGER9999"  # in no message: only the policy refuses it
assert OWN == messages.OWN == responses.OWN == gemini.OWN == converse.OWN
POLICY = agents.payees_policy(OWN, 'sprintf("send_money to %v, not a known payee", [recipient])')
DENIED = f"send_money to {STRANGER}, not a known payee"
REFUSED = f"Tollgate refused the call to send_money: {DENIED}."
ANTHROPIC_KEY = "sk-ant-own-0001"  # the anthropic SDK's key in `ANTHROPIC_CLIENTS`

# Each format's fake answers a model `policy` with a call to a stranger, then one to the payee.
messages.ANSWERS["policy"] = [messages.send("toolu_1", STRANGER), messages.send("toolu_2", OWN)]
responses.ANSWERS["gpt-policy"] = [responses.send("call_1", STRANGER), responses.send("call_2", OWN)]
gemini.CALLS["gemini-policy"] = [gemini.send(STRANGER), gemini.send(OWN)]
converse.CALLS["amazon.nova-policy-v1:0"] = [converse.send("t1", STRANGER), converse.send("t2", OWN)]


def upstream(received: Received) -> Reply:
    path = received.path.partition("?")[0]
    if path.endswith("/v1/messages"):
        return messages.upstream(received)
    if path.endswith("/responses"):
        return responses.upstream(received)
    if "GenerateContent" in path or "generateContent" in path:
        return gemini.upstream(received)
    if "/model/" in path:
        return converse.upstream(received)
    return provider_answers(received)


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {
            "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-policy-0001"]},
            "openai": {"upstream": urls["openai"], "keys": ["sk-real-policy-0001"]},
            "gemini": {"upstream": urls["gemini"], "keys": ["AIza-real-policy-0001"]},
            "bedrock": {
                "upstream": urls["bedrock"],
                "credentials": {"access_key_id": converse.REAL[0], "secret_access_key": converse.REAL[1]},
            },
        },
        "clients": [
            {"name": "agent", "keys": [ANTHROPIC_KEY, responses.KEY, gemini.KEY]},
            {
                "name": "aws-agent",
                "aws_credentials": [{"access_key_id": converse.VIRTUAL[0], "secret_access_key": converse.VIRTUAL[1]}],
            },
        ],
        "agents": {"acting_tools": ["send_*"]},
        "policy": {"rego": ["policy.rego"]},
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(config, providers=("anthropic", "openai", "gemini", "bedrock"))
    return answered_by(with_policy(gateway, config, POLICY), upstream)


def decided_by_the_policy(gw) -> None:
    record = gw.last_audit()
    assert record["tool_calls"] == [
        {"name": "send_money", "decision": "deny", "reasons": ["send_money to …, not a known payee"], "tainted": []},
        {"name": "send_money", "decision": "allow", "reasons": [], "tainted": []},
    ]
    assert (record["status"], record["decision"]) == (200, "allow")
    assert STRANGER not in gw.audit_path.read_text()


def test_a_messages_stream_waits_for_the_policy(gw):
    result = messages.ask(gw, messages.STREAM, "anthropic", "policy", user=f"Pay the rent to {OWN}.")
    kept = messages.ANSWERS["policy"][1]
    assert result["content"] == [{"type": "text", "text": "Paying."}, {"type": "text", "text": REFUSED}, kept]
    assert result["stop"] == "tool_use"
    decided_by_the_policy(gw)


def test_a_responses_stream_waits_for_the_policy(gw):
    result = responses.ask_streamed(
        gw, "gpt-policy", responses.conversation(f"Pay the rent to {OWN}.", responses.INBOX)
    )
    assert result["output"] == [responses.refusal("fc_call_1", REFUSED), responses.ANSWERS["gpt-policy"][1]]
    assert result["text"] == REFUSED
    assert [e[1] for e in result["raw"]] == list(range(len(result["raw"])))  # the numbers follow on
    decided_by_the_policy(gw)


def test_a_gemini_stream_waits_for_the_policy(gw):
    code = gemini.CALL.format(
        vertex="", key=gemini.KEY, tools=gemini.TOOLS, stream=True, model="gemini-policy",
        contents=gemini.contents(f"Pay the rent to {OWN}."),
    )  # fmt: skip
    result = gw.run(code)
    assert result == {
        "text": "Paying." + REFUSED,
        "calls": [["send_money", {"recipient": OWN, "amount": 950}]],
        "finish": "FinishReason.STOP",
    }
    decided_by_the_policy(gw)


def test_a_converse_stream_waits_for_the_policy(gw):
    result = converse.ask(gw, "amazon.nova-policy-v1:0", True)
    assert result == {
        "texts": ["Paying.", REFUSED],
        "calls": [["send_money", {"recipient": OWN, "amount": 950}]],
        "stop": "tool_use",
        "total": 52,
    }
    decided_by_the_policy(gw)
