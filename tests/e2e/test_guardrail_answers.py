"""Guardrails on answers, with the official openai SDK through mitmdump: an OpenAI chat answer that
streams an AWS key split across events and a card number split across a tool call's argument
deltas comes to the SDK with each value replaced (`redact`), or stops before the value with an
error the SDK raises on while iterating, the upstream's connection closed (`deny`); a JSON answer
is served redacted or refused 403; a clean stream comes through byte for byte; the audit counts
what was found (`answer_findings`)."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.answer_gateways import (
    answer_fixtures,
    answer_rules,
    chat_completion,
    counted_fixture,
    cut_at_the_key,
    refused_for_the_key,
)
from tests.support.answers import ARGS, AWS, CARD, FILLERS, KINDS, TEXT, AnswerUpstream, pieces
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.h2 import H2Reply, H2Upstream
from tests.support.raw import send
from tests.support.streams import sse

VIRTUAL = "tg-answers-alice-0001"


def config(urls: dict[str, str], limits: list[dict] | None = None) -> dict:
    return {
        "limits": limits or [],
        "providers": {
            "openai": {"upstream": urls["openai"], "keys": ["sk-real-answers-0001"]},
            "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-answers-0001"]},
        },
        # An OpenAI chat call to Claude goes in Anthropic's format; its answer comes back in OpenAI's.
        "overrides": [{"match": {"provider": "openai", "model": "claude-*"}, "provider": "anthropic", "api": "native"}],
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "guardrails": [
            *answer_rules("gpt-deny*"),
            {
                "match": {"model": "gpt-huge-deny"},
                "on": ["answer"],
                "detect": KINDS,
                "action": "redact",
                "unread": "deny",
            },
            # Past four answer rules, a set of some of them is compiled before its call goes upstream.
            {"match": {"model": "gpt-set-a*"}, "on": ["answer"], "detect": ["pii.email"], "action": "redact"},
            {"match": {"model": "*-set-ab"}, "on": ["answer"], "detect": ["pii.email"], "action": "redact"},
        ],
    }


def chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    event = {"id": "chatcmpl-g", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**event, "choices": [choice]})


def guarded_stream() -> list[bytes]:
    """The text in 5-character events (the key across four), then a tool call whose arguments
    come in 4-character deltas (the card across five)."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces(TEXT, 5)]
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "pay", "arguments": ""}}
    events.append(chunk({"tool_calls": [call]}))
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces(ARGS, 4)]
    return [*events, chunk({}, "tool_calls"), sse("[DONE]")]


