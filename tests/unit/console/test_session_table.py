"""The console's sessions and sign-ins under way in a real PostgreSQL (`console/session_table.py`):
shared by two replicas, kept by their SHA-256 alone, ended by the database's clock (`expires >
now()`), by sign-out on any replica, removed once ended; a schema newer than known refused in one
line; the database going away answered 503 with the reason (the API and the page), and served
again once it is back, by itself."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from tests.support.postgres import PostgresServer
from tests.support.web import NoRedirect

from tollgate.console import session_table
from tollgate.console.follow import AuditFiles
from tollgate.console.server import Console
from tollgate.console.session_table import NAME, SIGN_INS, SessionTable, TooNew
from tollgate.console.sessions import PendingSignIn, Unavailable
from tollgate.console.viewer import Viewer
from tollgate.console.views import Views

ALICE = Viewer("self", "alice@example.com", "Alice")
TOKEN = "console-token-of-the-session-table-tests"


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.database()


@pytest.fixture
def tables(dsn: str) -> Iterator[tuple[SessionTable, SessionTable]]:
    """Two replicas' views of one database."""
    replicas = (SessionTable(dsn), SessionTable(dsn))
    for replica in replicas:
        replica.prepare()
    yield replicas
    for replica in replicas:
        replica.close()


def rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def test_a_session_opened_on_one_replica_is_known_to_the_other_and_ended_by_either(tables, dsn: str) -> None:
    one, other = tables
    lena = Viewer("lead", "lena@example.com", "Lena Lead", frozenset({"research", "infra"}))
    session = one.open(lena)
    assert other.viewer([session]) == lena
    # Another service's cookie of the same name beside it, first: the console's is found.
    assert other.viewer(["theirs", session]) == lena and other.viewer(["theirs"]) is None
    assert other.end(["theirs", session]) == lena
    assert one.viewer([session]) is None and other.viewer([session]) is None
    assert one.end([session]) is None


def test_only_the_sha256_of_a_session_and_of_a_pre_sign_in_cookie_is_kept(tables, dsn: str) -> None:
    one, _ = tables
    session = one.open(ALICE)
    one.hold("pre-sign-in-cookie-value", PendingSignIn("state", "nonce", "verifier", "/#people"), 600)
    stored = rows(dsn, f"SELECT id::text || row_to_json(t)::text FROM {NAME} t"
                       f" UNION ALL SELECT id::text || row_to_json(s)::text FROM {SIGN_INS} s")  # fmt: skip
    assert len(stored) == 2 and not any(session in r[0] or "pre-sign-in-cookie-value" in r[0] for r in stored)
    assert rows(dsn, f"SELECT id FROM {NAME}") == [(hashlib.sha256(session.encode()).digest(),)]


def test_a_session_past_its_end_is_refused_by_the_query(tables, dsn: str) -> None:
    one, other = tables
    session, kept = one.open(ALICE), one.open(ALICE)
    (expires,) = rows(dsn, f"SELECT expires - now() FROM {NAME} LIMIT 1")[0]
    assert 12 * 3600 - 60 < expires.total_seconds() <= 12 * 3600
    digest = hashlib.sha256(session.encode()).digest()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {NAME} SET expires = now() - interval '1 second' WHERE id = %s", (digest,))
    assert one.viewer([session]) is None and other.viewer([session]) is None
    assert other.viewer([session, kept]) == ALICE
    assert other.end([session]) is None  # it had ended: no one signs out


def test_a_sign_in_under_way_is_taken_once_on_any_replica_and_not_after_its_end(tables, dsn: str) -> None:
    one, other = tables
    pending = PendingSignIn("state", "nonce", "verifier", "/")
    one.hold("cookie-a", pending, 600)
    assert other.take(["unknown", "cookie-a"]) == pending
    assert one.take(["cookie-a"]) is None  # used once
    one.hold("cookie-b", pending, 0.001)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_sleep(0.01)")
    assert other.take(["cookie-b"]) is None and rows(dsn, f"SELECT count(*) FROM {SIGN_INS}") == [(0,)]


def test_sign_ins_under_way_are_bounded_the_oldest_forgotten(tables, dsn: str, monkeypatch) -> None:
    monkeypatch.setattr(session_table, "PENDING_MAX", 3)
    one, _ = tables
    for n in range(5):
        one.hold(f"cookie-{n}", PendingSignIn("s", "n", "v", f"/{n}"), 600 + n)
    assert rows(dsn, f"SELECT count(*) FROM {SIGN_INS}") == [(3,)]
    assert one.take(["cookie-0", "cookie-1"]) is None
    assert one.take(["cookie-4"]) == PendingSignIn("s", "n", "v", "/4")


