"""The audit sent to PostgreSQL (`audit.postgres`), without mitmproxy: its configuration, a line's
row (the columns taken from it, U+0000, lines without a chain or not JSON), the schema made and
migrated against a real server (`tests/support/postgres.py`), rows stored once, and the sender's
thread: every line once, a restart from its position, a database that cannot be reached, a schema
newer than it knows, `keep_days`."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port
from tests.unit.audit_lines import append_records, wait_until

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.records.senders import audit_postgres
from tollgate.records.senders.audit_postgres import (
    COLUMNS,
    SCHEMA_VERSION,
    AuditPostgres,
    SchemaTooNew,
    ensure_schema,
    prepare,
    row_dict,
    row_of,
    schema_version,
    store,
)
from tollgate.records.senders.file_sender import Position, read_position
from tollgate.records.telemetry.metrics import MetricSet

LLM_CALL = {
    "event": "llm_call",
    "ts": "2026-11-22T08:30:00.123Z",
    "request_id": "r-1",
    "client": "alice",
    "auth": "virtual_key",
    "groups": ["research", "eu"],
    "account": None,
    "tenant": None,
    "provider": "openai",
    "endpoint": "chat.completions",
    "requested_model": "gpt-4o",
    "model": "gpt-4o-mini",
    "decision": "deny",
    "status": 403,
    "latency_ms": 12.5,
    "input_tokens": 11,
    "output_tokens": 7,
    "cached_tokens": None,
    "reasoning_tokens": 0,
    "cache_write_tokens": None,
    "cost_usd": 0.000123457,
    "error": None,
    "refusal": "policy_denied",
    "instance": "host/w1",
    "seq": 42,
    "chain": "9f" * 32,
}
TABLE = "tollgate_records"


# ---- the configuration


def test_audit_postgres_configuration() -> None:
    env = {"TOLLGATE_RECORDS_DSN": "postgresql://tollgate:s3cret@db:5432/records?sslmode=require"}
    config = parse_config({"audit": {"postgres": {"dsn": "${TOLLGATE_RECORDS_DSN}"}}}, env)
    postgres = config.audit.postgres
    assert postgres is not None
    assert postgres.dsn == "postgresql://tollgate:s3cret@db:5432/records?sslmode=require"
    assert postgres.table == "tollgate_records"
    assert postgres.keep_days is None
    assert "s3cret" not in repr(config.audit)
    other = parse_config({"audit": {"postgres": {"dsn": "host=db dbname=x", "table": "fleet_1", "keep_days": 30}}}, {})
    assert other.audit.postgres is not None
    assert (other.audit.postgres.table, other.audit.postgres.keep_days) == ("fleet_1", 30)
    assert parse_config({}, {}).audit.postgres is None


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        (
            {"path": "-", "postgres": {"dsn": "postgresql://db/x"}},
            "audit.postgres: the audit is sent to PostgreSQL from its file",
        ),
        ({"postgres": {"dsn": "mysql://db/x"}}, "audit.postgres.dsn: must be a PostgreSQL connection URI"),
        (
            {"postgres": {"dsn": "postgresql://u:pw-secret@db:notaport/x"}},
            "audit.postgres.dsn: is not a PostgreSQL connection string",
        ),
        (
            {"postgres": {"dsn": "postgresql://u:pw-secret@db/x?bogus=1"}},
            "audit.postgres.dsn: is not a PostgreSQL connection string",
        ),
        ({"postgres": {"dsn": ""}}, "audit.postgres.dsn: must be a PostgreSQL connection URI"),
        ({"postgres": {}}, "audit.postgres.dsn"),
        (
            {"postgres": {"dsn": "postgresql://db/x", "table": "Records; DROP"}},
            "audit.postgres.table: must be a table's name",
        ),
        ({"postgres": {"dsn": "postgresql://db/x", "keep_days": 0}}, "audit.postgres.keep_days"),
        ({"postgres": {"dsn": "postgresql://db/x", "other": 1}}, "audit.postgres.other: unknown key"),
    ],
)
def test_audit_postgres_errors_name_the_field(audit: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"audit": audit}, {})
    assert expected in str(info.value)
    assert "pw-secret" not in str(info.value)


def test_an_unset_dsn_variable_is_said() -> None:
    with pytest.raises(
        ConfigError, match=r"audit\.postgres\.dsn: environment variable TOLLGATE_RECORDS_DSN is not set"
    ):
        parse_config({"audit": {"postgres": {"dsn": "${TOLLGATE_RECORDS_DSN}"}}}, {})


# ---- a row from a line


def line_of(record: dict) -> bytes:
    return orjson.dumps(record)


def test_the_columns_come_from_the_line() -> None:
    line = line_of(LLM_CALL)
    row = row_dict(line)
    assert tuple(row) == COLUMNS
    assert row["chain"] == "9f" * 32
    assert row["instance"] == "host/w1" and row["seq"] == 42
    assert row["ts"].isoformat() == "2026-11-22T08:30:00.123000+00:00"
    assert (row["event"], row["client"], row["auth"], row["provider"]) == ("llm_call", "alice", "virtual_key", "openai")
    assert row["groups"] == ["research", "eu"]
    assert (row["model"], row["requested_model"], row["endpoint"]) == ("gpt-4o-mini", "gpt-4o", "chat.completions")
    assert (row["decision"], row["status"], row["refusal"], row["error"]) == ("deny", 403, "policy_denied", None)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == (
        11,
        7,
        None,
        0,
    )
    assert row["cost_usd"] == Decimal("0.000123457")
    assert row["latency_ms"] == 12.5
    assert (row["account"], row["tenant"], row["server"], row["tool"]) == (None, None, None, None)
    assert row["line"] == line.decode() and row["raw"] is None


def test_nul_is_replaced_in_the_columns_never_in_the_line() -> None:
    line = line_of({**LLM_CALL, "client": "al\x00ice", "groups": ["a\x00", "b"], "error": "\x00"})
    assert b"\\u0000" in line
    row = row_dict(line)
    assert row["client"] == "al\ufffdice"
    assert row["groups"] == ["a\ufffd", "b"]
    assert row["error"] == "\ufffd"
    assert row["line"] == line.decode()  # the escapes as written
    assert row["raw"] is None


def test_a_line_without_a_chain_is_keyed_by_its_sha256() -> None:
    record = {k: v for k, v in LLM_CALL.items() if k != "chain"}
    line = line_of(record)
    assert row_dict(line)["chain"] == hashlib.sha256(line).hexdigest()
    assert (
        row_dict(line_of({**record, "chain": 7}))["chain"]
        == hashlib.sha256(line_of({**record, "chain": 7})).hexdigest()
    )


def test_a_line_that_is_not_a_record_keeps_its_bytes() -> None:
    cut = b'{"event":"llm_call","client":"al'
    row = row_dict(cut)
    assert row["chain"] == hashlib.sha256(cut).hexdigest()
    assert row["line"] == cut.decode() and row["raw"] is None
    assert all(row[c] is None for c in COLUMNS if c not in ("chain", "line", "raw"))
    broken = b"bad \xff bytes \x00 here"
    row = row_dict(broken)
    assert row["line"] == "bad \ufffd bytes \ufffd here"  # what text can hold
    assert row["raw"] == broken  # and the bytes exactly


def test_a_field_of_another_kind_is_no_column() -> None:
    fields = {"status": "200", "seq": True, "groups": "eu", "cost_usd": "1", "client": 5, "input_tokens": 1 << 62,
              "output_tokens": 2.5, "ts": "yesterday"}  # fmt: skip
    row = row_dict(line_of({**LLM_CALL, **fields}).replace(b"4611686018427387904", b"1180591620717411303424"))
    assert (row["status"], row["seq"], row["groups"], row["cost_usd"], row["client"]) == (None, None, None, None, None)
    assert (row["input_tokens"], row["output_tokens"], row["ts"]) == (None, None, None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*COLUMNS, "x"]), json_values, max_size=12))
def test_any_record_has_a_row(record: dict) -> None:
    line = orjson.dumps(record)
    row = row_of(line)
    assert len(row) == len(COLUMNS)
    for value in row[:-2]:
        assert "\x00" not in str(value)
    assert row[-2] == line.decode() and row[-1] is None


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_have_a_row(line: bytes) -> None:
    row = row_dict(line)
    assert row["raw"] is None or row["raw"] == line
    assert (row["raw"] or row["line"].encode()) == line


# ---- the schema, on a real server


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.database()


def indexes(conn: psycopg.Connection, table: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))}


def test_the_table_and_its_indexes_are_made_once(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert schema_version(conn, TABLE) == 0
        assert ensure_schema(conn, TABLE) == 0
        assert schema_version(conn, TABLE) == SCHEMA_VERSION == 2
        assert ensure_schema(conn, TABLE) == 2  # there already: nothing done
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position", (TABLE,)
        )]  # fmt: skip
        assert columns == ["id", *COLUMNS, "received"]
        found = indexes(conn, TABLE)
    assert any("(ts)" in d for d in found)
    assert any("(instance, seq)" in d for d in found)
    assert any("(client, ts)" in d for d in found)
    for columns in ("instance, ts", "event, ts", "decision, ts", "model, ts"):  # the event list's, made concurrently
        assert any(f"({columns})" in d for d in found)
    assert any("UNIQUE" in d and "(chain)" in d for d in found)


def test_a_fleet_starting_together_makes_it_once(dsn: str) -> None:
    results: list[object] = []

    def make() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                results.append(ensure_schema(conn, TABLE))
        except Exception as e:  # what a failing one raised is the result
            results.append(e)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 2, 2, 2]  # type: ignore[type-var]


def test_a_known_older_schema_is_migrated(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        conn.execute(f"INSERT INTO {TABLE} (chain, line) VALUES ('c1', '{{}}')")
        later = {**audit_postgres.MIGRATIONS, 3: ("ALTER TABLE {table} ADD COLUMN later text",)}
        monkeypatch.setattr(audit_postgres, "MIGRATIONS", later)
        monkeypatch.setattr(audit_postgres, "SCHEMA_VERSION", 3)
        assert ensure_schema(conn, TABLE) == 2
        assert schema_version(conn, TABLE) == 3
        assert conn.execute(f"SELECT chain, later FROM {TABLE}").fetchall() == [("c1", None)]


def test_a_newer_schema_is_left_alone(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        conn.execute("UPDATE tollgate_schema SET version = 99 WHERE name = %s", (TABLE,))
        with pytest.raises(SchemaTooNew) as info:
            ensure_schema(conn, TABLE)
        assert schema_version(conn, TABLE) == 99
    assert str(info.value) == (
        "the table tollgate_records has schema version 99 (tollgate_schema), newer than this Tollgate knows (2):"
        " its records stay in the audit file; upgrade Tollgate to send them"
    )


def test_rows_are_stored_once_in_their_order(dsn: str) -> None:
    lines = [line_of({**LLM_CALL, "seq": n, "chain": f"{n:064x}"}) for n in range(6)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        prepare(conn)
        assert store(conn, TABLE, [row_of(line) for line in lines[:4]]) == 4
        assert store(conn, TABLE, (row_of(line) for line in lines[2:])) == 2  # two sent again: ignored
        twice = line_of({**LLM_CALL, "seq": 6, "chain": f"{6:064x}"})
        assert store(conn, TABLE, [row_of(twice), row_of(twice)]) == 1  # a file that holds a line twice
        lines.append(twice)
        stored = conn.execute(f"SELECT line, seq, groups, cost_usd, ts FROM {TABLE} ORDER BY id").fetchall()
    assert [r[0] for r in stored] == [line.decode() for line in lines]
    assert [r[1] for r in stored] == list(range(7))
    assert stored[0][2] == ["research", "eu"] and stored[0][3] == Decimal("0.000123457")


def test_a_batch_made_as_it_is_stored_is_stored_whole_after_a_row_sent_again(dsn: str) -> None:
    # The rows made as the COPY takes them (a generator, read once): the COPY that met a row there
    # already is undone, and the rows it took go again through the connection's own table.
    lines = [line_of({**LLM_CALL, "seq": n, "chain": f"{n:064x}"}) for n in range(3000)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        prepare(conn)
        assert store(conn, TABLE, (row_of(line) for line in lines[:1])) == 1
        assert store(conn, TABLE, (row_of(line) for line in lines)) == 2999
        stored = conn.execute(f"SELECT seq FROM {TABLE} ORDER BY id").fetchall()
    assert [r[0] for r in stored] == list(range(3000))


# ---- the sender's thread


FAST = {"batch_seconds": 0.05, "first_delay": 0.05, "max_delay": 0.2, "connect_timeout": 2}


def write_records(path: Path, first: int, count: int, **fields) -> list[str]:
    return append_records(
        path, ({**LLM_CALL, "seq": n, "chain": f"{n:064x}", **fields} for n in range(first, first + count))
    )


def stored_lines(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute(f"SELECT line FROM {TABLE} ORDER BY id")]


@pytest.mark.slow
def test_every_line_arrives_once_and_a_restart_resumes(tmp_path: Path, dsn: str) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    lines = write_records(audit, 0, 30)
    sender = AuditPostgres(str(audit), dsn, batch_records=8, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == lines)
        wait_until(lambda: sender.lag() == 0)
    finally:
        assert sender.stop()
    st = audit.stat()
    assert read_position(str(audit) + ".postgres-position") == Position(st.st_dev, st.st_ino, st.st_size)
    lines += write_records(audit, 30, 5)
    again = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == lines)
    finally:
        assert again.stop()
    assert again.stored == 5  # from its position: nothing sent twice


@pytest.mark.slow
def test_a_database_that_cannot_be_reached_is_said_once_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    write_records(audit, 0, 3)
    port = free_port()
    dsn = f"postgresql://tollgate:pw-never-logged@127.0.0.1:{port}/records"
    sender = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: sender.lag() == 3)
        attempts = []
        original = sender.deliver

        def counted(lines, timeout):
            attempts.append(len(lines))
            return original(lines, timeout)

        sender.deliver = counted  # type: ignore[method-assign]
        wait_until(lambda: len(attempts) >= 3)  # tried again, with back-off
        write_records(audit, 3, 2)
        wait_until(lambda: sender.lag() == 5)
    finally:
        assert sender.stop(timeout=0.5)
    failing = [r.getMessage() for r in caplog.records if "is failing" in r.getMessage()]
    assert len(failing) == 1
    assert failing[0].startswith(
        f"Tollgate: the audit's sending to PostgreSQL (127.0.0.1:{port}/records,"
        " table tollgate_records) is failing (cannot reach it: "
    )
    assert "calls go on" in failing[0]
    assert not any("pw-never-logged" in r.getMessage() for r in caplog.records)
    assert read_position(str(audit) + ".postgres-position") is None


@pytest.mark.slow
def test_a_schema_newer_than_known_stops_the_sender_with_one_line(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        conn.execute("UPDATE tollgate_schema SET version = 3 WHERE name = %s", (TABLE,))
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    write_records(audit, 0, 3)
    sender = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    wait_until(lambda: not sender.alive())
    assert sender.lag() is None
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in said] == [
        "Tollgate: the audit's sending to PostgreSQL ("
        f"{sender.where}, table tollgate_records) stops: the table tollgate_records has schema version 3"
        " (tollgate_schema), newer than this Tollgate knows (2): its records stay in the audit file; upgrade"
        " Tollgate to send them"
    ]
    assert stored_lines(dsn) == []
    assert read_position(str(audit) + ".postgres-position") is None


def old_records_stored(tmp_path: Path, dsn: str) -> tuple[Path, list[str]]:
    """A new audit file of three records of 2020 (and their lines), stored in the table by a sender
    since stopped."""
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    old = write_records(audit, 0, 3, ts="2020-01-01T00:00:00.000Z")
    sender = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == old)
    finally:
        assert sender.stop()
    return audit, old


@pytest.mark.slow
def test_keep_days_removes_the_older_rows(tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    audit, _ = old_records_stored(tmp_path, dsn)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    recent = write_records(audit, 3, 2, ts=now)
    keeping = AuditPostgres(str(audit), dsn, keep_days=30, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == recent)
    finally:
        assert keeping.stop()
    assert any(
        r.getMessage() == "Tollgate: 3 rows of tollgate_records older than 30 days removed (audit.postgres.keep_days)"
        for r in caplog.records
    )


def test_keep_days_removes_the_older_rows_while_no_record_is_sent(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a schedule of its own: at the sender's start, then every PURGE_SECONDS, however quiet the
    audit (an instance idle over a weekend still forgets what it must)."""
    audit, old = old_records_stored(tmp_path, dsn)
    monkeypatch.setattr(audit_postgres, "PURGE_SECONDS", 0.2)
    keeping = AuditPostgres(str(audit), dsn, keep_days=30, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == [])  # nothing new to send: removed at its start
        more = [orjson.loads(line) | {"seq": 9, "chain": f"{9:064x}"} for line in old[:1]]
        with psycopg.connect(dsn, autocommit=True) as conn:
            prepare(conn)
            # Counted by the insert itself: the next purge may come before a reader would.
            assert store(conn, TABLE, [row_of(orjson.dumps(record)) for record in more]) == 1
        wait_until(lambda: stored_lines(dsn) == [])  # and again, still sending nothing
    finally:
        assert keeping.stop()


