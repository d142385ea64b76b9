"""What an MCP server's answer to a POST says of each request: an `error`, or a result whose
`isError` is true, read from a JSON body or from server-sent events as they pass (never kept). A
`tools/list` result loses the tools a caller may not call, event by event. And what is still sent
when the answer breaks off: a JSON-RPC error for each request left unanswered."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol

from tollgate.formats.answer_reading.scanning import Unpaired
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing import Decompressor, LeadingBom, Undecodable, parse_sse_block, raw_event_spans
from tollgate.formats.framing.bounds import MAX_FRAME
from tollgate.formats.framing.sse import sse_event_start
from tollgate.formats.mcp.messages import RequestId, digest, error_message
from tollgate.formats.mcp.withheld import Pending, Withholding

# A JSON answer is one message: it is held whole, to this size, to read it (and to drop the tools
# a caller may not call) before any of it goes on. Past it, what was held goes on and the rest
# streams, its outcomes unknown; a `tools/list` answer to filter is refused instead.
MAX_JSON_ANSWER = 16 * 1024 * 1024
# An event still incomplete is held to this size; past it the rest of the stream goes on as it
# comes, unread (an answer whose tools are to be filtered is refused instead).
MAX_EVENT = MAX_FRAME

# The JSON-RPC error code of a request whose answer Tollgate could not read.
UNREADABLE_CODE = -32603

# Asked for the names of the tools a `tools/list` answer lists: whether each may be called, once
# all are decided; None while some are not (the answer is held meanwhile).
Allowed = Callable[[list[str]], Callable[[str], bool] | None]


class _Dropped:
    """What a guard gives for a message of which nothing goes on (a notification or a server's
    request it denied): its event is left out."""

    def __repr__(self) -> str:
        return "DROPPED"


DROPPED: Final = _Dropped()


class McpResultGuard(Protocol):
    """Reads each message for the answer guardrails (`answer_guard.py`): the
    message as it goes on, None where it goes as it came, DROPPED where nothing of it goes on.
    `refuses_unread`: an answer it cannot read (past its bound) is refused rather than sent on
    unread. `stop`: once a message is denied, the JSON-RPC error (code, message) each request
    still unanswered gets; the answer ends there.
    `unread()`: the error (code, message) each request gets in place of an answer that is no JSON,
    its results cut as unread."""

    refuses_unread: bool
    stop: tuple[int, str] | None

    def __call__(self, value: Any) -> Any | None: ...

    def lines_hold(self, block: bytes) -> bool:
        """Whether an event's lines other than its data (LF line ends) hold what it cannot let go
        on (the event then stops as unread)."""
        ...

    def unread(self) -> tuple[int, str]: ...


def is_sse(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "text/event-stream"


def responses_in(value: Any) -> Iterator[dict[str, Any]]:
    """The JSON-RPC responses in one message or a batch of them (a server's requests and
    notifications left out)."""
    for message in value if isinstance(value, list) else (value,):
        if isinstance(message, dict) and "method" not in message and _usable_id(message.get("id")):
            yield message


def is_error(response: dict[str, Any]) -> bool:
    """Whether a response reports a failure: a JSON-RPC error, or a tool's result marked isError."""
    if "error" in response:
        return True
    result = response.get("result")
    return isinstance(result, dict) and result.get("isError") is True


def _usable_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def parse_any(body: bytes) -> Any:
    """A JSON value (an object or a batch), or None."""
    if body[:1] == b"[":
        wrapped = parse_json(b'{"batch":' + body + b"}")
        return None if wrapped is None else wrapped.get("batch")
    return parse_json(body)


