"""Guardrails on a call's body (`guardrails:`, and Tollgate's own keys with no configuration): what
it carries counted by kind (`call.request.findings`, which the policy and the audit see), refused
(403 `content_denied`) or sent with each match replaced by `[REDACTED:<kind>]`. It reads the body
as its client sent it, before an override or a route writes it anew, so what goes on from here (a
translation, a fallback written anew, a SigV4 signature) is made of the redacted body. An MCP
server's request is read where it gives a tool or a prompt arguments (`tools/call`, `prompts/get`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.routes import client_answer_format
from tollgate.formats.answer_reading.scanning import PLACEHOLDER
from tollgate.formats.bodies.json_codec import read_request_json
from tollgate.formats.mcp import revision
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.formats.registry import WIRE_FORMATS
from tollgate.formats.wire import WireFormat
from tollgate.governance.guardrails import documents
from tollgate.governance.guardrails.answer_formats import answer_format
from tollgate.governance.guardrails.detectors import OWN_KEYS
from tollgate.governance.guardrails.rules import Guardrails, Scan
from tollgate.governance.guardrails.unread_answers import alternatives_asked, model_text, stored_unread
from tollgate.governance.guardrails.workers import ScanWorkers
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.proxy.flows import refuse, refuse_mcp, scrub_placeholders, write_raw_body
from tollgate.proxy.state import Shared

# The MCP requests whose params a model or a tool will be given.
MCP_READ = frozenset(("tools/call", "prompts/get"))


def refuse_unread_answer(flow: http.HTTPFlow, call: Call, carried: str) -> None:
    """A call whose answer carries what a model wrote (`carried`) in a format no answer guardrail
    reads, under an answer rule: refused before it goes upstream, as what cannot be read is."""
    why = f"an answer guardrail applies and Tollgate cannot read {carried}"
    call.verdict.deny_reasons = (why,)
    call.answer.cut = "unread"
    refuse(flow, call, CONTENT_DENIED, f"Tollgate refused this call: {why}.")


class Guard:
    def __init__(self, shared: Shared, workers: ScanWorkers | None = None) -> None:
        self.shared = shared
        # A large body is scanned in a worker thread, the call's later steps awaiting it.
        self.workers = workers or ScanWorkers()

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        guardrails = call.loaded.guardrails
        if guardrails is None or not guardrails.reads_requests or call.request.findings is not None:
            return None  # nothing to look for, or read already (a failover attempt of a call read)
        brokered = call.loaded.brokered
        if brokered and brokered.holds_placeholder(flow.request.headers.fields, flow.request.data.path):
            # A brokered credential's placeholder is its host's alone (`egress.credentials`).
            call.request.findings = {OWN_KEYS: 1}
            scrub_placeholders(flow.request, brokered)
            refuse(flow, call, CONTENT_DENIED, f"Tollgate refused this call: its headers or URL hold {OWN_KEYS} (1).")
            return None
        who, target = call.caller, call.route.target
        c = call.classification
        # What it sends that Tollgate cannot read (a model it does not name is no content).
        unread = tuple(what for what in c.unread + c.facts.unread if what != "model")
        if call.request.streamed_upload or unread:
            if guardrails.unread(target.provider, call.target_model, who.client, who.groups) == "deny":
                refuse(
                    flow,
                    call,
                    CONTENT_DENIED,
                    "Tollgate refused this call: a guardrail must read what it sends, and Tollgate cannot"
                    f" read {', '.join(unread) or 'an upload streamed unread'}.",
                )
                return None
            if call.request.streamed_upload:
                return None  # its body goes upstream unread: not scanned (findings null)
        # Its encoding undone (Classify has read it so, within bounds).
        encoded = b"content-encoding" in call.request.headers
        body = (flow.request.content if encoded else flow.request.data.content) or b""
        if body and call.request.body is None:
            return None  # not JSON (a multipart form's file): not read, as a replacement could break it
        wire, data = WIRE_FORMATS.get(c.wire_format), call.request.body
        provider, model = target.provider, call.target_model

        def read() -> Read:
            return read_call(guardrails, body, wire, data, provider, model, who.client, who.groups)

        reading = self.workers.run(len(body), read)
        if isinstance(reading, Read):
            self._apply(flow, call, body, reading)
            return None
        return self._apply_once_read(flow, call, body, reading)

    async def _apply_once_read(self, flow: http.HTTPFlow, call: Call, body: bytes, reading: Awaitable[Read]) -> None:
        read = await reading
        if flow.error is not None or flow.response is not None:
            # Killed meanwhile: counted for its record, not answered.
            call.request.findings, call.request.finding_actions = read.counts, read.by_action
            return
        self._apply(flow, call, body, read)

    def _apply(self, flow: http.HTTPFlow, call: Call, body: bytes, read: Read) -> None:
        """What was read applied: what cannot be read named in `unread` (and refused where a rule
        says `unread: deny`), the findings counted, and the call refused or its body redacted as
        they say."""
        c, scan = call.classification, read.scan
        if read.not_read:
            c.facts.unread += tuple(what for what in read.not_read if what not in c.facts.unread)
            if scan.unread == "deny":
                call.request.findings = read.counts
                refuse(
                    flow,
                    call,
                    CONTENT_DENIED,
                    "Tollgate refused this call: a guardrail must read what it sends, and Tollgate cannot"
                    f" read {', '.join(read.not_read)}.",
                )
                return
        if not scan.findings:  # most calls: clean
            call.request.findings, call.request.redacted = {}, 0
            return
        call.request.findings, call.request.finding_actions = read.counts, read.by_action
        model_kind = read.model_kind if c.model is not None else None
        if model_kind is not None:  # its model names a secret: the audit, metrics and traces name its kind
            c.model = PLACEHOLDER.format(kind=model_kind)
            call.classified(c)
        if scan.denied:
            denied = ", ".join(f"{kind} ({n})" for kind, n in sorted(scan.denied_counts().items()))
            refuse(flow, call, CONTENT_DENIED, f"Tollgate refused this call: its content holds {denied}.")
            return
        if read.redacted is None:  # a document to redact that cannot be written anew: it does not go
            refuse(
                flow, call, CONTENT_DENIED, "Tollgate refused this call: a document to redact could not be rewritten."
            )
            return
        call.request.redacted = read.redacted.replaced
        if read.redacted.replaced:
            write_raw_body(flow.request, call, read.redacted.body)
            call.request.body = read.redacted.data  # what the later steps read and write anew

    def answer_ready(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        """The detectors its answer will be read with compiled before the call goes upstream: a set
        of answer rules not compiled at load (a call matching some of many rules) is compiled in a
        worker thread while the event loop serves the other calls, the call awaiting it (a second
        or so, once per set), never at the answer's first bytes on the event loop."""
        guardrails = call.loaded.guardrails
        if guardrails is None or not guardrails.answer_rules:
            return None
        who = call.caller
        provider, model = call.route.target.provider, call.target_model
        if not guardrails.reads_answers(provider, model, who.client, who.groups):
            return None
        if flow.request.method == "HEAD":
            return None  # its answer has no body: nothing a model wrote to read
        carried = stored_unread(call.classification, flow.request.method, flow.request.path)
        requested = call.registry[call.route.requested.provider]
        if carried is None and (found := model_text(call.classification, requested)) is not None:
            carried = found if answer_format(client_answer_format(call)) is None else None
        if carried is None:
            asked = call.request.client_body if call.request.client_body is not None else call.request.body
            carried = alternatives_asked(call.classification, asked)
        if carried is not None:
            refuse_unread_answer(flow, call, carried)
            return None
        compile_ = guardrails.answer_to_compile(provider, model, who.client, who.groups)
        if compile_ is None:
            return None
        compiled = self.workers.off_loop(compile_)
        return _compiled(compiled) if isinstance(compiled, Awaitable) else None

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """An MCP server's request (a POST of JSON-RPC), read where it calls a tool or gets a prompt
        (its body, and the arguments a client mirrors into `Mcp-Param-*` headers): refused with a
        JSON-RPC error for each of its requests, or sent redacted. Its rules are those whose
        `match` names no provider or model."""
        loaded = exchange.loaded
        guardrails = loaded.guardrails if loaded is not None else None
        if (
            guardrails is None
            or not guardrails.reads_requests
            or not any(r.method in MCP_READ for r in exchange.requests)
        ):
            return None
        client, groups = exchange.caller.client, exchange.caller.groups
        params = [
            _ParamHeader(i, value, guardrails.scan(value.encode(), "mcp", None, client, groups, is_json=False))
            for i, value in _param_headers(flow.request)
        ]
        body = flow.request.content or b""
        reading = self.workers.run(len(body), lambda: read_mcp(guardrails, body, client, groups))
        if isinstance(reading, Read):
            self._apply_mcp(flow, exchange, reading, params)
            return None
        return self._apply_mcp_once_read(flow, exchange, reading, params)

    async def _apply_mcp_once_read(
        self, flow: http.HTTPFlow, exchange: McpExchange, reading: Awaitable[Read], params: list[_ParamHeader]
    ) -> None:
        read = await reading
        if flow.error is not None or flow.response is not None:
            _count_mcp(exchange, read, params)
            return
        self._apply_mcp(flow, exchange, read, params)

    def _apply_mcp(self, flow: http.HTTPFlow, exchange: McpExchange, read: Read, params: list[_ParamHeader]) -> None:
        _count_mcp(exchange, read, params)
        scans = (read.scan, *(p.scan for p in params))
        if any(s.denied for s in scans):
            denied = Counter[str]()
            for s in scans:
                denied.update(s.denied_counts())
            named = ", ".join(f"{kind} ({n})" for kind, n in sorted(denied.items()))
            # As the policy's denials are: each request's JSON-RPC error, in a 200 answer.
            refuse_mcp(flow, exchange, 200, CONTENT_DENIED, f"Tollgate refused this request: it holds {named}.")
            return
        replaced = _redact_params(flow.request, params)
        if read.redacted is not None and read.redacted.replaced:
            replaced += read.redacted.replaced
            flow.request.content = read.redacted.body  # encoded again as it came, its Content-Length set
        exchange.redacted = replaced

    def done(self) -> None:
        self.workers.close()


