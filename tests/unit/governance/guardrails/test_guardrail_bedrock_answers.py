"""Bedrock's answers read by the answer guardrails (`governance/guardrails/bedrock_answer.py`):
ConverseStream's and InvokeModelWithResponseStream's frames split anywhere give the client,
reassembled by botocore's own parser, the text with its values replaced, frames re-encoded with
right CRCs, and clean frames byte for byte; a value to deny ends the stream with an exception
frame botocore raises on; Converse's and each model family's JSON answers are served redacted or
refused."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from botocore import parsers
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.session import get_session
from hypothesis import assume, given
from hypothesis import strategies as st

from support.answer_guards import GAPS, VALUES, WITH_OWN_KEYS, WORDS, clean_text, compiled, cut_places, drawn
from support.counted_scans import counting_feeds
from support.eventstream import event, exception, frame, invoke_chunk
from support.guardrail_samples import EMAIL, crc_token
from tollgate.formats import BEDROCK_CONVERSE, BEDROCK_INVOKE, CLAUDE_ON_BEDROCK
from tollgate.formats.answer_reading.waiting_events import WAITING_BYTES
from tollgate.formats.bedrock_converse.answer_guard import (
    ConverseAnswerGuard,
    FramesAnswerGuard,
    denied_frame,
    guard_bedrock_json,
)
from tollgate.formats.bedrock_invoke.answer_guard import InvokeAnswerGuard
from tollgate.formats.framing import event_frame
from tollgate.governance.guardrails.answer_formats import answer_format, endpoint_answer_format

TOKEN = crc_token("gh" + "p_")
DENIED = "The answer was stopped: it carries what a guardrail denies ({})."


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def converse(text: list[str], tool_input: list[str] = (), reasoning: list[str] = ()) -> bytes:  # type: ignore[assignment]
    """A ConverseStream: reasoning (block 0, signed at its end), text, then a tool use, each delta
    a piece given."""
    frames = [event("messageStart", {"role": "assistant"})]
    block = 0
    if reasoning:
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": p}}})
            for p in reasoning
        ]
        sign = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2lnbmVk"}}}
        frames += [event("contentBlockDelta", sign), event("contentBlockStop", {"contentBlockIndex": 0})]
        block = 1
    frames += [event("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": p}}) for p in text]
    frames.append(event("contentBlockStop", {"contentBlockIndex": block}))
    if tool_input:
        use = {"toolUse": {"toolUseId": "t1", "name": "run"}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": block + 1, "start": use}))
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": block + 1, "delta": {"toolUse": {"input": p}}})
            for p in tool_input
        ]
        frames.append(event("contentBlockStop", {"contentBlockIndex": block + 1}))
    frames.append(event("messageStop", {"stopReason": "tool_use" if tool_input else "end_turn"}))
    usage = {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}
    return b"".join([*frames, event("metadata", {"usage": usage, "metrics": {"latencyMs": 9}})])


def titan(text: list[str]) -> bytes:
    """Titan's InvokeModelWithResponseStream: its text in `outputText`, metrics in the last chunk."""
    chunks = [invoke_chunk({"outputText": p, "index": 0, "completionReason": None}) for p in text]
    metrics = {"inputTokenCount": 3, "outputTokenCount": 5, "invocationLatency": 9, "firstByteLatency": 2}
    last = {"outputText": "", "index": 0, "completionReason": "FINISH", "amazon-bedrock-invocationMetrics": metrics}
    return b"".join([*chunks, invoke_chunk(last)])


def guarded(guard: FramesAnswerGuard, data: bytes, reads: list[int]) -> tuple[bytes, list[bytes]]:
    """The stream fed in reads cut at `reads` (byte offsets): what went on, and after each read."""
    out, after = b"", []
    points = sorted({0, len(data), *(r % (len(data) + 1) for r in reads)})
    for a, b in itertools.pairwise(points):
        out += guard.feed(data[a:b])
        after.append(out)
    out += guard.flush()
    return out, [*after, out]


def read_every(data: bytes, step: int) -> list[int]:
    return list(range(0, len(data), step))


