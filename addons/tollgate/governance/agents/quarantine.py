"""Quarantine after an injection: once outside content an agent read held an `injection.*`
finding (in an LLM call's request, or in an MCP server's result), for `agents.quarantine_s` that
conversation's (its personal caller's) or MCP session's acting MCP `tools/call` are refused, and a
proxy-login client's new connections to hosts off `agents.egress_allow`.

A conversation is known only by its caller, and a caller stands for one conversation's owner only
when it is a person: a proxy login (`proxyauth`) or a person's token (`jwt`). A virtual key, a
signed AWS key, a vendor's plan token may be shared by a team or a service, and an anonymous caller
is everyone: quarantining them would let one stranger's e-mail stop everyone.

The state is this process's memory, bounded (`MAX_QUARANTINED` entries, each forgotten at its
end): plain logic, no clock of mitmproxy's. With the ledger on Redis the quarantines are held there
too, for every process, by `shared_key`: a keyed hash (HMAC-SHA256) of the quarantine's key, under
a key derived from `ledger.secret`, which every process holds and Redis does not (`fleet_key`). A
plain hash would hide a session's id (long and random) but not a caller's name: whoever reads
Redis could hash each name of a list of people and tell whom a quarantine holds."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# How callers were identified that stand for one person (`Caller.auth`).
PERSONAL_AUTH = frozenset(("proxyauth", "jwt"))
# Entries kept at most: past it the one started longest ago is forgotten first. An entry is made
# only on an injection finding, so a flood of them is itself a flood of injected results.
MAX_QUARANTINED = 10_000

SESSION, CALLER = "session", "caller"


def personal(client: str | None, auth: str) -> bool:
    """Whether a caller is one person: named, by a proxy login or a person's token."""
    return client is not None and auth in PERSONAL_AUTH


def caller_key(client: str | None, auth: str) -> str | None:
    """The quarantine's key of a caller, or None for one that is no single person."""
    return f"{CALLER}:{client}" if personal(client, auth) else None


def session_key(server: str, session: str | None) -> str | None:
    """The quarantine's key of an MCP session (by its server's name and `Mcp-Session-Id`)."""
    return None if session is None else f"{SESSION}:{server}\n{session}"


# What `fleet_key` derives its key with: `ledger.secret` may key other names, each in its own domain.
FLEET_KEY_DOMAIN = b"tollgate quarantine key"


def fleet_key(secret: str) -> bytes:
    """The key of the quarantines' names in the store every process shares, from `ledger.secret`."""
    return hmac.new(secret.encode(), FLEET_KEY_DOMAIN, hashlib.sha256).digest()


def shared_key(key: str, keyed_with: bytes) -> str:
    """A quarantine's name in a store every process shares: not its key, which holds a session's
    id (its holder presents it as a credential) or a person's name, but its HMAC-SHA256 under
    `keyed_with` (`fleet_key`): without that key, no name can be told from it, even by trying each."""
    return hmac.new(keyed_with, key.encode(), hashlib.sha256).hexdigest()


def login_key(login: str) -> str:
    """A proxy login's key: the caller its calls are identified as (`caller_key`)."""
    return f"{CALLER}:{login}"


@dataclass(frozen=True, slots=True)
class Held:
    """A quarantine in force: until when (the clock's seconds), the kinds that started it, and
    what it holds (`SESSION` or `CALLER`)."""

    until: float
    kinds: tuple[str, ...]
    key_kind: str = CALLER


class Quarantine:
    """The callers and MCP sessions quarantined, each until its end. Reads cost a dict lookup; an
    empty quarantine is false, so that nothing else is asked while none is in force."""

    def __init__(self, limit: int = MAX_QUARANTINED, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._held: OrderedDict[str, Held] = OrderedDict()  # oldest start first
        # An MCP result may be read in a worker thread (a large one, under answer rules).
        self._lock = threading.Lock()

    def start(self, key: str, seconds: float, kinds: Iterable[str]) -> Held | None:
        """Quarantine `key` for `seconds` from now (a longer one in force is kept), for `kinds`;
        None when `seconds` is 0 (quarantine off)."""
        if seconds <= 0:
            return None
        with self._lock:
            return self._start(key, seconds, kinds)

    def _start(self, key: str, seconds: float, kinds: Iterable[str]) -> Held:
        now = self._clock()
        known = self._held.pop(key, None)
        found = set(kinds)
        if known is not None and known.until > now:
            found.update(known.kinds)
        until = max(now + seconds, known.until if known is not None else 0.0)
        held = Held(until, tuple(sorted(found)), key.partition(":")[0])
        self._held[key] = held
        self._trim(now)
        return held

    def holding(self, key: str | None) -> Held | None:
        """The quarantine in force on `key`, or None (one ended is forgotten)."""
        if key is None or not self._held:
            return None
        with self._lock:
            held = self._held.get(key)
            if held is None:
                return None
            if held.until <= self._clock():
                del self._held[key]
                return None
            return held

    def remaining(self, held: Held) -> float:
        return max(0.0, held.until - self._clock())

    def _trim(self, now: float) -> None:
        """Ended entries at the front forgotten; past the limit, the oldest too."""
        while self._held:
            key, first = next(iter(self._held.items()))
            if first.until > now and len(self._held) <= self._limit:
                return
            del self._held[key]

    def __bool__(self) -> bool:
        return bool(self._held)

    def __len__(self) -> int:
        return len(self._held)


def injected(findings: dict[str, int] | None) -> tuple[str, ...]:
    """The `injection.*` kinds among findings, in order."""
    return tuple(sorted(k for k, n in (findings or {}).items() if k.startswith("injection.") and n))


# Why an acting MCP call is refused, or a proxy login's connection, when the fleet's store cannot
# tell whether a quarantine holds it.
UNKNOWN = "quarantine unknown: the ledger's store cannot be read"


def unknown_refusal(tool: str) -> str:
    """What the agent reads of an acting MCP call refused because the quarantine cannot be read."""
    return (
        f"Tollgate refused the call to {tool}: it cannot tell whether this MCP session is quarantined (its"
        " ledger cannot be reached); retry later."
    )


def refusal(tool: str, held: Held, remaining: float) -> tuple[str, str]:
    """What the agent reads of an acting MCP call refused (beginning `Tollgate refused the call to
    <tool>`), and the record's reason: the kinds and the time left, never the content."""
    whose = "this MCP session" if held.key_kind == SESSION else "this conversation"
    kinds = ", ".join(held.kinds)
    reason = f"quarantined: {whose} read outside content holding {kinds}"
    told = (
        f"Tollgate refused the call to {tool}: {whose} read outside content holding {kinds}; acting tools are"
        f" refused for {max(1, round(remaining))} s more."
    )
    return told, reason
