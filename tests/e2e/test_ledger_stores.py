"""The ledger's stores end to end: counts that survive restarts, one set of counters for several
Tollgate processes on one real Redis, key rests shared through it, and a store that fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.support.clients import chat_calls
from tests.support.fake_upstream import Reply
from tests.support.redis import RedisServer, redis_server

K1, K2 = "sk-ledger-pool-one-111", "sk-ledger-pool-two-222"
PASSWORD = "redis-pw-never-shown-0427"


def key(name: str) -> str:
    return f"tg-{name}-ledger-key"


def config(store: str, on_store_error: str = "deny"):
    def build(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [K1, K2]}},
            "clients": [{"name": name, "keys": [key(name)]} for name in ("duo", "again", "fragile", "rester")],
            "limits": [{"name": "three a day", "match": {"client": "duo"}, "per": "all", "requests_per_day": 3},
                       {"name": "two a day", "match": {"client": "again"}, "requests_per_day": 2},
                       {"name": "plenty", "match": {"client": "fragile"}, "requests_per_day": 1000}],
            "ledger": {"store": store, "on_store_error": on_store_error},
        }  # fmt: skip

    return build


def calls(gw, name: str, count: int = 1) -> list:
    return gw.run(chat_calls(key(name), "gpt-4o-mini", count, ("type", "status", "error")))["outcomes"]


@pytest.fixture
def redis(tmp_path: Path):
    server = redis_server(tmp_path / "redis", persist=True, password=PASSWORD)
    yield server
    server.stop()


def test_two_tollgates_on_one_redis_enforce_one_limit_and_share_key_rests(start_gateway, redis: RedisServer):
    a = start_gateway(config(redis.url))
    b = start_gateway(config(redis.url))
    assert calls(a, "duo") + calls(b, "duo") + calls(a, "duo") == [200, 200, 200]
    assert calls(b, "duo") == [["RateLimitError", 429, "budget_exceeded"]]
    # A key the upstream refused through one Tollgate rests in the other at once.
    a.fakes["openai"].handler = lambda r: (
        Reply(429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
              {"retry-after": "30"})
        if r.headers["authorization"] == f"Bearer {K1}"
        else Reply(200, {"choices": []})
    )  # fmt: skip
    first = calls(a, "rester", 2)
    assert sorted(map(str, first)) == sorted(["200", str(["RateLimitError", 429, None])])
    time.sleep(0.3)  # published on a Redis channel: a moment to arrive
    b.fakes["openai"].received.clear()
    assert calls(b, "rester", 3) == [200, 200, 200]
    assert {r.headers["authorization"] for r in b.fakes["openai"].received} == {f"Bearer {K2}"}
    for gw in (a, b):
        assert PASSWORD not in gw.proxy.console() and PASSWORD not in gw.audit_path.read_text()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_restart_keeps_the_counts(start_gateway, tmp_path: Path, kind: str, request):
    if kind == "redis":
        server = request.getfixturevalue("redis")
        store = server.url
    else:
        (tmp_path / "kept").mkdir()
        store = f"sqlite:///{tmp_path / 'kept' / 'ledger.sqlite'}"
    first = start_gateway(config(store))
    assert calls(first, "again") == [200]
    first.proxy.stop()
    if kind == "redis":  # Redis restarted too: its append-only file keeps the counters
        server.stop()
        server.start()
    second = start_gateway(config(store))
    assert calls(second, "again", 2) == [200, ["RateLimitError", 429, "budget_exceeded"]]


def test_a_redis_that_stops_gives_the_configured_behaviour_and_every_call_is_audited(start_gateway, redis: RedisServer):
    gw = start_gateway(config(redis.url))
    assert calls(gw, "fragile") == [200]
    redis.stop()
    assert calls(gw, "fragile") == [["InternalServerError", 503, "ledger_unavailable"]]
    refused = gw.last_audit()
    assert (refused["status"], refused["decision"], refused["error"]) == (503, "deny", "ledger unavailable")
    assert refused["deny_reasons"] == ["ledger_unavailable"]
    assert refused["ledger_error"].startswith("the ledger on Redis at 127.0.0.1:")
    assert "call refused (on_store_error: deny)" in gw.proxy.console()
    # Let through while the store is away, loudly.
    gw.reconfigure(config(redis.url, on_store_error="allow"))
    assert calls(gw, "fragile") == [200]
    assert gw.last_audit()["ledger_error"].startswith("the ledger on Redis at 127.0.0.1:")
    assert "LEDGER STORE FAILED, call let through unlimited" in gw.proxy.console()
    redis.start()
    assert calls(gw, "fragile") == [200]
    assert gw.last_audit()["ledger_error"] is None
    statuses = [r["status"] for r in gw.audit() if r["client"] == "fragile"]
    assert statuses == [200, 503, 200, 200]
    assert PASSWORD not in gw.proxy.console() and PASSWORD not in gw.audit_path.read_text()
