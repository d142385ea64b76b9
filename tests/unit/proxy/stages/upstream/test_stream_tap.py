"""The stream tap: mitmproxy's streaming notice dropped, and the stream callable that reads usage
as the answer passes."""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial

from mitmproxy import http
from mitmproxy.test import tflow

from tollgate.calls.call import Call, Route
from tollgate.formats.answer_end import EndHold
from tollgate.formats.answer_reading.scanning import READ_APART_BYTES
from tollgate.formats.framing import Decompressor
from tollgate.formats.openai_chat.answer_guard import ChatAnswerGuard
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.proxy.flows import CALL
from tollgate.proxy.patches import http_stream as patch_flows
from tollgate.proxy.stages.upstream.stream_tap import (
    MITMPROXY_CONNECTION_LOGGER,
    CountedTap,
    GuardedAnswer,
    StreamTap,
    UsageTap,
    record_usage,
)
from tollgate.proxy.state import Shared

# ---- mitmproxy's per-response streaming notice


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.levels.append(record.levelno)


def test_stream_tap_drops_only_mitmproxys_streaming_notice_and_makes_connection_lines_debug_while_loaded():
    logger = logging.getLogger(MITMPROXY_CONNECTION_LOGGER)
    lines, level = _Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    tap, other = StreamTap(Shared()), StreamTap(Shared())
    try:
        tap.load(None)
        other.load(None)  # a second Tollgate in the same process neither wraps nor unwraps twice
        other.done()
        client = {"extra": {"client": ("127.0.0.1", 5000)}}
        logger.log(logging.INFO, "Streaming response from api.openai.com.", **client)
        logger.log(logging.INFO, "server connect %s", "api.openai.com:443", **client)
        logger.log(logging.INFO, "client connect", **client)
        logger.log(logging.INFO, "Streaming request to api.openai.com.")  # a large upload: worth saying
        logger.log(logging.DEBUG, ["Streaming response from", "not a string"])
        logger.log(logging.INFO, "client disconnect", **client)
        assert lines.lines == [
            "server connect api.openai.com:443",
            "client connect",
            "Streaming request to api.openai.com.",
            "['Streaming response from', 'not a string']",
            "client disconnect",
        ]
        # The connection's lines are debug lines: `mitmdump -v` shows them, the default verbosity not.
        assert lines.levels == [logging.DEBUG, logging.DEBUG, logging.INFO, logging.DEBUG, logging.DEBUG]
        tap.done()
        logger.log(logging.INFO, "Streaming response from api.openai.com.")
        assert lines.lines[-1] == "Streaming response from api.openai.com."
        assert "log" not in vars(logger)
    finally:
        tap.done()
        logger.removeHandler(lines)
        logger.setLevel(level)


# ---- the stream callable


class CountingReader(UsageReader):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def result(self) -> Usage:
        return Usage(output_tokens=len(self.chunks))


def test_usage_tap_records_once_at_the_end_and_lets_go_of_the_reader_and_the_call():
    recorded: list[int | None] = []
    reader = CountingReader()
    tap = UsageTap(reader, None, lambda r: recorded.append(r.result().output_tokens))
    assert tap(b"a") == b"a" and tap(b"b") == b"b"
    assert tap(b"") == b""
    assert recorded == [2] and reader.chunks == [b"a", b"b"]
    # The flow outlives the call until the garbage collector frees it: the tap keeps nothing of the call.
    assert tap.reader is None and tap._on_end is None
    tap.end()  # a later error hook: nothing is recorded twice
    assert recorded == [2]


def _call_flow():
    flow = tflow.tflow()
    flow.metadata[CALL] = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    return flow


def test_a_stream_broken_off_records_what_was_read_when_it_ends_by_error():
    flow = _call_flow()
    call = flow.metadata[CALL]
    flow.response = tflow.tresp()
    reader = CountingReader()
    flow.response.stream = tap = UsageTap(reader, None, partial(record_usage, call, None, None))
    tap(b"data: {}\n\n")
    StreamTap(Shared()).error(flow)
    assert call.answer.usage.output_tokens == 1 and tap.reader is None


# ---- a counted call's answer: its end waits for its settlement


class WritingStore:
    """A store whose settlement is written when the test says (`Store.flushed`)."""

    def __init__(self, at_once: bool = False) -> None:
        self.at_once = at_once
        self.written: asyncio.Future[None] | None = None

    def flushed(self) -> asyncio.Future[None] | None:
        if self.at_once:
            return None
        self.written = asyncio.get_running_loop().create_future()
        return self.written


def _counted_flow(store: WritingStore | None, length: int | None) -> tuple[http.HTTPFlow, CountedTap]:
    flow = _call_flow()
    call = flow.metadata[CALL]
    call.ledger.settled_in = store
    flow.response = tflow.tresp()
    tap = CountedTap(CountingReader(), None, lambda r: None, hold=EndHold(length, False), counted=call.ledger)
    flow.response.stream = tap
    return flow, tap


