"""`agents`' quarantine across a fleet: two mitmdump processes sharing one real `redis-server` as
their ledger. The official MCP SDK's client reads an injected result through one and sends its
acting `tools/call` through the other, in the same session: refused with the quarantine's text,
while a call that does not act goes; after `quarantine_s` the acting call goes. With Redis
stopped, an acting call neither process holds a quarantine for is refused (it cannot be told),
with its record. Redis keeps a fingerprint, never the session's id. A person (a proxy login) whose
LLM call through one process carried an injected tool result has their new connections off the
allowed hosts refused by the other, until `quarantine_s`, and while Redis is stopped; Redis names
that quarantine by a keyed hash under `ledger.secret`, not by a plain hash of their name. An
injected result reaches the client only once its quarantine is written (one worker's writes
slowed: an acting call through the other right after is refused), and never when Redis refuses
the write."""

from __future__ import annotations

import hashlib
import time

import pytest
import redis
import trustme
from tests.e2e.test_agents_mcp import (
    CALLS,
    ELSEWHERE,
    INBOX_URL,
    INJECTED,
    KEY,
    LOGIN,
    PASSWORD,
    QUARANTINE_S,
    REFUSED,
    Inbox,
    config,
    connect,
    login_url,
)
from tests.support.delayed_relay import DelayedRelay
from tests.support.fake_upstream import FakeUpstream
from tests.support.mcp_upstream import RUN_MAIN
from tests.support.redis import redis_server

from tollgate.governance.agents.quarantine import fleet_key, shared_key
from tollgate.ledger.redis_quarantines import QUARANTINE

# What every worker of the fleet holds and Redis does not: the quarantines' names are keyed with it.
LEDGER_SECRET = "the fleet's ledger secret, 32 characters or more"

# The SDK's client, its requests sent through worker `a` or `b` as `switch.via` says.
FLEET_CLIENT = """
import asyncio, os, ssl
import httpx2 as httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

class Switch(httpx.AsyncBaseTransport):
    def __init__(self):
        context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        self.via = "{start}"
        self.ways = {{name: httpx.AsyncHTTPTransport(proxy=url, verify=context)
                     for name, url in (("a", "{a}"), ("b", "{b}"))}}

    async def handle_async_request(self, request):
        return await self.ways[self.via].handle_async_request(request)

    async def aclose(self):
        for way in self.ways.values():
            await way.aclose()
{calls}
async def main():
    switch = Switch()
    http = httpx.AsyncClient(transport=switch, trust_env=False, headers={{"Authorization": "Bearer {key}"}}, timeout=30)
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="legacy") as client:
{body}
"""

ACROSS = f"""
read = await call(client, "read_inbox")
switch.via = "b"
refused = await call(client, "send_money")
searched = await call(client, "search")
await asyncio.sleep({QUARANTINE_S} + 0.3)
after = await call(client, "send_money")
report(read=read, refused=refused, searched=searched, after=after)
"""

REDIS_DOWN = """
sent = await call(client, "send_money")
report(sent=sent)
"""


def fleet_code(a: str, b: str, body: str, start: str = "a") -> str:
    indented = "\n".join("            " + line for line in body.strip().splitlines())
    code = FLEET_CLIENT.format(a=a, b=b, calls=CALLS, key=KEY, url=INBOX_URL, body=indented, start=start)
    return code + RUN_MAIN


@pytest.fixture(scope="module")
def inbox(upstream_ca: trustme.CA):
    handler = Inbox()
    server = FakeUpstream(upstream_ca, handler)
    yield server
    server.close()


