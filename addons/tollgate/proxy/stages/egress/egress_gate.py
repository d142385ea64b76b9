"""Every connection a client opens through Tollgate, decided before anything is relayed, in one
call to governance (`Egress.decide`, which holds the order of its rules), acted on here, and, as
`egress.record` says, recorded when it closes (`connection`).

A CONNECT is decided at `http_connect`: refused, it is answered 403 (`X-Tollgate-Error:
egress_denied`, a one-line reason; 400 for a target that is no host) and never opened. A host that
must be resolved to be decided is resolved once, with this stage's resolver, and the tunnel goes to
the address decided (the CONNECT's host replaced by it), so that a second DNS answer cannot move
it. A tunnel Tollgate does not read (mitmproxy's ignored connection) is relayed by
`CountedTunnel`, which counts its bytes each way. Every connection Tollgate decrypts is recorded,
whatever `egress.record` says: one to a governed host (a provider's, an MCP server's, a
credential's) by its requests (as calls; `Broker`'s record), or here when none of them leaves a
record of its own (none made, or only ChatGPT's web app's, an MCP server's host's other paths);
any other (a CONNECT to one host whose TLS server name is a governed one's, which mitmproxy
decrypts for that name) here. Here, with its requests' bodies' bytes and how many of them were
refused."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakKeyDictionary

from mitmproxy import connection as mitm_connection
from mitmproxy import ctx, http, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import commands, events, layer, layers, server_hooks
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import RegularMode

from tollgate.calls.call import new_request_id
from tollgate.formats.refusals import AUDIT_UNAVAILABLE, BAD_REQUEST
from tollgate.governance.egress.egress import EGRESS_DENIED, Asked, Decided, Egress, host_of
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.proxy.certs import CA_CERT
from tollgate.proxy.connection_log import ConnectionLog, counting
from tollgate.proxy.flows import BROKERED, CALL, CAPTURE_MODES, MCP
from tollgate.proxy.state import Shared
from tollgate.records.audit.connection_record import Connection
from tollgate.records.audit.mcp_record import leaves_records

logger = logging.getLogger(__name__)

PROXYAUTH = "proxyauth"  # where mitmproxy's proxyauth keeps a login: (user, password)
DENIED_HEADER = "X-Tollgate-Error"
SHUT_DOWN = "proxy shut down"


async def resolve(host: str, port: int) -> str:
    """The address a name resolves to first (the one the tunnel will go to); OSError when none.
    An address resolves to itself, without a lookup."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host} resolves to no address")
    return str(infos[0][4][0])


@dataclass(slots=True, eq=False)
class Decrypted:
    """A connection Tollgate decrypts, recorded when its client goes; a governed host's only while
    none of its requests leaves a record of its own (`recorded_otherwise`)."""

    connection: Connection
    governed: bool
    refused: int = 0  # its requests Tollgate refused (a brokered credential's placeholder)


# Why a new connection of a client (its name, how it was identified) to a host and port is refused
# whatever egress allows (`agents`' quarantine), or None; awaited when asked of the fleet's Redis.
Quarantined = Callable[[str | None, str | None, str, int], str | Awaitable[str | None] | None]


async def held_back(decided: Decided, why: Awaitable[str | None]) -> Decided:
    """A connection allowed, refused once a quarantine read elsewhere holds its client."""
    reason = await why
    return decided if reason is None else Decided(False, decided.service, decided.address, reason, (reason,))