class AnswerRelay:
    """Passes an answer on as it comes while reading each response's outcome (`outcomes`: by
    request id, whether it failed); its Content-Encoding, if any, undone (`decoder`), within bounds.

    Server-sent events go on event by event (an incomplete one is held until its end), as they
    came but for a `tools/list` response to one of `tools_of`, which loses the tools `allowed`
    does not let through: it is held, and what follows it, until they are decided (`release`);
    and but for a message `guard` (the answer guardrails) writes anew: a result redacted, or a
    response replaced by an error. A JSON answer is one message: held whole (to MAX_JSON_ANSWER)
    and read before it goes on.

    A result the guard denies ends an event stream: after its event, each request not answered yet
    gets the guard's error, and nothing more goes on (`stopped`: the proxy closes the upstream).

    A message whose reading (`results`) began a write it must not go before is held, and what
    follows it, until the write is done (`withheld`; `waiting` meanwhile); once one failed, nothing
    held goes on: each request held or not answered yet gets its error, and the answer ends there.

    An event or a JSON answer past its bound goes on, and the rest as it comes, unread; unless its
    tools are to be filtered. An answer Tollgate cannot read (`unreadable`: its encoding; or bytes
    that do not decode, an answer to filter past its bound) goes no further: its requests get errors.

    `fail` gives what can still be sent when the answer breaks off: a JSON-RPC error for each of
    `expected` (the requests awaiting an answer) that has none yet."""

    def __init__(
        self, sse: bool, expected: Sequence[RequestId] = (), batch: bool = False,
        decoder: Decompressor | None = None, tools_of: frozenset[RequestId] = frozenset(),
        allowed: Allowed | None = None, unreadable: str | None = None, guard: McpResultGuard | None = None,
        succeeded: bool = True,
    ) -> None:  # fmt: skip
        self.sse = sse
        # Whether the server answered 2xx: a JSON answer of another status that is no JSON (a plain
        # text error) holds no result, and goes on as it came.
        self.succeeded = succeeded
        self.expected = tuple(expected)
        self.batch = batch
        self.decoder = decoder
        self.tools_of = tools_of
        self.allowed = allowed
        self._unreadable_as = unreadable  # why Tollgate cannot read it at all (its encoding)
        self.guard = guard
        # Told of each message read (after the guard), as it goes on: `agents` reading results; what
        # it gives, a write the message must not go before (its quarantine on the fleet's store).
        self.results: Callable[[Any], Pending | None] | None = None
        self.withheld = Withholding()
        self._reading = False  # within a piece's reading, before what it gives is withheld or not
        self.outcomes: dict[RequestId, bool] = {}
        # The requests answered `input_required` (2026-07-28): a SHA-256 of the requestState their
        # client's retry will echo (None where the result gives none).
        self.input_required: dict[RequestId, str | None] = {}
        self.error: str | None = None  # why the answer could not be read
        self.passed = 0  # bytes passed on so far
        self.ended = False  # its end came (or Tollgate ended it: `fail`, or an answer it cannot read)
        self.stopped = False  # a result denied ended the event stream before its upstream did
        self._held: list[bytes] = []  # SSE: the event still incomplete; JSON: the body so far
        self._held_size = 0  # -1 past its bound: the rest streams on unread
        self._before = -1  # SSE: the stream's last byte so far
        self._bom = LeadingBom()
        self._waiting = b""  # complete events held until a tools/list response's tools are decided
        self._waiting_for: list[str] | None = None  # the tool names they wait for

    @property
    def _refuses_unread(self) -> bool:
        """Whether an answer past its bound is refused, not sent on unread: its tools are to be
        filtered, `agents` reads its results, or an answer rule reads it and says so."""
        filtered = bool(self.tools_of) and self.allowed is not None
        # `agents` reads its results for injections: one it cannot read does not go on unread.
        return filtered or self.results is not None or (self.guard is not None and self.guard.refuses_unread)

    @property
    def held_size(self) -> int:
        """The bytes held to be read (an event still incomplete, a JSON answer so far)."""
        return max(self._held_size, 0)

    @property
    def waiting(self) -> bool:
        """Whether complete events (or a JSON answer) wait for tools to be decided, or for a write
        (`withheld`)."""
        return self._waiting_for is not None or self.withheld.active

    @property
    def waiting_for(self) -> list[str]:
        return self._waiting_for or []

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        """mitmproxy's stream callable: what goes on of `chunk` (b"": the end). Never b"" before the
        end (an empty piece would end a chunked body), and never raises (the piece would be lost)."""
        if self.ended:
            return []  # Tollgate ended the answer: the rest is not read, nor sent
        try:
            self._reading = True
            try:
                out = self._feed(chunk)
            finally:
                self._reading = False
            passing = self.withheld.passing(out)
            out = passing if passing is not None else _unwritten(self)
            if not chunk and not self.waiting:  # what was held went on with the answer's end
                self.ended = True
        except Exception as e:  # a bug, not the answer: it goes no further all the same
            out = self._unreadable(f"{type(e).__name__} while reading it")
        self.passed += len(out)
        return out if out or not chunk else []

    def _feed(self, chunk: bytes) -> bytes:
        if self._unreadable_as is not None:
            return self._unreadable(self._unreadable_as)
        end = not chunk
        if self.decoder is not None and chunk:
            try:
                chunk = self.decoder.feed(chunk)
            except Undecodable as e:
                return self._unreadable(f"the answer does not decode as its Content-Encoding says: {e}")
        elif self.decoder is not None and not self.decoder.finished:
            return self._unreadable("the answer ends before its encoded data does")
        out = self._feed_sse(chunk, end) if self.sse else self._feed_json(chunk, end)
        if end and not self.waiting:
            self.ended = True
        return out

    # --- server-sent events -------------------------------------------------------------------

    def _feed_sse(self, chunk: bytes, end: bool) -> bytes:
        if self._held_size < 0:  # past the bound: streams on, unread
            return chunk
        region = b""
        if chunk and not self._bom.done:
            chunk = self._bom.feed(chunk)  # a byte order mark before the first event: read past
        if chunk:
            start = sse_event_start(chunk, self._before)
            self._before = chunk[-1]
            if start is None:
                released = self._hold(chunk, MAX_EVENT, "a server-sent event")
                if released is not None:
                    return released
            else:
                region = b"".join([*self._held, chunk[:start]])
                rest = chunk[start:]
                self._held, self._held_size = ([rest], len(rest)) if rest else ([], 0)
        if end and self._held:  # the last event, not ended by a blank line: read all the same
            region += b"".join(self._held)
            self._held, self._held_size = [], 0
        if self._waiting_for is not None:
            self._waiting += region
            return self._retry() if self._decided() else b""
        return self._events(region)

    def _events(self, region: bytes) -> bytes:
        """The complete events of `region` read and passed on (a tools/list response's rewritten);
        from the first whose tools are not decided yet, held."""
        if not region:
            return b""
        out: list[bytes] = []
        at = 0  # what of region is passed on, so far
        spans = raw_event_spans(region + b"\n\n")
        for i, (start, stop) in enumerate(spans):
            block = region[start:stop].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            event = parse_sse_block(block)
            value = None if event is None else parse_any(event.data.encode())
            if value is None and self.guard is not None and event is not None and event.data.strip():
                # What the guardrails cannot read does not go on: a raw client would read it.
                out.append(region[at:start])
                return b"".join(out) + self._unread_by_guard("a server-sent event that is no JSON-RPC message")
            if self.guard is not None and self.guard.lines_hold(block):
                out.append(region[at:start])
                problem = "a server-sent event whose name, id or comment holds what an answer rule finds"
                return b"".join(out) + self._unread_by_guard(problem)
            names = self._tools_listed(value)
            if names:
                allowed = self._ask(names)
                if allowed is None:  # held, and everything after it, until they are decided
                    out.append(region[at:start])
                    self._waiting, self._waiting_for = region[start:], names
                    return b"".join(out)
                kept = self._without_tools(value, allowed)
                if kept is not None:
                    value = kept
                    out.append(region[at:start])
                    out.append(_event_bytes(block, kept))
                    at = stop
            try:
                guarded = self._guarded(value)
            except Unpaired:  # no text: it does not go on (nor its tools rewritten)
                if at > start:
                    out.pop()
                else:
                    out.append(region[at:start])
                return b"".join(out) + self._unread_by_guard("a server-sent event holding a string that is no text")
            following = spans[i + 1][0] if i + 1 < len(spans) else len(region)
            if guarded is not None:
                if at <= start:
                    out.append(region[at:start])
                else:
                    out.pop()  # its tools filtered: written anew, once
                if guarded is DROPPED:  # left out, and the blank line that ended it
                    value, at = None, following
                else:
                    value, at = guarded, stop
                    out.append(_event_bytes(block, guarded))
            self._read(value)
            if self.guard is not None and self.guard.stop is not None:  # its event ends the stream
                out.append(region[at:following])
                return b"".join(out) + self._stopped(*self.guard.stop)
        out.append(region[at:])
        return b"".join(out)

    def _stopped(self, code: int, message: str) -> bytes:
        """A result denied: the errors of the requests still unanswered, and nothing after them."""
        tail = self.fail(message, code) or b""
        self.stopped = True
        return tail

    # --- JSON ---------------------------------------------------------------------------------

    def _feed_json(self, chunk: bytes, end: bool) -> bytes:
        if self._held_size < 0:  # past the bound: streams on, unread
            return chunk
        if chunk:
            released = self._hold(chunk, MAX_JSON_ANSWER, "the answer")
            if released is not None:
                return released
        if not end:
            return b""
        body, self._held, self._held_size = b"".join(self._held), [], 0
        self._waiting = body
        return self._json(body)

    def _json(self, body: bytes) -> bytes:
        value = parse_any(body) if body else None
        if value is None and self.guard is not None and self.succeeded and body.strip():
            # What the guardrails cannot read does not go on: a raw client would read it.
            return self._unread_by_guard("the answer is no JSON-RPC message")
        names = self._tools_listed(value)
        if names:
            allowed = self._ask(names)
            if allowed is None:
                self._waiting_for = names
                return b""
            kept = self._without_tools(value, allowed)
            if kept is not None:
                value, body = kept, encode_json(kept)
        try:
            guarded = self._guarded(value)
        except Unpaired:
            return self._unread_by_guard("the answer holds a string that is no text")
        self._waiting, self._waiting_for = b"", None
        if guarded is DROPPED:  # nothing of it goes on: its requests' errors in its place
            assert self.guard is not None and self.guard.stop is not None
            return self._stopped(*self.guard.stop)
        if guarded is not None:
            value, body = guarded, encode_json(guarded)
        self._read(value)
        return body

    # --- tools --------------------------------------------------------------------------------

    def _tools_listed(self, value: Any) -> list[str]:
        if not self.tools_of or self.allowed is None or value is None:
            return []
        names: list[str] = []
        for response in responses_in(value):
            if response["id"] in self.tools_of:
                names.extend(name for _, name in _tools(response))
        return sorted(set(names))

    def _ask(self, names: list[str]) -> Callable[[str], bool] | None:
        assert self.allowed is not None
        return self.allowed(names)

    def _decided(self) -> bool:
        return self._waiting_for is not None and self._ask(self._waiting_for) is not None

    def _retry(self) -> bytes:
        waiting, self._waiting, self._waiting_for = self._waiting, b"", None
        return self._events(waiting) if self.sse else self._json(waiting)

    def release(self) -> bytes:
        """What waited for tools to be decided, once they are, and for writes, once they are done:
        to be sent on (the requests' errors in place of what was held, once a write failed)."""
        out = self._retry() if self._waiting_for is not None and self._decided() else b""
        if not self._reading:  # within a piece's reading, what it gives is withheld or not after it
            passing = self.withheld.passing(out)
            out = passing if passing is not None else _unwritten(self)
        self.passed += len(out)
        if not self.waiting:
            self.ended = True
        return out

    def _without_tools(self, value: Any, allowed: Callable[[str], bool]) -> Any:
        """The value with the responses to `tools_of` listing only the tools `allowed` lets through
        (a tool without a name left out too); None if nothing changed."""
        changed = False
        for response in responses_in(value):
            if response["id"] not in self.tools_of:
                continue
            result = response.get("result")
            if not isinstance(result, dict) or not isinstance(tools := result.get("tools"), list):
                continue
            kept = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str) and allowed(t["name"])]
            if len(kept) != len(tools):
                result["tools"] = kept
                changed = True
        return value if changed else None

    def _guarded(self, value: Any) -> Any | None:
        """The message as the answer guardrails let it go on; None where it goes as it came,
        DROPPED where nothing of it goes on. Raises `Unpaired` where a string of it is no text."""
        if self.guard is None or value is None:
            return None
        return self.guard(value)

    # --- outcomes and failures ----------------------------------------------------------------

    def _read(self, value: Any) -> None:
        pending = self.results(value) if self.results is not None and value is not None else None
        self.withheld.read((r["id"] for r in responses_in(value)), pending)
        for response in responses_in(value):
            self.outcomes[response["id"]] = is_error(response)
            result = response.get("result")
            if isinstance(result, dict) and result.get("resultType") == "input_required":
                state = result.get("requestState")
                self.input_required[response["id"]] = digest(state) if isinstance(state, str) else None

    def unanswered(self) -> list[RequestId]:
        return [i for i in self.expected if i not in self.outcomes]

    def fail(self, message: str, code: int) -> bytes | None:
        """What goes to the client when the answer breaks off (or cannot be read): a JSON-RPC error
        for each request not answered yet (counted as failed), after the complete events that
        waited for their tools to be decided, if they are (a tools/list response never decided is
        not sent). b"" when Tollgate has ended the answer already; None when nothing can make it a
        whole answer any more (a JSON answer of which some went on)."""
        if self.ended:
            return b""
        if (not self.sse and self.passed) or self._held_size < 0:  # some of a message went on
            return None
        before = b""
        if self.withheld.active and not self._reading:
            # The answer broke off: what waited for a write goes on once it is written; else it
            # never goes, its requests answered with errors as those not answered yet. (Within a
            # piece's reading, the errors go with what is withheld, or not, after it.)
            before = self.withheld.passing(b"") or b""
            for i in self.withheld.drop():
                self.outcomes.pop(i, None)
            if before and not self.sse:  # a JSON answer, whole
                self.ended = True
                return before
        before += self.release() if self.sse else b""
        self._waiting, self._waiting_for = b"", None
        self.ended = True
        unanswered = self.unanswered()
        self.withheld.read(unanswered, None)  # their errors are withheld with what is, if anything is
        for i in unanswered:
            self.outcomes[i] = True
        if self.sse:
            errors = (error_message(i, code, message) for i in unanswered)
            return before + b"".join(b"event: message\ndata: " + encode_json(e) + b"\n\n" for e in errors)
        ids: list[RequestId | None] = list(unanswered) or [None]
        answers = [error_message(i, code, message) for i in ids]
        return encode_json(answers if self.batch or len(answers) > 1 else answers[0])

    def _unread_by_guard(self, problem: str) -> bytes:
        """What the answer guardrails cannot read: not sent on; the guard's error for each request
        not answered yet in its place, their results cut as unread."""
        assert self.guard is not None
        self.error = problem
        code, message = self.guard.unread()
        return self.fail(message, code) or b""

    def _hold(self, chunk: bytes, bound: int, what: str) -> bytes | None:
        """`chunk` held until its event (or the JSON answer) is whole: None while it is. Past
        `bound`, the answer is refused where unread answers are, else what was held goes on and
        the rest streams on unread (its outcomes unknown)."""
        self._held.append(chunk)
        self._held_size += len(chunk)
        if self._held_size <= bound:
            return None
        if self._refuses_unread:
            return self._unreadable(f"{what} is larger than {_size(bound)}")
        held, self._held, self._held_size = b"".join(self._held), [], -1
        return held

    def _unreadable(self, problem: str) -> bytes:
        """An answer Tollgate cannot read: not sent on; its requests' errors in its place."""
        self.error = problem
        return self.fail(f"Tollgate cannot read the MCP server's answer: {problem}.", UNREADABLE_CODE) or b""


