"""The test session's PostgreSQL (`postgres_server.PostgresServer`): a server of its own on a temporary
directory, stopped at the end. Each test takes a database of its own (`database`)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .postgres_server import INSTALL, SUPERUSER, PostgresServer, postgres_bin

__all__ = ["INSTALL", "SUPERUSER", "PostgresServer", "postgres", "postgres_bin"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's server; the test fails (is not skipped) without PostgreSQL: a missing server
    would pass the sender off as tested."""
    if postgres_bin() is None:
        pytest.fail(INSTALL)
    # Not under pytest's own temporary directory: the postgres user cannot enter root's.
    directory = Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))
    server = PostgresServer(directory).start()
    try:
        yield server
    finally:
        deadline = time.monotonic() + 5
        while server.running() and time.monotonic() < deadline:
            try:
                server.stop()
            except RuntimeError:
                time.sleep(0.2)
        shutil.rmtree(directory, ignore_errors=True)
