"""The ledger's stores under test: each store test runs on a SQLite file and on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.redis import RedisServer, redis_server

from tollgate.ledger import Store, open_store


def run[T](coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """A test's coroutine on a loop of its own, held to a time limit."""

    async def limited() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(limited())


async def eventually[T](read: Callable[[], Awaitable[T]], expected: T, seconds: float = 5.0) -> T:
    """What `read` gives once it is `expected` (queued writes land moments later), or its last answer."""
    deadline = time.monotonic() + seconds
    while True:
        value = await read()
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


@dataclass
class Backend:
    kind: str
    url: str
    server: RedisServer | None = None

    def open(self) -> Store:
        return open_store(self.url)

    def run_on_stores[T](self, scenario: Callable[..., Awaitable[T]], stores: int = 1) -> T:
        """`scenario` given `stores` stores newly opened on this backend, each closed once it ends,
        on a loop of its own (see `run`)."""

        async def opened() -> T:
            held = [self.open() for _ in range(stores)]
            try:
                return await scenario(*held)
            finally:
                for store in held:
                    await store.aclose()

        return run(opened())


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        (tmp_path / "ledger").mkdir()
        yield Backend("sqlite", f"sqlite:///{tmp_path}/ledger/ledger.sqlite")  # tmp_path is absolute: ////
        return
    # Persistent, for the tests that restart it; a test's few writes cost the append-only file little.
    server = redis_server(tmp_path / "redis", persist=True)
    try:
        yield Backend("redis", server.url, server)
    finally:
        server.stop()


@pytest.fixture
def redis_backend(tmp_path: Path) -> Iterator[Backend]:
    server = redis_server(tmp_path / "redis", password="s3cret-pw")
    try:
        yield Backend("redis", server.url, server)
    finally:
        server.stop()
