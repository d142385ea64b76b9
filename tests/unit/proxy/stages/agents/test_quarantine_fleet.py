"""The quarantine's stage with the ledger on Redis (a stand-in for the fleet's store here; the store
itself runs on a real Redis in tests/unit/ledger/test_redis_quarantines.py): a quarantine begun is
written by a keyed hash (the same in every process with the same `ledger.secret`), an acting call this process holds nothing of is looked up there (and
refused, or refused when it cannot be), a call that does not act asks nothing; a proxy login's
connection likewise."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from types import SimpleNamespace

from tests.unit.proxy.stages.agents.test_quarantine_gate import (
    INJECTED,
    SESSION,
    answer,
    call,
    exchange_of,
    flow_for,
    relayed,
    shared_with,
    sse,
)

from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.governance.agents.quarantine import fleet_key, shared_key
from tollgate.ledger.store import StoreError
from tollgate.proxy.stages.agents.quarantine_gate import Quarantines
from tollgate.proxy.state import Shared
from tollgate.records.audit.mcp_record import mcp_records

SECRET = "the fleet's own secret, 32 characters or more"
OTHER_SECRET = "another fleet's secret, 32 characters or more"


def named(key: str, secret: str = SECRET) -> str:
    """A quarantine's name in Redis under `ledger.secret`."""
    return shared_key(key, fleet_key(secret))