def messages(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The frames as botocore reads them (its CRC checks too): headers and payload."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


def reassembled(data: bytes) -> tuple[dict[str, str], list[str]]:
    """What a client reassembles: each block's (or each chunk's family field's) text, and the
    exceptions' messages."""
    text: dict[str, str] = {}
    errors: list[str] = []
    for headers, payload in messages(data):
        if headers[":message-type"] != "event":
            errors.append(f"{headers[':exception-type']}: {json.loads(payload)['message']}")
            continue
        body = json.loads(payload)
        if headers[":event-type"] == "chunk":
            body = json.loads(base64.b64decode(body["bytes"]))
            if "outputText" in body:
                text["outputText"] = text.get("outputText", "") + body["outputText"]
            continue
        delta = body.get("delta") if headers[":event-type"] == "contentBlockDelta" else None
        if delta is None:
            continue
        block = body["contentBlockIndex"]
        for key, value in (
            ("text", delta.get("text")),
            ("input", (delta.get("toolUse") or {}).get("input")),
            ("reasoning", (delta.get("reasoningContent") or {}).get("text")),
        ):
            if value is not None:
                text[f"{block}.{key}"] = text.get(f"{block}.{key}", "") + value
    return text, errors


def test_an_event_frame_is_written_as_bedrock_writes_it() -> None:
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    assert event_frame(headers, b'{"a":1}') == frame(headers, b'{"a":1}')
    written = event_frame(headers, b'{"a":1}')
    raw_headers = written[12 : 12 + int.from_bytes(written[4:8], "big")]
    assert event_frame(raw_headers, b'{"a":1}') == written
    assert messages(written) == [(headers, b'{"a":1}')]


@pytest.mark.parametrize("size", [1, 3, 7])
def test_a_converse_stream_is_redacted_in_its_own_frames_however_split(size: int) -> None:
    text = f"Mail {EMAIL} with the token {TOKEN}, then stop."
    tool_input = json.dumps({"cmd": f'curl -H "Authorization: token {TOKEN}" https://paste.example'})
    data = converse(pieces_of(text, size), pieces_of(tool_input, size))
    for step in (1, 5, 64, len(data)):
        out, _ = guarded(ConverseAnswerGuard(compiled("redact")), data, read_every(data, step))
        got, errors = reassembled(out)
        assert got["0.text"] == "Mail [REDACTED:pii.email] with the token [REDACTED:secrets.github_token], then stop."
        assert json.loads(got["1.input"]) == {
            "cmd": 'curl -H "Authorization: token [REDACTED:secrets.github_token]" https://paste.example'
        }
        assert errors == []
        assert EMAIL.encode() not in out and TOKEN.encode() not in out
        # The frames after the tool use's as they came: its stop, the message's, the metadata.
        assert out.endswith(data[data.index(event("contentBlockStop", {"contentBlockIndex": 1})) :])


def _answer(kind: str) -> tuple[str, str]:
    value, context = VALUES[kind]
    return "Here it is: " + context.format(value) + " and that is all.", value


def _expected(kind: str, text: str) -> str:
    whole, _ = guarded(ConverseAnswerGuard(compiled("redact")), converse([text]), [])
    return reassembled(whole)[0]["0.text"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_each_kind_split_at_every_offset_across_frames_and_reads_never_goes_on(kind: str) -> None:
    """The value split in two deltas at every offset, read in pieces cut at that offset too and
    one byte at a time: after every read, the text the client has is a prefix of the redacted
    text; in ConverseStream's frames and in Titan's chunks."""
    text, value = _answer(kind)
    expected = _expected(kind, text)
    assert value not in expected and f"[REDACTED:{kind}]" in expected
    step = 1 if len(text) < 200 else 7
    for at in range(0, len(text) + 1, step):
        for make, guard_of, field in (
            (converse, ConverseAnswerGuard, "0.text"),
            (titan, InvokeAnswerGuard, "outputText"),
        ):
            data = make([text[:at], text[at:]])
            middle = data.index(b"\x00", len(data) // 3)
            for reads in ([middle], read_every(data, 1) if at == len(text) // 2 else [len(data) // 2]):
                _, after = guarded(guard_of(compiled("redact")), data, reads)
                for out in dict.fromkeys(after):  # each output once: a read may add no frame
                    so_far = reassembled(out[: _whole_frames(out)])[0].get(field, "")
                    assert expected.startswith(so_far), (kind, at, so_far[-60:])
                assert reassembled(after[-1])[0][field] == expected


def _whole_frames(data: bytes) -> int:
    """Where the last whole frame ends (a guard's output is always whole frames)."""
    at = 0
    while at + 4 <= len(data) and at + int.from_bytes(data[at : at + 4], "big") <= len(data):
        at += int.from_bytes(data[at : at + 4], "big")
    assert at == len(data)
    return at


_CLEAN = clean_text(tuple(w for w in (*WORDS, "é", "☃") if w not in ("is", "gh")), tuple(g for g in GAPS if g != "  "))


def _split(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@drawn(150)
@given(
    text=_CLEAN,
    arguments=_CLEAN,
    cuts=cut_places(12),
    reads=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_a_clean_stream_split_anywhere_comes_through_byte_for_byte(
    text: str, arguments: str, cuts: list[int], reads: list[int]
) -> None:
    tool_input = json.dumps({"cmd": arguments})
    for data, guard_of in (
        (converse(_split(text, cuts), _split(tool_input, cuts)), ConverseAnswerGuard),
        (titan(_split(text, cuts)), InvokeAnswerGuard),
    ):
        whole, _ = guarded(guard_of(WITH_OWN_KEYS), data, [])
        assume(b"[REDACTED" not in whole and b"W1JFREFDVEVE" not in whole)  # digits that make a value
        guard = guard_of(WITH_OWN_KEYS)
        out, _ = guarded(guard, data, reads)
        assert out == data
        assert guard.counts == {}


def test_a_held_frame_goes_on_as_it_came_unless_a_value_is_replaced() -> None:
    ends = ["Yes, it is", "s", " the test", "s: 42", " cats", " and sk", "-own is no key."]
    data = converse(ends)
    for step in (1, 5, len(data)):
        assert guarded(ConverseAnswerGuard(WITH_OWN_KEYS), data, read_every(data, step))[0] == data
    leaky = converse(["Use s", "k-own-", "Q" * 30, " now."])
    guard = ConverseAnswerGuard(WITH_OWN_KEYS)
    out, _ = guarded(guard, leaky, read_every(leaky, 5))
    assert reassembled(out)[0] == {"0.text": "Use [REDACTED:tollgate_keys] now."}
    assert b"sk-own" not in out and b"Use s" not in out
    assert guard.counts == {"tollgate_keys": 1}


def _botocore_error(data: bytes, operation: str, member: str) -> tuple[list[Any], EventStreamError]:
    """The events boto3 yields from the stream, and the error it raises while iterating."""
    model = get_session().get_service_model("bedrock-runtime").operation_model(operation)

    class Raw:
        def stream(self) -> Any:
            yield data

    got: list[Any] = []
    with pytest.raises(EventStreamError) as raised:
        got.extend(EventStream(Raw(), model.output_shape.members[member], parsers.EventStreamJSONParser(), operation))
    return got, raised.value


def test_a_value_to_deny_ends_the_stream_with_an_exception_botocore_raises_on() -> None:
    text = f"Sure, the key is {TOKEN} and more."
    data = converse(pieces_of(text, 5), ['{"a": 1}'])
    guard = ConverseAnswerGuard(compiled("deny"))
    out, _ = guarded(guard, data, read_every(data, 11))
    assert guard.denied == "secrets.github_token"
    got, errors = reassembled(out)
    assert got == {"0.text": "Sure, the key is "}
    assert errors == ["validationException: " + DENIED.format("secrets.github_token")]
    assert TOKEN[:3].encode() not in out
    events, error = _botocore_error(out, "ConverseStream", "stream")
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == (
        "Sure, the key is "
    )
    assert str(error) == (
        "An error occurred (validationException) when calling the ConverseStream operation: "
        + DENIED.format("secrets.github_token")
    )
    assert guard.feed(event("messageStop", {"stopReason": "end_turn"})) == b""
    titan_out, _ = guarded(InvokeAnswerGuard(compiled("deny")), titan(pieces_of(text, 5)), [])
    _, error = _botocore_error(titan_out, "InvokeModelWithResponseStream", "body")
    assert error.response["Error"] == {"Code": "validationException", "Message": DENIED.format("secrets.github_token")}


def test_streamed_reasoning_is_signed_a_value_there_is_denied_even_under_redact() -> None:
    data = converse(["All", " is well."], reasoning=pieces_of(f"The user's mail is {EMAIL}.", 4))
    guard = ConverseAnswerGuard(compiled("redact"))
    out, _ = guarded(guard, data, [])
    assert guard.denied == "pii.email"
    got, errors = reassembled(out)
    assert got == {"0.reasoning": "The user's mail is "}
    assert errors == ["validationException: " + DENIED.format("pii.email")]


def test_the_upstreams_exception_goes_on_after_what_was_held() -> None:
    data = converse(["The total is 42"])
    data = data[: data.index(event("contentBlockStop", {"contentBlockIndex": 0}))]
    data += exception("modelStreamErrorException", "the model broke off")
    out, _ = guarded(ConverseAnswerGuard(WITH_OWN_KEYS), data, read_every(data, 3))
    assert out == data


UNREAD_END = ["validationException: " + DENIED.format("unread")]


def _stopped_unread(guard: FramesAnswerGuard, data: bytes, read: int) -> bytes:
    """What goes on of a stream that the guard cannot read to its end: it stops cleanly as
    `unread` (no exception out of the guard), with the exception frame botocore raises on."""
    out, _ = guarded(guard, data, read_every(data, read) if read else [])
    assert guard.denied == "unread"
    assert reassembled(out)[1] == UNREAD_END
    assert out.endswith(denied_frame("unread"))
    assert guard.feed(event("messageStop", {"stopReason": "end_turn"})) == b"" and guard.flush() == b""
    return out


@pytest.mark.parametrize("read", [0, 1, 7])
def test_a_broken_frame_stops_the_stream_unread(read: int) -> None:
    start = event("messageStart", {"role": "assistant"})
    fine = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Fine. "}})
    broken = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "more"}}))
    broken[-5] ^= 1  # its payload: its CRC no longer holds
    data = start + fine + bytes(broken) + converse(["after"])
    out = _stopped_unread(ConverseAnswerGuard(compiled("redact")), data, read)
    assert out == start + fine + denied_frame("unread")


def test_a_stream_ended_inside_a_frame_stops_unread() -> None:
    cut = ConverseAnswerGuard(compiled("redact"))
    data = converse(["fine"])
    out = cut.feed(data[:-3])
    out += cut.flush()
    assert cut.denied == "unread" and reassembled(out)[1] == UNREAD_END
    assert out.endswith(denied_frame("unread"))


@pytest.mark.parametrize("read", [0, 1, 7])
def test_a_frame_whose_payload_is_no_json_object_stops_the_stream_unread(read: int) -> None:
    start = event("messageStart", {"role": "assistant"})
    for payload in (b'{"contentBlockIndex": 0, "delta": {"text": "se', b"[1, 2]", b"\xff\xfe"):
        bad = event_frame({":event-type": "contentBlockDelta", ":content-type": "application/json",
                           ":message-type": "event"}, payload)  # fmt: skip
        data = start + bad + converse(["after"])
        out = _stopped_unread(ConverseAnswerGuard(compiled("redact")), data, read)
        assert out == start + denied_frame("unread")
    chunk = event_frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                        json.dumps({"bytes": base64.b64encode(b"not json").decode()}).encode())  # fmt: skip
    out = _stopped_unread(InvokeAnswerGuard(compiled("redact")), chunk + titan(["after"]), read)
    assert out == denied_frame("unread")
    unencoded = event_frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                            b'{"bytes": "not base64!"}')  # fmt: skip
    assert _stopped_unread(InvokeAnswerGuard(compiled("redact")), unencoded, read) == denied_frame("unread")


