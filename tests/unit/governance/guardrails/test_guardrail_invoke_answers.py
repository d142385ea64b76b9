"""Bedrock's InvokeModel answers where the model id does not name the family (an application
inference profile's ARN): Claude's answer, told by its first event (`message_start`) or its
`type`, read by Claude's reader (its citations too, which the families' reader does not read);
any other by the families' reader, as before; however the stream is cut."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from support.eventstream import event, invoke_chunk
from support.guardrail_samples import EMAIL
from tollgate.formats.bedrock_converse.answer_guard import denied_frame
from tollgate.formats.bedrock_invoke.answer_guard import InvokeAnswerGuard, InvokeByAnswerGuard, guard_invoke_json
from tollgate.formats.framing import EventStreamFramer
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

REDACTED = compiled_for({"pii.email": "redact"})
MESSAGE = {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}


def claude_events() -> list[dict[str, Any]]:
    cited = {"type": "char_location", "cited_text": f"write to {EMAIL}", "document_index": 0}
    return [
        {"type": "message_start", "message": {**MESSAGE, "content": [], "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": cited}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "done."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]


def chunks(stream: bytes) -> list[Any]:
    """The events of a stream's chunks, decoded (an exception frame: its type)."""
    out = []
    for frame in EventStreamFramer().feed(stream):
        if frame.headers.get(":message-type") == "exception":
            out.append(frame.headers[":exception-type"])
        else:
            out.append(json.loads(base64.b64decode(json.loads(frame.payload)["bytes"])))
    return out


def read(stream: bytes, cuts: list[int]) -> tuple[bytes, InvokeByAnswerGuard]:
    guard = InvokeByAnswerGuard(REDACTED)
    bounds = [0, *cuts, len(stream)]
    out = b"".join(guard.feed(stream[a:b]) for a, b in itertools.pairwise(bounds) if a < b)
    return out + guard.flush(), guard


def test_the_registry_reads_invoke_models_answers_by_what_they_say() -> None:
    assert ANSWER_FORMATS["bedrock-invoke"].stream is InvokeByAnswerGuard


@pytest.mark.parametrize("cut", [0, 1, 11, 40, 100, 300])
def test_claudes_stream_is_read_by_claudes_reader_however_cut(cut: int) -> None:
    stream = b"".join(invoke_chunk(e) for e in claude_events())
    out, guard = read(stream, [cut])
    delta = chunks(out)[2]["delta"]
    assert delta["citation"]["cited_text"] == "write to [REDACTED:pii.email]"
    assert (guard.counts, guard.denied) == ({"pii.email": 1}, None)
    # Claude's reader, not the families': a delta of a type Claude's does not know stops the answer
    # there as unread (its text may come in pieces), where the families' reads its strings whole.
    odd = {"type": "content_block_delta", "index": 0, "delta": {"type": "odd_delta", "odd": "plain"}}
    unknown = b"".join(invoke_chunk(e) for e in [*claude_events()[:2], odd])
    assert read(unknown, [cut])[1].denied == "unread"
    other = InvokeAnswerGuard(REDACTED)
    other.feed(unknown)
    assert other.denied is None


def test_another_familys_stream_is_read_as_the_families_reader_reads_it() -> None:
    stream = b"".join(invoke_chunk({"generation": p, "stop_reason": None}) for p in ("mail ", EMAIL, " now"))
    out, guard = read(stream, [5, 50])
    other = InvokeAnswerGuard(REDACTED)
    assert out == other.feed(stream) + other.flush()
    assert "".join(c["generation"] for c in chunks(out)) == "mail [REDACTED:pii.email] now"
    assert guard.counts == {"pii.email": 1}


def test_a_stream_that_begins_with_an_exception_is_read_by_the_families_reader() -> None:
    stream = event("chunk", {"bytes": "not base64!"})[:30]
    guard = InvokeByAnswerGuard(REDACTED)
    assert guard.feed(stream) == b""  # no whole frame yet: nothing goes on
    assert guard.flush() == denied_frame("unread")  # a stream cut inside a frame cannot be read
    assert guard.denied == "unread"


def test_claudes_whole_answer_is_read_by_claudes_reader() -> None:
    cited = {"type": "char_location", "cited_text": f"write to {EMAIL}", "document_index": 0}
    body = {**MESSAGE, "content": [{"type": "text", "text": "done.", "citations": [cited]}], "stop_reason": "end_turn"}
    out, denied, counts = guard_invoke_json(REDACTED, json.dumps(body).encode())
    assert (denied, counts) == (None, {"pii.email": 1})
    assert json.loads(out)["content"][0]["citations"][0]["cited_text"] == "write to [REDACTED:pii.email]"
    llama = json.dumps({"generation": f"mail {EMAIL}", "stop_reason": "stop"}).encode()
    out, denied, counts = guard_invoke_json(REDACTED, llama)
    assert json.loads(out)["generation"] == "mail [REDACTED:pii.email]" and counts == {"pii.email": 1}
