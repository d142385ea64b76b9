"""One audit record per call, written when the call ends, however it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.formats.bodies.raw_headers import with_header
from tollgate.formats.refusals import AUDIT_UNAVAILABLE
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.proxy.flows import CALL, call_of, refuse, refuse_mcp
from tollgate.proxy.patches import calls_shown
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record, sent_record
from tollgate.records.audit.bounded import bounded
from tollgate.records.audit.mcp_record import mcp_records
from tollgate.records.audit.summary import console_line, flow_marker, summary

REQUEST_ID_HEADER = "x-tollgate-request-id"
ATTEMPTS_HEADER = b"x-tollgate-attempts"

logger = logging.getLogger(__name__)


class Audit:
    def __init__(self, shared: Shared, recorded: Sequence[Callable[[Call, dict[str, Any]], None]] = ()) -> None:
        self.shared = shared
        self._live: set[http.HTTPFlow] = set()
        # Told of every call's end with its record: the ledger settles the call's counters, …
        self._recorded = tuple(recorded)

    def request(self, flow: http.HTTPFlow) -> None:
        if call_of(flow) is not None:
            self._live.add(flow)

    requestheaders = request  # a streamed upload's call is live from its headers on

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None:
            return
        headers = flow.response.headers
        headers.fields = with_header(headers.fields, REQUEST_ID_HEADER.encode(), call.request_id.encode())
        if call.failover.attempts:  # it went more than once: how many times in all
            headers.fields = with_header(headers.fields, ATTEMPTS_HEADER, str(len(call.failover.attempts) + 1).encode())
        call.answer.status = flow.response.status_code

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:  # a WebSocket's call ends with it
            self._finish(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)  # a CONNECT Tollgate refused as a provider's call (Classify.http_connect)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def in_flight(self) -> set[http.HTTPFlow]:
        """The flows of the calls begun and not yet ended (refusals not yet answered among them)."""
        return self._live

    def done(self) -> None:
        for flow in list(self._live):
            call = call_of(flow)
            if call is not None:
                call.answer.error = call.answer.error or self.shared.shut_down_error
            self._finish(flow)
        if self.shared.audit is not None:
            self.shared.audit.stop()  # after the last call's record: the stopped record, then closed
            self.shared.audit = None

    def _finish(self, flow: http.HTTPFlow) -> None:
        self._live.discard(flow)
        call = call_of(flow)
        if call is None:
            return
        if flow.response is not None:
            # Set at `responseheaders`, or with Tollgate's own answers; else (a response an addon set) now.
            if call.answer.status is None and REQUEST_ID_HEADER not in flow.response.headers:
                flow.response.headers[REQUEST_ID_HEADER] = call.request_id
            call.answer.status = flow.response.status_code
        _count_bodies(flow, call)
        record = self.record(call)
        flow.comment = encodable(summary(call))
        if marker := flow_marker(call):  # left alone otherwise: a marker the user set in the meantime
            flow.marked = marker
        # From here on the flow carries plain data that saved flows can hold: the audit record.
        flow.metadata[CALL] = storable(record)

    def record(self, call: Call) -> dict[str, Any]:
        """The call has ended: its record written and told to those who follow the calls' ends (and
        returned). A flow's call ends at its flow's end; a WebSocket message's when its answer does."""
        call.answer.ended = time.time()
        # The metrics' labels, the traces, the exports and a saved flow get the record as the audit
        # holds it (bounded), never a caller's megabytes.
        record = audit_record(call)
        record = self.shared.audit.write(record) if self.shared.audit is not None else bounded(record)
        # One line per call on the console, in place of mitmdump's own (`patches.console`).
        if calls_shown():
            logger.info(console_line(call, record["latency_ms"]))
        for recorded in self._recorded:
            try:
                recorded(call, record)
            except Exception:  # the flow's comment and marker still follow
                logger.exception(f"Tollgate: {recorded.__qualname__} failed")
        return record


def _count_bodies(flow: http.HTTPFlow, call: Call) -> None:
    """The answer's bytes as they came from the upstream, for the record, where its tap did not
    count them as they went (`UsageTap`): an answer read whole by mitmproxy. None when nothing went
    upstream (the request's bytes, counted as it went, `AuditGate.sent`, then too)."""
    answer = call.answer
    if not answer.request_sent:
        answer.bytes_sent = answer.bytes_received = None
        return
    response = flow.response
    if answer.bytes_received is None and not answer.answered_by_tollgate and response is not None:
        answer.bytes_received = len(response.raw_content or b"")


class AuditGate:
    """A call that cannot be recorded is not served: while the audit cannot be written, calls are
    refused before anything goes upstream (their records are held with the others until it can).
    A call that goes upstream is kept in flight beside the audit file until its record is written
    (`sent`): killed outright, its process leaves it to the next one to record."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        audit = self.shared.audit
        if audit is not None and not audit.failing:  # every call: a read of a flag the writer sets
            return
        call.answer.error = "audit unavailable"
        refuse(flow, call, AUDIT_UNAVAILABLE, "Tollgate cannot write its audit, so it serves no calls; retry later.")

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """An MCP server's request, likewise: 503, as a JSON-RPC error for each of its requests."""
        audit = self.shared.audit
        if audit is not None and not audit.failing:
            return
        exchange.answer.error = "audit unavailable"
        refuse_mcp(flow, exchange, 503, AUDIT_UNAVAILABLE, "Tollgate cannot write its audit; retry later.")

    def sent(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call step, last: the call goes upstream, its record as it stands kept in flight (with
        what it reserved), so that its process killed before it ends still has it recorded."""
        # The body's bytes as it goes (mitmproxy's flow lets it go once the answer comes: `Redact`).
        call.answer.bytes_sent = None if call.request.streamed_upload else len(flow.request.raw_content or b"")
        audit = self.shared.audit
        if audit is not None and audit.in_flight is not None:
            audit.in_flight.began(call.request_id, sent_record(call))

    def mcp_sent(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """An MCP server's request going to its server: its records kept in flight likewise."""
        audit = self.shared.audit
        if audit is not None and audit.in_flight is not None:
            audit.in_flight.began_records(exchange.request_id, mcp_records(exchange))


def encodable(text: str) -> str:
    """The text, a lone surrogate (JSON allows `"\\ud800"`; mitmproxy keeps bytes that are not
    UTF-8 as surrogates) written as its escape: mitmproxy's flow writer encodes text as strict UTF-8
    and would leave the whole flow out of the file."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def storable(record: dict[str, Any]) -> dict[str, Any]:
    """The record, or a copy with every text `encodable` when one is not (the audit file keeps
    the record as it is: its JSON writer escapes a lone surrogate itself)."""
    try:
        # orjson refuses a lone surrogate, and writes a plain record several times faster than
        # the walk below looks at it.
        orjson.dumps(record)
        return record
    except TypeError:
        pass
    fixed = None
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            if value.isascii():
                continue
            text: object = encodable(value)
        elif kind is list:
            text = [encodable(v) if type(v) is str else v for v in value]
        else:
            continue
        if text != value:
            if fixed is None:
                fixed = dict(record)
            fixed[key] = text
    return fixed if fixed is not None else record
