"""The ledger on a Redis server: one set of counters, call rows, key rests, MCP sessions' owners
and `agents`' quarantines (`redis_quarantines.py`) for every Tollgate process on one or many hosts.

`reserve` is one Lua script, which Redis runs alone: it checks every cap, then adds to every
counter, or leaves them all as they were. Counter changes, call rows and rests are queued and sent
by one background task, each batch in one MULTI/EXEC (all of it or none, so a batch retried after
an outage is never counted twice). While a settlement waits to be written (`flushed`), the writer
sends what is queued at once rather than wait for more to join it. Every command is held to a
short timeout: a Redis that is down or stalled fails a call with StoreError in about
COMMAND_TIMEOUT, never hangs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tollgate.ledger.backlog import Backlog
from tollgate.ledger.outage import Outage
from tollgate.ledger.redis_quarantines import RedisQuarantines
from tollgate.ledger.rows import decode_row, encode_row
from tollgate.ledger.store import CALLS_KEPT, Charge, Reservation, StoreError

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 2.0  # seconds: connecting, and each command's answer
RETRY_DELAY = 1.0  # seconds between two attempts of the queued writes while Redis fails
MAX_CONNECTIONS = 64  # per process; more concurrent calls wait (at most COMMAND_TIMEOUT) for one
WRITE_BATCH = 1000  # queued writes per MULTI/EXEC
# While calls keep coming, queued writes wait this long for others to join them: a MULTI/EXEC per
# call doubled a reservation's latency (the round trips queue at Redis and on the event loop). A
# write after a quiet spell goes at once.
BATCH_DELAY = 0.05
# Call rows are looked for this far before `since`: their stream ids are Redis's clock when
# written, which may be behind the writer's (`ts`) by the hosts' skew.
CLOCK_SKEW = 3600.0

COUNTER = "tollgate:counter:"
CALLS = "tollgate:calls"
REST = "tollgate:rest:"
RESTS = "tollgate:rests"
SESSION = "tollgate:mcp-session:"

# KEYS: the counters. ARGV: amount, cap ("" for none), expires, for each. Returns granted (1/0),
# the refused charge's index (-1 when granted), then each counter's value before. Lua's numbers
# are doubles: counters and caps are exact up to 2^53 (9 007 199 USD in nano-dollars per counter).
_RESERVE = """
local before, after = {}, {}
for i, key in ipairs(KEYS) do
  before[i] = tonumber(redis.call('GET', key) or '0')
end
for i, key in ipairs(KEYS) do
  local total = (after[key] or before[i]) + tonumber(ARGV[3 * i - 2])
  local cap = ARGV[3 * i - 1]
  if cap ~= '' and total > tonumber(cap) then
    return {0, i - 1, unpack(before)}
  end
  after[key] = total
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[3 * i - 2])
  redis.call('EXPIREAT', key, ARGV[3 * i])
