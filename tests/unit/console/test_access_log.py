"""The console's access log (`console/access_log.py`): a record per request, never a token in its
query, written at once; its repeats in the minute after it (polls that differ only in `after`, or
not at all) folded into one record with their count; sign-ins, failed ones and logouts; a file that cannot be written said once; read back newest
first, the folds under way among them; sent to PostgreSQL from the file (a real server,
`tests/support/postgres.py`)."""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import psycopg
from tests.support.postgres import PostgresServer

from tollgate.console.access_log import AccessLog, default_path
from tollgate.console.viewer import TOKEN_HOLDER, Viewer

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
