"""The end of a counted call's answer, held back until the call is counted: exactly the bytes
that would make the answer whole to its client, wherever the network splits the answer."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from tollgate.formats.answer_end import EndHold


def passed_and_held(hold: EndHold, pieces: list[bytes]) -> tuple[bytes, bytes]:
    passed = b"".join(hold.feed(piece) for piece in pieces)
    return passed, hold.held


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


BODY = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": "Hi there."}}]}).encode()


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=8))
def test_a_body_of_declared_length_has_its_last_byte_held_however_it_is_split(cuts):
    passed, held = passed_and_held(EndHold(len(BODY), event_stream=False), split(BODY, cuts))
    assert (passed, held) == (BODY[:-1], BODY[-1:])


def test_a_body_without_a_declared_length_is_passed_whole():
    passed, held = passed_and_held(EndHold(None, event_stream=False), [BODY[:10], BODY[10:]])
    assert (passed, held) == (BODY, b"")


EVENTS = b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\ndata: {"choices": [], "usage": {}}\n\n'


@given(
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.sampled_from([b"data: [DONE]", b"data:[DONE]"]),
    st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_an_event_streams_done_line_has_its_line_ends_held_however_it_is_split(eol, done, cuts):
    events = EVENTS.replace(b"\n", eol)
    stream = events + done + eol + eol
    passed, held = passed_and_held(EndHold(None, event_stream=True), split(stream, cuts))
    assert (passed, held) == (events + done, eol + eol)


def test_a_done_line_alone_is_held_at_the_streams_start():
    passed, held = passed_and_held(EndHold(None, event_stream=True), [b"data: [DONE]\n", b"\n"])
    assert (passed, held) == (b"data: [DONE]", b"\n\n")


def test_done_within_an_event_is_no_end():
    # In a JSON string, and at the end of a line that is not a data line of its own.
    stream = b'data: {"text": "data: [DONE]"}\n\nevent: x\ndata: say data: [DONE]\n\n'
    passed, held = passed_and_held(EndHold(None, event_stream=True), [stream])
    assert (passed, held) == (stream, b"")


def test_a_stream_that_is_not_an_event_stream_is_not_read_for_done():
    stream = b"data: [DONE]\n\n"
    assert passed_and_held(EndHold(None, event_stream=False), [stream]) == (stream, b"")


def test_what_comes_after_held_bytes_is_held_too_and_the_end_kept():
    hold = EndHold(None, event_stream=True)
    assert hold.feed(b"data: [DONE]\n\n") == b"data: [DONE]"
    assert hold.feed(b": a comment\n\n") == b""
    hold.keep(b"tail")
    assert hold.held == b"\n\n: a comment\n\ntail"