def tool_records(gateway, before: int, count: int, timeout: float = 10.0) -> list[dict]:
    """The tools/call records after the first `before` records, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        records = [
            r for r in gateway.audit()[before:] if r.get("event") == "mcp_call" and r.get("method") == "tools/call"
        ]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_a_quarantine_begun_in_one_worker_holds_in_the_other(start_gateway, inbox, tmp_path) -> None:
    server = redis_server(tmp_path / "redis")
    try:
        made = config(inbox, [{"name": "alice", "keys": [KEY]}])

        def with_redis(urls: dict) -> dict:
            return {**made(urls), "ledger": {"store": server.url, "secret": LEDGER_SECRET}}

        a = start_gateway(with_redis, providers=("openai",))
        b = start_gateway(with_redis, providers=("openai",))
        for gateway in (a, b):  # each answers, before the quarantine's seconds are counted through them
            serving(gateway)
        started = len(a.audit()), len(b.audit())
        result = a.run(fleet_code(a.proxy.proxy_url, b.proxy.proxy_url, ACROSS))
        assert "refused" in result, result.get("message")
        refused = result.pop("refused")
        assert refused["error"] == -32001
        assert refused["message"] in {REFUSED.format(n) for n in range(1, QUARANTINE_S + 1)}
        assert result == {
            "read": [INJECTED],  # through a
            "searched": ["search: done"],  # through b: not an acting tool
            "after": ["send_money: done"],  # through b: the quarantine over
        }
        (read,) = tool_records(a, started[0], 1)
        assert (read["tool"], read["tool_findings"]) == ("read_inbox", {"injection.instructions": 1})
        on_b = tool_records(b, started[1], 3)
        reason = "quarantined: this MCP session read outside content holding injection.instructions"
        assert [(r["tool"], r["decision"], r["quarantined"]) for r in on_b] == [
            ("send_money", "deny", reason),
            ("search", "allow", None),
            ("send_money", "allow", None),
        ]
        # What Redis keeps: the sessions' owners and the quarantine, by fingerprints alone.
        direct = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            stored = " ".join(direct.keys("*"))
        finally:
            direct.close()
        assert "tollgate:mcp-session:" in stored and "alice" not in stored
        assert not any(s in stored for s in ("inbox", "send_money", "caller"))

        # Redis stopped: b cannot tell whether the new session is quarantined, and refuses.
        server.stop()
        started = len(a.audit()), len(b.audit())
        down = a.run(fleet_code(a.proxy.proxy_url, b.proxy.proxy_url, REDIS_DOWN, start="b"))
        assert down["sent"]["error"] == -32001
        assert down["sent"]["message"] == (
            "Tollgate refused the call to send_money: it cannot tell whether this MCP session is quarantined"
            " (its ledger cannot be reached); retry later."
        )
        (record,) = tool_records(b, started[1], 1)
        unknown = "quarantine unknown: the ledger's store cannot be read"
        assert (record["decision"], record["deny_reasons"], record["quarantined"]) == ("deny", [unknown], unknown)
        assert record["error"].startswith("ledger unavailable:") and record["refusal"] == "ledger_unavailable"
        assert inbox.handler.called == ["read_inbox", "search", "send_money"]  # the refused ones never sent
    finally:
        server.stop()


# How late worker a's writes of a quarantine (EVALSHA) reach Redis: longer than the client takes to
# read a result and send its next call through b; with the script's first load (two of them), well
# within `quarantine_s` and the store's time limit for a command (2 s).
WRITE_DELAY = 0.5

RIGHT_AFTER = """
read = await call(client, "read_inbox")
switch.via = "b"
refused = await call(client, "send_money")
report(read=read, refused=refused)
"""

READ_ALONE = """
as_json = await call(client, "read_inbox")
as_events = await call(client, "read_inbox", sse=True)
report(as_json=as_json, as_events=as_events)
"""


def test_an_injected_result_goes_only_once_its_quarantine_is_written_and_never_unwritten(
    start_gateway, inbox, tmp_path
) -> None:
    """Worker a's writes reach Redis late: the result holding the injection reaches the client
    only once its quarantine is written there, so an acting call sent through b right after is
    refused. Then Redis refuses writes (full, `noeviction`): the injected result is never
    delivered, its request gets a JSON-RPC error, and its record says why."""
    server = redis_server(tmp_path / "redis")
    slow = DelayedRelay(server.port, WRITE_DELAY, holding=b"EVALSHA")
    direct = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        made = config(inbox, [{"name": "alice", "keys": [KEY]}])

        def on(url: str):
            return lambda urls: {**made(urls), "ledger": {"store": url, "secret": LEDGER_SECRET}}

        a = start_gateway(on(f"redis://127.0.0.1:{slow.port}/0"), providers=("openai",))
        b = start_gateway(on(server.url), providers=("openai",))
        for gateway in (a, b):
            serving(gateway)
        started, called = len(b.audit()), len(inbox.handler.called)
        result = a.run(fleet_code(a.proxy.proxy_url, b.proxy.proxy_url, RIGHT_AFTER))
        assert result.get("read") == [INJECTED], result
        assert isinstance(result["refused"], dict) and result["refused"]["error"] == -32001, result
        assert result["refused"]["message"] in {REFUSED.format(n) for n in range(1, QUARANTINE_S + 1)}
        (refused,) = tool_records(b, started, 1)
        assert (refused["tool"], refused["decision"]) == ("send_money", "deny")
        assert inbox.handler.called[called:] == ["read_inbox"]  # the refused call never sent

        direct.config_set("maxmemory-policy", "noeviction")
        direct.config_set("maxmemory", 1)  # every write refused: OOM
        started = len(a.audit())
        unwritten = a.run(fleet_code(a.proxy.proxy_url, b.proxy.proxy_url, READ_ALONE))
        for got in (unwritten["as_json"], unwritten["as_events"]):
            assert isinstance(got, dict) and got["error"] == -32001, unwritten
            assert got["message"] == (
                "Tollgate withheld this answer: a result in it began a quarantine that could not be written to"
                " Tollgate's ledger (unavailable); retry later."
            )
        records = tool_records(a, started, 2)
        assert [(r["tool"], r["refusal"], r["is_error"], r["tool_findings"]) for r in records] == [
            ("read_inbox", "ledger_unavailable", True, {"injection.instructions": 1})
        ] * 2
        assert all(r["error"] == "ledger unavailable: a result's quarantine could not be written" for r in records)
        assert LEDGER_SECRET not in a.proxy.console() + b.proxy.console()
    finally:
        direct.close()
        slow.close()
        server.stop()


# The agent's model call through the OpenAI SDK, its tool result holding the injection.
CHAT = f"""
import openai
model = openai.OpenAI(api_key="unused", max_retries=0)
tools = [{{"type": "function", "function": {{"name": "read_inbox", "parameters": {{"type": "object"}}}}}}]
called = [{{"id": "c1", "type": "function", "function": {{"name": "read_inbox", "arguments": "{{}}"}}}}]
messages = [
    {{"role": "user", "content": "What is in my inbox?"}},
    {{"role": "assistant", "content": None, "tool_calls": called}},
    {{"role": "tool", "tool_call_id": "c1", "content": {INJECTED!r}}},
]
answer = model.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
report(answered=answer.choices[0].finish_reason is not None)
"""
# The same call, once its quarantine cannot be written: refused, with the error Tollgate gives.
CHAT_UNWRITTEN = CHAT.replace(
    'answer = model.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)\n'
    "report(answered=answer.choices[0].finish_reason is not None)",
    "try:\n"
    '    model.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)\n'
    "    report(answered=True)\n"
    "except openai.APIStatusError as e:\n"
    '    report(status=e.status_code, refusal=e.response.headers.get("x-tollgate-error"))',
)


def quarantine_names(server) -> set[str]:
    """The names of the quarantines Redis holds."""
    direct = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return {k.removeprefix(QUARANTINE) for k in direct.keys(QUARANTINE + "*")}
    finally:
        direct.close()


def serving(gateway, seconds: float = 60.0) -> None:
    """Once the gateway answers a CONNECT: a process starting on a loaded host listens some seconds
    before its event loop is free to answer, and a call sent meanwhile waits; one that waits past
    `quarantine_s` would find the quarantine over."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            connect(gateway, "api.openai.com")
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def test_a_persons_quarantine_begun_in_one_worker_holds_their_connections_in_the_other(
    start_gateway, inbox, tmp_path
) -> None:
    server = redis_server(tmp_path / "redis")
    try:
        made = config(inbox, [{"name": LOGIN}])

        def with_redis(urls: dict) -> dict:
            return {**made(urls), "ledger": {"store": server.url, "secret": LEDGER_SECRET}}

        login = ("--set", f"proxyauth={LOGIN}:{PASSWORD}")
        a = start_gateway(with_redis, *login, providers=("openai",))
        b = start_gateway(with_redis, *login, providers=("openai",))
        for gateway in (a, b):
            serving(gateway)
        assert connect(b, ELSEWHERE)[0] != 403  # none in force
        assert a.run(CHAT, proxy_url=login_url(a)) == {"answered": True}
        status, said = connect(b, ELSEWHERE)
        assert status == 403, said
        assert f"{ELSEWHERE} is not in the providers' and MCP servers' hosts, and this client is quarantined" in said
        assert connect(b, "api.openai.com")[0] != 403  # a provider's host: Redis is not even asked
        # Redis names the person's quarantine by a keyed hash: not the SHA-256 of their name, which
        # whoever reads Redis could make from a list of people.
        assert quarantine_names(server) == {shared_key(f"caller:{LOGIN}", fleet_key(LEDGER_SECRET))}
        plain = {hashlib.sha256(name.encode()).hexdigest() for name in (LOGIN, f"caller:{LOGIN}")}
        assert not quarantine_names(server) & plain
        time.sleep(QUARANTINE_S + 0.3)
        assert connect(b, ELSEWHERE)[0] != 403
        # Redis refuses writes: a call whose quarantine cannot be written for the others is refused.
        direct = redis.Redis.from_url(server.url)
        try:
            direct.config_set("maxmemory-policy", "noeviction")
            direct.config_set("maxmemory", 1)
        finally:
            direct.close()
        assert a.run(CHAT_UNWRITTEN, proxy_url=login_url(a)) == {"status": 503, "refusal": "ledger_unavailable"}
        server.stop()
        status, said = connect(b, ELSEWHERE)
        assert status == 403 and "Tollgate cannot tell whether this client is quarantined" in said
        assert connect(b, "api.openai.com")[0] != 403
    finally:
        server.stop()
