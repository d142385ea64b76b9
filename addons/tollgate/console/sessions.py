"""Who is signed in to the console, and the sign-ins under way: the sessions the server opens (a
browser's cookie, `server.py`) and the sign-ins `sign_in.py` begins (a pre-sign-in cookie). Each is
kept by the SHA-256 of its cookie's value, never the value itself, so that what is kept tells
nothing a browser could present.

`MemorySessions` keeps them in the console's memory: one console, and a restart ends them.
`session_table.SessionTable` keeps them in PostgreSQL, where every replica of the console finds
them and a restart ends none. Plain code: no HTTP."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tollgate.console.viewer import Viewer

SESSION_S = 12 * 3600  # a session ends after this; the token or a sign-in opens another
PENDING_MAX = 10_000  # sign-ins under way kept at most (anyone may start one): the oldest forgotten


class Unavailable(Exception):
    """Where the sessions are kept cannot be reached: the request is answered 503 with `reason`
    (never 401, which would send a signed-in person to sign in again, nor an answer without
    knowing who asks)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A sign-in under way: what the callback checks, and the console's path first asked for."""

    state: str
    nonce: str
    verifier: str  # PKCE's code_verifier
    back: str


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def new_id() -> str:
    return secrets.token_urlsafe(32)


class Sessions(ABC):
    """The sessions and the sign-ins under way. Every method may raise `Unavailable`."""

    @abstractmethod
    def open(self, viewer: Viewer) -> str:
        """A new session for `viewer`, for SESSION_S: its id (the cookie's value)."""

    @abstractmethod
    def viewer(self, ids: Iterable[str]) -> Viewer | None:
        """The person of the first of the sessions `ids` still open; None when none is."""

    @abstractmethod
    def end(self, ids: Iterable[str]) -> Viewer | None:
        """The sessions `ids` ended; who the first still open was."""

    @abstractmethod
    def hold(self, cookie: str, pending: PendingSignIn, seconds: float) -> None:
        """A sign-in under way kept against its pre-sign-in cookie's value for `seconds`."""

    @abstractmethod
    def take(self, cookies: Iterable[str]) -> PendingSignIn | None:
        """The sign-in under way one of `cookies` names, still valid; every one named forgotten (a
        callback uses it once, whatever comes of it)."""

    @abstractmethod
    def tidy(self) -> None:
        """What has ended removed (now and then: the lookups never find it anyway)."""

    @abstractmethod
    def close(self) -> None:
        """Every session of this console's own ended (the memory's), or its connections closed."""


class MemorySessions(Sessions):
    """In the console's memory: they end with it. `clock` is the wall's (a session's 12 hours go on
    while the machine sleeps)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sessions: dict[bytes, tuple[float, Viewer]] = {}  # → when it ends, by the clock; who
        self._pending: dict[bytes, tuple[float, PendingSignIn]] = {}
        self._lock = threading.Lock()

    def open(self, viewer: Viewer) -> str:
        session = new_id()
        now = self.clock()
        with self._lock:
            for ended in [key for key, (end, _) in self._sessions.items() if end <= now]:
                del self._sessions[ended]
            self._sessions[digest(session)] = (now + SESSION_S, viewer)
        return session

    def viewer(self, ids: Iterable[str]) -> Viewer | None:
        now = self.clock()
        with self._lock:
            for s in ids:
                end, viewer = self._sessions.get(digest(s), (0.0, None))
                if viewer is not None and end > now:
                    return viewer
        return None

    def end(self, ids: Iterable[str]) -> Viewer | None:
        now, ended = self.clock(), None
        with self._lock:
            for s in ids:
                end, viewer = self._sessions.pop(digest(s), (0.0, None))
                if ended is None and end > now:
                    ended = viewer
        return ended

    def hold(self, cookie: str, pending: PendingSignIn, seconds: float) -> None:
        now = self.clock()
        with self._lock:
            for ended in [k for k, (until, _) in self._pending.items() if until <= now]:
                del self._pending[ended]
            while len(self._pending) >= PENDING_MAX:
                del self._pending[next(iter(self._pending))]  # the oldest: dicts keep their order
            self._pending[digest(cookie)] = (now + seconds, pending)

    def take(self, cookies: Iterable[str]) -> PendingSignIn | None:
        now, found = self.clock(), None
        with self._lock:
            for cookie in cookies:
                until, pending = self._pending.pop(digest(cookie), (0.0, None))
                if found is None and pending is not None and until > now:
                    found = pending
        return found

    def tidy(self) -> None:
        pass  # `open` and `hold` forget what has ended, as they go

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._pending.clear()