def clean_stream() -> list[bytes]:
    """No event ends in what may begin a value: not even in the first letter of one of Tollgate's
    own keys (`s`, `t`), which would be held until the next event says it is none."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in ("Nothing ", "to hide ", "here, ", "all is well ", "and fine.")]
    return [*events, chunk({}, "stop"), sse("[DONE]")]


def held_clean_stream() -> list[bytes]:
    """A clean answer whose events end where a value may begin: in `s` and `t` (the first letters
    of Tollgate's own keys), in digits (a card, a phone number), inside words (an address), and a
    tool call's arguments cut alike. Each is held until the next says it is no value, then goes on
    as it came."""
    events = [chunk({"role": "assistant", "content": ""})]
    text = ("It is", " the first test", "s of 2026: 4", "2 cats, sk", "-real is", " no key, tg", "-x neither", ".")
    events += [chunk({"content": p}) for p in text]
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "note", "arguments": ""}}
    events.append(chunk({"tool_calls": [call]}))
    args = ('{"note": "its', " test", "s 1", '2 sk", "n": 4', "2}")
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in args]
    return [*events, chunk({}, "tool_calls"), sse("[DONE]")]


LARGE = "the quick brown fox jumps over the lazy dog. " * 2500  # 112 KB a piece: read in a worker thread


def large_stream(key: str) -> list[bytes]:
    """Two events of 112 KB of text each, `key` split across them: each read in pieces (TCP reads)
    large enough to be read in a worker thread (`READ_APART_BYTES`)."""
    half = len(key) // 2
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": LARGE + key[:half]}), chunk({"content": key[half:] + " " + LARGE})]
    return [*events, chunk({}, "stop"), sse("[DONE]")]


def denied_stream() -> tuple[list[bytes], int]:
    """The text up to and with the key, then fillers the upstream sends slowly: and where the key's
    first event is."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces(TEXT, 5)]
    first = 1 + TEXT.index(AWS) // 5
    events += [chunk({"content": " more"}) for _ in range(FILLERS)]
    return [*events, chunk({}, "stop"), sse("[DONE]")], first


# An event no JSON reader takes (a raw control character inside its string): what it carries is
# not read, and a raw client would see it.
UNREAD_TEXT = "the vault says hunter2"
UNREADABLE_EVENT = (
    b'data: {"id":"chatcmpl-g","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"content":"\x01 ' + UNREAD_TEXT.encode() + b'"},"finish_reason":null}]}\n\n'
)


def unreadable_stream() -> list[bytes]:
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Nothing to hide "})]
    return [*events, UNREADABLE_EVENT, chunk({"content": " after"}), chunk({}, "stop"), sse("[DONE]")]


def lone_surrogate_stream() -> list[bytes]:
    """A delta whose text holds `\\ud800` with no low surrogate after it: no text, it cannot be read."""
    lone = chunk({"content": "LONE-SURROGATE"}).replace(b"LONE-SURROGATE", b"\\ud800 " + UNREAD_TEXT.encode())
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Nothing to hide "})]
    return [*events, lone, chunk({"content": " after"}), chunk({}, "stop"), sse("[DONE]")]


def json_answer(content: str, arguments: str) -> dict:
    call = {"id": "call_1", "type": "function", "function": {"name": "pay", "arguments": arguments}}
    message = {"role": "assistant", "content": content, "tool_calls": [call]}
    return chat_completion("chatcmpl-j", message, "tool_calls")


def anthropic_answer(stream: bool) -> Reply:
    """Claude's answer, the key in its text (in 5-character deltas when streamed)."""
    usage = {"input_tokens": 30, "output_tokens": 9}
    message = {"id": "msg_g", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}
    if not stream:
        content = [{"type": "text", "text": TEXT}]
        return Reply(200, {**message, "content": content, "stop_reason": "end_turn", "usage": usage})
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    block = {"type": "text", "text": ""}
    events = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start"),
    ]
    events += [
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            "content_block_delta",
        )
        for p in pieces(TEXT, 5)
    ]
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return Reply(200, chunks=events)


class Upstream(AnswerUpstream):
    """The fake OpenAI's answers, by model."""

    def __call__(self, received: Received) -> Reply:
        if received.path.endswith("/v1/messages"):
            return anthropic_answer(received.json().get("stream"))
        if not received.path.endswith("/chat/completions"):
            return provider_answers(received)
        body = received.json()
        model, stream = body["model"], body.get("stream")
        if model == "gpt-clean":
            return Reply(200, chunks=clean_stream(), gate=self.gate)
        if model == "gpt-clean-held":
            return Reply(200, chunks=held_clean_stream())
        if model in ("gpt-large", "gpt-deny-large"):
            return Reply(200, chunks=large_stream(AWS))
        if model == "gpt-large-clean":
            return Reply(200, chunks=large_stream("no key here"))
        if model == "gpt-deny-stream":
            return self.denied_stream(*denied_stream())
        if model == "gpt-unreadable":
            return Reply(200, chunks=unreadable_stream())
        if model == "gpt-lone-surrogate-stream":
            return Reply(200, chunks=lone_surrogate_stream())
        if model == "gpt-content-list":  # a whole answer whose text is a list: not read as it is
            answer = json_answer(TEXT, ARGS)
            answer["choices"][0]["message"]["content"] = [{"type": "text", "text": TEXT}]
            return Reply(200, answer)
        if model == "gpt-lone-surrogate":  # a whole answer whose reading fails (`\\ud800` is no text)
            text = json.dumps(json_answer(TEXT, ARGS)).encode().replace(b"Here", b"\\ud800Here", 1)
            return Reply(200, chunks=[text], headers={"content-type": "application/json"})
        if stream:
            return Reply(200, chunks=guarded_stream())
        if model.startswith("gpt-huge"):  # past 16 MiB, chunked: no length to tell it at its headers
            body = json.dumps(json_answer(TEXT + " " + "z" * (17 << 20), ARGS)).encode()
            pieces_of = [body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)]
            return Reply(200, chunks=pieces_of, headers={"content-type": "application/json"})
        return Reply(200, json_answer(TEXT, ARGS))


