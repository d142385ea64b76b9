"""Every upstream answer passes through unbuffered; usage is read from it on the way."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from mitmproxy import http

from tollgate.calls.call import Call, Failure, LedgerState
from tollgate.formats.answer_end import EndHold
from tollgate.formats.answer_reading.scanning import JSON_TYPE, READ_APART_BYTES, UNREAD
from tollgate.formats.bodies.json_codec import loads_once
from tollgate.formats.bodies.raw_headers import decoded, header_index, with_header
from tollgate.formats.framing import MAX_FRAME, Decompressor, Undecodable
from tollgate.formats.openai_chat.asked_usage import asked_usage_hidden
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.formats.translation import ANSWER_LIMIT, Rewrite
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import NoUsage, UsageReader, WholeBodyReader, is_event_stream
from tollgate.governance.agents.call_state import AgentsCall, asked
from tollgate.governance.guardrails.workers import ScanWorkers
from tollgate.proxy import patches
from tollgate.proxy.answer_readers import AnswerReading, answer_reading
from tollgate.proxy.flows import call_of, provider_of, refuse, write_body
from tollgate.proxy.guarded_answer import GuardedAnswer
from tollgate.proxy.state import Shared
from tollgate.proxy.tool_calls import decided_whole

logger = logging.getLogger(__name__)

MITMPROXY_CONNECTION_LOGGER = "mitmproxy.proxy.server"  # where a connection's log lines come from


class TierReader(WholeBodyReader):
    """The answer of a plan reader's `tier_endpoint` (Code Assist's loadCodeAssist), read whole at
    its end for the tier it names (`plan_in_answer`), kept for the token (`told`); a service
    call's, it reports no usage."""

    def __init__(
        self, told: Callable[[str | None], None], plan_in_answer: Callable[[bytes | None], str | None]
    ) -> None:
        def parse(body: bytes | None) -> Usage:
            told(plan_in_answer(body))
            return Usage()

        super().__init__(parse)


