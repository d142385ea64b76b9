"""Tollgate as mitmproxy runs it: for each mitmproxy hook, the steps it takes, in order.

The life of a call: `request` classifies it (provider, endpoint, model, facts; 400 if it cannot be
read exactly), then the call steps decide it before it goes upstream; the first step that answers
the call (a refusal in the provider's own error shape) ends them. At `responseheaders` the answer
is tapped to read its usage as it streams by; `response` or `error` ends the call with its audit
record. A call's flow keeps no credential and no prompt once sent or answered (`redact`)."""

from __future__ import annotations

from collections.abc import Sequence

from tollgate.proxy.runner import AnyCallStep, CallSteps, Gateway
from tollgate.proxy.stages.agents.agents import Agents
from tollgate.proxy.stages.agents.quarantine_gate import Quarantines
from tollgate.proxy.stages.egress.broker import Broker
from tollgate.proxy.stages.egress.egress_gate import EgressGate
from tollgate.proxy.stages.guardrails.guard import Guard
from tollgate.proxy.stages.identity.identify import Identify
from tollgate.proxy.stages.limits.ledger import Ledger
from tollgate.proxy.stages.limits.summarize import RollUp
from tollgate.proxy.stages.mcp.mcp import Mcp, McpGate
from tollgate.proxy.stages.policy.decide import Decide
from tollgate.proxy.stages.process.drain import Drain
from tollgate.proxy.stages.process.settings import Listening, Settings
from tollgate.proxy.stages.process.warm_up import WarmUp
from tollgate.proxy.stages.records.audit import Audit, AuditGate
from tollgate.proxy.stages.records.audit_export import AuditExporter, AuditPostgresSender
from tollgate.proxy.stages.records.metrics_server import Metrics
from tollgate.proxy.stages.records.tracing import Tracing
from tollgate.proxy.stages.routing.override import Overriding
from tollgate.proxy.stages.routing.redact import Redact
from tollgate.proxy.stages.routing.route import Destination
from tollgate.proxy.stages.transport.classify import Classify
from tollgate.proxy.stages.transport.realtime_socket import RealtimeSocket
from tollgate.proxy.stages.transport.responses_socket import ResponsesSocket, stays_on_the_socket
from tollgate.proxy.stages.transport.translate import Translate
from tollgate.proxy.stages.transport.websocket import WebSocket
from tollgate.proxy.stages.upstream.attempts import Attempts
from tollgate.proxy.stages.upstream.credential import Credential
from tollgate.proxy.stages.upstream.fallback import Fallbacks, keep_trace_context, retarget
from tollgate.proxy.stages.upstream.stream_tap import AskForUsage, StreamTap
from tollgate.proxy.stages.upstream.upstream_watch import UpstreamWatch
from tollgate.proxy.state import Shared