async def _compiled(compiling: Awaitable[object]) -> None:
    await compiling


@dataclass(frozen=True, slots=True)
class Redacted:
    """A body with its findings to redact replaced, their number, and its JSON read anew."""

    body: bytes
    replaced: int
    data: dict[str, Any] | None


NOTHING_REDACTED = Redacted(b"", 0, None)


@dataclass(frozen=True, slots=True)
class Read:
    """What the guardrails made of a call's body: its scan, the names of what they could not read
    of it (an image, a PDF, a file by reference), and the body redacted as its findings say (made
    where it was read: a hostile body's thousands of replacements are no work for the event loop);
    None where a document to redact could not be written anew. Also made where it was read, for
    the same reason: the findings counted by kind (`counts`) and by kind and action (`by_action`),
    and the kind of the first one in the body's `model` (`model_kind`)."""

    scan: Scan
    not_read: list[str]
    redacted: Redacted | None = NOTHING_REDACTED
    counts: dict[str, int] = field(default_factory=dict)
    by_action: tuple[tuple[str, str, int], ...] = ()
    model_kind: str | None = None


def _read(scan: Scan, not_read: list[str], body: bytes) -> Read:
    if not scan.findings:  # most calls: clean
        return Read(scan, not_read, NOTHING_REDACTED)
    model_kind = scan.found_in(body, ("model",))
    return Read(scan, not_read, redacted(scan, body), scan.counts(), _by_action(scan), model_kind)