class UsageTap(patches.ReadsApart):
    """mitmproxy's stream callable: returns every chunk as it came while a reader reads it, or as a
    rewrite makes it (the usage Tollgate asked for hidden, or the answer translated).

    It never raises (an exception there drops the chunk) and never returns b"" mid-stream (on
    HTTP/1 chunked that ends the body): a reader that fails is dropped and its fault recorded."""

    def __init__(
        self,
        reader: UsageReader,
        decoder: Decompressor | None,
        on_end: Callable[[UsageReader], None],
        rewrite: Rewrite | None = None,
        call: Call | None = None,
    ) -> None:
        self.reader: UsageReader | None = reader
        # Told when the first chunk comes (`call.answer.first_chunk`), then let go; told the answer's
        # bytes at its end (`call.answer.bytes_received`), then let go.
        self._first: Call | None = call
        self._call: Call | None = call
        self.received = 0
        self._decoder = decoder
        self._on_end: Callable[[UsageReader], None] | None = on_end
        self._reading = True
        self._rewrite = rewrite

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        if self._read_out is not None and (read := self._read_before(chunk)) is not None:
            return read
        if not chunk:
            self.end()
            ending, self._ending = self._ending or b"", None
            return ending + self._rewrite.flush() if self._rewrite else ending or chunk
        self.received += len(chunk)
        if self._first is not None:
            self._first.answer.first_chunk = time.time()
            self._first = None
        data = chunk
        if self._reading and self.reader is not None:
            try:
                data = self._decoder.feed(chunk) if self._decoder else chunk
                self.reader.feed(data)
            except Undecodable as e:
                self._reading = False
                self.reader.error = self.reader.error or f"the answer's Content-Encoding: {e}; not read for usage"
            except Exception as e:
                self._reading = False
                self.reader.error = self.reader.error or f"usage reader failed: {type(e).__name__}: {e}"
        if self._rewrite is None:
            return chunk
        if isinstance(self._rewrite, GuardedAnswer):
            return self._guarded(self._rewrite, chunk, data)
        try:
            return self._rewrite.feed(data) or []  # decoded: a rewritten answer goes unencoded
        except Exception:  # never lose bytes: give up rewriting, forward what is held
            logger.exception("Tollgate: rewriting the answer failed")
            held, self._rewrite = self._rewrite.flush(), None
            return held + chunk

    # A held stream whose tool calls the policy decides (`call_state`): each piece read at once,
    # and where it left calls for the policy, the stream awaits its answers (`awaited`).
    asks: AgentsCall | None = None
    # At the stream's end, what the rewrite let go before its flush (`_read_end`); None: not read.
    _ending: bytes | None = None

    def reads_apart(self, chunk: bytes) -> bool:
        if super().reads_apart(chunk) or self.asks is None:
            return self._apart is not None
        if not chunk:
            return self._read_end()
        self._read_out = (chunk, UsageTap.__call__(self, chunk))
        return bool(self.asks.asking)

    def _read_end(self) -> bool:
        """The stream's end: where the rewrite reads it before deciding (`at_end`: its last event,
        without its blank line, framed), the calls it leaves for the policy are asked about
        (`awaited`) before the flush decides them, as after any piece, rather than refused unasked."""
        at_end = getattr(self._rewrite, "at_end", None)
        if at_end is None or self.asks is None:
            return False
        try:
            self._ending = at_end()
        except Exception:  # never lose bytes: the flush forwards what is held
            logger.exception("Tollgate: rewriting the answer failed")
            return False
        return bool(self.asks.asking)

    async def awaited(self) -> None:
        """After a piece read: the policy asked about the tool calls it left, then what the rewrite
        lets go (fed again) sent with the piece (at the end, before the flush)."""
        asks, read = self.asks, self._read_out
        if asks is None or not asks.asking or (read is None and self._ending is None) or self._rewrite is None:
            return
        await asked(asks)
        try:
            more = self._rewrite.feed(b"")
        except Exception:  # never lose bytes: give up rewriting, forward what is held
            logger.exception("Tollgate: rewriting the answer failed")
            more, self._rewrite = self._rewrite.flush(), None
        if read is None:
            self._ending = (self._ending or b"") + more
            return
        pieces = [read[1]] if isinstance(read[1], bytes) else list(read[1])
        self._read_out = (read[0], [p for p in [*pieces, more] if p])

    def _apart_wanted(self, chunk: bytes) -> bool:
        """A large piece of an answer the guardrails read, whose reading would hold the event loop
        (not one of small events its guard passes cheaply, as it came undecoded)."""
        guarded = self._rewrite
        if len(chunk) < READ_APART_BYTES or not isinstance(guarded, GuardedAnswer) or self.stopped:
            return False
        return self._decoder is not None or not guarded.reads_at_once(chunk)

    def _read_piece(self, chunk: bytes) -> bytes | list[bytes]:
        return UsageTap.__call__(self, chunk)  # nothing read apart is kept meanwhile

    def rewrite_with(self, rewrite: Rewrite | None) -> None:
        """What rewrites the answer from now on (None: it goes as it comes)."""
        self._rewrite = rewrite

    @property
    def stopped(self) -> bool:
        """Whether the answer has ended here (`patches.stop_streams_their_taps_end`)."""
        return isinstance(self._rewrite, GuardedAnswer) and self._rewrite.stopped

    def _guarded(self, guarded: GuardedAnswer, chunk: bytes, data: bytes) -> bytes | list[bytes]:
        """The answer as the guardrails let it go: read decoded, never passed on unread."""
        out = b""
        if self._decoder is not None and data is chunk:  # its reader stopped: decoded here, or unread
            try:
                data = self._decoder.feed(chunk)
            except Exception:
                data, out = b"", guarded.fail()
        if data:
            out = guarded.feed(data)
        if guarded.stopped:
            self.end()
        return out or []

    def end(self) -> None:
        """The stream ended, or broke off: what the reader read is recorded, once.

        mitmproxy's flows are freed by the garbage collector, some time after the call: the reader
        and the call record are let go here, to be freed at once rather than wait with the flow."""
        reader, on_end = self.reader, self._on_end
        if isinstance(self._rewrite, GuardedAnswer):  # broken off, too: what was found so far
            self._rewrite.note()
        if self._call is not None:
            self._call.answer.bytes_received = self.received
        self.reader = self._decoder = self._on_end = self._first = self._call = None
        if reader is None or on_end is None:
            return
        try:
            on_end(reader)
        except Exception:
            logger.exception("Tollgate: recording stream usage failed")