end
return {1, -1, unpack(before)}
"""


@dataclass(frozen=True, slots=True)
class _Change:
    counter: str
    delta: int
    expires: int


@dataclass(frozen=True, slots=True)
class _Row:
    json: str


@dataclass(frozen=True, slots=True)
class _Rest:
    fingerprint: str
    until: float
    news: str  # the announcement published


type _Write = _Change | _Row | _Rest


class RedisStore:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._url = url
        self._password = parts.password or ""
        db = parts.path.strip("/") or "0"
        tls = " over TLS" if parts.scheme == "rediss" else ""
        self.name = f"the ledger on Redis at {parts.hostname}:{parts.port or 6379}/{db}{tls}"
        self._client: redis.asyncio.Redis | None = None  # made on first use, on the running loop
        self._writes: Backlog[_Write] = Backlog(logger, self.name)
        self._outage = Outage(logger, self.name)
        self._writer: asyncio.Task[None] | None = None
        self._last_write = 0.0  # monotonic
        self._closing = asyncio.Event()
        # Writes held so far, and how many of them are written (in order: the backlog is first in,
        # first out); the flushes waiting, each for a count written; set while one waits (or the
        # store closes): the writer does not pause for more writes to join.
        self._queued = 0
        self._written = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._hurry = asyncio.Event()
        self._news = _RestNews(self)  # the other processes' rests
        self._reserve: Any = None  # the registered script
        self.quarantines = RedisQuarantines(self.name, self._redis, self._command)  # `agents`'

    # ---- the hot path

    def reserve_now(self, charges: Sequence[Charge]) -> None:
        """Redis is asked over the network: `reserve` is awaited."""
        return None

    async def reserve(self, charges: Sequence[Charge]) -> Reservation:
        charges = tuple(charges)
        if not charges:
            return Reservation(True, (), None)
        self._news.listen()
        client = self._redis()
        if self._reserve is None:
            self._reserve = client.register_script(_RESERVE)  # EVALSHA, loaded again after a restart
        keys = [COUNTER + c.counter for c in charges]
        args: list[Any] = []
        for c in charges:
            args += (c.amount, "" if c.cap is None else c.cap, c.expires)
        task = asyncio.ensure_future(self._command("reserve", self._reserve(keys=keys, args=args)))
        try:
            reply = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The script may run all the same: what it reserved for a caller gone is taken back.
            task.add_done_callback(lambda t: self._release(charges, t))
            raise
        return _reservation(reply)

    async def read(self, counters: Sequence[str]) -> tuple[int, ...]:
        if not counters:
            return ()
        self._news.listen()
        values = await self._command("read", self._redis().mget([COUNTER + c for c in counters]))
        return tuple(int(v) if v is not None else 0 for v in values)

    def adjust(self, changes: Sequence[tuple[str, int, int]]) -> None:
        for counter, delta, expires in changes:
            self._hold(_Change(counter, delta, expires))
        self._start_writing()

    def flushed(self) -> Awaitable[None] | None:
        if self._written >= self._queued:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((self._queued, future))
        self._hurry.set()
        self._start_writing()
        return future

    def record(self, row: dict[str, Any]) -> None:
        self._hold(_Row(encode_row(row)))
        self._start_writing()

    def rest(self, fingerprint: str, until: float) -> None:
        news = orjson.dumps({"from": self._news.me, "key": fingerprint, "until": until}).decode()
        self._hold(_Rest(fingerprint, until, news))
        self._start_writing()

    def _hold(self, write: _Write) -> None:
        if self._writes.add(write):
            self._queued += 1

    def on_rest(self, callback: Callable[[str, float], None]) -> None:
        self._news.callbacks.append(callback)
        self._news.listen()

    # ---- MCP sessions' owners

    shares_sessions = True

    async def bind_session(self, key: str, owner: str, ttl: int) -> None:
        """Written before the session's id reaches its client: no other process can be asked for a
        session it does not know yet."""
        await self._command("binding an MCP session", self._redis().set(SESSION + key, owner, ex=ttl, nx=True))

    async def session_owner(self, key: str, ttl: int) -> str | None:
        owner: Any = await self._command("reading an MCP session", self._redis().getex(SESSION + key, ex=ttl))
        return owner if isinstance(owner, str) else None

    async def aclose(self) -> None:
        self._closing.set()
        self._hurry.set()
        await self._news.stop()
        await self.quarantines.stop()
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writer, 3 * COMMAND_TIMEOUT)
        elif len(self._writes):
            await self._write_queued()  # one last attempt
        lost = len(self._writes) + self._writes.dropped
        if lost:
            logger.error(f"Tollgate: {lost} writes to {self.name} could not be made before closing and are lost")
        self._release_flushes(everyone=True)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    # ---- the report

    def calls(self, since: float) -> Iterator[dict[str, Any]]:
        """The stream's rows from `since` on, read in pages on a connection of its own."""
        client = redis.Redis.from_url(self._url, **_OPTIONS, retry=redis.retry.Retry(NoBackoff(), 0))
        start = str(max(0, math.floor((since - CLOCK_SKEW) * 1000)))
        try:
            while True:
                page: Any = client.xrange(CALLS, min=start, max="+", count=1000)  # typed for any client's replies
                for _, fields in page:
                    row = decode_row(fields["row"])
                    if row.get("ts", since) >= since:
                        yield row
                if len(page) < 1000:
                    return
                start = "(" + page[-1][0]
        except (RedisError, OSError) as e:
            raise StoreError(f"cannot read the calls in {self.name}: {self._scrub(e)}") from None
        finally:
            client.close()

    # ---- the background writer

    def _start_writing(self) -> None:
        if self._writer is None or self._writer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: written by the first task, or by aclose
                return
            self._writer = loop.create_task(self._write_queued(), name=f"tollgate-ledger-writer {self.name}")

    async def _write_queued(self) -> None:
        """While writes are queued: send them in batches; while that fails, retry every RETRY_DELAY
        (once more when closing)."""
        while len(self._writes):
            pause = self._last_write + BATCH_DELAY - time.monotonic()
            if pause > 0 and not self._closing.is_set() and not self._flushes:
                self._hurry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), pause)
            self._last_write = time.monotonic()
            batch = self._writes.take(WRITE_BATCH)
            try:
                await self._command("writing", self._send(batch))
            except asyncio.CancelledError:
                self._writes.put_back(batch)
                raise
            except StoreError as e:
                self._writes.put_back(batch)
                self._outage.failed("writing to", e.__cause__ or e)
                self._release_flushes(everyone=True)  # not held through an outage: retried behind
                if self._closing.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), RETRY_DELAY)
                continue
            self._outage.recovered("writing to")
            self._writes.written()
            self._written += len(batch)
            self._release_flushes()

    async def _send(self, batch: Sequence[_Write]) -> None:
        changes: dict[str, list[int]] = {}  # counter → [delta, expires]: one INCRBY per counter
        pipe = self._redis().pipeline(transaction=True)
        oldest = str(math.floor((time.time() - CALLS_KEPT) * 1000))  # stream ids are milliseconds
        now = time.time()
        for write in batch:
            if isinstance(write, _Change):
                change = changes.setdefault(write.counter, [0, write.expires])
                change[0] += write.delta
                change[1] = write.expires
            elif isinstance(write, _Row):
                pipe.xadd(CALLS, {"row": write.json}, minid=oldest, approximate=True)
            elif write.until > now:  # a rest over by now needs no telling
                pipe.set(REST + write.fingerprint, str(write.until), exat=math.ceil(write.until))
                pipe.publish(RESTS, write.news)
        for counter, (delta, expires) in changes.items():
            pipe.incrby(COUNTER + counter, delta)
            pipe.expireat(COUNTER + counter, expires)
        await pipe.execute()

    def _release_flushes(self, everyone: bool = False) -> None:
        """The flushes whose writes are written are done (`everyone`: all of them, as writing failed)."""
        waiting = []
        for count, future in self._flushes:
            if everyone or count <= self._written:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((count, future))
        self._flushes = waiting

    def _release(self, charges: Sequence[Charge], task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is None and _reservation(task.result()).granted:
            self.adjust([(c.counter, -c.amount, c.expires) for c in charges])

    # ---- Redis itself

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url,
                max_connections=MAX_CONNECTIONS,
                timeout=COMMAND_TIMEOUT,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
                **_OPTIONS,
            )
            self._client = redis.asyncio.Redis.from_pool(pool)
        return self._client

    async def _command[T](self, what: str, command: Awaitable[T]) -> T:
        try:
            # Redis's own timeouts hold each read and connect; this holds the whole command (a DNS
            # lookup, a wait for a connection from the pool) too.
            async with asyncio.timeout(2 * COMMAND_TIMEOUT):
                return await command
        except (RedisError, OSError, TimeoutError) as e:
            raise StoreError(f"{self.name}: {what} failed: {self._scrub(e)}") from _Cause(self._scrub(e))

    def _scrub(self, error: object) -> str:
        text = str(error) or type(error).__name__
        return text.replace(self._password, "***") if self._password else text