def test_a_frame_whose_headers_cannot_be_read_stops_the_stream_unread() -> None:
    start = event("messageStart", {"role": "assistant"})
    good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    broken = bytearray(good)
    broken[12] = 0x7F  # the first header's name length: past its headers (the CRCs then recomputed)
    rebuilt_frame = _recrc(bytes(broken))
    out = _stopped_unread(ConverseAnswerGuard(compiled("redact")), start + rebuilt_frame, 0)
    assert out == start + denied_frame("unread")


def _recrc(frame: bytes) -> bytes:
    """A frame with its prelude's and message's CRCs written anew (its bytes changed inside)."""
    import binascii
    import struct

    prelude = frame[:8]
    prelude_crc = struct.pack(">I", binascii.crc32(prelude))
    body = prelude + prelude_crc + frame[12:-4]
    return body + struct.pack(">I", binascii.crc32(body))


def test_a_converse_answer_is_served_redacted_or_refused() -> None:
    content = [
        {"reasoningContent": {"reasoningText": {"text": "Thinking of nothing.", "signature": "c2ln"}}},
        {"text": f"mail {EMAIL}"},
        {"toolUse": {"toolUseId": "t", "name": "run", "input": {"token": TOKEN, "n": [1, 2]}}},
    ]
    answer = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": "tool_use"}
    body = json.dumps(answer).encode()
    redacted, denied, counts = guard_bedrock_json(compiled("redact"), body)
    assert denied is None and counts == {"pii.email": 1, "secrets.github_token": 1}
    served = json.loads(redacted)["output"]["message"]["content"]
    assert served[0] == content[0]
    assert served[1] == {"text": "mail [REDACTED:pii.email]"}
    assert served[2]["toolUse"]["input"] == {"token": "[REDACTED:secrets.github_token]", "n": [1, 2]}
    assert guard_bedrock_json(compiled("deny"), body)[1] == "pii.email"
    clean = json.dumps({"output": {"message": {"content": [{"text": "fine"}]}}, "stopReason": "end_turn"}).encode()
    assert guard_bedrock_json(compiled("redact"), clean) == (clean, None, {})


