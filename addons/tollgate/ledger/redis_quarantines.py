"""`agents`' quarantines on the ledger's Redis, so that one begun in one process holds in every
process sharing it (`SharedQuarantines`).

A quarantine is a hash `tollgate:quarantine:<name>` (a keyed hash of whom it holds, made by
`agents`: `shared_key`): each kind that began it → its end (epoch seconds), nothing else; the hash
expires (Redis's own TTL) at its latest end. Beginning one is one Lua script, which keeps a later
end in force; reading the keys of a call is one round trip. Its first attempt says whether it was
written; a write that fails is tried again every RETRY_DELAY until the quarantine would be over or
the store closes: one begun while Redis is down reaches the others once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio

from tollgate.ledger.outage import Outage
from tollgate.ledger.store import StoreError

logger = logging.getLogger(__name__)

QUARANTINE = "tollgate:quarantine:"
RETRY_DELAY = 1.0  # seconds between two attempts of a write while Redis fails

# KEYS[1]: the quarantine. ARGV[1]: its end (epoch seconds); ARGV[2..]: its kinds. A kind's later
# end in force is kept; the hash expires at its latest end.
_START = """
local ends = tonumber(ARGV[1])
for i = 2, #ARGV do
  local known = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if ends > known then redis.call('HSET', KEYS[1], ARGV[i], ARGV[1]) end
end
local latest = 0
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do latest = math.max(latest, tonumber(value)) end
redis.call('EXPIREAT', KEYS[1], math.ceil(latest))
return 1
"""

type Command = Callable[[str, Awaitable[Any]], Awaitable[Any]]


class RedisQuarantines:
    """The quarantines of every process sharing one Redis: `client` gives the store's client,
    `command` runs a command as the store does (held to its timeout; StoreError when it fails)."""

    def __init__(self, name: str, client: Callable[[], redis.asyncio.Redis], command: Command) -> None:
        self._client = client
        self._command = command
        self._script: Any = None
        self._outage = Outage(logger, name)
        self._writes: set[asyncio.Task[None]] = set()

    def start(self, key: str, until: float, kinds: Sequence[str]) -> Awaitable[bool]:
        first: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._write(QUARANTINE + key, until, tuple(kinds), first))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return first

    async def holding(self, keys: Sequence[str]) -> tuple[tuple[float, tuple[str, ...]] | None, ...]:
        if not keys:
            return ()
        pipe = self._client().pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(QUARANTINE + key)
        replies = await self._command("reading quarantines", pipe.execute())
        now = time.time()
        return tuple(_held(reply, now) for reply in replies)

    async def stop(self) -> None:
        """The writes still trying given up (the store closes)."""
        for task in list(self._writes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _write(self, key: str, until: float, kinds: tuple[str, ...], first: asyncio.Future[bool]) -> None:
        try:
            while until > time.time():
                if self._script is None:
                    self._script = self._client().register_script(_START)  # EVALSHA, loaded again after a restart
                try:
                    await self._command("writing a quarantine", self._script(keys=[key], args=[until, *kinds]))
                except StoreError as e:
                    self._outage.failed("writing a quarantine to", e.__cause__ or e)
                    _done(first, False)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                self._outage.recovered("writing a quarantine to")
                _done(first, True)
                return
        finally:
            _done(first, False)  # given up (the store closes) or over before it was written


def _done(future: asyncio.Future[bool], written: bool) -> None:
    if not future.done():
        future.set_result(written)


def _held(reply: dict[str, str], now: float) -> tuple[float, tuple[str, ...]] | None:
    """A quarantine's hash read (kind → end): its latest end and the kinds still in force, or None."""
    ends = {kind: float(end) for kind, end in reply.items() if float(end) > now}
    return (max(ends.values()), tuple(sorted(ends))) if ends else None