class CountedTap(UsageTap):
    """The tap of a call that a limit counts: the bytes that would make the answer whole to its
    client (`EndHold`) are held back until the call's settlement is written, then sent
    (`StreamTap.response`). Every other byte goes on as it came."""

    def __init__(self, *args: Any, hold: EndHold, counted: LedgerState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hold: EndHold | None = hold
        self.counted: LedgerState | None = counted  # the call's ledger state, until its end is sent

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        out = super().__call__(chunk)
        hold = self._hold
        if hold is None:
            return out
        if not chunk:  # the end: what a rewrite still had is held with the rest
            for piece in [out] if isinstance(out, bytes) else out:
                hold.keep(piece)
            return []
        if isinstance(out, bytes):
            return hold.feed(out) or []
        return [kept for kept in map(hold.feed, out) if kept]

    def held(self) -> bytes:
        """The answer's last bytes held back, let go: nothing is held from here on."""
        hold, self._hold = self._hold, None
        return b"" if hold is None else hold.held


STREAMING_NOTICE = "Streaming response from "
# mitmproxy's lines for a connection's opening and closing, four per client connection at info level
# around Tollgate's one per call: debug lines here (`mitmdump -v` shows them).
CONNECTION_LINES = frozenset(("client connect", "client disconnect"))
SERVER_LINES = ("server connect ", "server disconnect ")


def without_streaming_notices(log: Callable[..., None]) -> Callable[..., None]:
    """A logger's `log` method that drops mitmproxy's "Streaming response from <host>." lines, and
    logs its connection lines (`client connect`, `server disconnect <address>`, …) at debug level.

    mitmproxy logs the first at info level for each streamed response; Tollgate streams every
    response, so it tells nothing, and through the log handlers it cost more CPU than all of
    Tollgate's stages (docs/performance.md). A `logging.Filter` sees a line only once its record is
    made (the caller's frame looked up, the task named), most of that cost, so the line is dropped
    (or a debug line not made, where debug lines are not shown) before that, in the one method
    mitmproxy's connection handler logs through. Every other line goes on as it came."""

    def log_without_streaming_notices(level: int, msg: object, *args: object, **kwargs: object) -> None:
        if type(msg) is str:
            if msg.startswith(STREAMING_NOTICE):
                return
            if msg in CONNECTION_LINES or msg.startswith(SERVER_LINES):
                level = logging.DEBUG
        log(level, msg, *args, **kwargs)

    return log_without_streaming_notices


class AskForUsage:
    """The provider prepares the request (`Provider.prepare`): with `audit.stream_usage: inject`, an
    OpenAI-format chat stream asks for the usage the client did not ask for (StreamTap hides it
    from the client: each chunk's `"usage":null` and the usage-only chunk), and for an answer not
    encoded, in which the events can be found to hide it (the client, which may take gzip, takes
    identity too). Before the credential stage: a request that Tollgate signs is signed over the
    body as it goes."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        inject = call.loaded.config.audit.stream_usage == "inject"
        if call.route.translated is not None:
            return  # its translation asked for the usage the caller's format needs
        if provider_of(call).prepare(call.classification, call.request.body, call.request.headers, inject):
            write_body(flow.request, call)
            request = flow.request.data
            request.headers.fields = with_header(request.headers.fields, b"accept-encoding", b"identity")
            call.request.usage_asked = True


class StreamTap:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._quiet_log: Callable[..., None] | None = None
        # The answers read whole for the answer guardrails, until their end: the tap that reads
        # them (usage, encoding, translation) and the detectors.
        self._whole: WeakKeyDictionary[http.HTTPFlow, tuple[UsageTap, AnswerReading | None]] = WeakKeyDictionary()
        # Where a large piece of a guarded answer is read (`UsageTap.off_loop`), an MCP result's and a
        # Responses WebSocket message's too (their stages are given these).
        self.workers = ScanWorkers()

    def load(self, _loader: object) -> None:
        connections = logging.getLogger(MITMPROXY_CONNECTION_LOGGER)
        if "log" not in vars(connections):  # not twice over
            self._quiet_log = without_streaming_notices(connections.log)
            connections.log = self._quiet_log  # type: ignore[method-assign]

    def done(self) -> None:
        self.workers.close()
        connections = logging.getLogger(MITMPROXY_CONNECTION_LOGGER)
        if self._quiet_log is not None and vars(connections).get("log") is self._quiet_log:
            del connections.log
        self._quiet_log = None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None or call.answer.answered_by_tollgate:
            return
        translation = call.route.translated
        if translation is not None and flow.response.status_code >= 400:
            return  # an error, read whole by mitmproxy to be put in the caller's shape (`Translate`)
        cost = provider_of(call).cost
        # Every header read here, in one pass
        index = header_index(flow.response.headers.fields)
        headers = decoded(index, cost.response_headers)
        rewrite: Rewrite | None = None
        if call.request.usage_asked and is_event_stream(headers):
            rewrite = asked_usage_hidden()
        classification = call.classification
        # Fetched, or outside the model API: no usage to read (nor to be fooled by)
        passed = call.fetches or classification.passthrough or classification.service
        reader = self._service_reader(flow, call) if passed else cost.usage_reader(call.sent(), headers)
        decoder = None
        if encoding := headers.get("content-encoding", "").strip():
            try:
                decoder = Decompressor(encoding, limit=MAX_FRAME)  # a piece that decodes to more is no event
            except (ValueError, ImportError) as e:
                reader.error = str(e)
        if decoder is not None:
            # An encoded stream cannot be cut at event boundaries: the client gets it whole (asked
            # for usage, it was asked for no encoding: an upstream that encodes all the same shows
            # the client the usage).
            rewrite = None
        if translation is not None:
            rewrite = translation.rewriter(bool(call.classification.facts.stream))
        # A fetched answer (a stored response, a stored chat completion read back) is read as made.
        outside = classification.passthrough or classification.service or classification.session
        # A HEAD's answer, and a 204, have no body: no model text to read.
        bodiless = flow.request.method == "HEAD" or flow.response.status_code == 204
        reading = None if outside or bodiless or flow.response.status_code >= 300 else answer_reading(call)
        # `agents`: an answer's tool calls decided before they go, read whole or as its events come.
        agents = call.agents is not None and call.agents.decides and not (outside or bodiless)
        agents = agents and flow.response.status_code < 300
        asks = None
        held = call.agents.format if agents and call.agents is not None else None
        asked = bool(classification.facts.stream)  # a translated stream is one whatever its type
        if (held is not None and held.streams(is_event_stream(headers), asked)) or (agents and translation and asked):
            if decoder is not None:  # asked for none: an encoded stream cannot be read as it comes
                _refuse_undecided(flow, call)
                return
            assert call.agents is not None and call.agents.format is not None
            rewrite, agents = call.agents.format.held_stream(call.agents, rewrite), False
            asks = call.agents if call.agents.policy is not None else None
        if reading is not None and (
            reading.format.streams(headers.get("content-type", ""), bool(classification.facts.stream))
            or (translation is not None and bool(classification.facts.stream))
        ):
            rewrite = self._guarded(flow, call, reading, rewrite)
        elif rewrite is not None and translation is None:
            # The usage Tollgate asked for taken out: fewer bytes than the upstream's length says
            # (a client held to it would wait for the rest until its timeout).
            _without_length(flow, _LENGTH_DROPPED)
        elif (agents or (reading is not None and reading.links)) and (declared_length(index) or 0) > ANSWER_LIMIT:
            (_refuse_undecided if agents else _refuse_unread)(flow, call)
            return
        elif (reading is not None or agents) and (declared_length(index) or 0) <= ANSWER_LIMIT:
            # Read whole before its headers go (`answer_read_whole`): served redacted, or refused.
            told = partial(record_usage, call, cost.answer_service_tier(headers), cost.answer_speed(headers))
            translated = translation.rewrite if translation is not None else None
            self._whole[flow] = (UsageTap(reader, decoder, told, translated or _Whole(), call), reading)
            flow.response.stream = False
            # Larger than 16 MiB, it goes on unread, as it comes.
            patches.bound_responses_read_whole()
            patches.read_whole_up_to(flow, ANSWER_LIMIT, partial(self._unread, translated=translated))
            return
        # Streamed bodies are not stored in the flow either: a saved flow holds no completion text.
        told = partial(record_usage, call, cost.answer_service_tier(headers), cost.answer_speed(headers))
        if call.ledger.reserved is None:
            tap = UsageTap(reader, decoder, told, rewrite, call)
        else:
            # A limit counts the call: the answer's end waits for its settlement (`response`).
            # Taught on the first such call, so that no other call pays for it: the end sent after
            # the hook.
            patches.finish_streamed_responses()
            hold = EndHold(None if rewrite is not None else declared_length(index), is_event_stream(headers))
            tap = CountedTap(reader, decoder, told, rewrite, call, hold=hold, counted=call.ledger)
        tap.off_loop = self.workers.off_loop  # a guarded answer's large pieces are read there
        if asks is not None:  # its tool calls' release awaits the policy's answers
            patches.read_large_pieces_apart()
            tap.asks = asks
        flow.response.stream = tap

    def answer_read_whole(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A JSON answer under an answer guardrail, read whole: served with each value to redact
        replaced, or refused 403 `content_denied` in the provider's shape (before its headers go).
        One larger than 16 MiB goes on unread (`answer_findings` null)."""
        pending = self._whole.pop(flow, None)
        call = call_of(flow)
        response = flow.response
        if pending is None or call is None or response is None or call.answer.answered_by_tollgate:
            return None
        tap, reading = pending
        raw = response.raw_content or b""
        if len(raw) > ANSWER_LIMIT:
            tap.end()
            return None
        tap(raw)
        body = tap(b"")
        content = body if isinstance(body, bytes) else b"".join(body)
        if not _json_object(content):  # what cannot be read is not served
            (_refuse_unread if reading is not None else _refuse_undecided)(flow, call)
            return None
        served = content
        if reading is not None:
            try:
                served, denied, counts = reading.format.read_whole(reading.detectors, content)
            except Exception:  # a hook's exception would let the answer go on as it came
                logger.exception("Tollgate: reading an answer for its guardrails failed")
                _refuse_unread(flow, call)
                return None
            if denied == UNREAD:
                _refuse_unread(flow, call)
                return None
            call.answer.findings, call.answer.finding_actions = counts, reading.detectors.by_action(counts)
            call.answer.cut = denied
            if denied is not None:
                refuse(flow, call, CONTENT_DENIED, f"Tollgate refused this answer: it holds {denied}.")
                return None
        if call.agents is not None and call.agents.decides:
            try:
                decided = decided_whole(call, served)
            except Exception:  # a hook's exception would let the answer go on undecided
                logger.exception("Tollgate: deciding an answer's tool calls failed")
                decided = None
            if isinstance(decided, Awaitable):  # the policy asked about its tool calls
                return _served_once_decided(flow, call, decided)
            _serve_decided(flow, call, decided)
            return None
        _serve(response, served)
        return None

    def _unread(self, flow: http.HTTPFlow, translated: Rewrite | None) -> UsageTap | None:
        """The tap of a JSON answer too large to be read whole: it streams on unread; or, where
        an answer rule that matches the call has `unread: deny`, None, the call refused."""
        pending = self._whole.pop(flow, None)
        call = call_of(flow)
        assert pending is not None and call is not None
        tap, reading = pending
        who = call.caller
        if call.agents is not None and call.agents.decides:  # its tool calls are never served undecided
            tap.end()
            _refuse_undecided(flow, call)
            return None
        if reading is not None and reading.links:  # nor its links unread
            tap.end()
            _refuse_unread(flow, call)
            return None
        assert call.loaded.guardrails is not None
        if (
            call.loaded.guardrails.answer_unread(call.route.target.provider, call.target_model, who.client, who.groups)
            == "deny"
        ):
            tap.end()
            call.answer.cut = UNREAD
            refuse(
                flow,
                call,
                CONTENT_DENIED,
                "Tollgate refused this answer: it is too large to be read for its guardrails.",
            )
            return None
        tap.rewrite_with(translated)
        return tap

    @staticmethod
    def _guarded(flow: http.HTTPFlow, call: Call, reading: AnswerReading, rewrite: Rewrite | None) -> Rewrite:
        """A streamed answer read by the answer guardrails: it goes on decoded, its length
        no longer the upstream's."""
        patches.stop_streams_their_taps_end()
        patches.read_large_pieces_apart()
        response = flow.response
        assert response is not None
        translation = call.route.translated
        # A translated answer's headers are written by `Translate`; not one that goes on as it came
        # (Claude's own stream, from Vertex AI): its events are rewritten here all the same.
        if translation is None or translation.rewrite is None:
            _without_length(flow, _GUARDED_DROPPED)
        answer_format = reading.format
        guard = answer_format.stream(reading.detectors)
        if translation is not None:
            array = translation.json_array
        else:
            media = response.headers.get("content-type", "").split(";", maxsplit=1)[0].strip().lower()
            array = media == JSON_TYPE
        return GuardedAnswer(
            guard, answer_format.denied_end, call, rewrite, reading.detectors, answer_format.array_end, array
        )

    def _service_reader(self, flow: http.HTTPFlow, call: Call) -> UsageReader:
        """A call that reports no usage; but the answer of its plan reader's `tier_endpoint` (Code
        Assist's loadCodeAssist), read whole for the tier it names the token's plan (kept by the
        token's hash, as Identify kept it on the call)."""
        kept = call.caller.plan_token
        answer = flow.response
        reader = provider_of(call).plan
        tier_endpoint = None if reader is None else reader.tier_endpoint
        if (
            reader is None
            or kept is None
            or kept.sha256 is None
            or tier_endpoint is None
            or call.classification.endpoint != tier_endpoint
        ):
            return NoUsage()
        if answer is None or answer.status_code != 200:
            return NoUsage()
        return TierReader(partial(self.shared.asked_accounts.told, kept.sha256), reader.plan_in_answer)

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """After the audit's, which settled the call: the end of a counted call's answer goes to its
        client once its settlement is written (`Store.flushed`), so that a client that has the
        whole answer finds it counted; mitmproxy ends the body after this hook."""
        tap = flow.response.stream if flow.response is not None else None
        if type(tap) is not CountedTap or tap.counted is None:
            return None
        counted, tap.counted = tap.counted, None
        held = tap.held()
        store = counted.settled_in
        waiting = None if store is None else store.flushed()
        if waiting is None:
            if held:
                patches.end_response_with(flow, held)
            return None
        return _end_once_written(flow, waiting, held)

    def counted_error(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """After the audit's `error`: a counted answer whose upstream broke off after its end was
        held back gets that end, once counted, in place of the break."""
        return self.response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        """A stream cut short (client gone, upstream reset): the usage seen so far still counts."""
        call = call_of(flow)
        tap = flow.response.stream if flow.response is not None else None
        if call is None or not isinstance(tap, UsageTap):
            return
        tap.end()
        ended = call.answer.usage is not None and call.answer.usage.finish_reason is not None
        if call.answer.failure is Failure.CLIENT_DISCONNECTED and ended:
            # The stream had told its end (clients stop reading at e.g. `data: [DONE]` and hang up
            # before the upstream's last bytes): nothing was lost.
            call.answer.error = call.answer.failure = None


async def _end_once_written(flow: http.HTTPFlow, waiting: Awaitable[None], held: bytes) -> None:
    await waiting
    if held:
        patches.end_response_with(flow, held)


class _Whole:
    """A whole answer's decoded bytes, kept to be read at its end."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self._chunks.append(chunk)
        return b""

    def flush(self) -> bytes:
        return b"".join(self._chunks)


def _serve(response: http.Response, served: bytes) -> None:
    fields = [f for f in response.headers.fields if f[0].lower() not in _GUARDED_DROPPED]
    response.headers.fields = tuple(fields)
    response.content = served


def _serve_decided(flow: http.HTTPFlow, call: Call, decided: bytes | None) -> None:
    """An answer whose tool calls were decided, served; one that could not be read, refused."""
    if decided is None or flow.response is None:
        _refuse_undecided(flow, call)
    elif "content-encoding" in flow.response.headers or decided != flow.response.raw_content:
        _serve(flow.response, decided)
    # else: every call let through, the answer's bytes as they came: it goes as it came.


async def _served_once_decided(flow: http.HTTPFlow, call: Call, deciding: Awaitable[bytes | None]) -> None:
    try:
        decided = await deciding
    except Exception:
        logger.exception("Tollgate: deciding an answer's tool calls failed")
        decided = None
    _serve_decided(flow, call, decided)


def _refuse_unread(flow: http.HTTPFlow, call: Call) -> None:
    """A JSON answer the answer guardrails cannot read: refused, never served unread."""
    call.answer.findings, call.answer.cut = None, UNREAD
    refuse(flow, call, CONTENT_DENIED, "Tollgate refused this answer: it could not be read for its guardrails.")


def _refuse_undecided(flow: http.HTTPFlow, call: Call) -> None:
    """A chat answer whose tool calls `agents` cannot read (too large, not JSON): refused, never
    served undecided."""
    call.answer.cut = UNREAD
    refuse(flow, call, CONTENT_DENIED, "Tollgate refused this answer: its tool calls could not be read for `agents`.")


def _json_object(content: bytes) -> bool:
    """Whether a JSON answer is one object, none of whose objects repeats a key (a client's parser
    keeps one of its values, the guard another)."""
    try:
        return isinstance(loads_once(content), dict)
    except (ValueError, RecursionError):
        return False


# The headers of a guarded answer that no longer hold: it goes on decoded, in events written anew.
_GUARDED_DROPPED = frozenset((b"content-length", b"content-encoding", b"transfer-encoding"))
# Those of an answer whose events Tollgate changes as they came (never an encoded one).
_LENGTH_DROPPED = frozenset((b"content-length", b"transfer-encoding"))


def _without_length(flow: http.HTTPFlow, dropped: frozenset[bytes]) -> None:
    """A streamed answer whose bytes Tollgate may change: sent without the upstream's length, in
    chunks to an HTTP/1 client (an HTTP/2 one is told its end by the stream's last frame)."""
    response = flow.response
    assert response is not None
    fields = [f for f in response.headers.fields if f[0].lower() not in dropped]
    if flow.request.http_version.startswith("HTTP/1"):
        fields.append((b"transfer-encoding", b"chunked"))
    response.headers.fields = tuple(fields)


def declared_length(index: Mapping[bytes, bytes]) -> int | None:
    """The body's length its headers declare (`Content-Length`, unless the body is chunked)."""
    value = index.get(b"content-length")
    if value is None or b"transfer-encoding" in index or not value.isdigit():
        return None
    return int(value)


def record_usage(call: Call, service_tier: str | None, speed: str | None, reader: UsageReader) -> None:
    """What the reader read, and the service tier and speed the answer's headers told where its
    body did not."""
    usage = call.answer.usage = reader.result()
    usage.service_tier = usage.service_tier or service_tier
    usage.speed = usage.speed or speed
    if reader.error and call.answer.error is None:
        call.answer.error = reader.error