class Fleet:
    """What the other processes hold (`SharedQuarantines`), in memory; `down`: Redis unreachable;
    `unwritable`: a write fails (Redis full, or read-only to this process)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[float, tuple[str, ...]]] = {}
        self.reads: list[list[str]] = []
        self.down = False
        self.unwritable = False

    def start(self, key: str, until: float, kinds: Sequence[str]) -> asyncio.Future[bool]:
        if not self.unwritable:
            self.held[key] = (until, tuple(kinds))
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(written.set_result, not self.unwritable)  # a round trip later
        return written

    async def holding(self, keys: Sequence[str]):
        self.reads.append(list(keys))
        if self.down:
            raise StoreError("the ledger on Redis at 127.0.0.1:6379/0: reading quarantines failed: refused")
        return tuple(self.held.get(k) for k in keys)


def on_fleet(agents: dict, fleet: Fleet | None = None, secret: str = SECRET) -> tuple[Shared, Fleet]:
    shared = shared_with(agents, ledger={"secret": secret})
    fleet = fleet or Fleet()
    shared.ledger = SimpleNamespace(quarantines=fleet)  # type: ignore[assignment]
    return shared, fleet


def decided(stage: Quarantines, exchange) -> object:
    flow = flow_for(exchange)
    pending = stage.mcp(flow, exchange)
    if pending is not None:
        asyncio.run(_awaited(pending))
    return flow


async def _awaited(pending) -> None:
    await pending


def test_a_quarantine_begun_is_written_by_fingerprint() -> None:
    async def scenario() -> None:
        shared, fleet = on_fleet({})
        stage = Quarantines(shared)
        exchange = exchange_of(shared, call(1, "read_inbox"), client="carol", auth="proxyauth")
        relayed(stage, exchange, sse(answer(1, INJECTED)), [])
        await asyncio.sleep(0.01)  # written from the event loop
        assert set(fleet.held) == {named(SESSION), named("caller:carol")}
        assert all("s1" not in k and "carol" not in k for k in fleet.held)
        until, kinds = fleet.held[named(SESSION)]
        assert kinds == ("injection.instructions",) and 590 < until - time.time() <= 600

    asyncio.run(scenario())


def test_a_quarantines_name_is_keyed_the_same_in_every_process_with_the_secret() -> None:
    """Its name is no plain SHA-256 of whom it holds (which anyone with a list of people could make);
    two processes sharing the secret name it alike; another secret names it otherwise."""

    async def scenario() -> None:
        fleet = Fleet()
        names = []
        for secret in (SECRET, SECRET, OTHER_SECRET):
            shared, _ = on_fleet({}, fleet, secret)
            exchange = exchange_of(shared, call(1, "read_inbox"), client="carol", auth="proxyauth")
            relayed(Quarantines(shared), exchange, sse(answer(1, INJECTED)), [])
            await asyncio.sleep(0.01)  # written from the event loop
            names.append(set(fleet.held))
            fleet.held.clear()
        assert names[0] == names[1] == {named(SESSION), named("caller:carol")}
        assert names[2] == {named(SESSION, OTHER_SECRET), named("caller:carol", OTHER_SECRET)}
        assert not names[0] & names[2]
        plain = {hashlib.sha256(k.encode()).hexdigest() for k in (SESSION, "caller:carol", "carol")}
        assert not (names[0] | names[2]) & plain

    asyncio.run(scenario())


def test_without_the_secret_nothing_is_shared() -> None:
    shared = shared_with({"acting_tools": ["send_*"]})
    fleet = Fleet()
    shared.ledger = SimpleNamespace(quarantines=fleet)  # type: ignore[assignment]
    assert decided(Quarantines(shared), exchange_of(shared, call(1, "send_money"))).response is None
    assert fleet.reads == []


def test_an_acting_call_held_elsewhere_is_refused_and_then_known_here() -> None:
    shared, fleet = on_fleet({"acting_tools": ["send_*"]})
    stage = Quarantines(shared)
    fleet.held[named(SESSION)] = (time.time() + 300, ("injection.hidden",))
    exchange = exchange_of(shared, call(1, "send_money"))
    flow = decided(stage, exchange)
    assert flow.response is not None and flow.response.headers["x-tollgate-error"] == "policy_denied"
    message = json.loads(flow.response.content)["error"]["message"]
    assert message.startswith("Tollgate refused the call to send_money: this MCP session read outside content")
    assert fleet.reads == [[named(SESSION)]]  # a virtual key is no person: its session alone is asked for
    again = exchange_of(shared, call(2, "send_money"))
    assert decided(stage, again).response is not None
    assert len(fleet.reads) == 1  # held in this process's memory now


def test_a_call_that_does_not_act_or_is_held_by_none_asks_once_or_never() -> None:
    shared, fleet = on_fleet({"acting_tools": ["send_*"]})
    stage = Quarantines(shared)
    assert decided(stage, exchange_of(shared, call(1, "search"))).response is None
    assert fleet.reads == []
    assert decided(stage, exchange_of(shared, call(1, "send_money"), client="carol", auth="jwt")).response is None
    assert fleet.reads == [[named(SESSION), named("caller:carol")]]


def test_an_acting_call_is_refused_when_the_quarantine_cannot_be_read() -> None:
    shared, fleet = on_fleet({"acting_tools": ["send_*"]})
    fleet.down = True
    exchange = exchange_of(shared, call(1, "send_money"))
    flow = decided(Quarantines(shared), exchange)
    assert flow.response is not None and flow.response.status_code == 200
    assert flow.response.headers["x-tollgate-error"] == "ledger_unavailable"
    error = json.loads(flow.response.content)["error"]
    assert error["code"] == -32001
    assert error["message"].startswith("Tollgate refused the call to send_money: it cannot tell whether this MCP")
    (record,) = mcp_records(exchange)
    reason = "quarantine unknown: the ledger's store cannot be read"
    assert (record["decision"], record["deny_reasons"], record["quarantined"]) == ("deny", [reason], reason)
    assert record["error"].startswith("ledger unavailable:")
    recorded, down = on_fleet({"acting_tools": ["send_*"], "after_injection": "record"})
    down.down = True
    exchange = exchange_of(recorded, call(1, "send_money"))
    assert decided(Quarantines(recorded), exchange).response is None
    (record,) = mcp_records(exchange)
    assert (record["decision"], record["quarantined"]) == ("allow", reason)


def test_a_logins_connection_off_the_allowed_hosts_is_looked_up_only_then() -> None:
    shared, fleet = on_fleet({})
    stage = Quarantines(shared)
    assert stage.connection("carol", "proxyauth", "api.openai.com", 443) is None
    assert fleet.reads == []  # an allowed host asks nothing
    looked_up = stage.connection("carol", "proxyauth", "exfil.example", 443)
    assert not isinstance(looked_up, str | None)
    assert asyncio.run(_result(looked_up)) is None
    fleet.held[named("caller:carol")] = (time.time() + 300, ("injection.hidden",))
    why = asyncio.run(_result(stage.connection("carol", "proxyauth", "exfil.example", 443)))
    assert why is not None and "this client is quarantined for" in why
    assert isinstance(stage.connection("carol", "proxyauth", "exfil.example", 443), str)  # held here now
    fleet.down = True
    unknown = asyncio.run(_result(stage.connection("dave", "proxyauth", "exfil.example", 443)))
    assert unknown is not None and "cannot tell whether this client is quarantined" in unknown


async def _result(pending):
    return await pending


async def streamed(stage: Quarantines, exchange, body: bytes, is_sse: bool = True) -> tuple[bytes, bytes]:
    """What the client gets of an answer as it streams (the relay's output for the body, then for
    its end), and what the answer's end releases once the writes it waits for are done."""
    relay = AnswerRelay(is_sse, [r.id for r in exchange.requests if r.id is not None])
    relay.results = stage.mcp_results(exchange)
    exchange.reader = relay
    out = b"".join(o if isinstance(o, bytes) else b"".join(o) for o in (relay(body), relay(b"")))
    await asyncio.wait_for(relay.withheld.wait(), 5)
    released = relay.release()
    exchange.answer.outcomes = relay.outcomes  # as the answer's end records them
    return out, released


