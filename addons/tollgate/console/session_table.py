"""The console's sessions and sign-ins under way in PostgreSQL (`Sessions`), so that every replica
of the console behind one balancer serves the same people and a restart signs no one out.

Two tables of the console's own, made (and migrated) by `prepare` under the schema's advisory lock,
their version in `tollgate_schema` under the name `tollgate_console_sessions`:
`tollgate_console_sessions` (a session: who, and when it ends) and `tollgate_console_sign_ins` (a
sign-in under way: its state, nonce, PKCE verifier and the path first asked for, for 10 minutes).
A row's key is the SHA-256 of the cookie's value, never the value. Every lookup asks
`expires > now()`: the database's clock says when a session ends, the same for every replica; a
row ended is never found, and removed now and then (`tidy`). Sign-out deletes the row, so that it
ends on every replica at once. Nothing is cached: a replica knows of a sign-out as soon as the
row is gone.

A database that cannot be reached is `Unavailable` (the request answered 503 with the reason),
said once on standard error until it answers again, and not asked again for RETRY_S so that a
burst of requests does not wait for it one by one."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from tollgate.console.sessions import PENDING_MAX, SESSION_S, PendingSignIn, Sessions, Unavailable, digest, new_id
from tollgate.console.viewer import Viewer
from tollgate.records.senders.audit_postgres import SchemaTooNew, described, first_line, migrate

NAME = "tollgate_console_sessions"  # its version's name in tollgate_schema, and the sessions' table
SIGN_INS = "tollgate_console_sign_ins"
CONNECT_S = 5
STATEMENT_MS = 5000  # a lookup that takes longer is cancelled: the request answered 503
CONNECTIONS = 8  # at most, shared by the requests (each holds one for one statement)
WAIT_S = 5.0  # a request waits this long at most for a connection
RETRY_S = 1.0  # after a failure, the database is not asked again for this long
TIDY_S = 300.0  # between two removals of the rows ended
ROLES = ("security", "lead", "self")

MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS {sessions} (
    id bytea PRIMARY KEY, expires timestamptz NOT NULL,
    role text NOT NULL CHECK (role IN ('security', 'lead', 'self')), email text, name text,
    leads text[] NOT NULL DEFAULT '{{}}')""",
        "CREATE INDEX IF NOT EXISTS {sessions_expires} ON {sessions} (expires)",
        """CREATE TABLE IF NOT EXISTS {sign_ins} (
    id bytea PRIMARY KEY, expires timestamptz NOT NULL, state text NOT NULL, nonce text NOT NULL,
    verifier text NOT NULL, back text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS {sign_ins_expires} ON {sign_ins} (expires)",
    ),
}
VERSION = max(MIGRATIONS)


class TooNew(Exception):
    """The tables' schema is newer than this console knows: one line says so."""