upstream, gw = answer_fixtures(Upstream, config, ("openai", "anthropic"))
# The same, every call counted by a limit: its answer's end waits for its settlement.
counted = counted_fixture(config, ("openai", "anthropic"))


READ_STREAM = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
text, args, error = "", "", None
try:
    for event in client.chat.completions.create(
        model=MODEL, messages=[{{"role": "user", "content": "pay"}}], stream=True
    ):
        for choice in event.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                args += (call.function.arguments or "") if call.function else ""
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(text=text, args=args, error=error)
"""


def test_a_streamed_answer_comes_redacted_in_its_text_and_tool_arguments(gw):
    result = gw.run("MODEL = 'gpt-4o'\n" + READ_STREAM)
    assert result["error"] is None
    assert result["text"] == TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert result["args"] == ARGS.replace(CARD, "[REDACTED:pii.payment_card]")
    assert json.loads(result["args"]) == {"card": "[REDACTED:pii.payment_card]", "note": "pay it"}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["error"], record["refusal"]) == (200, None, None)


def test_a_set_of_answer_rules_not_compiled_at_load_reads_the_answer_all_the_same(gw):
    # Five answer rules: the set of the first and the last two, which this model matches, is not
    # compiled at load; it is compiled in a worker thread before the call goes upstream.
    result = gw.run("MODEL = 'gpt-set-ab'\n" + READ_STREAM)
    assert result["error"] is None
    assert result["text"] == TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert result["args"] == ARGS.replace(CARD, "[REDACTED:pii.payment_card]")
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}


def test_a_denied_stream_raises_in_the_sdk_and_the_upstream_is_closed(gw, upstream):
    started = time.monotonic()
    result = gw.run("MODEL = 'gpt-deny-stream'\n" + READ_STREAM)
    module, name, message = result["error"]
    assert (module, name) == ("openai", "APIError")
    assert "secrets.aws_access_key_id" in message
    cut_at_the_key(gw, result["text"])
    upstream.stopped_soon(started, 4 + 5)


READ_RAW = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
with client.chat.completions.with_streaming_response.create(
    model=MODEL, messages=[{{"role": "user", "content": "count"}}], stream=True
) as r:
    raw = b"".join(r.iter_bytes())
report(raw=raw.decode())
"""


@pytest.mark.parametrize(
    ("model", "stream"),
    [("gpt-clean", clean_stream), ("gpt-clean-held", held_clean_stream)],
    ids=["clean", "events-ending-where-a-value-may-begin"],
)
def test_a_clean_stream_comes_byte_for_byte(gw, model, stream):
    result = gw.run(f"MODEL = {model!r}\n" + READ_RAW)
    assert result["raw"].encode() == b"".join(stream())
    assert gw.last_audit()["answer_findings"] == {}


def test_large_events_are_read_apart_redacted_denied_and_clean_byte_for_byte(gw):
    result = gw.run("MODEL = 'gpt-large'\n" + READ_STREAM)
    assert result["error"] is None
    whole = LARGE + AWS + " " + LARGE
    assert result["text"] == whole.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}
    denied = gw.run("MODEL = 'gpt-deny-large'\n" + READ_STREAM)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert denied["text"] == LARGE
    clean = gw.run("MODEL = 'gpt-large-clean'\n" + READ_RAW)
    assert clean["raw"].encode() == b"".join(large_stream("no key here"))