def test_the_lag_is_a_metric() -> None:
    metrics = MetricSet(postgres_lag=lambda: 12)
    assert metrics.registry.get_sample_value("tollgate_audit_postgres_lag_records") == 12
    assert MetricSet().registry.get_sample_value("tollgate_audit_postgres_lag_records") is None


@pytest.mark.slow
def test_one_sender_per_file(tmp_path: Path, dsn: str) -> None:
    """Two senders of one file (two processes' in a fleet): one sends it, the other stands by and
    takes over from the position when the first stops."""
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    lines = write_records(audit, 0, 20)
    one = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    wait_until(lambda: one.lag() is not None)
    other = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == lines)
        assert other.lag() is None  # standing by
        assert one.stop()
        lines += write_records(audit, 20, 5)
        wait_until(lambda: stored_lines(dsn) == lines)
        assert other.lag() == 0
    finally:
        assert other.stop()
    assert (one.stored, other.stored) == (20, 5)


# ---- a password given as ${NAME}, on a server that checks it

PASSWORD = "p@ss:w/rd%41#?x y&z="  # every character a URI gives a meaning, and an escape that is no escape


@pytest.fixture(scope="module")
def checking_passwords() -> Iterator[PostgresServer]:
    """A server of its own whose other users than `postgres` sign in with their password (SCRAM)."""
    directory = Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))
    server = PostgresServer(directory)
    (server.data / "pg_hba.conf").write_text(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    server.start()
    try:
        with server.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE tollgate LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
            conn.execute("CREATE DATABASE records OWNER tollgate")
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_password_given_as_a_variable_is_escaped_in_the_dsn(tmp_path: Path, checking_passwords) -> None:
    written = f"postgresql://tollgate:${{TOLLGATE_TEST_PG_PASSWORD}}@127.0.0.1:{checking_passwords.port}/records"
    config = parse_config({"audit": {"postgres": {"dsn": written}}}, {"TOLLGATE_TEST_PG_PASSWORD": PASSWORD})
    dsn = config.audit.postgres.dsn  # type: ignore[union-attr]
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tollgate",)
    # As the sender sends the audit with it.
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    lines = write_records(audit, 0, 2)
    sender = AuditPostgres(str(audit), dsn, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored_lines(dsn) == lines)
    finally:
        assert sender.stop()
    # The whole DSN in one variable is the user's to write (escaped as a URI), and left as given.
    whole = parse_config({"audit": {"postgres": {"dsn": "${TOLLGATE_TEST_DSN}"}}}, {"TOLLGATE_TEST_DSN": dsn})
    assert whole.audit.postgres.dsn == dsn  # type: ignore[union-attr]
