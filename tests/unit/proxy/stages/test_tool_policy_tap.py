"""A held stream's tap where the policy decides tool calls (chat's, and Gemini's, which holds
item by item): each piece is read at once (`reads_apart`); where it left calls for the policy, the
stream awaits its answers (`awaited`, on the event loop, as `patches.read_large_pieces_apart` has
it) and what the rewrite then lets go is sent with the piece. The client gets the same bytes at any
split, and nothing of a call before the policy has answered."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.governance.agents import test_gemini_calls as gemini
from tests.unit.governance.agents.test_tool_policy import STREAM, Policy, chunks, state
from tests.unit.governance.agents.test_tool_policy_streams import GEMINI, GEMINI_DECIDED, gemini_state, split

from tollgate.calls.call import LedgerState
from tollgate.formats.answer_end import EndHold
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader
from tollgate.governance.agents.call_state import AgentsCall
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.gemini_stream import HeldGeminiCalls
from tollgate.proxy.stages.upstream.stream_tap import CountedTap, UsageTap


class Reader(UsageReader):
    def feed(self, chunk: bytes) -> None:
        pass

    def result(self) -> Usage:
        return Usage()


def through(tap: UsageTap, pieces: list[bytes]) -> bytes:
    """As mitmproxy (patched) streams the pieces through the tap, on an event loop."""

    async def stream() -> bytes:
        out = b""
        for piece in [*pieces, b""]:
            if tap.reads_apart(piece):
                await tap.awaited()  # `_read_piece_apart`
            elif tap.asks is not None and piece:
                assert not tap.asks.asking
            got = tap(piece)
            sent = got if isinstance(got, bytes) else b"".join(got)
            if tap.asks is not None and tap.asks.asking:
                raise AssertionError("a piece went with calls still unasked")
            out += sent
        return out

    return asyncio.run(stream())


def tap_of(call: AgentsCall, counted: bool) -> UsageTap:
    held = HeldChatCalls(call)
    if counted:
        tap: UsageTap = CountedTap(
            Reader(), None, lambda r: None, held, hold=EndHold(None, True), counted=LedgerState()
        )
    else:
        tap = UsageTap(Reader(), None, lambda r: None, held)
    tap.asks = call
    return tap


def expected() -> list:
    call = state(Policy())
    held = HeldChatCalls(call)
    out = held.feed(STREAM)
    asyncio.run(_asked(call))
    return chunks(out + held.feed(b"") + held.flush())


async def _asked(call: AgentsCall) -> None:
    from tollgate.governance.agents.call_state import asked

    await asked(call)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=6), st.booleans())
def test_the_tap_awaits_the_policy_and_gives_the_same_answer_at_any_split(cuts: list[int], counted: bool) -> None:
    at = [0, *sorted(set(cuts)), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(at) if b > a]
    policy = Policy()
    out = through(tap_of(state(policy), counted), pieces)
    assert chunks(out) == expected()
    assert len(policy.asked) == 2


def test_the_refused_call_is_not_sent_and_the_allowed_one_is() -> None:
    out = chunks(through(tap_of(state(Policy()), False), [STREAM]))
    ids = [c.get("id") for ch in out if ch for choice in ch["choices"] for c in choice["delta"].get("tool_calls", ())]
    assert ids == ["b", None]


def gemini_tap(call: AgentsCall) -> UsageTap:
    tap = UsageTap(Reader(), None, lambda r: None, HeldGeminiCalls(call))
    tap.asks = call
    return tap


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=6))
def test_a_gemini_stream_through_the_tap_waits_for_the_policy_at_any_split(cuts: list[int]) -> None:
    """Gemini holds an item whose calls await the policy, and what follows: the tap awaits its
    answers and sends what the held stream then lets go, the same at any split."""
    whole = gemini.sse(GEMINI)
    policy = Policy()
    call = gemini_state(policy)
    out = through(gemini_tap(call), split(whole, cuts))
    assert gemini.sse_items(out) == GEMINI_DECIDED
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow", "allow"]


# The stream cut just after its finish, the finish's blank line lost: its calls whole all the same.
UNENDED = STREAM[: STREAM.index(b"data: [DONE]")].removesuffix(b"\n\n")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(UNENDED) - 1), max_size=4))
def test_a_stream_ending_without_its_blank_line_is_decided_by_the_policy_all_the_same(cuts: list[int]) -> None:
    """Its last event is framed at its end: the policy is asked about the calls it completes and
    its answers awaited before they are decided, rather than refused as a policy error."""
    at = [0, *sorted(set(cuts)), len(UNENDED)]
    pieces = [UNENDED[a:b] for a, b in itertools.pairwise(at) if b > a]
    policy = Policy()
    call = state(policy)
    out = chunks(through(tap_of(call, False), pieces))
    assert out == expected()[:-1]  # all but [DONE]
    assert len(policy.asked) == 2
    assert [(d["name"], d["decision"]) for d in call.tool_calls()] == [("send_money", "deny"), ("send_money", "allow")]
    assert all("policy error" not in d["reasons"] for d in call.tool_calls())