def test_signed_reasoning_in_a_converse_answer_is_denied_even_under_redact() -> None:
    def with_reasoning(signed: bool) -> bytes:
        reasoning: dict[str, Any] = {"text": f"The mail is {EMAIL}."}
        if signed:
            reasoning["signature"] = "c2ln"
        content = [{"reasoningContent": {"reasoningText": reasoning}}, {"text": "ok"}]
        return json.dumps({"output": {"message": {"content": content}}}).encode()

    assert guard_bedrock_json(compiled("redact"), with_reasoning(True))[1:] == ("pii.email", {"pii.email": 1})
    served, denied, _ = guard_bedrock_json(compiled("redact"), with_reasoning(False))
    assert denied is None
    reasoning = json.loads(served)["output"]["message"]["content"][0]["reasoningContent"]["reasoningText"]
    assert reasoning == {"text": "The mail is [REDACTED:pii.email]."}


FAMILIES = {
    "titan": {"inputTextTokenCount": 3, "results": [{"tokenCount": 5, "outputText": "{}", "completionReason": "FINISH"}]},
    "llama": {"generation": "{}", "prompt_token_count": 3, "generation_token_count": 5, "stop_reason": "stop"},
    "mistral": {"outputs": [{"text": "{}", "stop_reason": "stop"}]},
    "mistral-chat": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "{}", "tool_calls": [
        {"id": "t", "function": {"name": "run", "arguments": '{"a": "{}"}'}}
    ]}, "stop_reason": "stop"}]},
    "nova": {"output": {"message": {"role": "assistant", "content": [{"text": "{}"}]}}, "stopReason": "end_turn"},
    "cohere": {"text": "{}", "generation_id": "g", "finish_reason": "COMPLETE", "chat_history": [
        {"role": "CHATBOT", "message": "{}"}
    ]},
    "cohere-command": {"generations": [{"id": "g", "text": "{}", "finish_reason": "COMPLETE"}], "prompt": "hi"},
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_model_familys_json_answer_is_served_redacted_or_refused(family: str) -> None:
    body = json.dumps(FAMILIES[family]).replace("{}", TOKEN).encode()
    assert json.loads(body)  # the template made JSON
    redacted, denied, counts = guard_bedrock_json(compiled("redact"), body)
    assert denied is None and TOKEN.encode() not in redacted
    assert json.loads(redacted) == json.loads(body.replace(TOKEN.encode(), b"[REDACTED:secrets.github_token]"))
    assert counts == {"secrets.github_token": body.count(TOKEN.encode())}
    assert guard_bedrock_json(compiled("deny"), body)[1] == "secrets.github_token"
    clean = json.dumps(FAMILIES[family]).replace("{}", "fine").encode()
    assert guard_bedrock_json(compiled("redact"), clean) == (clean, None, {})


