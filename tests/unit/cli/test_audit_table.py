"""`tollgate audit verify --postgres` (`cli/audit_table.py`, `records/audit/table_verify.py`) against
a real PostgreSQL: the table's chain checked, going on from `tollgate_verified` (the console's
progress too) and writing it back; the DSN from the configuration (the console's own first) or
TOLLGATE_RECORDS_DSN, a DSN on the command line refused; a changed row is exit 1, a table that
cannot be read exit 2, as the files' verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.proxy import free_port
from tests.unit.console.test_chain_progress import heads, progress, runs
from tests.unit.console.test_table_source import TABLE, config_file, read_table, send

from tollgate.cli.main import main

SECRET = "pw-never-said"


@pytest.fixture
def dsn(postgres: Any) -> str:
    return str(postgres.database())


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with no tollgate.yaml, and no TOLLGATE_RECORDS_DSN set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOLLGATE_RECORDS_DSN", raising=False)
    return tmp_path


def sent_by_env(dsn: str, monkeypatch: pytest.MonkeyPatch, records: int) -> tuple[list[bytes], list[bytes]]:
    """`runs(records)`: its first half in the table, the rest not yet; the table's DSN in
    TOLLGATE_RECORDS_DSN, where the command finds it."""
    first, rest = runs(records)
    send(dsn, first)
    monkeypatch.setenv("TOLLGATE_RECORDS_DSN", dsn)
    return first, rest


def verify(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", "--postgres", *arguments])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_the_dsn_from_the_environment_and_the_check_goes_on_from_where_it_stopped(
    here: Path, dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, rest = sent_by_env(dsn, monkeypatch, 30)
    code, out, err = verify(capsys)
    where = (
        f"PostgreSQL (127.0.0.1:{dsn.split(':')[2].split('/', maxsplit=1)[0]}/{dsn.rsplit('/', 1)[1]}, table {TABLE})"
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"whole: {len(first)} records of 2 instances in {where} ({len(first)} checked now),"
        " signatures not checked (no key)"
    )
    assert progress(dsn) == heads(dsn)
    send(dsn, rest)
    code, out, _ = verify(capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        f"whole: {len(first) + len(rest)} records of 2 instances in {where} ({len(rest)} checked now, going on"
        " from tollgate_verified for 2 instances), signatures not checked (no key)"
    )
    assert progress(dsn) == heads(dsn)


def test_the_dsn_from_the_configuration_the_consoles_first(
    here: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, rest = runs(20)
    send(dsn, first)
    read_table(dsn).close()  # the console checked these: the command goes on from it
    send(dsn, rest)
    unreachable = f"postgresql://sender:{SECRET}@127.0.0.1:{free_port()}/records"
    path = config_file(here, {"dsn": unreachable}, {"postgres_dsn": dsn})
    code, out, _ = verify(capsys, "--config", str(path))
    assert code == 0
    assert f"({len(rest)} checked now, going on from tollgate_verified for 2 instances)" in out
    # audit.postgres.dsn when the console has no role of its own; ./tollgate.yaml when no --config.
    config_file(here, {"dsn": unreachable})
    code, out, err = verify(capsys)
    assert (code, out) == (2, "")
    assert err.startswith(
        f"error: PostgreSQL (127.0.0.1:{unreachable.split(':')[3].split('/', maxsplit=1)[0]}/records, table"
    )
    assert SECRET not in err
    # A variable of the DSN unset: said, never tried.
    path = config_file(here, {"dsn": "${RECORDS_DSN_NEVER_SET}"})
    assert verify(capsys, "--config", str(path)) == (
        2, "", f"error: {path}: audit.postgres.dsn: environment variable RECORDS_DSN_NEVER_SET is not set: the"
        " table is read with it\n",
    )  # fmt: skip


@pytest.mark.parametrize(
    "arguments",
    [
        [f"postgresql://tollgate:{SECRET}@db:5432/tollgate"],
        [f"--postgres=host=db password={SECRET}"],
        ["--dsn", f"postgresql://tollgate:{SECRET}@db/tollgate"],
        ["audit.jsonl", f"postgres://tollgate:{SECRET}@db/tollgate"],
    ],
)
def test_a_dsn_on_the_command_line_is_refused(
    here: Path, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "verify", *arguments] if arguments[0].startswith("--postgres=") else \
        ["audit", "verify", "--postgres", *arguments]  # fmt: skip
    assert main(argv) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == (
        "error: --postgres takes no DSN on the command line (a process list and the shell's history would show its"
        " password): give it in the configuration (--config: console.postgres_dsn, else audit.postgres.dsn) or in"
        " TOLLGATE_RECORDS_DSN\n"
    )
    assert SECRET not in said.err


def test_no_dsn_at_all_is_said(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(capsys) == (2, "", "error: --postgres: give --config FILE (its audit.postgres) or set"
                              " TOLLGATE_RECORDS_DSN\n")  # fmt: skip


def test_a_changed_row_is_found_and_exit_1(
    here: Path, dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, rest = sent_by_env(dsn, monkeypatch, 20)
    assert verify(capsys)[0] == 0
    head, _, chain, _ = progress(dsn)["east"]
    send(dsn, rest)
    with psycopg.connect(dsn, autocommit=True) as conn:  # behind the progress: the head row itself
        conn.execute(f'UPDATE {TABLE} SET line = replace(line, \'"ts":"2026\', \'"ts":"2025\') WHERE id = {head}')
        conn.execute(f"UPDATE {TABLE} SET cost_usd = 9 WHERE id = {len(first) + 3}")  # after it: a column
    code, out, err = verify(capsys)
    assert code == 1
    faults = out.splitlines()
    assert faults[0] == (
        f"{TABLE}:{head}: tollgate_verified says its chain was checked to this row (chain {chain}): the row is not"
        " as it was checked: changed in the database; its rows are checked again"
    )
    assert f"{TABLE}:{head}: changed: its chain does not match its content and the record before it" in faults
    assert f"{TABLE}:{len(first) + 3}: its columns differ from its line (cost_usd): changed in the database" in faults
    assert err.startswith(f"{len(faults)} faults in {len(first) + len(rest)} records of 2 instances in PostgreSQL")
    # The faults are kept: a later run says them again.
    assert verify(capsys)[0] == 1


def test_a_table_not_there_is_exit_2(
    here: Path, dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_RECORDS_DSN", dsn)
    code, out, err = verify(capsys)
    assert (code, out) == (2, "")
    assert err.endswith(f"table {TABLE}): the table {TABLE} is not there: no instance has sent its records to it yet\n")


def test_a_row_at_fault_as_the_head_is_said_the_same_at_every_run(
    here: Path, dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = runs(5)
    forged = (
        b'{"event":"llm_call","instance":"gw-new","seq":1,"ts":"2026-12-01T00:00:00.000Z","chain":"'
        + b"ab" * 32
        + b'"}'
    )
    send(dsn, [*first, forged])
    monkeypatch.setenv("TOLLGATE_RECORDS_DSN", dsn)
    code, out, _ = verify(capsys)
    assert code == 1 and out.startswith(f"{TABLE}:{len(first) + 1}: ")
    assert verify(capsys)[:2] == (1, out)  # its faults kept, no other: the forged row is as it was checked
