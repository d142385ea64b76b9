"""The console's access log (`console/access_log.py`): a record per request, never a token in its
query, written at once; its repeats in the minute after it (polls that differ only in `after`, or
not at all) folded into one record with their count; sign-ins, failed ones and logouts; a file that cannot be written said once; read back newest
first, the folds under way among them; sent to PostgreSQL from the file (a real server,
`tests/support/postgres.py`), each record once though a batch is sent again, a table of the first
schema version migrated."""

from __future__ import annotations

import hashlib
import json
import stat
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from tests.support.postgres import PostgresServer

from tollgate.console.access_log import (
    MIGRATIONS,
    TABLE,
    TABLE_VERSION,
    AccessLog,
    AccessSender,
    default_path,
    ensure_table,
    record_key,
)
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.records.senders.audit_postgres import migrate, schema_version

ALICE = Viewer("self", "alice@example.com", "Alice")
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_request_is_recorded_without_its_token(tmp_path: Path) -> None:
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    log.request(ALICE, "/api/people", {"since": ["2027-01-01"], "token": ["s3cret-token-0000000"]}, 200)
    log.request(TOKEN_HOLDER, "/api/audit", {}, 200)
    log.flush(everything=True)
    assert lines(tmp_path / "access.jsonl") == [
        {"event": "console_access", "ts": "2027-01-15T08:00:00.000Z", "action": "request",
         "email": "alice@example.com", "role": "self", "path": "/api/people", "query": "since=2027-01-01",
         "status": 200, "count": 1},
        {"event": "console_access", "ts": "2027-01-15T08:00:00.000Z", "action": "request", "email": "token",
         "role": "security", "path": "/api/audit", "query": "", "status": 200, "count": 1},
    ]  # fmt: skip
    assert stat.S_IMODE((tmp_path / "access.jsonl").stat().st_mode) == 0o600  # e-mails: the owner's only


def test_the_first_request_is_written_at_once_and_its_repeats_folded(tmp_path: Path) -> None:
    """A crash loses no request: the first of a fold is in the file as it is answered."""
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    log.request(ALICE, "/api/people", {"since": ["2027-01-01"]}, 200)
    assert [(r["path"], r["query"], r["count"]) for r in lines(tmp_path / "access.jsonl")] == [
        ("/api/people", "since=2027-01-01", 1)
    ]
    now[0] += 5
    log.request(ALICE, "/api/people", {"since": ["2027-01-01"]}, 200)  # a repeat: counted, not written yet
    assert len(lines(tmp_path / "access.jsonl")) == 1
    del log  # the console ends without closing its log: only the repeat is lost
    assert [r["ts"] for r in lines(tmp_path / "access.jsonl")] == ["2027-01-15T08:00:00.000Z"]


def test_polls_differing_only_in_after_are_one_record_a_minute(tmp_path: Path) -> None:
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    for n in range(12):  # a poll every 5 s for a minute
        log.request(ALICE, "/api/events", {"after": [str(n)], "limit": ["200"]}, 200)
        now[0] += 5
    log.request(ALICE, "/api/events", {"after": ["x"], "limit": ["50"]}, 200)  # another query: its own fold
    # The first of each written at once; the minute of the first's repeats is not over.
    assert [(r["query"], r["count"]) for r in lines(tmp_path / "access.jsonl")] == [
        ("after=0&limit=200", 1), ("after=x&limit=50", 1)
    ]  # fmt: skip
    assert [(r["query"], r["count"]) for r in log.recent(10)] == [
        ("after=x&limit=50", 1), ("after=1&limit=200", 11), ("after=0&limit=200", 1)
    ]  # fmt: skip
    log.request(ALICE, "/api/events", {"after": ["12"], "limit": ["200"]}, 200)  # the next minute's first
    assert [(r["ts"], r["query"], r["count"]) for r in lines(tmp_path / "access.jsonl")] == [
        ("2027-01-15T08:00:00.000Z", "after=0&limit=200", 1), ("2027-01-15T08:01:00.000Z", "after=x&limit=50", 1),
        ("2027-01-15T08:00:05.000Z", "after=1&limit=200", 11), ("2027-01-15T08:01:00.000Z", "after=12&limit=200", 1),
    ]  # fmt: skip
    now[0] += 61
    log.flush()
    assert len(lines(tmp_path / "access.jsonl")) == 4  # no repeats since: nothing more