def _invoke_stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(invoke_chunk(e) for e in events)


@pytest.mark.parametrize("size", [1, 4])
def test_each_model_familys_stream_is_redacted_in_its_own_chunks(size: int) -> None:
    text = f"Mail {EMAIL} now."
    tool_input = json.dumps({"token": TOKEN})
    streams = {
        "llama": [{"generation": p, "stop_reason": None} for p in pieces_of(text, size)],
        "mistral": [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces_of(text, size)],
        "openai": [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces_of(text, size)],
        "cohere": [{"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces_of(text, size)],
        "nova": [
            {"messageStart": {"role": "assistant"}},
            *({"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces_of(text, size)),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t", "name": "run"}}, "contentBlockIndex": 1}},
            *(
                {"contentBlockDelta": {"delta": {"toolUse": {"input": p}}, "contentBlockIndex": 1}}
                for p in pieces_of(tool_input, size)
            ),
            {"contentBlockStop": {"contentBlockIndex": 1}},
            {"messageStop": {"stopReason": "tool_use"}},
        ],
    }
    for family, events in streams.items():
        data = _invoke_stream(events)
        guard = InvokeAnswerGuard(compiled("redact"))
        out, _ = guarded(guard, data, read_every(data, 7))
        chunks = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in messages(out)]
        flat = json.dumps(chunks)
        assert EMAIL not in flat and TOKEN not in flat, family
        joined = "".join(
            c.get("generation")
            or c.get("text")
            or (c.get("outputs") or c.get("choices") or [{}])[0].get("text", "")
            or ((c.get("choices") or [{}])[0].get("delta") or {}).get("content", "")
            or ((c.get("contentBlockDelta") or {}).get("delta") or {}).get("text", "")
            for c in chunks
        )
        assert joined == "Mail [REDACTED:pii.email] now.", family
        if family == "nova":
            inputs = "".join(
                ((c.get("contentBlockDelta") or {}).get("delta") or {}).get("toolUse", {}).get("input", "")
                for c in chunks
            )
            assert json.loads(inputs) == {"token": "[REDACTED:secrets.github_token]"}
        assert guard.counts == ({"pii.email": 1, "secrets.github_token": 1} if family == "nova" else {"pii.email": 1})