def test_an_injected_result_goes_only_once_its_quarantine_is_written() -> None:
    async def scenario() -> None:
        shared, fleet = on_fleet({})
        exchange = exchange_of(shared, call(1, "read_inbox"), call(2, "read_inbox"))
        body = sse(answer(1, "Your inbox: one letter."), answer(2, INJECTED))
        streaming, released = await streamed(Quarantines(shared), exchange, body)
        assert INJECTED.encode() not in streaming  # not before the write is acknowledged
        assert named(SESSION) in fleet.held
        assert streaming + released == body
        (_, second) = mcp_records(exchange)
        assert (second["error"], second["refusal"], second["is_error"]) == (None, None, False)

    asyncio.run(scenario())


def test_an_injected_result_whose_quarantine_cannot_be_written_is_not_delivered() -> None:
    """Fail closed: the requests whose results were held get JSON-RPC errors in their place, and
    the records say why (`ledger_unavailable`); as an event stream and as a JSON answer."""

    async def scenario(is_sse: bool) -> None:
        shared, fleet = on_fleet({})
        fleet.unwritable = True
        exchange = exchange_of(shared, call(2, "read_inbox"))
        body = sse(answer(2, INJECTED)) if is_sse else json.dumps(answer(2, INJECTED)).encode()
        streaming, released = await streamed(Quarantines(shared), exchange, body, is_sse)
        got = streaming + released
        assert INJECTED.encode() not in got and not fleet.held
        data = got.split(b"data: ", 1)[1] if is_sse else got
        error = json.loads(data)
        assert (error["id"], error["error"]["code"]) == (2, -32001)
        assert error["error"]["message"].startswith("Tollgate withheld this answer: a result in it began a quarantine")
        (record,) = mcp_records(exchange)
        assert record["refusal"] == "ledger_unavailable" and record["is_error"] is True
        assert record["error"] == "ledger unavailable: a result's quarantine could not be written"
        assert record["tool_findings"] == {"injection.instructions": 1}

    asyncio.run(scenario(True))
    asyncio.run(scenario(False))