def gateway(every_call: Sequence[AnyCallStep] = ()) -> Gateway:
    """Tollgate's one addon: its stages share one `Shared` (the configuration loaded).

    `every_call`: the steps every kind of call takes (an HTTP call, a passthrough call, a session
    upgrade, a WebSocket's response, an MCP server's request, a failover attempt), last before its
    credential goes in: a step written once that applies to every call. Each is given the call's
    record (a `Call`, an MCP request's `McpExchange`). None yet."""
    shared = Shared()
    audit_export = AuditExporter(shared)  # the audit file shipped to a collector (audit.otlp), from its own thread
    audit_postgres = AuditPostgresSender(shared)  # the audit file sent to PostgreSQL (audit.postgres), likewise
    # /metrics served where `metrics.listen` says
    metrics = Metrics(
        shared,
        export_lag=audit_export.lag,
        postgres_lag=audit_postgres.lag,
        agents_kept=lambda: agents.kept(),  # noqa: PLW0108 (read at scrape time; `agents` is made below)
    )
    # The tollgate_config option, the file watched, the proxy options set; the metrics' server
    # opened for each configuration before it is applied.
    settings = Settings(shared, opening=[metrics.open])
    listening = Listening()  # a port in use (the proxy cannot listen): what to change, in Tollgate's words
    classify = Classify(shared)
    # `agents`' quarantine after an injection: started by what a call's request or an MCP result
    # holds; refusing acting MCP calls, and a proxy login's connections off `agents.egress_allow`.
    quarantines = Quarantines(shared)
    # Each connection a client opens through Tollgate decided before it is relayed, and recorded.
    egress = EgressGate(shared, quarantined=quarantines.connection)
    audit_gate = AuditGate(shared)
    websocket = WebSocket(shared)
    identify = Identify(shared)
    # Guardrails on the body as its client sent it: found, refused or redacted before an override
    # or a route writes it anew, before the policy (which sees the findings) and the credential
    # (a SigV4 signature covers what goes).
    guard = Guard(shared)
    override = Overriding(shared)
    translate = Translate(shared)
    route = Destination(shared)
    ledger = Ledger(shared)
    decide = Decide(shared)
    agents = Agents(shared, guard.workers)  # a long conversation read in the guardrails' threads
    # A routed call's rolled-up conversation, written in its target's format anew.
    rolled_up = CallSteps(translate.again)  # not a call of its own: a step of the call it rolls up
    rollup = RollUp(shared, rolled_up)
    ask_for_usage = AskForUsage(shared)
    credential = Credential(shared)
    # Each fallback a failed call tries (a rule's `fallbacks`): its request written for the target,
    # then routed, reserved, decided and given its credential as a call is. Refused, it is skipped.
    failover = CallSteps(
        retarget,  # the same request with the fallback's model, or the client's written anew for its provider
        translate.handle,  # to a provider of another format: written in its format
        keep_trace_context,  # a request written anew keeps the failed attempt's traceparent and tracestate
        route.handle,
        ask_for_usage.handle,
        ledger.handle,  # its own reservation, before the policy: the policy sees its counters
        decide.fallback,  # the policy on the fallback (`input.fallback_of`)
        guard.answer_ready,  # its answer's detectors compiled, as for a call
        *every_call,
        credential.fallback,  # a credential of Tollgate's for its target
        audit_gate.sent,  # in flight as the attempt it now is
    )
    fallback = Fallbacks(shared, failover)
    upstream_watch = UpstreamWatch(shared)
    # A failed attempt goes again: a retry on the next key, else the next fallback (`next_step`); each
    # attempt with a clock of its own.
    attempts = Attempts(shared, fallback.next, upstream_watch.handle)
    stream_tap = StreamTap(shared)
    redact = Redact(shared)
    # Each request to an MCP server of `mcp.servers`, once its JSON-RPC is read: refused as
    # JSON-RPC errors, audited one record per JSON-RPC request.
    mcp_gate = McpGate(shared)
    mcp_request = CallSteps(
        audit_gate.mcp,  # 503 while the audit cannot be written
        identify.mcp,  # its caller, found as an LLM call's is (401)
        mcp_gate.revision,  # at 2026-07-28: its headers say what its body does, no batch, no session (400)
        mcp_gate.rounds,  # a retry answering an input_required result: tied to its first call
        guard.mcp,  # a tool's or a prompt's arguments: refused (JSON-RPC error) or redacted
        mcp_gate.session,  # a session it names is its caller's (404)
        quarantines.mcp,  # `agents`: an acting tools/call of a session or person in quarantine refused
        mcp_gate.reserve,  # mcp_calls_per_minute (429)
        mcp_gate.decide,  # each JSON-RPC request decided (a decision not cached is awaited)
        *every_call,
        mcp_gate.send,  # the caller's credential out, the server's in
        upstream_watch.mcp,  # the clock for the server's response headers (its `timeout`)
        audit_gate.mcp_sent,  # in flight until its records are written
    )
    # A large result read in the stream tap's threads; tools/call results read by `agents`.
    mcp = Mcp(shared, mcp_request, stream_tap.workers, quarantines.mcp_results)
    # A credential's host: the placeholder in its header replaced by the token (`egress.credentials`).
    broker = Broker(shared, refused_elsewhere=egress.refused_request)
    tracing = Tracing(shared)  # a span per call, exported over OTLP (metrics.otlp)
    # At each call's end: its counters settled, then counted in the metrics and traced.
    audit = Audit(
        shared,
        recorded=[ledger.settle, metrics.recorded, tracing.record, audit_export.recorded, audit_postgres.recorded],
    )

    call_steps = CallSteps(
        audit_gate.handle,  # 503 while the audit cannot be written
        identify.handle,  # who is calling: proxy login, virtual key, JWT, verified signature, anonymous; else 401
        guard.handle,  # guardrails: what the body carries counted, refused (403) or redacted
        override.handle,  # the first matching rule: the model called, the provider routed to
        translate.handle,  # a route to another provider's own format: the request rewritten in it (400 if it cannot be)
        route.handle,  # the upstream's scheme, host and port
        ledger.handle,  # the limits that apply: what the call may use reserved on their counters (429 when full)
        decide.handle,  # the policy: 403 with its reasons (a decision not cached is awaited from its worker)
        agents.handle,  # `agents`: a chat request's provenance, taint and injection signals, read once
        quarantines.call,  # `agents`: an injection in its outside content quarantines a personal caller
        guard.answer_ready,  # its answer's detectors compiled (a set not compiled at load: in a worker thread)
        rollup.handle,  # a long conversation's earlier turns summarized (a summary not kept is awaited)
        ask_for_usage.handle,  # an OpenAI-format stream asked for its usage (before anything is signed)
        tracing.handle,  # with traces on, the upstream's traceparent names the call's span
        *every_call,
        credential.handle,  # the caller's credential out, the upstream one in (a header, or a SigV4 signature)
        attempts.handle,  # with `retry` or `fallbacks`, a failed attempt is looked at before it is answered
        upstream_watch.handle,  # the clock for the upstream's response headers (504 when it runs out)
        audit_gate.sent,  # in flight until its record is written (a process killed meanwhile: `worker lost`)
        # A path outside the model API (Bedrock's control plane): no virtual credential, and the
        # caller's own credential goes upstream; nothing decided or counted.
        passthrough=(
            audit_gate.handle,
            identify.own_credential_only,  # a virtual key or AWS credential is refused (401/403)
            route.handle,
            *every_call,
            credential.own,  # side headers out; the caller's own credential, as it came
            upstream_watch.handle,
            audit_gate.sent,
        ),
        # The Responses API's WebSocket: the connection identified and given its credential; its
        # messages are the calls, each decided by `responses_socket`.
        session=(
            audit_gate.handle,
            identify.handle,
            route.handle,
            *every_call,
            credential.handle,
            upstream_watch.handle,
            audit_gate.sent,
        ),
    )
    # Each response.create on the Responses API's WebSocket, as a POST /v1/responses would be
    # (its caller and credential are its session's; its answer is the session's events).
    responses_response = CallSteps(
        audit_gate.handle,
        identify.unexpired,  # the session's virtual key has not expired since the upgrade (else 401)
        guard.handle,  # the message read as an HTTP call's body is: an error event, or sent redacted
        override.handle,
        stays_on_the_socket,
        ledger.handle,
        decide.handle,
        agents.handle,  # `agents`: its tools' outputs read, for its response's calls to be decided
        quarantines.call,
        guard.answer_ready,
        *every_call,
    )
    responses_socket = ResponsesSocket(shared, responses_response, audit.record, stream_tap.workers)
    # Each response on a Realtime session under limits, reserved and settled as a call (the session's
    # record adds up their usage); a refused one audited on its own. Without limits its messages go
    # as they came: the session is the call, decided at its upgrade.
    realtime_response = CallSteps(
        audit_gate.handle,
        identify.unexpired,  # as on the Responses WebSocket
        ledger.handle,
        *every_call,
    )
    # Each client event on a Realtime session that a model reads (session.update,
    # conversation.item.create, response.create), read as a call's body would be.
    realtime_message = CallSteps(guard.handle, *every_call)
    realtime_socket = RealtimeSocket(
        shared,
        realtime_message,
        realtime_response,
        audit.record,
        ledger.settle_reservation,
        ledger.charge_unreserved,
        identify.unexpired,  # without limits, a message once the session's key is removed or expired
        agents.realtime,  # with `agents`, its function calls decided as its events come
    )
    # SIGTERM: no new connection, the calls in flight (the audit's) given drain_s to end, then exit.
    drain = Drain(shared, audit.in_flight, draining=[responses_socket.drain])
    # Before the proxy listens: the upstream TLS context made, start-up's objects frozen out of
    # the garbage collections the first calls set off.
    warm_up = WarmUp(shared)

    return Gateway(
        # Each kind of call's steps, by name (`CallSteps`).
        kinds={
            "http": call_steps.steps,
            "passthrough": call_steps.passthrough,
            "session": call_steps.session,
            "responses_response": responses_response.steps,
            "realtime_message": realtime_message.steps,
            "realtime_response": realtime_response.steps,
            "mcp_request": mcp_request.steps,
            "failover": failover.steps,
        },
        load=[
            settings.load,
            listening.load,
            upstream_watch.load,
            attempts.load,
            stream_tap.load,
            websocket.load,
            drain.load,
        ],
        configure=[
            settings.configure,
            websocket.configure,
            tracing.configure,
            audit_export.configure,
            audit_postgres.configure,
            warm_up.configure,
        ],
        running=[settings.started, settings.running, decide.running, metrics.running, drain.running],
        client_connected=[drain.client_connected],  # refused while draining
        # A CONNECT let through and never used, and a brokered connection, each recorded.
        client_disconnected=[egress.client_disconnected, broker.client_disconnected],
        # A CONNECT whose head passed 64 KiB is refused (431), and audited when its host is a provider's.
        # Then the connection is decided (`egress`): 403 egress_denied, or on it goes.
        http_connect=[classify.http_connect, identify.forget_proxy_password, egress.http_connect, redact.http_connect],
        next_layer=[egress.next_layer],  # a tunnel Tollgate does not read, its bytes counted
        http_connect_error=[audit.http_connect_error],
        # An upload streamed unread is decided at its headers; every other call at `request`.
        requestheaders=[
            drain.requestheaders,  # a request in flight, until its answer has ended
            identify.forget_proxy_password,  # a JWT login's password kept aside for Identify, out of the flow
            egress.requestheaders,  # a plain HTTP request to the proxy for a host, decided as a CONNECT is
            classify.requestheaders,
            route.unread,  # a provider's path that is no call (ChatGPT's web app) goes to the provider's upstream
            audit.requestheaders,  # a streamed upload's call in flight from here: awaited steps follow
            websocket.requestheaders,
            call_steps.at_headers,
            identify.refused,  # a call refused before it was identified (its path, a web app's): its caller named
            broker.requestheaders,  # a credential's host: its token in, else a placeholder refused
            redact.requestheaders,
            egress.recorded_otherwise,  # a decrypted connection recorded by its requests, or its own record
        ],
        request=[
            classify.request,
            audit.request,  # the call in flight from here (a drain waits for it, a shutdown audits it)
            websocket.request,
            egress.recorded_otherwise,  # a call: its connection recorded by its calls (before any step awaited)
            call_steps.at_request,
            identify.refused,  # a call refused before it was identified (a body it cannot read): its caller named
            mcp.request,  # an MCP server's request: identified, decided, its credential swapped
            egress.recorded_otherwise,  # an MCP request: its connection recorded by its records
            identify.request,  # a login's password not judged (the call was refused first) let go
            redact.request,
        ],
        # An `https://` request sent in cleartext, sent on to its address decided: TLS by its name.
        server_connect=[egress.server_connect, upstream_watch.server_connect],
        tls_start_server=[route.tls_start_server],  # an mTLS host's client certificate (`client_cert`)
        server_connected=[upstream_watch.server_connected],
        tls_established_server=[upstream_watch.tls_established_server],
        tls_failed_server=[upstream_watch.tls_failed_server],
        # A client that does not trust the CA: said in its connection's record, and once on the console.
        tls_failed_client=[egress.tls_failed_client],
        server_connect_error=[upstream_watch.server_connect_error],
        server_disconnected=[upstream_watch.server_disconnected],
        # An attempt failed before its answer began (`patches.resend`): recorded, and with
        # `providers.<name>.retry`, the call goes again on the next key (after a wait it asks), then
        # on its rule's next `fallbacks` target the policy allows.
        attempt_failed=[
            upstream_watch.attempt_failed,  # its clock stopped
            attempts.attempt_failed,  # recorded; the refused key rests; a retry, a fallback or the end
        ],
        # A large piece of an answer the answer guardrails read, read in a worker thread.
        responseheaders=[
            classify.responseheaders,  # a provider's path that is no call (ChatGPT's web app) streams on
            attempts.responseheaders,  # a pooled key the upstream refused (401, 429) rests; the circuit counts
            fallback.forget,  # the request as its client sent it, kept for a fallback, let go
            upstream_watch.responseheaders,
            route.responseheaders,  # no Alt-Svc: the client's next call to the host comes here too
            stream_tap.responseheaders,  # the answer streams through a reader of its usage (and a translator)
            broker.responseheaders,  # a brokered request's answer streams, counted
            translate.responseheaders,  # a translated answer's headers as the caller's format sends them
            redact.responseheaders,
            audit.responseheaders,
            mcp.responseheaders,  # an MCP answer read as it streams (a tools/list's tools decided as they come)
            egress.responseheaders,  # an answer streamed on no call, on a decrypted connection: its bytes counted
        ],
        # A request's answer has ended (first: whatever a later step does); a translated call's error
        # in the caller's shape.
        # A counted call's answer ends once its settlement is written (after the audit's step, which settles it).
        # A JSON answer under an answer guardrail, read whole, served redacted or refused before the audit's.
        response=[
            drain.ended,
            translate.response,
            stream_tap.answer_read_whole,
            audit.response,
            stream_tap.response,
            mcp.response,
            egress.response,
        ],
        # A failed call ends in the provider's shape (502/504), counted for its key's or upstream's circuit.
        error=[
            drain.ended,
            fallback.forget,
            upstream_watch.error,
            attempts.error,  # an upstream unreachable or late counts for its circuit
            stream_tap.error,
            redact.error,
            audit.error,
            stream_tap.counted_error,  # a counted answer's end, held back, in place of a break after it
            mcp.error,
            egress.error,  # a plain HTTP request's exchange, recorded
        ],
        websocket_start=[responses_socket.websocket_start],
        websocket_message=[
            responses_socket.websocket_message,  # a response.create decided, an answer's usage read
            realtime_socket.websocket_message,  # under limits, a Realtime response reserved, settled at its end
            websocket.websocket_message,  # relayed; kept out of the flow
        ],
        websocket_end=[
            websocket.websocket_end,
            responses_socket.websocket_end,
            realtime_socket.websocket_end,  # before the session's record: its responses settled
            audit.websocket_end,
        ],
        done=[
            drain.done,
            settings.done,
            decide.done,
            upstream_watch.done,
            stream_tap.done,
            redact.done,
            responses_socket.done,  # the responses still open on a WebSocket, audited
            realtime_socket.done,  # the Realtime responses still open, settled
            egress.done,  # the tunnels still open, recorded
            broker.done,  # the brokered connections still open, recorded
            audit.done,
            tracing.done,  # after the audit's: the spans of the calls it ended exported
            audit_export.done,  # after the audit's: its last records sent to the collector
            audit_postgres.done,  # and to PostgreSQL
            ledger.done,
            metrics.done,
            guard.done,  # its scanning threads let go
        ],
    )