def _unwritten(relay: AnswerRelay) -> bytes:
    """What goes on once a write that a held message waited for failed: nothing held, and the
    write's error for each request held or not answered yet; the answer ends there."""
    code, message = relay.withheld.refusal or (UNREADABLE_CODE, "Tollgate could not write what this answer waited for.")
    for i in relay.withheld.drop():
        relay.outcomes.pop(i, None)
    relay.ended = False  # what ended it (a guard's stop, a failure) was held too: its errors are given anew
    tail = relay.fail(message, code) or b""
    relay.stopped = True
    return tail


def read_whole(body: bytes, sse: bool) -> dict[RequestId, bool]:
    """The outcomes of an answer read whole."""
    relay = AnswerRelay(sse)
    relay(body)
    relay(b"")
    return relay.outcomes


def _tools(response: dict[str, Any]) -> Iterator[tuple[int, str]]:
    result = response.get("result")
    tools = result.get("tools") if isinstance(result, dict) else None
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                yield i, tool["name"]


def _event_bytes(block: bytes, value: Any) -> bytes:
    """An event (`block`, LF line ends) with `value` as its data, its name and id kept; without the
    line end of its last line, which follows it where it came."""
    lines = [line for line in block.split(b"\n") if line.startswith((b"event:", b"id:", b"retry:"))]
    return b"".join(line + b"\n" for line in lines) + b"data: " + encode_json(value)


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"