def test_the_same_request_again_within_a_minute_is_counted(tmp_path: Path) -> None:
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    for _ in range(12):  # the header's look at the audit, every 5 s
        log.request(ALICE, "/api/audit", {}, 200)
        now[0] += 5
    log.request(ALICE, "/api/audit", {}, 403)  # another status: a request of its own
    log.flush()
    assert [(r["path"], r["status"], r["count"]) for r in lines(tmp_path / "access.jsonl")] == [
        ("/api/audit", 200, 1), ("/api/audit", 403, 1), ("/api/audit", 200, 11)
    ]  # fmt: skip
    log.close()
    assert len(lines(tmp_path / "access.jsonl")) == 3


def test_a_file_that_cannot_be_written_is_said_once(tmp_path: Path, capsys) -> None:
    log = AccessLog(tmp_path / "missing" / "access.jsonl", clock=lambda: T0)
    for _ in range(3):
        log.sign_in(ALICE)
    err = capsys.readouterr().err
    assert (
        err
        == f"tollgate console: access log {tmp_path}/missing/access.jsonl: cannot write: No such file or directory\n"
    )


def test_sign_ins_failures_and_logouts_and_the_newest_first(tmp_path: Path) -> None:
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    log.failed("the ID token has expired", None, 401)
    now[0] += 1
    log.sign_in(ALICE)
    now[0] += 1
    log.request(ALICE, "/api/events", {"after": ["1"]}, 200)
    now[0] += 1
    log.logout(ALICE)
    recent = log.recent(10)
    assert [(r["action"], r["email"], r.get("reason")) for r in recent] == [
        ("logout", "alice@example.com", None), ("request", "alice@example.com", None),
        ("sign_in", "alice@example.com", None), ("sign_in_failed", None, "the ID token has expired"),
    ]  # fmt: skip
    assert [r["action"] for r in log.recent(2)] == ["logout", "request"]
    log.close()
    assert [r["action"] for r in lines(tmp_path / "access.jsonl")] == ["sign_in_failed", "sign_in", "request", "logout"]


def test_the_latest_records_are_read_from_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: T0)
    for n in range(3000):
        log.request(ALICE, f"/api/n{n:04}", {}, 200)
    log.flush(everything=True)
    assert [r["path"] for r in log.recent(3)] == ["/api/n2999", "/api/n2998", "/api/n2997"]
    assert len(log.recent(2500)) == 2500


def test_the_log_is_beside_the_audit_by_default() -> None:
    assert default_path("/var/log/tollgate/audit.jsonl") == Path("/var/log/tollgate/audit.jsonl.console-access.jsonl")


