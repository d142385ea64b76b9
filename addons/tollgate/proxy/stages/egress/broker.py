"""Brokered credentials (`egress.credentials`): a request to a credential's host over TLS (its
connection decrypted for it) has the placeholder in the credential's header replaced by the token; a
placeholder anywhere else in it is refused (403 `content_denied`), and so is a request with two
Authorization headers or two of a credential's header (400 `bad_request`: a server reads one of
two, Tollgate cannot know which), and one whose TLS server name or Host header names another host
than its CONNECT's target (421 `misdirected`, whatever it holds). A placeholder is refused too in
any other request Tollgate reads: one sent to the proxy in cleartext (the token would go out as the
placeholder came, unencrypted), one to another host (an LLM call's: `Guard`). Bodies are not read:
they stream both ways.

Each client connection that sent a request to a credential's host leaves a `connection` record
when it closes: its client, host, how many requests had a credential brokered and how many were
refused, and the bytes of their bodies each way (heads not counted: they are HTTP/2's or HTTP/1's,
and hold the token). Another request refused is recorded where Egress records it (`refused_elsewhere`:
a plain HTTP request's record, a decrypted connection's). Never the token, never the placeholder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import connection, http

from tollgate.calls.call import new_request_id
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.refusals import BAD_REQUEST, CONTENT_DENIED, MISDIRECTED
from tollgate.governance.egress.brokered import Brokered
from tollgate.governance.egress.misdirection import Misdirected
from tollgate.providers import host_name
from tollgate.proxy.connection_log import counting
from tollgate.proxy.flows import BROKERED, misdirected, scrub_placeholders, unreadable_authority
from tollgate.proxy.state import Shared, hosts_of
from tollgate.records.audit.connection_record import Connection, connection_record

# mitmproxy's proxyauth keeps the login in the flow's metadata under this name: (user, password).
PROXYAUTH = "proxyauth"
# Why such a request is refused, as its connection's record says; the guardrails' kind of Tollgate's own secrets.
REFUSED_REASON = "a brokered credential's placeholder (tollgate_keys) where it does not belong"
UNREADABLE_MESSAGE = "Tollgate cannot read this request exactly and did not forward it"
REFUSED_MESSAGE = (
    f"Tollgate refused this request: it holds {REFUSED_REASON} (only its own host's header, over TLS, takes it)."
)


class RefusedElsewhere(Protocol):
    """Told of a request refused that is not to a credential's host, with why: whether it records it
    (Egress records a plain HTTP request, and a connection it decrypted for its server name)."""

    def __call__(self, flow: http.HTTPFlow, reason: str) -> bool: ...


@dataclass(slots=True)
class BrokerConnection:
    """A client connection's requests to a credential's host: its connection record's counts."""

    connection: Connection
    brokered: int = 0  # requests whose placeholder was replaced by the token
    refused: int = 0  # requests refused for a misplaced placeholder