def test_a_counted_answers_last_byte_goes_once_its_settlement_is_written():
    async def scenario() -> None:
        store = WritingStore()
        flow, tap = _counted_flow(store, 5)
        assert tap(b"abc") == b"abc" and tap(b"de") == b"d" and tap(b"") == []
        pending = StreamTap(Shared()).response(flow)
        assert pending is not None
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0)
        assert flow not in patch_flows._tails and not task.done()
        assert store.written is not None
        store.written.set_result(None)
        await task
        assert patch_flows._tails.pop(flow) == b"e"
        assert StreamTap(Shared()).response(flow) is None  # once

    asyncio.run(scenario())


def test_a_settlement_counted_at_once_sends_the_end_at_once():
    flow, tap = _counted_flow(WritingStore(at_once=True), 3)
    assert tap(b"abc") == b"ab" and tap(b"") == []
    assert StreamTap(Shared()).response(flow) is None
    assert patch_flows._tails.pop(flow) == b"c"


def test_an_answer_no_limit_counts_is_passed_whole_and_waits_for_nothing():
    flow = _call_flow()
    flow.response = tflow.tresp()
    flow.response.stream = tap = UsageTap(CountingReader(), None, lambda r: None)
    assert tap(b"abc") == b"abc" and tap(b"") == b""
    assert StreamTap(Shared()).response(flow) is None and flow not in patch_flows._tails


# ---- a large piece of a guarded answer, read in a worker thread


class _ThreadNoting:
    """An answer guard that passes its pieces on, noting the thread each was read in."""

    denied = None

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.counts: dict[str, int] = {}

    def feed(self, chunk: bytes) -> bytes:
        self.threads.append(threading.get_ident())
        return chunk.upper()

    def flush(self) -> bytes:
        return b""


def test_a_large_piece_of_a_guarded_answer_is_read_in_a_worker_thread_before_it_goes_on():
    flow = _call_flow()
    call = flow.metadata[CALL]
    flow.response = tflow.tresp()
    guard = _ThreadNoting()
    guarded = GuardedAnswer(guard, lambda kind: b"", call, None)
    flow.response.stream = tap = UsageTap(CountingReader(), None, lambda r: None, guarded, call)
    small, large = b"a" * 100, b"b" * READ_APART_BYTES
    assert not tap.reads_apart(large)  # no worker given it: read on the event loop
    stage = StreamTap(Shared())
    tap.off_loop = stage.workers.off_loop
    assert not tap.reads_apart(small)
    assert tap(small) == b"A" * 100 and guard.threads == [threading.get_ident()]
    assert tap.reads_apart(large)
    asyncio.run(asyncio.wait_for(_read_apart(tap), 10))
    assert len(guard.threads) == 2 and guard.threads[1] != threading.get_ident()
    # mitmproxy's call with the piece then gives what was read of it, not read again.
    assert tap(large) == b"B" * READ_APART_BYTES and len(guard.threads) == 2
    stage.done()


async def _read_apart(tap: UsageTap) -> None:
    assert tap.off_loop is not None
    reading = tap.off_loop(tap.read_apart)  # as `patches.read_large_pieces_apart` has it, on the event loop
    assert reading is not None
    await reading


def _chat_events(texts: list[str]) -> bytes:
    head = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    return b"".join(head + b'"delta":{"content":"' + t.encode() + b'"},"finish_reason":null}]}\n\n' for t in texts)


def test_a_large_read_of_small_events_its_template_passes_is_read_on_the_event_loop():
    """What goes to a worker thread is a large event, not a large read: a read of many small chat
    events of the stream's template is passed at once (a few passes in C, less than the hop); one
    that holds a large event, or is compressed, is read apart."""
    flow = _call_flow()
    call = flow.metadata[CALL]
    flow.response = tflow.tresp()
    guard = ChatAnswerGuard(compiled_for(dict.fromkeys(detectors.KINDS, "redact")))
    guarded = GuardedAnswer(guard, lambda kind: b"", call, None)
    flow.response.stream = tap = UsageTap(CountingReader(), None, lambda r: None, guarded, call)
    stage = StreamTap(Shared())
    tap.off_loop = stage.workers.off_loop
    first = _chat_events(["Hello ", "there "])
    assert tap(first) == first  # its template learned from these
    # Each word ends in a comma: a number and a space may still become an SSN (`123 45 6789`), held.
    small = _chat_events([f"word {i}, " for i in range(READ_APART_BYTES // 100)])
    assert len(small) >= READ_APART_BYTES and not tap.reads_apart(small)
    assert tap(small) == small
    call_event = small[: small.index(b"\n\n") + 2].replace(
        b'"delta":{"content":"word 0, "}', b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}'
    )
    mixed = small + call_event + small
    assert b"tool_calls" in mixed and not guarded.reads_at_once(mixed)  # an event of another shape: read one by one
    large = _chat_events(["x" * READ_APART_BYTES, "end "])
    assert tap.reads_apart(large)
    asyncio.run(asyncio.wait_for(_read_apart(tap), 10))
    assert tap(large) == large
    compressed = UsageTap(CountingReader(), Decompressor("gzip"), lambda r: None, guarded, call)
    compressed.off_loop = stage.workers.off_loop
    assert compressed.reads_apart(small)
    stage.done()
