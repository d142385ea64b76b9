"""A model's stream inside InvokeModelWithResponseStream decided by that model's held stream: the
events it lets go as they came keep their frames byte for byte, a changed one is framed anew, an
exception frame follows what was held, and frames that cannot be read end the stream."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.eventstream import exception, frame, invoke_chunk
from tests.unit.governance.agents.test_chat_stream import CLEAN, OWN, REFUSED, TAINTED, piece, state

from support.guard_reads import fed_in_cuts
from tollgate.formats.framing import EventStreamFramer
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.invoke_chunks import InvokeChunks


def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return invoke_chunk({"id": "x", "object": "chat.completion.chunk", "choices": choices})


def stream(arguments: str) -> list[bytes]:
    return [
        chunk({"role": "assistant", "content": "Paying."}),
        chunk(piece(0, arguments[:10], "a", "send_money")),
        chunk(piece(0, arguments[10:])),
        chunk({}, "tool_calls"),
    ]


def events(data: bytes) -> list[Any]:
    framer = EventStreamFramer()
    out = []
    for f in framer.feed(data):
        payload = json.loads(f.payload)
        kind = f.headers.get(":event-type") or f.headers.get(":exception-type")
        out.append((kind, json.loads(base64.b64decode(payload["bytes"])) if "bytes" in payload else payload))
    assert framer.error is None and framer.held == 0
    return out


def test_a_clean_call_goes_frame_for_frame_once_decided() -> None:
    frames = stream(CLEAN)
    held = InvokeChunks(HeldChatCalls(state()))
    assert held.feed(frames[0]) == frames[0]
    assert held.feed(b"".join(frames[1:3])) == b""
    assert held.feed(frames[3]) == b"".join(frames[1:])
    assert held.flush() == b""


def test_a_refused_call_is_taken_out_and_its_text_framed_anew() -> None:
    s = state()
    held = InvokeChunks(HeldChatCalls(s))
    out = events(held.feed(b"".join(stream(TAINTED))) + held.flush())
    deltas = [e[1]["choices"][0] for e in out if e[1]["choices"]]
    assert deltas[0]["delta"] == {"role": "assistant", "content": "Paying."}
    assert deltas[1]["delta"] == {"content": "\n\n" + REFUSED}
    assert deltas[-1]["finish_reason"] == "stop"
    assert not any("tool_calls" in d["delta"] for d in deltas)
    assert [d["decision"] for d in s.tool_calls()] == ["deny"]


def test_an_exception_frame_follows_what_was_held() -> None:
    frames = stream(CLEAN)
    failed = exception("modelStreamErrorException", "the model failed")
    held = InvokeChunks(HeldChatCalls(state()))
    out = held.feed(b"".join(frames[:2]) + failed) + held.flush()
    assert [k for k, _ in events(out)] == ["chunk", "chunk", "modelStreamErrorException"]


def test_a_chunk_that_cannot_be_read_ends_the_stream() -> None:
    broken = frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, b'{"bytes": "!!"}'
    )
    held = InvokeChunks(HeldChatCalls(state()))
    out = held.feed(stream(CLEAN)[0] + broken + stream(CLEAN)[1]) + held.flush()
    assert [k for k, _ in events(out)] == ["chunk", "validationException"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), max_size=25), st.booleans())
def test_the_same_stream_at_any_split(cuts: list[int], tainted: bool) -> None:
    data = b"".join(stream(TAINTED if tainted else json.dumps({"recipient": OWN})))
    whole = InvokeChunks(HeldChatCalls(state()))
    expected = whole.feed(data) + whole.flush()
    assert fed_in_cuts(InvokeChunks(HeldChatCalls(state())), data, cuts) == expected