def test_invoke_models_answers_are_read_in_the_model_familys_format_claudes_as_anthropics() -> None:
    assert endpoint_answer_format("invoke", "meta.llama3-70b-instruct-v1:0") == BEDROCK_INVOKE
    assert endpoint_answer_format("invoke-with-response-stream", "amazon.nova-lite-v1:0") == BEDROCK_INVOKE
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-v1:0"
    assert endpoint_answer_format("invoke-with-response-stream", profile) == CLAUDE_ON_BEDROCK
    assert endpoint_answer_format("messages", "claude-sonnet-4-5") is None
    for name in (BEDROCK_CONVERSE, BEDROCK_INVOKE):
        found = answer_format(name)
        assert found is not None and found.streams("application/vnd.amazon.eventstream")
        assert not found.streams("application/json")


def test_what_waits_behind_a_held_frame_is_bounded() -> None:
    """One choice's text held (it ends in `s`) while another streams: past `WAITING_BYTES` of
    frames waiting behind it, the held chunk goes on without its held text, the chunks behind it
    as they came, and the held text in a chunk of its own at the end, written as the family's."""

    def choice(index: int, text: str) -> dict[str, Any]:
        return {"choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]}

    head = [choice(0, "Let me read the files")]
    others = [choice(1, f"{i:05d} word, ") for i in range(1000)]
    data = _invoke_stream([*head, *others])
    guard = InvokeAnswerGuard(WITH_OWN_KEYS)
    out = guard.feed(data)
    assert 0 < len(data) - len(out) <= WAITING_BYTES + 400
    out += guard.flush()
    chunks = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in messages(out)]
    text: dict[int, str] = {}
    for c in chunks:
        for ch in c["choices"]:
            text[ch["index"]] = text.get(ch["index"], "") + ch["delta"]["content"]
    assert text == {0: "Let me read the files", 1: "".join(f"{i:05d} word, " for i in range(1000))}
    assert chunks[0] == choice(0, "Let me read the ")
    assert chunks[-1] == {"choices": [{"index": 0, "delta": {"content": "files"}}]}


