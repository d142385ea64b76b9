"""Answers and requests read as their clients read them, with the official openai SDK through
mitmdump: a UTF-8 byte order mark before a stream's first event is read past (the key in that
event redacted, the SDK reading it); an event or a JSON answer whose JSON repeats a key stops as
`unread` (the SDK raises); a zero-width space inside a key or a card number in a request hides it
from no rule."""

from __future__ import annotations

import json

import pytest
from tests.support.answers import AWS, KINDS, answered_by
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.raw import send
from tests.support.streams import sse

VIRTUAL = "tg-read-as-clients-0001"
BOM = b"\xef\xbb\xbf"
# The first event carries the key: a stream's byte order mark stands before it.
FIRST = f"The key: {AWS} "
REST = "and nothing else."


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-read-as-clients-0001"]}},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "guardrails": [
            {"on": ["answer"], "detect": KINDS, "action": "redact"},
            {"match": {"model": "gpt-ask-deny"}, "detect": KINDS, "action": "deny"},
            {"match": {"model": "gpt-ask-redact"}, "detect": KINDS, "action": "redact"},
        ],
    }


def chunk(delta: dict, finish: str | None = None) -> bytes:
    event = {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**event, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def json_answer(content: str) -> dict:
    message = {"role": "assistant", "content": content}
    return {"id": "chatcmpl-j", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


# A member written twice: a parser that keeps the first value reads the key, one that keeps the
# last (the SDK's) reads the other.
TWICE = (b'"content":"' + AWS.encode() + b'","content":"nothing"', b'"content":"MARK"')


def upstream(received: Received) -> Reply:
    if not received.path.endswith("/chat/completions"):
        return provider_answers(received)
    model = received.json()["model"]
    if model == "gpt-bom":
        events = [chunk({"role": "assistant", "content": FIRST}), chunk({"content": REST}), chunk({}, "stop")]
        return Reply(200, chunks=[BOM + events[0], *events[1:], sse("[DONE]")])
    if model == "gpt-repeated":
        twice = chunk({"content": "MARK"}).replace(b'"content": "MARK"', TWICE[0])
        assert twice != chunk({"content": "MARK"})
        return Reply(200, chunks=[chunk({"content": "Before. "}), twice, chunk({}, "stop"), sse("[DONE]")])
    if model == "gpt-repeated-json":
        body = json.dumps(json_answer("MARK"), separators=(",", ":")).encode().replace(TWICE[1], TWICE[0])
        return Reply(200, chunks=[body], headers={"content-type": "application/json"})
    return Reply(200, json_answer("All is well."))


@pytest.fixture(scope="module")
def gw(start_gateway):
    return answered_by(start_gateway(config, providers=("openai",)), upstream)


READ_STREAM = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
text, error = "", None
try:
    for event in client.chat.completions.create(
        model=MODEL, messages=[{{"role": "user", "content": "the key?"}}], stream=True
    ):
        for choice in event.choices:
            text += choice.delta.content or ""
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(text=text, error=error)
"""

ASK = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    answer = client.chat.completions.create(model=MODEL, messages=[{{"role": "user", "content": CONTENT}}])
    report(text=answer.choices[0].message.content, error=None)
except Exception as e:
    report(text=None, error=[type(e).__module__.split(".")[0], type(e).__name__, getattr(e, "status_code", None)])
"""


def raw_stream(gw, model: str) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "the key?"}], "stream": True}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/chat/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    assert answer.status == 200
    return answer.body


def test_a_byte_order_mark_before_the_first_event_is_read_past(gw):
    """The SDK reads the first event as the standard has it read (without the mark, which does not
    go on), its key redacted; a raw client gets no byte of the key either."""
    result = gw.run("MODEL = 'gpt-bom'\n" + READ_STREAM)
    assert result == {"text": FIRST.replace(AWS, "[REDACTED:secrets.aws_access_key_id]") + REST, "error": None}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
    assert (record["status"], record["error"]) == (200, None)
    body = raw_stream(gw, "gpt-bom")
    assert AWS.encode() not in body and not body.startswith(BOM)


def test_an_event_that_repeats_a_key_stops_the_stream_unread(gw):
    """The SDK keeps the last of a repeated key's values, another client the first (the key): the
    answer stops before that event, the SDK raising on the format's end."""
    result = gw.run("MODEL = 'gpt-repeated'\n" + READ_STREAM)
    module, name, message = result["error"]
    assert (module, name) == ("openai", "APIError") and "(unread)" in message
    assert result["text"] == "Before. "
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    body = raw_stream(gw, "gpt-repeated")
    assert AWS.encode() not in body and b"nothing" not in body


def test_a_json_answer_that_repeats_a_key_is_refused_403(gw):
    result = gw.run("MODEL = 'gpt-repeated-json'\nCONTENT = 'the key?'\n" + ASK)
    assert result == {"text": None, "error": ["openai", "PermissionDeniedError", 403]}
    record = gw.last_audit()
    assert (record["status"], record["refusal"], record["answer_findings"]) == (403, "content_denied", None)
    body = {"model": "gpt-repeated-json", "messages": [{"role": "user", "content": "the key?"}]}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/chat/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    assert answer.status == 403 and AWS.encode() not in answer.body


@pytest.mark.parametrize("hidden", ["\u200b", "\u2060", "\u00ad"])
def test_a_key_with_a_format_character_in_it_is_found_in_a_request(gw, hidden):
    """`AKIA`, a zero-width space (or a word joiner, a soft hyphen) and the rest: the key, refused."""
    received = len(gw.fakes["openai"].received)
    content = f"my key is {AWS[:4]}{hidden}{AWS[4:]}, keep it"
    result = gw.run(f"MODEL = 'gpt-ask-deny'\nCONTENT = {content!r}\n" + ASK)
    assert result == {"text": None, "error": ["openai", "PermissionDeniedError", 403]}
    record = gw.last_audit()
    assert record["findings"] == {"secrets.aws_access_key_id": 1}
    assert (record["decision"], record["deny_reasons"]) == ("deny", ["content_denied"])
    assert len(gw.fakes["openai"].received) == received  # nothing went upstream


def test_a_card_with_zero_width_spaces_between_its_digits_goes_upstream_redacted(gw):
    card = "\u200b".join("4111111111111111")
    result = gw.run(f"MODEL = 'gpt-ask-redact'\nCONTENT = {'pay with ' + card + ' today'!r}\n" + ASK)
    assert result == {"text": "All is well.", "error": None}
    sent = gw.fakes["openai"].received[-1].json()
    assert sent["messages"][0]["content"] == "pay with [REDACTED:pii.payment_card] today"
    assert gw.last_audit()["findings"] == {"pii.payment_card": 1}
