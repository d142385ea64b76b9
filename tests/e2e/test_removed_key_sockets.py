"""A virtual key removed from tollgate.yaml while its WebSockets are open (a live reload) ends what
they may ask: the next `response.create` on a Responses WebSocket, and the next client event on a
Realtime one, are refused with an `error` event, audited `deny`, and never go upstream."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.support.fake_realtime import FakeRealtime, answering, responding, responses_usage, usage
from tests.support.socket_sessions import assert_served_then_refused_its_key, responses_in_turn

REAL = "sk-REAL-openai-removed-key-5ecret-a1"
STAYING = "tg-VIRTUAL-staying-removed-key-5ecret-b2"
LEAVING = "tg-VIRTUAL-leaving-removed-key-5ecret-c3"
REALTIME_MODEL = "gpt-4o-realtime-preview"
REASON = "virtual key of leaving removed from the configuration"


def config(realtime_fake: FakeRealtime, leaving: bool = True) -> dict:
    clients = [{"name": "staying", "keys": [STAYING]}]
    if leaving:
        clients.append({"name": "leaving", "keys": [LEAVING]})
    return {"providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}}, "clients": clients}


@pytest.fixture(scope="module")
def gw(start_gateway, realtime_fake):
    return start_gateway(lambda urls: config(realtime_fake))


@pytest.fixture
def g(gw, realtime_fake):
    realtime_fake.sessions.clear()
    if "leaving" not in gw.config_path.read_text():  # an earlier test removed it
        gw.reconfigure(lambda urls: config(realtime_fake))
    return gw


# Client code run between the first response on the socket and the second: it tells the test the
# first has ended, then waits until the test has removed the key and seen the reload.
WAIT_FOR_RELOAD = """
    async def wait_for_reload():
        pathlib.Path("{ready}").write_text("1")
        deadline = time.time() + 30
        while not pathlib.Path("{go}").exists() and time.time() < deadline:
            await asyncio.sleep(0.05)
"""
# What differs between the two kinds of socket: how the client connects, asks for a response, and
# which events end one.
RESPONSES = {
    "connect": "responses.connect()",
    "create": {"model": "gpt-4o-mini", "input": "hello"},
    "ends": ("response.completed", "response.failed", "response.incomplete"),
}
REALTIME = {"connect": f'realtime.connect(model="{REALTIME_MODEL}")', "create": {}, "ends": ("response.done",)}


def with_key_removed_midway(g, realtime_fake, socket: dict, tmp_path: Path) -> list[dict]:
    """Run the client code; between its two responses, rewrite tollgate.yaml without the leaving
    client's key and wait for the reload line; what the client got."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    code = responses_in_turn(
        LEAVING, [socket["create"]] * 2, "await wait_for_reload()", socket["ends"], socket["connect"],
        before=WAIT_FOR_RELOAD.format(ready=ready, go=go),
    )  # fmt: skip
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(g.run(code, timeout=90)), daemon=True)
    client.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and client.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the client's first response did not end"
        g.reconfigure(lambda urls: config(realtime_fake, leaving=False))  # waits for "configuration reloaded"
    finally:
        go.write_text("1")
        client.join(95)
    return result["got"]


def test_a_removed_keys_responses_websocket_is_refused_its_next_response(g, realtime_fake, tmp_path):
    realtime_fake.script = responding(["ANSWER-one", "ANSWER-two"], [responses_usage(10, 2), responses_usage(11, 3)])
    served, refused = with_key_removed_midway(g, realtime_fake, RESPONSES, tmp_path)
    assert_served_then_refused_its_key(served, refused, realtime_fake)
    allowed, denied = g.new_audit(2)
    assert (allowed["client"], allowed["decision"], allowed["status"]) == ("leaving", "allow", 200)
    assert (denied["client"], denied["decision"], denied["status"], denied["deny_reasons"]) == (
        "leaving",
        "deny",
        401,
        [REASON],
    )
    assert denied["transport"] == "websocket"


def test_a_removed_keys_realtime_websocket_is_refused_its_next_event(g, realtime_fake, tmp_path):
    realtime_fake.script = answering(["ANSWER-one", "ANSWER-two"], [usage(10, 2, 0), usage(11, 3, 0)])
    served, refused = with_key_removed_midway(g, realtime_fake, REALTIME, tmp_path)
    assert served == {"type": "response.done"}
    error = refused["error"]["error"]
    assert (error["code"], error["headers"]["x-tollgate-error"]) == ("invalid_api_key", "unauthenticated")
    (upstream,) = realtime_fake.sessions
    assert [m for m in upstream.received if b"response.create" in (m if isinstance(m, bytes) else m.encode())] == [
        upstream.received[0]
    ]  # the second response.create never went
    denied, session = g.new_audit(2)
    assert (denied["client"], denied["decision"], denied["status"], denied["deny_reasons"]) == (
        "leaving",
        "deny",
        401,
        [REASON],
    )
    assert (session["client"], session["endpoint"], session["status"]) == ("leaving", "realtime", 101)