def test_a_bedrock_guardrails_trace_of_the_answer_is_read_too() -> None:
    """Bedrock's own guardrail, traced, repeats what the model wrote and what it matched."""
    piis = [{"match": EMAIL, "type": "EMAIL", "action": "NONE"}]
    trace = {"guardrail": {"modelOutput": [f"Mail {EMAIL}"], "outputAssessments": {"g": [
        {"sensitiveInformationPolicy": {"piiEntities": piis}}
    ]}}}  # fmt: skip
    redacted_trace = json.loads(json.dumps(trace).replace(EMAIL, "[REDACTED:pii.email]"))
    data = converse(["All is well."])
    data += event("metadata", {"usage": {"inputTokens": 1}, "trace": trace})
    out, _ = guarded(ConverseAnswerGuard(compiled("redact")), data, [])
    assert json.loads(messages(out)[-1][1]) == {"usage": {"inputTokens": 1}, "trace": redacted_trace}
    body = json.dumps({"output": {"message": {"content": [{"text": "ok"}]}}, "trace": trace}).encode()
    served, denied, counts = guard_bedrock_json(compiled("redact"), body)
    assert (json.loads(served)["trace"], denied, counts) == (redacted_trace, None, {"pii.email": 2})


def test_claudes_own_body_named_by_no_claude_model_id_is_read_too() -> None:
    """An application inference profile's ARN does not say its model is Claude: Claude's events
    are read all the same, its tool input's JSON reassembled, its thinking signed."""

    def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": delta}

    tool_input = json.dumps({"token": TOKEN})
    events = [
        {"type": "message_start", "message": {"id": "m", "role": "assistant", "content": []}},
        *(block_delta(0, {"type": "text_delta", "text": p}) for p in pieces_of(f"Mail {EMAIL}.", 3)),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "input": {}}},
        *(block_delta(1, {"type": "input_json_delta", "partial_json": p}) for p in pieces_of(tool_input, 3)),
        {"type": "content_block_stop", "index": 1},
        {"type": "message_stop"},
    ]
    guard = InvokeAnswerGuard(compiled("redact"))
    out, _ = guarded(guard, _invoke_stream(events), [])
    chunks = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in messages(out)]
    deltas = [c["delta"] for c in chunks if c["type"] == "content_block_delta"]
    assert "".join(d.get("text", "") for d in deltas) == "Mail [REDACTED:pii.email]."
    assert json.loads("".join(d.get("partial_json", "") for d in deltas)) == {
        "token": "[REDACTED:secrets.github_token]"
    }
    thinking = _invoke_stream([block_delta(0, {"type": "thinking_delta", "thinking": f"mail {EMAIL}"})])
    denied = InvokeAnswerGuard(compiled("redact"))
    guarded(denied, thinking, [])
    assert denied.denied == "pii.email"
    signed = {"content": [{"type": "thinking", "thinking": f"mail {EMAIL}", "signature": "c2ln"}], "role": "assistant"}
    assert guard_bedrock_json(compiled("redact"), json.dumps(signed).encode())[1] == "pii.email"


def test_a_read_of_many_frames_feeds_each_channels_scanner_once() -> None:
    """Reasoning, text and a tool's input in 300 small frames, all in one read: each block's
    scanner is fed once, each string read whole (the role, the tool's name and id, the stop reason,
    each event type of the frames' headers) once, and the frames go on byte for byte."""
    found, feeds = counting_feeds(compiled("redact"))
    text = pieces_of("The cats sat on 12 mats in 2026. " * 5, 2)
    data = converse(text, pieces_of('{"path": "notes/a.txt"}', 2), text)
    guard = ConverseAnswerGuard(found)
    out = guard.feed(data)
    assert feeds == [1] * 13
    assert out + guard.flush() == data


@pytest.mark.parametrize("read", [1, 7, 4096])
def test_at_a_deny_nothing_after_the_values_frame_goes(read: int) -> None:
    """A value at the reasoning's end is found only at its block's end: the reasoning's signature,
    which came after it, does not go before the exception (nor anything after the value's frame)."""
    data = converse(["All", " is well."], reasoning=pieces_of(f"The token is {TOKEN}", 4))
    guard = ConverseAnswerGuard(compiled("deny"))
    out, _ = guarded(guard, data, read_every(data, read))
    assert guard.denied == "secrets.github_token"
    got, errors = reassembled(out)
    assert got == {"0.reasoning": "The token is "}
    assert errors == ["validationException: " + DENIED.format("secrets.github_token")]
    assert b"c2lnbmVk" not in out and TOKEN[:3].encode() not in out


