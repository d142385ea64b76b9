"""`audit.stream_usage: inject`: a chat stream asked for usage its client did not ask for reaches
the client as the stream it would have had without the option: every chunk without its
`"usage":null`, no usage-only chunk. Plain functions; the filter fed as mitmproxy feeds a tap."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats.openai_chat.asked_usage import (
    asked_usage_hidden,
    without_asked_usage,
    without_asked_usage_all,
)

PROPERTY = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
USAGE = {"prompt_tokens": 19, "completion_tokens": 5, "total_tokens": 24, "prompt_tokens_details": {"cached_tokens": 3}}


def compact(data: Any) -> str:
    """As OpenAI writes JSON: no spaces."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def chunk(delta: dict, finish: str | None, asked: bool, obfuscation: str | None) -> dict:
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "service_tier": "default",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if asked:
        data["usage"] = None
    if obfuscation is not None:
        data["obfuscation"] = obfuscation
    return data


def stream(texts: list[str], asked: bool, obfuscation: str | None, eol: str) -> bytes:
    """A chat stream as OpenAI sends it, asked for usage (`include_usage`) or not."""
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None}, None, asked, obfuscation)]
    chunks += [chunk({"content": text}, None, asked, obfuscation) for text in texts]
    chunks.append(chunk({}, "stop", asked, obfuscation))
    events = [compact(c) for c in chunks]
    if asked:
        usage_only = {**chunks[0], "choices": [], "usage": USAGE}
        usage_only.pop("obfuscation", None)
        events.append(compact(usage_only if obfuscation is None else {**usage_only, "obfuscation": obfuscation}))
    events.append("[DONE]")
    return "".join(f"data: {event}{eol}{eol}" for event in events).encode()


def hidden(pieces: list[bytes]) -> bytes:
    f = asked_usage_hidden()
    return b"".join(f.feed(piece) for piece in pieces) + f.flush()


def events_of(data: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in data.split(b"\n\n") if event]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# Text that looks like what is taken out: inside a JSON string every quote is escaped.
TEXTS = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(['"usage":null', ',"usage":null}', '"usage":{"total_tokens":1}', "\n\n", "data: x", "}\n\n"]),
    ),
    max_size=12,
)


@PROPERTY
@given(
    texts=TEXTS,
    obfuscation=st.one_of(st.none(), st.text(alphabet="AbCdEf0123456789", max_size=16)),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.one_of(st.lists(st.integers(0, 2**31), max_size=40), st.integers(1, 9).map(lambda n: [-n])),
)
def test_the_client_gets_the_stream_it_did_not_ask_usage_for(
    texts: list[str], obfuscation: str | None, eol: str, cuts: list[int]
) -> None:
    asked = stream(texts, True, obfuscation, eol)
    pieces = [asked[i : i + -cuts[0]] for i in range(0, len(asked), -cuts[0])] if cuts and cuts[0] < 0 else []
    pieces = pieces or split(asked, cuts)
    assert hidden(pieces) == stream(texts, False, obfuscation, eol)


def test_a_stream_in_one_piece_and_one_chunk_a_piece() -> None:
    asked, plain = stream(["Hel", "lo"], True, None, "\n"), stream(["Hel", "lo"], False, None, "\n")
    assert hidden([asked]) == plain
    f = asked_usage_hidden()
    out = [f.feed(event) for event in events_of(asked)]
    assert out == [*events_of(plain)[:-1], b"", b"data: [DONE]\n\n"]  # the usage-only chunk: nothing


def test_each_null_usage_member_is_taken_out_where_it_stands() -> None:
    for asked, plain in [
        (b'data: {"a":1,"usage":null}\n\n', b'data: {"a":1}\n\n'),
        (b'data: {"a":1,"usage":null,"b":2}\n\n', b'data: {"a":1,"b":2}\n\n'),
        (b'data: {"usage":null,"a":1}\n\n', b'data: {"a":1}\n\n'),
        (b'data: {"usage":null}\n\n', b"data: {}\n\n"),
        (b'data: {"a": 1, "usage": null}\r\n\r\n', b'data: {"a": 1}\r\n\r\n'),
        (b'data: {"a": 1,  "usage" : null , "b": 2}\n\n', b'data: {"a": 1, "b": 2}\n\n'),
    ]:
        assert without_asked_usage(asked) == plain, asked
        assert hidden([asked]) == plain, asked


def test_what_is_no_null_usage_member_goes_as_it_came() -> None:
    for event in [
        b"data: [DONE]\n\n",
        b'data: {"a":"\\"usage\\":null"}\n\n',  # text, its quotes escaped
        b'data: {"x\\"usage":null}\n\n',  # a member named `x"usage`
        # Usage on the chunk that finishes the choice (some servers): its client sees it.
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":3}}\n\n',
        b": a comment\n\n",
    ]:
        assert without_asked_usage(event) == event, event
        assert hidden([event]) == event, event


def test_the_usage_only_chunk_is_dropped() -> None:
    usage_only = b'data: {"id":"c","choices":[],"usage":{"total_tokens":3}}\n\n'
    assert without_asked_usage(usage_only) == b""
    assert without_asked_usage(usage_only.replace(b"\n", b"\r\n")) == b""
    assert hidden([b'data: {"a":1,"usage":null}\n\n' + usage_only + b"data: [DONE]\n\n"]) == (
        b'data: {"a":1}\n\ndata: [DONE]\n\n'
    )


def test_many_chunks_at_once_are_taken_as_one_each() -> None:
    """`without_asked_usage_all` answers for many chunks only where each is OpenAI's own (its usage
    last, or before its obfuscation); else each is judged alone. Both give the same bytes."""
    for obfuscation in (None, "Ab3"):
        asked = events_of(stream(["a", "b", "c"], True, obfuscation, "\n"))
        plain = events_of(stream(["a", "b", "c"], False, obfuscation, "\n"))
        assert without_asked_usage_all(b"".join(asked[:5])) == b"".join(plain[:5])
        assert without_asked_usage_all(b"".join(asked)) is None  # its usage-only chunk and [DONE]
        assert hidden([b"".join(asked)]) == b"".join(plain)
    one = events_of(stream(["a"], True, None, "\n"))[1]
    assert without_asked_usage_all(one) == without_asked_usage(one)
    assert without_asked_usage_all(b'data: {"a":1}\n\n' + one) is None