class EgressGate:
    def __init__(self, shared: Shared, quarantined: Quarantined | None = None) -> None:
        self.shared = shared
        self.quarantined = quarantined
        self.log = ConnectionLog(shared)
        # Each allowed CONNECT's connection, by its server connection's id, until its tunnel opens
        # (and whether `record` records it); those of each client connection, recorded when it
        # closes without one.
        self._pending: dict[str, tuple[Connection, bool]] = {}
        self._waiting: dict[str, list[str]] = {}
        # The connections decrypted and not recorded otherwise, by client connection id; and each
        # request on one, until its exchange ends or it leaves a record of its own.
        self._decrypted: dict[str, list[Decrypted]] = {}
        self._reads: WeakKeyDictionary[http.HTTPFlow, Decrypted] = WeakKeyDictionary()
        # Each plain HTTP request through the proxy let through, until its exchange ends: its
        # connection, and whether `record` records it (a request Tollgate refused, it always does).
        self._plain: WeakKeyDictionary[http.HTTPFlow, tuple[Connection, bool]] = WeakKeyDictionary()
        # The names of the `https://` requests sent in cleartext and sent on to their address
        # decided, by client connection id and (address, port): the server name their TLS asks for.
        self._names: dict[str, dict[tuple[str, int], str]] = {}
        self._told_untrusted = False  # the console told once that a client does not trust the CA
        # What a name resolves to: the event loop's resolver (getaddrinfo).
        self.resolve: Callable[[str, int], Awaitable[str]] = resolve

    def http_connect(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A CONNECT (or a plain HTTP request, `requestheaders`): read into what egress decides it
        on, decided in one call to governance, and acted on (`_answer`)."""
        if flow.response is not None:  # refused already (a head past its bound, a proxy login's 407)
            return None
        loaded = self.shared.loaded
        if loaded is None:
            return None
        egress: Egress = loaded.egress
        request = flow.request
        connection = connection_of(flow.client_conn, request.host, request.port)
        connection.started = request.timestamp_start or connection.started
        login = flow.metadata.get(PROXYAUTH)
        if not self.shared.logins_unchecked and isinstance(login, (tuple, list)) and login and login[0]:
            # mitmproxy checked the login's password (htpasswd, LDAP): its user is the client.
            connection.client, connection.auth = str(login[0]), "proxyauth"
        authority = request.data.authority.decode("utf-8", "surrogateescape") if request.method == "CONNECT" else None
        c, target = connection, (request.host, authority)
        decided = egress.decide(
            Asked(c.host, c.port, c.address, c.client, c.auth, c.source, target), loaded.policy, self.resolve
        )
        return self._answer(flow, connection, egress, decided)

    def _answer(
        self, flow: http.HTTPFlow, connection: Connection, egress: Egress, decided: Decided | Awaitable[Decided],
        held_read: bool = False,
    ) -> Awaitable[None] | None:  # fmt: skip
        """A CONNECT decided (awaited where governance could not decide at once): refused (403; 400
        for a target that is no host, `_refused`), or on to its tunnel (`_let_through`)."""
        if not isinstance(decided, Decided):
            return _once_decided(decided, lambda d: self._answer(flow, connection, egress, d))
        if decided.allowed and not held_read and self.quarantined is not None and connection.auth == "proxyauth":
            why = self.quarantined(connection.client, connection.auth, connection.host, connection.port)
            if why is not None and not isinstance(why, str):  # asked of the fleet's Redis
                return _once_decided(
                    held_back(decided, why), lambda d: self._answer(flow, connection, egress, d, held_read=True)
                )
            if why is not None:
                decided = Decided(False, decided.service, decided.address, why, (why,))
        _note(connection, decided)
        if decided.allowed:
            self._let_through(flow, connection, egress)
            return None
        status, refusal = (400, BAD_REQUEST) if decided.bad_target else (403, EGRESS_DENIED)
        flow.response = http.Response.make(
            status,
            f"Tollgate refused this connection: {decided.reason}.\n",
            {"Content-Type": "text/plain; charset=utf-8", DENIED_HEADER: refusal},
        )
        self.log.refused(connection, egress)
        return None

    def _let_through(self, flow: http.HTTPFlow, connection: Connection, egress: Egress) -> None:
        """A CONNECT allowed: on to its tunnel, sent to the address decided (mitmproxy takes the
        server's address from the CONNECT's host after this hook), not to whatever the name
        resolves to next; a plain HTTP request, to its exchange. None is made that `record` says
        to record while the audit cannot be written (503)."""
        recorded = egress.record == "all" or (egress.record == "ai" and connection.service is not None)
        if recorded and not self.log.recordable():
            # A connection that cannot be recorded is not made (as a call is not served).
            flow.response = http.Response.make(
                503,
                "Tollgate cannot write its audit, so it opens no connection it records; retry later.\n",
                {"Content-Type": "text/plain; charset=utf-8", DENIED_HEADER: AUDIT_UNAVAILABLE},
            )
            return
        if connection.address is not None:
            if (
                flow.request.scheme == "https"
                and flow.request.method != "CONNECT"
                and connection.address != connection.host
            ):
                # mitmproxy's TLS to the server would ask for the address: it asks for the name.
                names = self._names.setdefault(flow.client_conn.id, {})
                names[(connection.address, connection.port)] = connection.host
            flow.request.data.host = connection.address
        self.log.decided(connection)
        if flow.request.method != "CONNECT":  # a plain HTTP request: recorded at its end
            self._plain[flow] = (connection, recorded)
            return
        self._pending[flow.server_conn.id] = (connection, recorded)
        self._waiting.setdefault(flow.client_conn.id, []).append(flow.server_conn.id)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A request sent to the proxy itself in cleartext for a host (`GET http://host/…`, or an
        `https://` URL, which the proxy fetches over TLS; no CONNECT): decided as a CONNECT to its
        host is, each request of the connection on its own."""
        if self._decrypted and (decrypted := self._decrypted.get(flow.client_conn.id)):
            self._read(flow, decrypted)
            return None
        if (
            flow.response is not None
            or flow.client_conn.tls_established
            or not isinstance(flow.client_conn.proxy_mode, RegularMode)
            or (ctx.options.onboarding and flow.request.host == ctx.options.onboarding_host)  # mitmproxy's own page
        ):
            return None
        return self.http_connect(flow)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """An `https://` request sent in cleartext, sent on to its address decided: its TLS asks
        for its name (mitmproxy would ask for the host it connects to, now the address)."""
        if not self._names or (names := self._names.get(data.client.id)) is None:
            return
        server = data.server
        if server.address is None:
            return
        host, port = str(server.address[0]), int(server.address[1])
        name = names.get((host, port))
        if name is not None and server.sni == host:
            server.sni = name

    def _read(self, flow: http.HTTPFlow, decrypted: list[Decrypted]) -> None:
        """A request on a connection decrypted: its bodies are counted when its exchange ends,
        unless it leaves a record of its own (`recorded_otherwise`). None is streamed here: a
        request misdirected to an MCP server's host is refused once its body is in (`Mcp`)."""
        self._reads[flow] = decrypted[-1]

    def recorded_otherwise(self, flow: http.HTTPFlow) -> None:
        """A request on a governed host's connection decrypted that leaves a record of its own (a
        call's, an MCP request's, a brokered connection's): the connection is recorded by its
        requests from now on. One that leaves none (ChatGPT's web app, streamed on unread) has
        its body counted as it streams."""
        decrypted = self._reads.get(flow) if self._reads else None
        if decrypted is None:
            return
        if not decrypted.governed or not _leaves_record(flow):
            if flow.request.stream is True:
                flow.request.stream = counting(decrypted.connection, sent=True)
            return
        del self._reads[flow]
        opened = self._decrypted.get(flow.client_conn.id)
        if opened is not None and decrypted in opened:
            opened.remove(decrypted)
            if not opened:
                del self._decrypted[flow.client_conn.id]

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """An answer streamed on a connection decrypted, on no call: its bytes counted as they go."""
        decrypted = self._reads.get(flow) if self._reads else None
        if decrypted is not None and flow.response is not None and flow.response.stream is True:
            flow.response.stream = counting(decrypted.connection, sent=False)

    def refused_request(self, flow: http.HTTPFlow, reason: str) -> bool:
        """A request let through, then refused for what it holds (a brokered credential's
        placeholder): a plain HTTP request's record says it was refused, with `reason`, whatever
        `record` says; a decrypted connection's counts it. False when it is neither."""
        decrypted = self._reads.pop(flow, None)  # nothing of it relayed: nothing counted
        if decrypted is not None:
            decrypted.refused += 1
            return True
        plain = self._plain.get(flow)
        if plain is None:
            return False
        connection = plain[0]
        connection.decision, connection.deny_reasons = "deny", (reason,)
        self._plain[flow] = (connection, True)
        return True

    def response(self, flow: http.HTTPFlow) -> None:
        """A plain HTTP request's exchange ended: recorded, its bodies' bytes each way. One on a
        connection decrypted: its bodies' bytes counted into the connection's."""
        decrypted = self._reads.pop(flow, None) if self._reads else None
        if decrypted is not None:
            _count_bodies(decrypted.connection, flow)
            return
        connection, recorded = self._plain.pop(flow, (None, False))
        if connection is None or not recorded:
            return
        _count_bodies(connection, flow)
        if flow.error is not None:
            connection.error = flow.error.msg
        self.log.closed(connection)

    error = response

    def next_layer(self, nextlayer: layer.NextLayer) -> Awaitable[None] | None:
        """A captured connection decided by its server name (the TLS client hello's, else the
        address its client dialled); a tunnel Tollgate does not read, of a connection to record,
        relayed counting its bytes."""
        context = nextlayer.context
        if len(context.layers) == 1 and isinstance(context.client.proxy_mode, CAPTURE_MODES):
            return self._captured(nextlayer)
        self._tunnel(nextlayer)
        return None

    def _captured(self, nextlayer: layer.NextLayer) -> Awaitable[None] | None:
        loaded = self.shared.loaded
        context = nextlayer.context
        if loaded is None or nextlayer.layer is not None or not context.server.address:
            return None
        if not _choose(nextlayer):
            return None  # more of the client's bytes needed to choose
        egress: Egress = loaded.egress
        dialled, port = str(context.server.address[0]), int(context.server.address[1])
        name = server_name(nextlayer.data_client())
        connection = connection_of(context.client, name or dialled, port)
        connection.address = host_of(dialled)
        # Decided on the address its client dialled: nothing is looked up.
        c = connection
        decided = egress.decide(Asked(c.host, c.port, c.address, source=c.source), loaded.policy)
        return self._settle(nextlayer, connection, egress, decided)

    def _settle(
        self, nextlayer: layer.NextLayer, connection: Connection, egress: Egress, decided: Decided | Awaitable[Decided]
    ) -> Awaitable[None] | None:
        """A captured connection decided (awaited where governance could not decide at once):
        closed unanswered, or relayed as mitmproxy chose (`_relay`)."""
        if not isinstance(decided, Decided):
            return _once_decided(decided, lambda d: self._settle(nextlayer, connection, egress, d))
        _note(connection, decided)
        if decided.allowed:
            self._relay(nextlayer, connection, egress)
            return None
        nextlayer.layer = Refused(nextlayer.context)
        self.log.refused(connection, egress)
        return None

    def _relay(self, nextlayer: layer.NextLayer, connection: Connection, egress: Egress) -> None:
        """A captured connection allowed: relayed as mitmproxy chose, counting a tunnel's bytes
        where `record` records it; none is made that it records while the audit cannot be written."""
        recorded = egress.record == "all" or (egress.record == "ai" and connection.service is not None)
        if recorded and not self.log.recordable():
            nextlayer.layer = Refused(nextlayer.context)  # a connection that cannot be recorded is not made
            return
        self.log.decided(connection)
        chosen = nextlayer.layer
        if type(chosen) is not layers.TCPLayer or chosen.flow is not None:
            self._decrypting(nextlayer.context, connection)
        elif recorded:
            self.log.open.add(connection)
            nextlayer.layer = CountedTunnel(nextlayer.context, connection, self.log.closed)

    def _tunnel(self, nextlayer: layer.NextLayer) -> None:
        """A CONNECT's tunnel Tollgate does not read, of a connection to record: relayed counting
        its bytes. One Tollgate reads, to a host whose requests are no calls: recorded when its
        client goes."""
        if not self._pending or nextlayer.context.server.id not in self._pending:
            return
        if not _choose(nextlayer):
            return  # more of the client's bytes needed to choose
        chosen = nextlayer.layer
        connection, recorded = self._pending.pop(nextlayer.context.server.id)
        if type(chosen) is layers.TCPLayer and chosen.flow is None:
            if recorded:
                self.log.open.add(connection)
                nextlayer.layer = CountedTunnel(nextlayer.context, connection, self.log.closed)
            return
        self._decrypting(nextlayer.context, connection)

    def _decrypting(self, context: Context, connection: Connection) -> None:
        loaded = self.shared.loaded
        governed = loaded is not None and loaded.egress.governed(connection.host)
        self._decrypted.setdefault(context.client.id, []).append(Decrypted(connection, governed))

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client that gave up its TLS handshake with Tollgate, most often because it does not
        trust Tollgate's CA: its connection's record says why nothing went through it (mitmproxy's
        reason: the host and TLS's alert), and the console says once what to do."""
        reason = data.conn.error or "no reason given"
        for decrypted in self._decrypted.get(data.conn.id, ()) if self._decrypted else ():
            decrypted.connection.error = decrypted.connection.error or f"client TLS handshake failed: {reason}"
        if "trust the proxy's certificate" in reason and not self._told_untrusted:
            self._told_untrusted = True  # once: mitmproxy says it for every connection already
            ca = Path(ctx.options.confdir).expanduser() / CA_CERT
            logger.warning(
                f"Tollgate: a client does not trust Tollgate's CA ({ca}), so nothing it sends passes. In its"
                ' shell, eval "$(./run.sh env)" sets its CA bundle (SSL_CERT_FILE, …); else see docs/clients.md'
            )

    def client_disconnected(self, client: mitm_connection.Client) -> None:
        """A client gone: the CONNECTs it was let through and never sent a byte on, recorded as
        `record` says; the connections decrypted, recorded."""
        if self._names:
            self._names.pop(client.id, None)
        if self._decrypted:
            for decrypted in self._decrypted.pop(client.id, ()):
                self.log.closed(decrypted.connection, refused=decrypted.refused)
        if not self._waiting:
            return
        for server in self._waiting.pop(client.id, ()):
            connection, recorded = self._pending.pop(server, (None, False))
            if connection is not None and recorded:
                self.log.closed(connection)

    def done(self) -> None:
        """The tunnels still open when the proxy stops, recorded as far as they went."""
        recorded = [connection for connection, record in self._pending.values() if record]
        for connection in [*self.log.open, *recorded]:
            connection.error = connection.error or SHUT_DOWN
            self.log.closed(connection)
        for decrypted in [d for each in self._decrypted.values() for d in each]:
            self.log.closed(decrypted.connection, refused=decrypted.refused)
        self._pending.clear()
        self._waiting.clear()
        self._decrypted.clear()
        self._names.clear()


def connection_of(client: mitm_connection.Client, name: str, port: int) -> Connection:
    """A connection's record, to its host as egress names it (`host_of`), from its client."""
    peer = client.peername
    host = host_of(name)
    connection = Connection(new_request_id(), host, port)
    try:  # an IP address is its own address, as a name's is what it resolves to
        connection.address = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if peer:
        connection.source = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
    return connection


async def _once_decided(decided: Awaitable[Decided], act: Callable[[Decided], object]) -> None:
    """A connection acted on once governance has decided it (it could not at once); the act
    awaited in turn where it must wait too (a quarantine asked of the fleet's Redis)."""
    pending = act(await decided)
    if isinstance(pending, Awaitable):
        await pending


def _choose(nextlayer: layer.NextLayer) -> bool:
    """mitmproxy's own choice of the next layer, made now (Tollgate's hooks run before it), for
    Tollgate to look at; False while it needs more of the client's bytes."""
    if nextlayer.layer is None:
        chooser = ctx.master.addons.get("nextlayer")
        if chooser is not None:
            chooser.next_layer(nextlayer)
    return nextlayer.layer is not None


def server_name(data: bytes) -> str | None:
    """The TLS server name a connection's first bytes ask for, when they are a client hello."""
    if not starts_like_tls_record(data):
        return None
    try:
        hello = parse_client_hello(data)
    except ValueError:
        return None
    return hello.sni if hello is not None else None


class Refused(layer.Layer):
    """A captured connection refused: closed before anything is relayed (there is no proxy to
    answer 403 from)."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


def _note(connection: Connection, decided: Decided) -> None:
    """What the decision found, on the connection's record: its service, the address it was decided
    on, and a refusal's reasons and error."""
    service = decided.service
    if service is not None:
        connection.service, connection.category = service.name, service.category
    connection.address = decided.address
    if not decided.allowed:
        connection.deny_reasons = decided.deny_reasons
        connection.error = decided.error


def _leaves_record(flow: http.HTTPFlow) -> bool:
    """Whether a request leaves a record of its own: a call's, an MCP request's (not a POST of
    answers alone), a brokered credential's host's (its connection's, `Broker`)."""
    metadata = flow.metadata
    if CALL in metadata or BROKERED in metadata:
        return True
    exchange = metadata.get(MCP)
    return isinstance(exchange, McpExchange) and leaves_records(exchange)


def _count_bodies(connection: Connection, flow: http.HTTPFlow) -> None:
    """An exchange's bodies, as the flow holds them, counted into its connection's bytes."""
    connection.bytes_sent += len(flow.request.raw_content or b"")
    response = flow.response
    connection.bytes_received += len(response.raw_content or b"") if response is not None else 0


class CountedTunnel(layers.TCPLayer):
    """mitmproxy's relay of a connection it does not read (an ignored TCP layer), counting the
    bytes each way, and telling `closed` once both sides have closed (or the server could not be
    reached). Nothing of what goes through is kept."""

    def __init__(self, context: Context, connection: Connection, closed: Callable[[Connection], None]) -> None:
        super().__init__(context, ignore=True)
        self.connection = connection
        self._closed: Callable[[Connection], None] | None = closed

    def _end(self, error: str | None = None) -> None:
        closed, self._closed = self._closed, None
        if closed is not None:
            if error is not None:
                self.connection.error = error
            closed(self.connection)

    def start(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from super().start(event)
        if self._handle_event == self.done:  # the server could not be reached
            self._end(f"cannot connect to {self.connection.host}:{self.connection.port}")

    _handle_event = start

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if type(event) is events.DataReceived:
            data = event.data
            if event.connection is self.context.client:
                self.connection.bytes_sent += len(data)
                yield commands.SendData(self.context.server, data)
            else:
                self.connection.bytes_received += len(data)
                yield commands.SendData(self.context.client, data)
            return
        yield from super().relay_messages(event)
        if self._handle_event == self.done:
            self._end()
