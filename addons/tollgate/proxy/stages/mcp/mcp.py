"""Calls to the MCP servers of `mcp.servers` (Streamable HTTP): each POST's JSON-RPC requests read
(`Mcp`), then its call steps (the pipeline's `mcp` list: the audit gate, the caller identified as an
LLM call's caller is, then `McpGate`'s: each request decided by `data.tollgate.mcp.deny`, a denied
one refused with a JSON-RPC error and with it the whole POST, and the caller's credential replaced by
the server's), the answer passed on as it streams while each response's outcome is read, and one
audit record written per request. A `tools/list` answer loses the tools the policy would
not let the caller call. The server's `WWW-Authenticate` never reaches the client: its credential
is Tollgate's, and the header would start the client's OAuth discovery.

Other paths on a server's host pass with the caller's own credential; a virtual one is refused."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mitmproxy import http

from tollgate.calls.call import new_request_id
from tollgate.configuration.runtime import Loaded
from tollgate.formats.answer_reading.scanning import READ_APART_BYTES
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.bodies.raw_headers import repeated
from tollgate.formats.framing import MAX_FRAME, Decompressor, Undecodable
from tollgate.formats.framing.bounds import MAX_DECODED_BODY
from tollgate.formats.mcp import revision
from tollgate.formats.mcp.answers import AnswerRelay, is_sse
from tollgate.formats.mcp.messages import TOOLS_LIST, Posted, RequestId, decoded_post, error_message, read_post
from tollgate.formats.mcp.withheld import Pending
from tollgate.formats.refusals import (
    BAD_REQUEST,
    LEDGER_UNAVAILABLE,
    MISDIRECTED,
    POLICY_DENIED,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
)
from tollgate.governance.egress.misdirection import Misdirected
from tollgate.governance.guardrails.workers import ScanWorkers
from tollgate.governance.identity.jwt_identity import looks_like_jwt
from tollgate.governance.limits.limits import Counter, deny_reason, refusal_message, retry_after
from tollgate.governance.mcp.mcp_exchange import (
    REFUSED_CODE,
    SERVER_REFUSED_CREDENTIAL,
    UPSTREAM_FAILED_CODE,
    McpExchange,
)
from tollgate.governance.mcp.mcp_input import request_input
from tollgate.governance.mcp.mcp_limits import mcp_charges, mcp_counters
from tollgate.governance.mcp.mcp_rounds import RETRY_OF_ANOTHER, Round
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.mcp_sessions import (
    INITIALIZE,
    SESSION_OF_ANOTHER,
    SESSION_TTL_S,
    UNKNOWN_SESSION,
    shared_session_key,
)
from tollgate.governance.mcp.result_guard import ResultGuard
from tollgate.governance.mcp.tool_checks import ToolChecks
from tollgate.governance.policy.policy import MCP_DECISION, Decision
from tollgate.ledger.store import Charge, Reservation, Store, StoreError
from tollgate.providers import host_name
from tollgate.proxy import patches
from tollgate.proxy.flows import MCP, MISDIRECTED_AS, answer_mcp, bearer_token, call_of, drop_alt_svc, refuse_mcp
from tollgate.proxy.state import Shared
from tollgate.records.audit.mcp_record import mcp_records

if TYPE_CHECKING:
    from tollgate.proxy.runner import CallSteps

logger = logging.getLogger(__name__)

# What Streamable HTTP is called with: JSON-RPC POSTs, the server's GET stream, DELETE of a session.
METHODS = frozenset(("POST", "GET", "DELETE"))
PARSE_ERROR = -32700
# A 2026-07-28 client's subscription: an event stream that lasts until the client closes it.
LISTEN = "subscriptions/listen"


class Relay(patches.ReadsApart, AnswerRelay):
    """The relay of an MCP answer, whose large pieces the answer guardrails (and `agents`, reading
    its results) read in a worker thread (`patches.read_large_pieces_apart`): an event stream's
    piece that may end an event of 32 KiB or more, a JSON answer of that size at its end (where it
    is read whole). Not one whose tools/list tools are to be decided: the policy is asked on the
    event loop."""

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        read = self._read_before(chunk)
        return read if read is not None else super().__call__(chunk)

    def _apart_wanted(self, chunk: bytes) -> bool:
        if (self.guard is None and self.results is None) or self.ended or (self.tools_of and self.allowed is not None):
            return False
        size = self.held_size + len(chunk) if self.sse or not chunk else 0
        return size >= READ_APART_BYTES

    def _read_piece(self, chunk: bytes) -> bytes | list[bytes]:
        return super().__call__(chunk)


class Mcp:
    def __init__(
        self, shared: Shared, steps: CallSteps[McpExchange], workers: ScanWorkers | None = None,
        results: Callable[[McpExchange], Callable[[Any], Pending | None] | None] | None = None,
    ) -> None:  # fmt: skip
        self.shared = shared
        # `agents`: what reads an answer's tools/call results (`Quarantines.mcp_results`).
        self._results = results
        # What a server's request goes through once read: audit gate, caller, session, limits,
        # policy, the server's credential and clock.
        self._steps = steps
        # Where a large result is read for the answer guardrails (`Relay.off_loop`).
        self._workers = workers or ScanWorkers()

    # --- request ---------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        loaded = self.shared.loaded
        if MISDIRECTED_AS in flow.metadata:  # refused whatever the configuration now says
            astray = Misdirected(**flow.metadata.pop(MISDIRECTED_AS))
            if flow.response is None and flow.error is None:
                self._misdirected(flow, loaded, astray)
            return None
        if loaded is None or not loaded.mcp or flow.response is not None or flow.error is not None:
            return None
        request = flow.request
        host = host_name(request.host)
        if host not in loaded.mcp.hosts or call_of(flow) is not None:
            return None  # a set lookup: all an LLM call pays
        server = loaded.mcp.at(host, request.port, request.path.partition("?")[0])
        if server is None:
            self._other_path(flow, loaded)
            return None
        exchange = self._exchange(flow, server)
        try:
            self._read(flow, exchange)
        except Unreadable as e:
            exchange.answer.error = f"bad request: {e}"
            message = f"Tollgate cannot read this request exactly and did not forward it: {e}."
            refuse_mcp(flow, exchange, 400, BAD_REQUEST, message, PARSE_ERROR)
            return None
        exchange.loaded = loaded
        return self._steps.run(flow, exchange)

    def _exchange(self, flow: http.HTTPFlow, server: McpServer) -> McpExchange:
        # Taught on the first MCP request, so that no other call pays for it: an answer broken off
        # ends with Tollgate's errors (`end_response_with`).
        patches.finish_streamed_responses()
        exchange = McpExchange(server, flow.request.method, request_id=new_request_id())
        exchange.session = flow.request.headers.get("mcp-session-id")
        flow.metadata[MCP] = exchange
        return exchange

    def _misdirected(self, flow: http.HTTPFlow, loaded: Loaded | None, astray: Misdirected) -> None:
        """A request naming an MCP server's host and another host (`Classify`): refused 421, as
        each of its requests' JSON-RPC error and audited where it names a server's URL (on whatever
        port it connected to), else in plain JSON."""
        path = flow.request.path.partition("?")[0]
        servers = loaded.mcp.servers if loaded is not None else ()
        server = next((s for s in servers if s.host == astray.governed and s.path == path), None)
        message = astray.message
        if server is None:
            headers = {"content-type": "application/json", "x-tollgate-error": MISDIRECTED}
            flow.response = http.Response.make(421, encode_json({"error": message}), headers)
            flow.metadata[MCP] = []  # no server's request to audit, but redacted as one
            return
        exchange = self._exchange(flow, server)
        try:
            self._read(flow, exchange)  # for its requests' ids; refused whatever it holds
        except Unreadable:
            pass
        exchange.answer.error = f"misdirected: {astray.named}"
        refuse_mcp(flow, exchange, 421, MISDIRECTED, message)

    def _read(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        request = flow.request
        if request.scheme == "https" and not flow.client_conn.tls_established:
            # Its credential crossed the hop to the proxy unencrypted; an http:// server's is the operator's choice.
            raise Unreadable("the https:// request came to the proxy in cleartext, not through CONNECT")
        if request.method not in METHODS:
            raise Unreadable(f"an MCP server is not called with {request.method}")
        if repeated(request.headers.fields, b"authorization"):  # a server reads one, Tollgate cannot know which
            raise Unreadable("the request carries more than one Authorization header")
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.fields]
        posted = None
        if request.method == "POST":
            # Read as the server will read it; sent on as it came.
            body = decoded_post(request.raw_content, request.headers.get("content-encoding"), MAX_DECODED_BODY)
            posted = read_post(body)
            exchange.requests, exchange.batch = posted.requests, posted.batch
        twin = revision.underscored(fields)
        if twin is not None:  # a server may read it as the MCP header, which Tollgate did not check
            raise Unreadable(f"the request carries {twin[:64]!r}, an MCP header's name written with _ for -")
        if posted is None:
            exchange.protocol_version = revision.recorded(revision.stated_revision(fields, Posted(())))
            exchange.malformed = revision.check_unrequested(fields)
            return
        exchange.protocol_version = revision.recorded(revision.stated_revision(fields, posted))
        exchange.malformed = revision.check(fields, posted)

    def _other_path(self, flow: http.HTTPFlow, loaded: Loaded) -> None:
        """A path of a server's host that is no server's URL (its OAuth metadata, a web page): the
        caller's own credential passes, as on every shared host; a virtual one is refused, since
        no real one takes its place."""
        token = bearer_token(flow.request)
        if token is None:
            return
        directory = loaded.directory
        if not directory.is_virtual_key(token) and not (directory.takes_jwts and looks_like_jwt(token)):
            return
        path = flow.request.path.partition("?")[0]
        message = f"Tollgate: {path} is no MCP server Tollgate governs: call it with your own credentials."
        headers = {"content-type": "application/json", "x-tollgate-error": UNAUTHENTICATED}
        flow.response = http.Response.make(401, encode_json({"error": message}), headers)

    # --- answer ----------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        exchange = _exchange_of(flow)
        if flow.response is None:
            return None
        if exchange is None:
            loaded = self.shared.loaded
            if loaded is not None and loaded.mcp and host_name(flow.request.host) in loaded.mcp.hosts:
                drop_alt_svc(flow.response)  # another path of a server's host
            return None
        response = flow.response
        drop_alt_svc(response)
        exchange.answer.status = response.status_code
        if exchange.answer.answered_by_tollgate:
            return None
        if exchange.answer.timed_out:  # its connection came after all
            exchange.answer.timed_out, exchange.answer.error = False, None
        response.headers["x-tollgate-request-id"] = exchange.request_id
        if response.headers.pop("www-authenticate", None) is not None or response.status_code == 401:
            # The server refused Tollgate's credential: the operator's to fix, not the client's to
            # answer with an OAuth flow.
            exchange.answer.error = f"{SERVER_REFUSED_CREDENTIAL} ({response.status_code})"
            logger.warning(f"Tollgate: MCP server {exchange.server.name}: {exchange.answer.error}")
        response.stream = exchange.reader = self._relay(flow, exchange)
        if 200 <= response.status_code < 300:
            return self._session_answered(exchange, response)
        return None

    def _session_answered(self, exchange: McpExchange, response: http.Response) -> Awaitable[None] | None:
        """The session an `initialize` opened is bound to its caller before its id reaches the
        caller (in every process sharing a Redis ledger, too); a session its owner ended is
        forgotten."""
        server, sessions = exchange.server.name, self.shared.mcp_sessions
        if exchange.method == "DELETE" and exchange.session is not None:
            sessions.forget(server, exchange.session)
            return None
        session = response.headers.get("mcp-session-id")
        if session is None or not any(r.method == INITIALIZE for r in exchange.requests):
            return None
        owner = exchange.caller.owner
        if sessions.bind(server, session, owner) != owner:
            logger.warning(f"Tollgate: MCP server {server} opened a session another caller holds")
            return None
        store = self.shared.ledger
        if store is None or not store.shares_sessions:
            return None
        return self._bind_shared(store, shared_session_key(server, session), owner)

    @staticmethod
    async def _bind_shared(store: Store, key: str, owner: str) -> None:
        try:
            await store.bind_session(key, owner, int(SESSION_TTL_S))
        except StoreError as e:  # the other processes do not know it: they answer its requests 404
            logger.error(f"Tollgate: an MCP session's owner is known to this process only: {e}")

    def _relay(self, flow: http.HTTPFlow, exchange: McpExchange) -> Relay:
        """The answer's relay: its encoding undone, a tools/list's tools decided as they come (under
        a policy), and its framing left to the proxy, as what goes on may differ from what came."""
        response = flow.response
        assert response is not None
        headers = response.headers
        decoder = None
        encoding = headers.get("content-encoding", "identity").strip().lower()
        unreadable = None
        if encoding != "identity":
            del headers["content-encoding"]  # it goes on decoded (or as JSON-RPC errors)
            try:
                decoder = Decompressor(encoding, MAX_FRAME)
            except (Undecodable, ImportError):
                unreadable = f"its Content-Encoding {encoding!r} is not one Tollgate reads"
        if response.status_code not in (204, 304):
            headers.pop("content-length", None)
            if flow.request.http_version == "HTTP/1.1":
                headers["transfer-encoding"] = "chunked"
        expected = [r.id for r in exchange.requests if r.id is not None]
        tools_of = frozenset(r.id for r in exchange.requests if r.method == TOOLS_LIST and r.id is not None)
        loaded = self.shared.loaded
        policy = loaded.policy if loaded is not None and tools_of and 200 <= response.status_code < 300 else None
        checks = None if policy is None else ToolChecks(policy, exchange)
        exchange.tool_checks = checks
        succeeded = 200 <= response.status_code < 300
        # Read at any status: a JSON-RPC result in an error's answer is a result all the same.
        guard = ResultGuard.of(exchange)
        if guard is not None:
            # A result denied ends its event stream there: the upstream is closed, as a denied
            # model answer's is; a large one is read in a worker thread. Taught on the first such
            # answer, so that no other call pays for it.
            patches.stop_streams_their_taps_end()
            patches.read_large_pieces_apart()
        relay = Relay(
            is_sse(headers.get("content-type")), expected, exchange.batch, decoder, tools_of if checks else frozenset(),
            checks, unreadable, guard, succeeded,
        )  # fmt: skip
        relay.off_loop = self._workers.off_loop
        if self._results is not None:
            relay.results = self._results(exchange)
            if relay.results is not None:  # `agents` reads its tools/call results: a large one apart
                patches.read_large_pieces_apart()
                # A result whose quarantine cannot be written ends its event stream there.
                patches.stop_streams_their_taps_end()
        return relay

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        exchange = _exchange_of(flow)
        if exchange is None:
            return None
        relay = exchange.reader
        if relay is not None and relay.waiting and flow.response is not None:
            return self._release(flow, exchange, relay)
        self._end(flow, exchange)
        return None

    async def _release(self, flow: http.HTTPFlow, exchange: McpExchange, relay: AnswerRelay) -> None:
        """The end of an answer whose tools/list response waited for its tools to be decided, or
        whose result waited for its quarantine to be written (`agents`): sent once they are, before
        the answer ends; in place of a result whose quarantine could not be written, its error."""
        checks = exchange.tool_checks
        try:
            if checks is not None:
                await checks.wait()
            tail = relay.release()
            await relay.withheld.wait()  # its results read once decided may wait for writes too
            patches.end_response_with(flow, tail + relay.release())
        except Exception:
            logger.exception("Tollgate: an MCP answer could not be released; what it held was not sent")
            exchange.answer.error = exchange.answer.error or "answer undecided"
        self._end(flow, exchange)

    def error(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        exchange = _exchange_of(flow)
        if exchange is None:
            return None
        if flow.response is None and exchange.answer.sent and _client_waits(flow):
            self._server_failed(flow, exchange)
        relay = exchange.reader
        # A POST's answer (a GET stream answers no request: its break reaches the client as it came).
        broken = flow.response is not None and relay is not None and relay.expected and not relay.ended
        if broken and relay is not None and _client_waits(flow):
            return self._broken_off(flow, exchange, relay)
        self._errored(flow, exchange)
        return None

    async def _broken_off(self, flow: http.HTTPFlow, exchange: McpExchange, relay: AnswerRelay) -> None:
        """The server broke off its answer after its headers: each request it left unanswered gets
        a JSON-RPC error, at the end of the event stream (after the events that came whole), or as
        the JSON answer, none of which went on yet; then the answer ends."""
        problem = flow.error.msg if flow.error is not None else "unknown error"
        lost = bool(relay.unanswered())  # else the client has all it waited for
        try:
            if relay.waiting and exchange.tool_checks is not None:
                await exchange.tool_checks.wait()
            await relay.withheld.wait()  # what was written goes on before the errors
            message = f"Tollgate: MCP server {exchange.server.name} broke off its answer: {problem}."
            tail = relay.fail(message, UPSTREAM_FAILED_CODE)
            if tail is not None:
                patches.end_response_with(flow, tail)
        except Exception:
            logger.exception("Tollgate: an MCP answer that broke off could not be ended")
        answer = exchange.answer
        if lost:
            answer.error = answer.error or relay.error or f"the server broke off its answer: {problem}"
        self._errored(flow, exchange)

    def _errored(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        relay, answer = exchange.reader, exchange.answer
        if relay is not None:
            answer.outcomes = relay.outcomes
        answered = relay is not None and all(r.id in answer.outcomes for r in exchange.requests if r.id is not None)
        # A client may close a POST's event stream once it has read the answers it waited for (the
        # SDK does): then nothing was lost. A subscription's stream is never answered: its client
        # ends it by closing it.
        listened = any(r.method == LISTEN for r in exchange.requests) and not _client_waits(flow)
        if answer.error is None and flow.error is not None and not answered and not listened:
            answer.error = flow.error.msg
        self._end(flow, exchange)

    def _server_failed(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """No answer from the server: each request gets a JSON-RPC error (which the MCP SDK's
        client hands the caller as the error of that request, where it would take a bare 502 for a
        server's fault of its own), 504 when the server was too slow, else 502."""
        name = exchange.server.name
        if exchange.answer.timed_out:
            status, reason = 504, UPSTREAM_TIMEOUT
            message = f"Tollgate: MCP server {name} did not answer within {exchange.server.timeout:g} s."
        else:
            problem = flow.error.msg if flow.error is not None else "unknown error"
            exchange.answer.error = f"upstream unreachable: {problem}"
            status, reason = 502, UPSTREAM_UNREACHABLE
            message = f"Tollgate: MCP server {name} is unreachable: {problem}."
        ids: list[RequestId | None] = [r.id for r in exchange.requests if r.id is not None] or [None]
        errors = [error_message(i, UPSTREAM_FAILED_CODE, message) for i in ids]
        answer_mcp(flow, exchange, status, reason, errors, denied=False)

    def _end(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        if exchange.answer.ended is not None:
            return
        exchange.answer.ended = time.time()
        if flow.response is not None:
            exchange.answer.status = flow.response.status_code
        if exchange.reader is not None:
            exchange.answer.outcomes = exchange.reader.outcomes
            exchange.answer.error = exchange.answer.error or exchange.reader.error
            self._rounds_asked(exchange, exchange.reader)
        if exchange.reserved is not None and not exchange.answer.sent:
            # Never sent (the policy denied it, or Tollgate failed): it counts for nothing.
            store, charged = exchange.reserved
            store.adjust([(c.counter, -c.amount, c.expires) for c in charged])
        records = mcp_records(exchange)
        audit = self.shared.audit
        if audit is not None:
            for record in records:
                audit.write(record)
        metrics = self.shared.metrics
        if metrics is not None:
            for record in records:
                metrics.mcp_called(record)
            metrics.found("mcp", exchange.finding_actions)
            metrics.found_in_answer("mcp", exchange.answer.finding_actions(), tuple(exchange.answer.cut.values()))
        # From here on the flow carries plain data that saved flows can hold: the records.
        flow.metadata[MCP] = records

    def _rounds_asked(self, exchange: McpExchange, relay: AnswerRelay) -> None:
        """The calls answered `input_required`, kept for the retries that will answer them."""
        if not relay.input_required:
            return
        for i, request in enumerate(exchange.requests):
            state = relay.input_required.get(request.id) if request.id is not None else None
            if state is not None:
                first = Round(exchange.retry_of.get(i, exchange.request_id), request.method, request.target)
                self.shared.mcp_rounds.asked(exchange.server.name, exchange.caller.owner, state, first)


class McpGate:
    """The call steps of an MCP server's request that are MCP's own, after its caller is known:
    whose session it names, its `mcp_calls_per_minute`, the policy on each of its JSON-RPC
    requests, and the server's credential in place of the caller's."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @staticmethod
    def revision(flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """A POST at 2026-07-28 whose headers do not say what its body does, a batch, or one naming
        a session (which that revision has none of): 400 with its JSON-RPC error, before anything
        decides on what it names."""
        malformed = exchange.malformed
        if malformed is None:
            return
        exchange.answer.error = f"bad request: {malformed.message}"
        message = f"Tollgate refused this request as it came: {malformed.message}."
        refuse_mcp(flow, exchange, 400, BAD_REQUEST, message, malformed.code)

    def rounds(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """A retry that answers a call's `input_required` result (it echoes the `requestState` the
        server gave that caller) is tied to the first call; one naming another tool (prompt,
        resource) than that call did is refused. A retry whose state Tollgate did not see given is
        decided as any call is."""
        rounds = self.shared.mcp_rounds
        for i, request in enumerate(exchange.requests):
            if request.state is None:
                continue
            first = rounds.answering(exchange.server.name, exchange.caller.owner, request.state)
            if first is None:
                continue
            if (first.method, first.target) != (request.method, request.target):
                exchange.denied[i] = (RETRY_OF_ANOTHER,)
                exchange.deny_reasons = (RETRY_OF_ANOTHER,)
                refuse_mcp(flow, exchange, 200, POLICY_DENIED, f"Tollgate refused this request: {RETRY_OF_ANOTHER}.")
                return
            exchange.retry_of[i] = first.request_id

    def session(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """A request naming a session (a POST, the GET stream, a DELETE) is its owner's: the
        caller whose `initialize` the server answered with it. Another caller's, or one naming a
        session Tollgate did not see opened, gets what a server answers for a session it does not
        know (404), and never reaches the server. Owners are kept in this process's memory and,
        with a Redis ledger, looked up there on a miss (the session was opened through another)."""
        session = exchange.session
        if session is None:
            return None
        owner = self.shared.mcp_sessions.owner(exchange.server.name, session)
        if owner is not None:
            self._owned_by(flow, exchange, owner)
            return None
        store = self.shared.ledger
        if store is None or not store.shares_sessions:
            self._session_not_found(flow, exchange, UNKNOWN_SESSION)
            return None
        return self._session_looked_up(flow, exchange, store, session)

    async def _session_looked_up(self, flow: http.HTTPFlow, exchange: McpExchange, store: Store, session: str) -> None:
        server = exchange.server.name
        try:
            owner = await store.session_owner(shared_session_key(server, session), int(SESSION_TTL_S))
        except StoreError as e:
            # Whose session it is cannot be told: not let through, whatever `on_store_error` says.
            logger.error(f"Tollgate: the ledger's store failed: {e}")
            exchange.answer.error = f"ledger unavailable: {e}"
            refuse_mcp(flow, exchange, 503, LEDGER_UNAVAILABLE, "Tollgate cannot tell whose MCP session this is.")
            return
        if owner is None:
            self._session_not_found(flow, exchange, UNKNOWN_SESSION)
            return
        self._owned_by(flow, exchange, self.shared.mcp_sessions.bind(server, session, owner))

    def _owned_by(self, flow: http.HTTPFlow, exchange: McpExchange, owner: str) -> None:
        if owner != exchange.caller.owner:
            self._session_not_found(flow, exchange, SESSION_OF_ANOTHER)

    def _session_not_found(self, flow: http.HTTPFlow, exchange: McpExchange, why: str) -> None:
        """404, as the MCP SDKs' servers answer a session they do not know: the same whether it is
        another caller's or none, so that a caller learns nothing of others' sessions."""
        exchange.deny_reasons = (why,)
        refuse_mcp(flow, exchange, 404, POLICY_DENIED, "Session not found")

    def reserve(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """Each request awaiting an answer counts one on the caller's `mcp_calls_per_minute`
        counters; 429 when one has no room."""
        calls = sum(1 for r in exchange.requests if r.id is not None)
        loaded = _loaded(exchange)
        store = self.shared.ledger
        if not calls or not loaded.limits or store is None:
            return None
        now = time.time()
        found = mcp_counters(loaded.limits.rules, exchange.caller.client, exchange.caller.groups, now)
        if not found:
            return None
        wanted = mcp_charges(found, calls)
        try:
            reservation = store.reserve_now(wanted)
        except StoreError as e:
            self._store_failed(flow, exchange, loaded, str(e))
            return None
        if reservation is None:  # asked over the network
            return self._reserved_later(flow, exchange, loaded, store, wanted, found, now)
        self._reserved(flow, exchange, store, wanted, found, reservation, now)
        return None

    async def _reserved_later(
        self, flow: http.HTTPFlow, exchange: McpExchange, loaded: Loaded, store: Store, wanted: list[Charge],
        found: list[Counter], now: float,
    ) -> None:  # fmt: skip
        try:
            reservation = await store.reserve(wanted)
        except StoreError as e:
            self._store_failed(flow, exchange, loaded, str(e))
            return
        self._reserved(flow, exchange, store, wanted, found, reservation, now)

    def _reserved(
        self, flow: http.HTTPFlow, exchange: McpExchange, store: Store, wanted: list[Charge], found: list[Counter],
        reservation: Reservation, now: float,
    ) -> None:  # fmt: skip
        if reservation.granted:
            exchange.reserved = (store, wanted)
            return
        assert reservation.refused is not None
        full = found[reservation.refused]
        exchange.deny_reasons = (deny_reason(full),)
        message = refusal_message(
            full, reservation.values[reservation.refused], wanted[reservation.refused].amount, now
        )
        refuse_mcp(flow, exchange, 429, RATE_LIMITED, message, retry_after=retry_after(full, now))

    def _store_failed(self, flow: http.HTTPFlow, exchange: McpExchange, loaded: Loaded, problem: str) -> None:
        logger.error(f"Tollgate: the ledger's store failed: {problem}")
        if loaded.config.ledger.on_store_error == "allow":
            return
        exchange.answer.error = f"ledger unavailable: {problem}"
        refuse_mcp(flow, exchange, 503, LEDGER_UNAVAILABLE, "Tollgate cannot count this request; retry later.")

    def decide(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """Each JSON-RPC request decided by `data.tollgate.mcp.deny` (at once from the policy's
        cache, else awaited from its worker): one denied refuses the whole POST."""
        policy = _loaded(exchange).policy
        if policy is None:
            return None
        decisions = [policy.decide(MCP_DECISION, request_input(exchange, r)) for r in exchange.requests]
        if all(isinstance(d, Decision) for d in decisions):
            self._apply(flow, exchange, decisions)  # type: ignore[arg-type]
            return None
        return self._decided_later(flow, exchange, decisions)

    async def _decided_later(self, flow: http.HTTPFlow, exchange: McpExchange, decisions: list[Any]) -> None:
        self._apply(flow, exchange, [await _awaited(d) for d in decisions])

    def _apply(self, flow: http.HTTPFlow, exchange: McpExchange, decisions: list[Decision]) -> None:
        for i, decision in enumerate(decisions):
            if decision.error:
                logger.error(f"Tollgate: {decision.error}")
                exchange.answer.error = decision.error
            if not decision.allowed:
                exchange.denied[i] = decision.deny_reasons
        if exchange.denied:
            reasons = tuple(dict.fromkeys(r for i in sorted(exchange.denied) for r in exchange.denied[i]))
            exchange.deny_reasons = reasons
            self._refuse_denied(flow, exchange)

    def send(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """The caller's credential out, the server's in; to the server's upstream, if it has one
        (its clock is `UpstreamWatch.mcp`'s)."""
        exchange.answer.sent = True
        request = flow.request
        # The answer is read as it passes (each request's outcome, a tools/list's tools): plain.
        request.headers.pop("accept-encoding", None)
        server = exchange.server
        credential = server.credential
        if credential is not None or exchange.caller.auth != "anonymous":
            request.headers.pop("authorization", None)
        if credential is not None:
            name, value = credential.field()
            request.headers.pop(name.decode(), None)
            request.headers[name.decode()] = value.decode()
            exchange.answer.used_credential(credential.secret)
        if server.upstream is not None:
            target = urlsplit(server.upstream)
            request.scheme = target.scheme
            request.host = target.hostname or ""
            request.port = target.port or (443 if target.scheme == "https" else 80)

    def _refuse_denied(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """HTTP 200 with a JSON-RPC error for each request (the denied ones with their reasons): a
        batch with one denied request is refused whole."""
        errors = []
        for i, request in enumerate(exchange.requests):
            if request.id is None:
                continue
            reasons = exchange.denied.get(i)
            message = (
                "Tollgate policy denied this request: " + "; ".join(reasons)
                if reasons
                else "Tollgate refused this batch: another request in it was denied"
            )
            errors.append(error_message(request.id, REFUSED_CODE, message))
        if not errors:  # notifications alone
            message = "Tollgate policy denied this request: " + "; ".join(exchange.deny_reasons)
            errors.append(error_message(None, REFUSED_CODE, message))
        answer_mcp(flow, exchange, 200, POLICY_DENIED, errors)


def _client_waits(flow: http.HTTPFlow) -> bool:
    """Whether the flow failed on the server's side, its client still there for an answer."""
    return flow.client_conn.connected and not patches.ended_by_client(flow)


def _exchange_of(flow: http.HTTPFlow) -> McpExchange | None:
    exchange = flow.metadata.get(MCP)
    return exchange if isinstance(exchange, McpExchange) else None


def _loaded(exchange: McpExchange) -> Loaded:
    """The configuration a request runs under (`Mcp.request` sets it before its steps)."""
    loaded = exchange.loaded
    assert isinstance(loaded, Loaded)
    return loaded


async def _awaited(decision: Decision | Awaitable[Decision]) -> Decision:
    return decision if isinstance(decision, Decision) else await decision