def read_call(
    guardrails: Guardrails,
    body: bytes,
    wire: WireFormat | None,
    data: dict[str, Any] | None,
    provider: str,
    model: str | None,
    client: str | None,
    groups: tuple[str, ...],
) -> Read:
    """A call's body read by the guardrails: with adjacent text parts of a message joined, as the
    model reads them, and again with the text documents it holds inline where the first pass saw
    their markers. Plain work on what it is given, so a large body is read in a worker thread."""
    runs = wire.text_runs(data) if wire is not None and data else []
    scan = guardrails.scan(body, provider, model, client, groups, runs=runs)
    if not (scan.may_attach and wire is not None and data):
        return _read(scan, [], body)
    inline, not_read = documents.read(wire.attachments(data))
    if inline:
        scan = guardrails.scan(body, provider, model, client, groups, documents=inline, runs=runs)
    return _read(scan, not_read, body)


def read_mcp(guardrails: Guardrails, body: bytes, client: str | None, groups: tuple[str, ...]) -> Read:
    """An MCP server's request read by the rules whose `match` names no provider or model, and
    redacted as they say (its JSON is not read anew: nothing later reads it)."""
    scan = guardrails.scan(body, "mcp", None, client, groups)
    if not scan.findings:
        return Read(scan, [])
    written, replaced = (body, 0) if scan.denied else scan.redact(body)
    return Read(scan, [], Redacted(written, replaced, None), scan.counts(), _by_action(scan))


