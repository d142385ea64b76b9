"""A CONNECT decided by its address goes to that address: mitmproxy's own HTTP layer, driven
event by event, with Tollgate's gate answering its `http_connect` hook and a resolver that answers
differently each time it is asked (DNS rebinding)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from mitmproxy import connection, http, options
from mitmproxy.addons import onboarding
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import commands, context, events, layer, layers, server_hooks
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.test import taddons

from tollgate.proxy.stages.egress.egress_gate import PROXYAUTH, EgressGate

from ..conftest import configured

PUBLIC, METADATA = "93.184.215.14", "169.254.169.254"  # never connected to: the layer only says where
HOST = b"rebind.attacker.example"


class Rebinding:
    """A resolver whose first answer is a public address and every later one the cloud's metadata
    address, as an attacker's DNS server answers to get past a check made on the first."""

    def __init__(self, asked_before: int = 0) -> None:
        self.asked = asked_before

    async def __call__(self, host: str, port: int) -> str:
        self.asked += 1
        return PUBLIC if self.asked == 1 else METADATA


class ProxyConnection:
    """mitmproxy's HTTP layer of a regular proxy's client connection (lazy, as Tollgate sets it),
    each hook it starts answered by `gate` and completed before the next event."""

    def __init__(self, gate: EgressGate) -> None:
        opts = options.Options()
        Proxyserver().load(opts)
        opts.connection_strategy = "lazy"
        self.client = connection.Client(
            peername=("127.0.0.1", 50000),
            sockname=("127.0.0.1", 8080),
            timestamp_start=1.0,
            state=connection.ConnectionState.OPEN,
        )
        self.context = context.Context(self.client, opts)
        self.layer = http_layers.HttpLayer(self.context, http_layers.HTTPMode.regular)
        self.gate = gate
        self.flow: http.HTTPFlow | None = None
        self.commands: list[commands.Command] = []
        self._run(events.Start())

    def send(self, data: bytes) -> None:
        self._run(events.DataReceived(self.client, data))

    def _run(self, event: events.Event) -> None:
        for command in self.layer.handle_event(event):
            self.commands.append(command)
            if isinstance(command, http_layers.HttpConnectHook):
                self.flow = command.flow
                pending = self.gate.http_connect(command.flow)
                if pending is not None:
                    asyncio.run(_awaited(pending))
            elif isinstance(command, http_layers.HttpRequestHeadersHook):
                self.flow = command.flow
                pending = self.gate.requestheaders(command.flow)
                if pending is not None:
                    asyncio.run(_awaited(pending))
            elif isinstance(command, layer.NextLayerHook):
                # mitmproxy's choice for a host it does not decrypt: a tunnel it does not read.
                command.data.layer = layers.TCPLayer(command.data.context, ignore=True)
            if isinstance(command, commands.StartHook):
                self._run(events.HookCompleted(command))


async def _awaited(pending: Awaitable[None]) -> None:
    await pending


def test_a_connect_goes_to_the_address_it_was_decided_on_not_to_a_later_answer() -> None:
    gate = EgressGate(configured({}))
    resolver = gate.resolve = Rebinding()
    proxied = ProxyConnection(gate)
    proxied.send(b"CONNECT " + HOST + b":443 HTTP/1.1\r\n\r\n")
    sent = [c.data for c in proxied.commands if isinstance(c, commands.SendData)]
    assert sent == [b"HTTP/1.1 200 Connection established\r\n\r\n"]
    proxied.send(b"\x16")  # the tunnel's first byte: mitmproxy opens the connection to the server
    [opened] = [c for c in proxied.commands if isinstance(c, commands.OpenConnection)]
    # The address decided, which needs no lookup: the name is never asked for again.
    assert opened.connection.address == (PUBLIC, 443)
    assert resolver.asked == 1


def test_a_name_whose_answer_is_private_is_refused_at_that_answer() -> None:
    gate = EgressGate(configured({}))
    resolver = gate.resolve = Rebinding(asked_before=1)  # this time the metadata address comes first
    proxied = ProxyConnection(gate)
    proxied.send(b"CONNECT " + HOST + b":443 HTTP/1.1\r\n\r\n")
    assert proxied.flow is not None and proxied.flow.response is not None
    assert proxied.flow.response.status_code == 403
    assert proxied.flow.response.text == (
        "Tollgate refused this connection: rebind.attacker.example resolves to 169.254.169.254, which is a"
        " link-local address (egress.private_addresses: deny).\n"
    )
    assert not any(isinstance(c, commands.OpenConnection) for c in proxied.commands)
    assert resolver.asked == 2


def test_an_https_url_sent_in_cleartext_goes_to_its_address_asking_for_its_name() -> None:
    """`GET https://host/` sent to the proxy itself: decided as a CONNECT is, sent to the address
    decided, and its TLS asks for the host's name, not for the address."""
    gate = EgressGate(configured({}))
    resolver = gate.resolve = Rebinding()
    with taddons.context(onboarding.Onboarding()):  # the options the gate reads
        proxied = ProxyConnection(gate)
        proxied.send(b"GET https://" + HOST + b"/x HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    [opened] = [c for c in proxied.commands if isinstance(c, commands.OpenConnection)]
    server = opened.connection
    assert (server.address, server.sni) == ((PUBLIC, 443), PUBLIC)  # as mitmproxy would make it
    gate.server_connect(server_hooks.ServerConnectionHookData(server, proxied.client))
    assert (server.address, server.sni) == ((PUBLIC, 443), HOST.decode())
    assert resolver.asked == 1


class LoggedIn(EgressGate):
    """The gate seeing each CONNECT as from carol's proxy login (mitmproxy's proxyauth checked it)."""

    def http_connect(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        flow.metadata[PROXYAUTH] = ("carol", "pw")
        return super().http_connect(flow)


def test_a_quarantine_read_elsewhere_is_awaited_once_and_acted_on() -> None:
    asked: list[tuple] = []

    def quarantined(client, auth, host, port):
        asked.append((client, auth, host, port))

        async def read() -> str | None:
            return None if host == "free.example" else f"{host} is off the allowed hosts, and carol is quarantined"

        return read()

    for host, status in ((b"free.example", 200), (b"exfil.example", 403)):
        gate = LoggedIn(configured({"egress": {"private_addresses": "allow"}}), quarantined=quarantined)
        gate.resolve = Rebinding()
        proxied = ProxyConnection(gate)
        proxied.send(b"CONNECT " + host + b":443 HTTP/1.1\r\n\r\n")
        assert proxied.flow is not None
        response = proxied.flow.response
        assert response is not None and response.status_code == status
        if status == 403:
            assert response.text == (
                "Tollgate refused this connection: exfil.example is off the allowed hosts, and carol is quarantined.\n"
            )
    assert asked == [("carol", "proxyauth", "free.example", 443), ("carol", "proxyauth", "exfil.example", 443)]