class SessionTable(Sessions):
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.where = f"PostgreSQL {described(dsn)}"
        self._idle: list[psycopg.Connection] = []
        self._slots = threading.BoundedSemaphore(CONNECTIONS)
        self._lock = threading.Lock()
        self._failing: str | None = None
        self._retry_at = 0.0
        self._tidied = time.monotonic()

    def prepare(self) -> None:
        """The tables made or migrated: `Unavailable` when the database cannot be reached, `TooNew`
        when their schema is newer than this console knows (nothing changed)."""
        names = {n: sql.Identifier(t) for n, t in (("sessions", NAME), ("sign_ins", SIGN_INS),
                 ("sessions_expires", f"{NAME}_expires"), ("sign_ins_expires", f"{SIGN_INS}_expires"))}  # fmt: skip
        try:
            with self._connection() as conn:
                migrate(conn, NAME, MIGRATIONS, names, kept="")
        except SchemaTooNew as e:
            raise TooNew(
                f"the table {NAME} has schema version {e.version} (tollgate_schema), newer than this console"
                f" knows ({VERSION}): upgrade Tollgate to serve it"
            ) from None

    # ---- sessions

    def open(self, viewer: Viewer) -> str:
        session = new_id()
        with self._connection() as conn:
            conn.execute(
                f"INSERT INTO {NAME} (id, expires, role, email, name, leads)"
                " VALUES (%s, now() + make_interval(secs => %s), %s, %s, %s, %s)",
                (digest(session), SESSION_S, viewer.role, viewer.email, viewer.name, sorted(viewer.leads)),
            )
        return session

    def viewer(self, ids: Iterable[str]) -> Viewer | None:
        keys = [digest(s) for s in ids]
        if not keys:
            return None
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT id, role, email, name, leads FROM {NAME} WHERE id = ANY(%s) AND expires > now()", (keys,)
            ).fetchall()
        return _first(keys, {bytes(r[0]): r[1:] for r in rows})

    def end(self, ids: Iterable[str]) -> Viewer | None:
        keys = [digest(s) for s in ids]
        if not keys:
            return None
        with self._connection() as conn:
            rows = conn.execute(
                f"DELETE FROM {NAME} WHERE id = ANY(%s) RETURNING id, role, email, name, leads, expires > now()",
                (keys,),
            ).fetchall()
        return _first(keys, {bytes(r[0]): r[1:5] for r in rows if r[5]})

    # ---- sign-ins under way

    def hold(self, cookie: str, pending: PendingSignIn, seconds: float) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(
                f"INSERT INTO {SIGN_INS} (id, expires, state, nonce, verifier, back)"
                " VALUES (%s, now() + make_interval(secs => %s), %s, %s, %s, %s)",
                (digest(cookie), seconds, pending.state, pending.nonce, pending.verifier, pending.back),
            )
            # Anyone may start one: the oldest forgotten past PENDING_MAX.
            conn.execute(
                f"DELETE FROM {SIGN_INS} WHERE id IN (SELECT id FROM {SIGN_INS} ORDER BY expires DESC OFFSET %s)",
                (PENDING_MAX,),
            )

    def take(self, cookies: Iterable[str]) -> PendingSignIn | None:
        keys = [digest(c) for c in cookies]
        if not keys:
            return None
        with self._connection() as conn:
            rows = conn.execute(
                f"DELETE FROM {SIGN_INS} WHERE id = ANY(%s)"
                " RETURNING id, state, nonce, verifier, back, expires > now()",
                (keys,),
            ).fetchall()
        found = {bytes(r[0]): PendingSignIn(*r[1:5]) for r in rows if r[5]}
        return next((found[k] for k in keys if k in found), None)

    # ---- upkeep

    def tidy(self) -> None:
        if time.monotonic() - self._tidied < TIDY_S:
            return
        self._tidied = time.monotonic()
        try:
            with self._connection() as conn:
                conn.execute(f"DELETE FROM {NAME} WHERE expires <= now()")
                conn.execute(f"DELETE FROM {SIGN_INS} WHERE expires <= now()")
        except Unavailable:
            pass  # said once; tried again at the next tidy

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A connection of the few kept (in autocommit), for one statement or transaction; the
        database's failure `Unavailable`, and the connection closed."""
        if self._failing is not None and time.monotonic() < self._retry_at:
            raise Unavailable(f"{self.where} cannot be reached: {self._failing}")
        if not self._slots.acquire(timeout=WAIT_S):
            raise Unavailable(f"{self.where}: every connection of the console's is busy")
        conn: psycopg.Connection | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_S,
                                       options=f"-c statement_timeout={STATEMENT_MS}")  # fmt: skip
            yield conn
            with self._lock:
                self._idle.append(conn)
            conn = None
            self._recovered()
        except psycopg.Error as e:
            self._failed(e)
            raise Unavailable(f"{self.where} cannot be reached: {first_line(e)}") from None
        finally:
            if conn is not None:
                conn.close()
            self._slots.release()

    def _failed(self, error: BaseException) -> None:
        self.close()  # the other connections kept went with the database, most likely: made anew
        why = first_line(error)
        if self._failing is None:
            print(f"tollgate console: sessions: {self.where}: {why}; people are answered 503 until it answers",
                  file=sys.stderr, flush=True)  # fmt: skip
        self._failing = why
        self._retry_at = time.monotonic() + RETRY_S

    def _recovered(self) -> None:
        if self._failing is not None:
            self._failing = None
            print(f"tollgate console: sessions: {self.where} answers again", file=sys.stderr, flush=True)


def _first(keys: list[bytes], found: dict[bytes, Any]) -> Viewer | None:
    """The viewer of the first of `keys` found (a browser may hold another service's cookie of the
    same name beside the console's)."""
    for key in keys:
        row = found.get(key)
        if row is not None and row[0] in ROLES:
            role, email, name, leads = row
            return Viewer(role, email, name, frozenset(leads or ()))
    return None
