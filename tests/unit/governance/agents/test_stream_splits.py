"""Every server-sent-events stream decider (chat completions, Responses, Messages) gives the same
events and decisions whatever pieces its answer comes in: split at every point, its lines ending
in LF, CRLF (a CRLF split between its CR and its LF too) or CR alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.governance.agents import test_chat_stream as chat
from tests.unit.governance.agents import test_messages_calls as messages_calls
from tests.unit.governance.agents import test_messages_stream as messages
from tests.unit.governance.agents import test_responses_calls as responses_calls
from tests.unit.governance.agents.test_responses_calls import OWN, PLANTED
from tests.unit.governance.agents.test_responses_stream import sse, stream

from tollgate.formats.framing import bounds
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.held_events import UNFRAMED
from tollgate.governance.agents.messages_stream import HeldMessagesCalls
from tollgate.governance.agents.responses_stream import HeldResponsesCalls

Decider = tuple[Callable[[AgentsCall], Rewrite], Callable[[], AgentsCall], bytes]

# Each with a refused call and a kept one, so that a split that loses or merges an event shows.
DECIDERS: dict[str, Decider] = {
    "chat": (HeldChatCalls, chat.state, b"".join(chat.STREAM)),
    "responses": (
        HeldResponsesCalls,
        responses_calls.state,
        b"".join(sse(e) for e in stream(responses_calls.call("a", PLANTED), responses_calls.call("b", OWN))),
    ),
    "messages": (HeldMessagesCalls, messages_calls.state, b"".join(messages.STREAM)),
}
LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def events(out: bytes) -> list[tuple[str | None, Any]]:
    """The events as a client reads them: each one's name and data (parsed where it is JSON)."""
    read = []
    for block in out.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            key, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if key == b"event":
                name = value.decode()
            elif key == b"data":
                data.append(value)
        if data:
            joined = b"\n".join(data)
            read.append((name, None if joined == b"[DONE]" else json.loads(joined)))
    return read


def fed(decider: Decider, pieces: list[bytes]) -> tuple[list[tuple[str | None, Any]], list[dict[str, Any]]]:
    held_of, state_of, _ = decider
    state = state_of()
    held = held_of(state)
    out = b"".join(held.feed(p) for p in pieces) + held.flush()
    return events(out), state.tool_calls()


def whole(name: str, end: str) -> bytes:
    return DECIDERS[name][2].replace(b"\n", LINE_ENDS[end])


@pytest.mark.parametrize("end", LINE_ENDS)
@pytest.mark.parametrize("name", DECIDERS)
def test_an_answer_split_at_any_point_gives_what_it_gives_whole(name: str, end: str) -> None:
    decider = DECIDERS[name]
    expected = fed(decider, [DECIDERS[name][2]])
    assert [d["decision"] for d in expected[1]] == ["deny", "allow"]
    data = whole(name, end)
    assert fed(decider, [data]) == expected
    for at in range(1, len(data)):
        assert fed(decider, [data[:at], data[at:]]) == expected, at


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(sorted(DECIDERS)),
    st.sampled_from(sorted(LINE_ENDS)),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
)
def test_an_answer_in_any_pieces_gives_what_it_gives_whole(name: str, end: str, cuts: list[int]) -> None:
    data = whole(name, end)
    at = sorted({c % len(data) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True) if b > a]
    assert fed(DECIDERS[name], pieces) == fed(DECIDERS[name], [DECIDERS[name][2]])


@pytest.mark.parametrize("name", DECIDERS)
def test_a_crlf_split_between_its_cr_and_its_lf_at_every_blank_line(name: str) -> None:
    data = whole(name, "crlf")
    expected = fed(DECIDERS[name], [DECIDERS[name][2]])
    at = data.find(b"\r\n\r\n")
    while at >= 0:
        for cut in (at + 1, at + 3):  # after the CR of either line end
            assert fed(DECIDERS[name], [data[:cut], data[cut:]]) == expected, cut
        at = data.find(b"\r\n\r\n", at + 1)


@pytest.mark.parametrize("name", DECIDERS)
def test_an_event_too_large_to_frame_ends_the_stream_with_an_error_nothing_held_going_on(name: str) -> None:
    held_of, state_of, data = DECIDERS[name]
    state = state_of()
    held = held_of(state)
    first_call = data.index(b"send_money")
    begun = data[: data.index(b"\n\n", first_call) + 2]  # up to the first call's first event
    out = held.feed(begun)
    huge = b"data: " + b"x" * (bounds.MAX_FRAME + 1)
    out += held.feed(huge) + held.feed(data[len(begun) :]) + held.flush()
    read = events(out)
    assert read[-1][1]["error"] == {"type": "api_error", "message": UNFRAMED}
    assert b"send_money" not in out and state.tool_calls() == []