def test_the_log_goes_to_postgresql_from_the_file_and_waits_there_while_the_database_cannot_be_reached(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Sent by the one file sender: in the file's order, each line once; written while the
    database does not exist yet, sent once it does (the file is the spool)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", postgres.dsn(name), keep_days=30, clock=lambda: now[0])
    log.sign_in(ALICE)
    log.request(ALICE, "/api/people", {"token": ["s3cret-token-0000000"]}, 200)
    time.sleep(1.5)  # tried, and failed: the database is not there
    with postgres.connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    now[0] += 61
    log.request(ALICE, "/api/people", {}, 200)
    deadline = time.monotonic() + 30
    with psycopg.connect(postgres.dsn(name), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT to_regclass('tollgate_console_access')").fetchone() != (None,):
                rows = conn.execute("SELECT count(*) FROM tollgate_console_access").fetchone()
                if rows == (3,):
                    break
            time.sleep(0.2)
        log.close()
        rows = conn.execute("SELECT action, path, query, line FROM tollgate_console_access ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("sign_in", None, None), ("request", "/api/people", ""),
                                     ("request", "/api/people", "")]  # fmt: skip
    assert [json.loads(r[3]) for r in rows] == lines(tmp_path / "access.jsonl")


def rows_of(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT line, key FROM tollgate_console_access ORDER BY id").fetchall()


def written(tmp_path: Path) -> Path:
    """A log of four records, each different (a sign-in, two requests a minute apart, a logout)."""
    now = [T0]
    log = AccessLog(tmp_path / "access.jsonl", clock=lambda: now[0])
    log.sign_in(ALICE)
    log.request(ALICE, "/api/people", {}, 200)
    now[0] += 61
    log.request(ALICE, "/api/people", {}, 200)
    log.logout(ALICE)
    log.close()
    return tmp_path / "access.jsonl"


def test_a_batch_sent_again_adds_no_row(tmp_path: Path, postgres: PostgresServer) -> None:
    """The crash between a batch's commit and its place in the file being written: the next start
    sends the file from where the place said (here its start, the place lost), and every record is
    still one row."""
    path = written(tmp_path)
    file_lines = path.read_bytes().splitlines(keepends=True)
    assert len(file_lines) == 4
    dsn = postgres.database()
    sender = AccessSender(path, dsn, None)
    assert sender.deliver(file_lines, None).sent
    assert sender.deliver(file_lines, None).sent  # taken, but not acknowledged: sent again
    assert sender.deliver(file_lines[1:3], None).sent  # a part of it, in another batch
    sender.close_destination()
    assert [r[0] for r in rows_of(dsn)] == [line.decode().rstrip("\n") for line in file_lines]
    for _ in range(2):  # the sender's own thread, from the file: its place never written, then lost
        Path(sender.position_path).unlink(missing_ok=True)
        running = AccessSender(path, dsn, None, batch_seconds=0.05).start()
        deadline = time.monotonic() + 30
        while running.shipped < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        running.stop()
        assert running.shipped == 4
    assert len(rows_of(dsn)) == 4


def test_a_table_of_the_first_version_is_migrated_and_its_copies_removed(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """A table made by an earlier Tollgate (schema version 1, no key) that holds the copies a batch
    sent again left: migrated to the newest version, each record once (the first copy kept), its key
    the one a row sent now has; a batch sent again after it adds nothing."""
    path = written(tmp_path)
    file_lines = path.read_bytes().splitlines(keepends=True)
    dsn = postgres.database()
    names = {"table": sql.Identifier(TABLE), "ts_index": sql.Identifier(f"{TABLE}_ts")}
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, TABLE, {1: MIGRATIONS[1]}, names, kept="the access log's file")
        for line in [*file_lines[:3], *file_lines[1:3], file_lines[3], file_lines[0]]:  # as the first version sent them
            record = json.loads(line)
            conn.execute(
                f"INSERT INTO {TABLE} (ts, action, email, role, path, query, status, count, reason, line)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (record["ts"], record["action"], record.get("email"), record.get("role"), record.get("path"),
                 record.get("query"), record.get("status"), record.get("count"), None, line.decode().rstrip("\n")),
            )  # fmt: skip
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (7,)
    sender = AccessSender(path, dsn, None)
    assert sender.deliver(file_lines[2:], None).sent  # the first batch after the upgrade: sent again
    sender.close_destination()
    texts = [line.decode().rstrip("\n") for line in file_lines]
    assert rows_of(dsn) == [(text, record_key(text)) for text in texts]
    assert record_key(texts[0]) == hashlib.sha256(file_lines[0].rstrip(b"\n")).hexdigest()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert schema_version(conn, TABLE) == TABLE_VERSION == 2
        ensure_table(conn)  # at the newest version already: nothing done again
        assert schema_version(conn, TABLE) == 2