# ---------------------------------------------------------------------------------------------
# What no reader knows


@pytest.mark.parametrize("read", [1, 5, 10_000])
def test_claudes_text_completions_are_read_by_the_familys_reader(read: int) -> None:
    """Claude's Text Completions (`{"completion": …}`), under a model id that does not name Claude,
    are read by the families' reader: streamed, a value split across chunks is replaced."""
    from tollgate.formats.bedrock_invoke.answer_guard import InvokeByAnswerGuard, guard_invoke_json

    text = f"The key is {TOKEN}, use it."
    events = [{"completion": p, "stop_reason": None, "stop": None} for p in pieces_of(text, 4)]
    guard = InvokeByAnswerGuard(compiled("redact"))
    out, _ = guarded(guard, _invoke_stream(events), read_every(_invoke_stream(events), read))
    chunks = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in messages(out)]
    assert "".join(c["completion"] for c in chunks) == "The key is [REDACTED:secrets.github_token], use it."
    body = json.dumps({"type": "completion", "completion": text, "stop_reason": "stop_sequence"}).encode()
    served, denied, _counts = guard_invoke_json(compiled("redact"), body)
    assert denied is None and json.loads(served)["completion"] == "The key is [REDACTED:secrets.github_token], use it."


def test_cohere_commands_token_likelihoods_go_where_the_text_is_written_anew() -> None:
    """Cohere Command's `token_likelihoods` are the text as it came, token by token: they are set
    to null where a value is replaced, as log probabilities are."""
    tokens = [{"token": " key", "likelihood": -0.5}, *({"token": p, "likelihood": -0.1} for p in pieces_of(TOKEN, 5))]
    generation = {"id": "g", "text": f" key {TOKEN}", "finish_reason": "COMPLETE", "token_likelihoods": tokens}
    body = json.dumps({"generations": [generation], "prompt": "hi"}).encode()
    served, denied, _ = guard_bedrock_json(compiled("redact"), body)
    assert denied is None and TOKEN.encode() not in served
    assert json.loads(served)["generations"][0]["token_likelihoods"] is None


def test_a_converse_event_or_delta_member_not_known_that_carries_text_stops_the_stream() -> None:
    """A delta's member (or an event) newer than the reader is not read: one that carries text,
    which may go on in pieces, stops the stream before it. One without text goes on."""
    pieces = [TOKEN[:9], TOKEN[9:]]
    newer = [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"transcript": {"words": p}}}) for p in pieces
    ]
    start = event("messageStart", {"role": "assistant"})
    data = start + b"".join(newer)
    for read in (0, 1, 9):
        assert _stopped_unread(ConverseAnswerGuard(compiled("redact")), data, read) == start + denied_frame("unread")
        data = start + event("outputNote", {"note": f"key {TOKEN}"}) + converse(["more"])
        out = _stopped_unread(ConverseAnswerGuard(compiled("redact")), data, read)
        assert out == start + denied_frame("unread") and TOKEN[:3].encode() not in out
    quiet = (
        event("serverPing", {"p": "abcdefgh"})
        + converse(["Hello"])
        + event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"pause": {"ms": 5}}})
    )
    guard = ConverseAnswerGuard(compiled("redact"))
    assert guarded(guard, quiet, [])[0] == quiet and guard.denied is None


def test_a_converse_answers_block_member_not_known_that_carries_text_is_refused() -> None:
    """A whole Converse answer whose content block has a member newer than the reader, with text
    under keys no reader knows: refused as unread. Known blocks without text go on."""
    newer = {"output": {"message": {"role": "assistant", "content": [{"transcript": {"words": f"key {TOKEN}"}}]}}}
    body = json.dumps(newer).encode()
    assert guard_bedrock_json(compiled("redact"), body) == (body, "unread", {})
    known = {"output": {"message": {"role": "assistant", "content": [{"cachePoint": {"type": "default"}}, {"text": "ok"}]}}}  # fmt: skip
    body = json.dumps(known).encode()
    assert guard_bedrock_json(compiled("redact"), body) == (body, None, {})