def test_what_has_ended_is_removed_now_and_then(tables, dsn: str, monkeypatch) -> None:
    one, _ = tables
    ended, kept = one.open(ALICE), one.open(ALICE)
    one.hold("cookie", PendingSignIn("s", "n", "v", "/"), 0.001)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {NAME} SET expires = now() WHERE id = %s", (hashlib.sha256(ended.encode()).digest(),))
    one.tidy()  # not yet: once every TIDY_S
    assert rows(dsn, f"SELECT count(*) FROM {NAME}") == [(2,)]
    monkeypatch.setattr(session_table, "TIDY_S", 0.0)
    one.tidy()
    assert rows(dsn, f"SELECT count(*) FROM {NAME}") == [(1,)]
    assert rows(dsn, f"SELECT count(*) FROM {SIGN_INS}") == [(0,)]
    assert one.viewer([kept]) == ALICE


def test_a_schema_newer_than_known_is_refused_in_one_line_and_changes_nothing(tables, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE tollgate_schema SET version = 99 WHERE name = %s", (NAME,))
    with pytest.raises(TooNew) as refused:
        SessionTable(dsn).prepare()
    assert "\n" not in str(refused.value)
    assert str(refused.value) == (
        "the table tollgate_console_sessions has schema version 99 (tollgate_schema), newer than this console"
        " knows (1): upgrade Tollgate to serve it"
    )
    assert rows(dsn, f"SELECT version FROM tollgate_schema WHERE name = '{NAME}'") == [(99,)]


def closed(dsn: str, postgres: PostgresServer, shut: bool) -> None:
    """The database made to refuse connections (and its own ended), or open again."""
    name = urlsplit(dsn).path.lstrip("/")
    with postgres.connect() as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if shut else 'true'}")
        if shut:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_a_database_gone_away_is_unavailable_with_the_reason_and_recovers(tables, dsn, postgres, monkeypatch) -> None:
    monkeypatch.setattr(session_table, "RETRY_S", 0.0)
    one, _ = tables
    session = one.open(ALICE)
    closed(dsn, postgres, True)
    try:
        with pytest.raises(Unavailable, match=r"^PostgreSQL 127\.0\.0\.1:\d+/t_\w+ cannot be reached: .*"):
            one.viewer([session])
    finally:
        closed(dsn, postgres, False)
    assert one.viewer([session]) == ALICE


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        answer = opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10)
    except urllib.error.HTTPError as e:
        answer = e
    with answer:
        return answer.status, dict(answer.headers), answer.read()


def test_the_console_answers_503_with_the_reason_while_its_database_is_away_then_serves_again(
    tables, dsn, postgres, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(session_table, "RETRY_S", 0.0)
    (tmp_path / "audit.jsonl").write_text(json.dumps({"event": "llm_call", "ts": "2026-11-01T08:00:00.000Z",
                                                      "client": "alice", "decision": "allow"}) + "\n")  # fmt: skip
    audit = AuditFiles([tmp_path / "audit.jsonl"])
    audit.catch_up()
    one, other = tables
    consoles = [Console(audit, Views(audit), "127.0.0.1", 0, TOKEN, sessions=table) for table in (one, other)]
    threads = [threading.Thread(target=c.serve, daemon=True) for c in consoles]
    for thread in threads:
        thread.start()
    first, second = (f"http://127.0.0.1:{c.port}" for c in consoles)
    try:
        status, headers, _ = fetch(f"{first}/?token={TOKEN}")
        assert status == 303
        cookie = {"Cookie": headers["Set-Cookie"].split(";")[0]}
        assert fetch(f"{second}/api/people", cookie)[0] == 200  # the other replica knows the session
        closed(dsn, postgres, True)
        try:
            status, headers, body = fetch(f"{second}/api/people", cookie)
            assert (status, headers["Retry-After"]) == (503, "5")
            answer = json.loads(body)
            assert answer["error"] == "unavailable" and " cannot be reached: " in answer["message"]
            status, headers, body = fetch(f"{second}/", cookie)  # the page: says so, and asks again
            assert (status, headers["Refresh"]) == (503, "5; url=/")
            assert headers["Content-Type"] == "text/html; charset=utf-8"
            assert b'<meta http-equiv="refresh" content="5; url=/">' in body
            assert b"The console cannot reach its database (PostgreSQL 127.0.0.1:" in body
            # Never a session made up, nor a sign-in asked for: the token's holder alone is served.
            assert fetch(f"{second}/api/people", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
            assert fetch(f"{first}/?token={TOKEN}")[0] == 503
        finally:
            closed(dsn, postgres, False)
        assert fetch(f"{second}/api/people", cookie)[0] == 200
        assert fetch(f"{first}/", cookie)[0] == 200
    finally:
        for console, thread in zip(consoles, threads, strict=True):
            console.stop()
            thread.join(timeout=5)