def redacted(scan: Scan, body: bytes) -> Redacted | None:
    """`body` as `scan` redacts it (nothing where it finds nothing or denies the call); None where a
    document to redact cannot be written anew."""
    if not scan.findings or scan.denied:
        return NOTHING_REDACTED
    try:
        written, replaced = scan.redact(body)
    except ValueError:
        return None
    return Redacted(written, replaced, read_request_json(written) if replaced else None)


def _by_action(*scans: Scan) -> tuple[tuple[str, str, int], ...]:
    """The findings by kind and the action taken on them, for the metrics."""
    actions = Counter((f.kind, f.action) for scan in scans for f in scan.findings)
    return tuple((kind, action, n) for (kind, action), n in actions.items())


@dataclass(frozen=True, slots=True)
class _ParamHeader:
    """An `Mcp-Param-*` header of an MCP request: its place among the request's header fields, its
    value as its client meant it (the `=?base64?…?=` form decoded), and what the rules found in it."""

    at: int
    value: str
    scan: Scan


def _param_headers(request: http.Request) -> list[tuple[int, str]]:
    """Each `Mcp-Param-*` header's place and value (decoded; as it came where it does not decode)."""
    found = []
    for i, (name, raw) in enumerate(request.headers.fields):
        if name.lower().startswith(revision.PARAM_PREFIX.encode()):
            value = raw.decode("latin-1")
            found.append((i, revision.decoded(value) or value))
    return found


def _count_mcp(exchange: McpExchange, read: Read, params: list[_ParamHeader]) -> None:
    """The findings of the body (counted where it was read) and of its `Mcp-Param-*` headers (a
    value mirrored in a header counts there too), by kind and by kind and action."""
    exchange.redacted = 0
    if not any(p.scan.findings for p in params):
        exchange.findings, exchange.finding_actions = read.counts, read.by_action
        return
    counts = Counter(read.counts)
    for param in params:
        counts.update(param.scan.counts())
    exchange.findings = dict(counts)
    exchange.finding_actions = _by_action(read.scan, *(p.scan for p in params))


def _redact_params(request: http.Request, params: list[_ParamHeader]) -> int:
    """Each `Mcp-Param-*` header redacted as the body is, so that the two still agree (written in
    the base64 form where it came so); the number of replacements."""
    fields = list(request.headers.fields)
    replaced = 0
    for param in params:
        if not any(f.action == "redact" for f in param.scan.findings):
            continue
        written, n = param.scan.redact(param.value.encode())
        name, raw = fields[param.at]
        value = revision.encoded(written.decode(), as_base64=revision.is_base64(raw.decode("latin-1")))
        fields[param.at] = (name, value.encode())
        replaced += n
    if replaced:
        request.headers.fields = tuple(fields)
    return replaced