READ_JSON = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    r = client.chat.completions.create(model=MODEL, messages=[{{"role": "user", "content": "pay"}}])
    message = r.choices[0].message
    report(text=message.content, args=message.tool_calls[0].function.arguments, tokens=r.usage.total_tokens)
except Exception as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=getattr(e, "status_code", None),
           body=getattr(e, "body", None), tollgate=e.response.headers.get("x-tollgate-error"))
"""


def test_a_json_answer_is_served_redacted(gw):
    result = gw.run("MODEL = 'gpt-4o'\n" + READ_JSON)
    assert result == {
        "text": TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]"),
        "args": ARGS.replace(CARD, "[REDACTED:pii.payment_card]"),
        "tokens": 12,
    }
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["decision"], record["error"]) == (200, "allow", None)
    assert record["total_tokens"] == 12


def test_a_json_answer_with_a_denied_value_is_refused_403(gw):
    result = gw.run("MODEL = 'gpt-deny-json'\n" + READ_JSON)
    assert result["error"] == ["openai", "PermissionDeniedError"]
    assert (result["status"], result["tollgate"]) == (403, "content_denied")
    refused_for_the_key(gw, result)


def test_a_translated_answer_is_read_as_the_client_gets_it(gw):
    streamed = gw.run("MODEL = 'claude-sonnet-4-5'\n" + READ_STREAM)
    assert streamed["error"] is None
    assert streamed["text"] == TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}
    whole = gw.run(
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
        r = client.chat.completions.create(model="claude-sonnet-4-5", messages=[{{"role": "user", "content": "key"}}])
        report(text=r.choices[0].message.content)
        """
    )
    assert whole == {"text": TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")}
    record = gw.last_audit()
    assert (record["provider"], record["answer_findings"]) == ("anthropic", {"secrets.aws_access_key_id": 1})


def test_a_json_answer_past_16_mib_goes_on_unread(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
        r = client.chat.completions.create(model="gpt-huge", messages=[{{"role": "user", "content": "all"}}])
        report(size=len(r.choices[0].message.content), head=r.choices[0].message.content[:80])
        """
    )
    assert result == {"size": len(TEXT) + 1 + (17 << 20), "head": (TEXT + " " + "z" * 80)[:80]}
    record = gw.last_audit()
    assert (record["status"], record["answer_findings"]) == (200, None)


def test_a_clean_streams_events_are_not_held_back(gw, upstream, tmp_path):
    """The upstream sends each chunk only once the client has the one before: a guarded chat
    stream whose text holds no candidate passes each chunk on as it comes."""
    result, waited = upstream.paced_run(
        gw,
        tmp_path / "events",
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
        text = ""
        for event in client.chat.completions.create(
            model="gpt-clean", messages=[{{"role": "user", "content": "count"}}], stream=True
        ):
            text += event.choices[0].delta.content or "" if event.choices else ""
            counted()
        report(text=text)
        """,
    )
    assert result == {"text": "Nothing to hide here, all is well and fine."}
    assert waited == [True] * (len(clean_stream()) - 1)


def test_a_json_answer_past_16_mib_under_unread_deny_is_refused(gw):
    result = gw.run("MODEL = 'gpt-huge-deny'\n" + READ_JSON)
    assert result["error"] == ["openai", "PermissionDeniedError"]
    assert (result["status"], result["tollgate"]) == (403, "content_denied")
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")
    assert record["answer_findings"] is None


def test_a_counted_call_is_redacted_and_denied_as_any(counted):
    redacted = counted.run("MODEL = 'gpt-4o'\n" + READ_STREAM)
    assert redacted["error"] is None
    assert redacted["args"] == ARGS.replace(CARD, "[REDACTED:pii.payment_card]")
    denied = counted.run("MODEL = 'gpt-deny-stream'\n" + READ_STREAM)
    assert denied["error"][:2] == ["openai", "APIError"]
    cut_at_the_key(counted, denied["text"])


def test_over_http2_a_denied_stream_raises_and_its_upstream_stream_is_reset(start_gateway, upstream_ca):
    """The SDK speaks HTTP/2 to Tollgate, Tollgate to an HTTP/2-only upstream: the denied answer's
    upstream stream is reset (generation stops) and the SDK raises."""
    chunks, _ = denied_stream()
    upstream = H2Upstream(
        upstream_ca, lambda r: H2Reply(200, {"content-type": "text/event-stream"}, chunks, interval=0.02)
    )
    try:
        gw = start_gateway(
            {
                "providers": {"openai": {"upstream": upstream.url, "keys": ["sk-real-answers-0001"]}},
                "clients": [{"name": "alice", "keys": [VIRTUAL]}],
                "guardrails": [{"on": ["answer"], "detect": KINDS, "action": "deny"}],
            },
            providers=(),
        )
        script = READ_STREAM.replace(
            "max_retries=0)", "max_retries=0, http_client=__import__('openai').DefaultHttpxClient(http2=True))"
        )
        result = gw.run("MODEL = 'gpt-4o'\n" + script)
        assert result["error"][:2] == ["openai", "APIError"]
        cut_at_the_key(gw, result["text"])
        deadline = time.monotonic() + 5
        while not upstream.resets and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(upstream.resets) == 1
    finally:
        upstream.close()


def test_an_event_that_cannot_be_read_never_reaches_a_raw_client(gw):
    """A raw client reads what an SDK would refuse to: the answer stops before the event it
    cannot read, with the format's denied end, and the record says it was cut."""
    body = {"model": "gpt-unreadable", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/chat/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    assert answer.status == 200
    assert UNREAD_TEXT.encode() not in answer.body and b"after" not in answer.body and b"[DONE]" not in answer.body
    events = [json.loads(line[6:]) for line in answer.body.split(b"\n\n") if line.startswith(b"data: ")]
    assert "".join(c["delta"].get("content") or "" for e in events[:-1] for c in e["choices"]) == "Nothing to hide "
    assert events[-1] == {"error": {
        "message": "The answer was stopped: it carries what a guardrail denies (unread).",
        "type": "permission_error", "code": "content_denied"}}  # fmt: skip
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


def test_a_lone_surrogate_in_a_delta_stops_the_stream_unread_in_the_sdk(gw):
    """A delta whose text holds a surrogate not paired is no text: the stream stops before it as
    unread (the SDK raises its APIError while iterating), with no failure logged."""
    failed = "reading an answer for its guardrails failed"
    logged = gw.proxy.console().count(failed)
    result = gw.run("MODEL = 'gpt-lone-surrogate-stream'\n" + READ_STREAM)
    module, name, message = result["error"]
    assert (module, name) == ("openai", "APIError") and "(unread)" in message
    assert result["text"] == "Nothing to hide "
    record = gw.last_audit()
    assert record["model"] == "gpt-lone-surrogate-stream"
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    assert record["answer_findings"] == {}
    assert gw.proxy.console().count(failed) == logged


def test_a_json_answer_whose_text_is_not_where_it_is_read_is_refused_403(gw):
    """A raw client would read a message's text that is a list (not read as it is): refused."""
    body = {"model": "gpt-content-list", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/chat/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    assert answer.status == 403
    assert AWS[:4].encode() not in answer.body
    assert json.loads(answer.body)["error"]["code"] == "content_denied"
    records: list = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        time.sleep(0.05)
        records = [r for r in gw.audit() if r.get("model") == "gpt-content-list"]
    assert (records[-1]["status"], records[-1]["refusal"]) == (403, "content_denied")


def test_a_json_answer_whose_reading_fails_is_refused_403(gw):
    """A reader that fails (here on a lone surrogate, which is no text) refuses the answer: were it
    let go, the failure would send it on unread."""
    body = {"model": "gpt-lone-surrogate", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    records = len(gw.audit())
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/chat/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    assert answer.status == 403
    assert AWS[:4].encode() not in answer.body and CARD[:6].encode() not in answer.body
    assert json.loads(answer.body)["error"]["code"] == "content_denied"
    record = gw.wait_audit(records + 1)[-1]
    assert (record["model"], record["status"], record["refusal"]) == ("gpt-lone-surrogate", 403, "content_denied")
    assert record["answer_findings"] is None