class _RestNews:
    """The other processes' rests, as a Redis store hears them: subscribed to their announcements
    while a callback wants them, and told the rests in force at each subscription."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self.callbacks: list[Callable[[str, float], None]] = []
        self._listener: asyncio.Task[None] | None = None
        # A warning: nothing is lost while it fails (the rests in force are read again at each
        # subscription), and a subscription timed out while the event loop was busy starting the
        # proxy (compiling `agents`' patterns on a loaded host) must not stop it as an error would.
        self._outage = Outage(logger, store.name, logging.WARNING)
        self.me = secrets.token_hex(8)  # this store's own announcements are not news to it

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def listen(self) -> None:
        """Listening, once a callback wants the news and the loop runs."""
        if not self.callbacks or (self._listener is not None and not self._listener.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # started by the first call on the loop
            return
        self._listener = loop.create_task(self._listen(), name=f"tollgate-ledger-rests {self._store.name}")

    async def _listen(self) -> None:
        """Subscribed for as long as the store is open, again after each outage; the rests in
        force are read after each subscription, so that none announced meanwhile is missed."""
        store = self._store
        while not store._closing.is_set():
            pubsub = store._redis().pubsub()
            try:
                await store._command("subscribing", pubsub.subscribe(RESTS))
                await self._load_rests()
                self._outage.recovered("listening for key rests on")
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._announced(message["data"])
            except (StoreError, RedisError, OSError, TimeoutError) as e:
                self._outage.failed("listening for key rests on", store._scrub(e))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(store._closing.wait(), RETRY_DELAY)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _load_rests(self) -> None:
        client = self._store._redis()
        keys = [key async for key in client.scan_iter(match=REST + "*", count=1000)]
        if not keys:
            return
        values = await self._store._command("reading key rests", client.mget(keys))
        now = time.time()
        for key, value in zip(keys, values, strict=True):
            if value is not None and float(value) > now:
                self._tell(key.removeprefix(REST), float(value))

    def _announced(self, data: str) -> None:
        try:
            news = orjson.loads(data)
            if news["from"] != self.me:
                self._tell(str(news["key"]), float(news["until"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning(f"Tollgate: an unreadable key rest announcement on {RESTS} in {self._store.name}")

    def _tell(self, fingerprint: str, until: float) -> None:
        for callback in self.callbacks:
            try:
                callback(fingerprint, until)
            except Exception:
                logger.exception(f"Tollgate: a key rest from {self._store.name} could not be applied")


class _Cause(Exception):
    """What Redis said, without the password, standing in for its exception (which may hold it)."""


# No retries inside redis-py: a reservation retried after its connection broke might be counted
# twice, and a dead Redis must fail a call at once, not after retries with back-off.
# RESP2: over RESP3 (redis-py 8's default) the pool turns Redis's maintenance notifications on and
# then hands out an idle connection without checking that it is still open, so that the first
# commands after Redis restarted failed ("Connection closed by server").
_OPTIONS: dict[str, Any] = {
    "socket_timeout": COMMAND_TIMEOUT,
    "socket_connect_timeout": COMMAND_TIMEOUT,
    "decode_responses": True,
    "protocol": 2,
}


def _reservation(reply: list[int]) -> Reservation:
    granted, refused, *values = reply
    return Reservation(bool(granted), tuple(int(v) for v in values), None if granted else int(refused))