class Broker:
    def __init__(self, shared: Shared, refused_elsewhere: RefusedElsewhere | None = None) -> None:
        self.shared = shared
        self._opened: dict[str, BrokerConnection] = {}  # by client connection id
        self._refused_elsewhere = refused_elsewhere

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        loaded = self.shared.loaded
        if loaded is None or not loaded.brokered or flow.response is not None or flow.error is not None:
            return
        brokered, request = loaded.brokered, flow.request
        host = host_name(request.host)
        if host in brokered.hosts and over_tls(flow):
            astray = misdirected(flow, lambda name: name == host)
            if astray is None and (unreadable := unreadable_authority(request)) is not None:
                # A call's `check_transport` refuses it; here the token would go with it.
                astray = Misdirected(host, f"Host {unreadable}, which names no host")
            if astray is not None:
                self._misdirected(flow, astray)
            else:
                self._broker(flow, host)
            return
        if hosts_of(self.shared).provider_for(host) is not None:
            return  # an LLM call (read once its body is in): refused in its provider's shape (`Guard`)
        servers = loaded.mcp
        if servers and servers.at(host, request.port, request.path.partition("?")[0]) is not None:
            return  # an MCP server's request: its arguments read by `Guard.mcp`
        if brokered.holds_placeholder(request.headers.fields, request.data.path):
            self._refuse_elsewhere(flow, host)

    def _refuse_elsewhere(self, flow: http.HTTPFlow, host: str) -> None:
        """A placeholder in a request that is not brokered: refused, and recorded (by Egress where
        it records the request, else with this client connection's counts)."""
        loaded = self.shared.loaded
        assert loaded is not None
        metrics = self.shared.metrics
        if metrics is not None and host in loaded.brokered.hosts:
            metrics.brokered_request(host, "refused")
        _refuse(flow, loaded.brokered)
        told = self._refused_elsewhere
        if told is None or not told(flow, REFUSED_REASON):
            self._opened_for(flow, host).refused += 1

    def _misdirected(self, flow: http.HTTPFlow, astray: Misdirected) -> None:
        """A request to a credential's host (its CONNECT's target; a captured one's Host header)
        whose TLS server name or Host header names another: its server, at the credential's
        host's address, may serve the other (`curl --connect-to`), and the token would go there.
        Refused 421, whatever it holds, and recorded on its connection's record: refused, with the
        hosts it named."""
        opened = self._opened_for(flow, astray.governed)
        opened.connection.error = f"{MISDIRECTED}: {astray.named}"
        loaded = self.shared.loaded
        assert loaded is not None
        _mark_brokered(flow, loaded.brokered, astray.governed)
        self._refuse_here(flow, astray.governed, opened, 421, MISDIRECTED, astray.message)

    def _broker(self, flow: http.HTTPFlow, host: str) -> None:
        loaded = self.shared.loaded
        assert loaded is not None
        request = flow.request
        opened = self._opened_for(flow, host)
        _mark_brokered(flow, loaded.brokered, host)
        twice = loaded.brokered.repeated_header(host, request.headers.fields)
        if twice is not None:
            why = f"the request carries more than one {twice} header"
            self._refuse_here(flow, host, opened, 400, BAD_REQUEST, f"{UNREADABLE_MESSAGE}: {why}.")
            return
        brokering = loaded.brokered.broker(host, request.headers.fields, request.data.path)
        if brokering.misplaced:
            self._refuse_here(flow, host, opened)
            return
        metrics = self.shared.metrics
        if brokering.fields is not None:
            request.headers.fields = tuple(brokering.fields)
            opened.brokered += 1
            if metrics is not None:
                metrics.brokered_request(host, "brokered")
        request.stream = counting(opened.connection, sent=True)

    def _refuse_here(
        self,
        flow: http.HTTPFlow,
        host: str,
        opened: BrokerConnection,
        status: int = 403,
        kind: str = CONTENT_DENIED,
        message: str = REFUSED_MESSAGE,
    ) -> None:
        """A request to a credential's host refused, counted on its connection's record."""
        loaded = self.shared.loaded
        assert loaded is not None
        opened.refused += 1
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.brokered_request(host, "refused")
        _refuse(flow, loaded.brokered, status, kind, message)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if BROKERED not in flow.metadata or flow.response is None:
            return
        opened = self._opened.get(flow.client_conn.id)
        if opened is None:
            return
        record = opened.connection
        if record.address is None and (server := flow.server_conn.peername):
            record.address = server[0]
        if flow.response.stream is False or flow.response.stream is None:  # not Tollgate's own answer
            flow.response.stream = counting(record, sent=False)

    def _opened_for(self, flow: http.HTTPFlow, host: str) -> BrokerConnection:
        client = flow.client_conn
        opened = self._opened.get(client.id)
        if opened is None:
            login = flow.metadata.get(PROXYAUTH)
            user = None
            if not self.shared.logins_unchecked and isinstance(login, tuple | list) and login and login[0]:
                user = str(login[0])  # mitmproxy checked the login's password: its user is the client
            peer = client.peername
            server = flow.server_conn.peername
            record = Connection(
                new_request_id(),
                host,
                flow.request.port,
                source=(f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}") if peer else None,
                client=user,
                auth="proxyauth" if user else None,
                address=server[0] if server else None,
            )
            loaded = self.shared.loaded
            service = loaded.egress.service_of(host) if loaded is not None else None
            if service is not None:  # a catalogued AI service's API, brokered
                record.service, record.category = service.name, service.category
            opened = self._opened[client.id] = BrokerConnection(record)
        return opened

    def client_disconnected(self, client: connection.Client) -> None:
        opened = self._opened.pop(client.id, None)
        if opened is not None:
            self._write(opened)

    def done(self) -> None:
        for opened in self._opened.values():
            self._write(opened)
        self._opened.clear()

    def _write(self, opened: BrokerConnection) -> None:
        audit = self.shared.audit
        if audit is None:
            return
        record = opened.connection
        record.ended = time.time()
        # A connection, not a call: `tollgate_stopped` counts calls only, as for Egress's records.
        audit.write({**connection_record(record), "brokered": opened.brokered, "refused": opened.refused}, call=False)


def over_tls(flow: http.HTTPFlow) -> bool:
    """Whether the request came to the proxy over TLS and goes on to its host over TLS: only then
    may a token go in (an `https://` URL sent to the proxy in cleartext brought its placeholder
    unencrypted, and its answer would go back so)."""
    return flow.request.scheme == "https" and flow.client_conn.tls_established


def _mark_brokered(flow: http.HTTPFlow, brokered: Brokered, host: str) -> None:
    """A request to a credential's host: the headers its token goes in, for `Redact` (a tuple,
    which saved flows can hold); its connection recorded here (`EgressGate.recorded_otherwise`)."""
    flow.metadata[BROKERED] = tuple(c.header.encode() for c in brokered.by_host[host])


def _refuse(
    flow: http.HTTPFlow,
    brokered: Brokered,
    status: int = 403,
    kind: str = CONTENT_DENIED,
    message: str = REFUSED_MESSAGE,
) -> None:
    scrub_placeholders(flow.request, brokered)
    flow.request.stream = False
    flow.response = http.Response.make(
        status,
        encode_json({"error": {"type": kind, "message": message}}),
        {"content-type": "application/json", "x-tollgate-error": kind},
    )
