"""bench/console_postgres.py runs as its docstring says on an install with no pytest (./run.sh's
alone): a PostgreSQL of its own started on --data, a small load, the console's reading timed, a
restart; the server stopped at the end."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.support.postgres_server import INSTALL, postgres_bin

ROOT = Path(__file__).resolve().parents[3]
# As on an install made by ./run.sh alone: pytest cannot be imported.
WITHOUT_PYTEST = (
    "import runpy, sys; sys.modules['pytest'] = None; sys.argv = sys.argv[1:];"
    " runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.slow  # a PostgreSQL started and stopped, 3,000 records loaded and read twice
def test_the_bench_runs_small_without_pytest() -> None:
    if postgres_bin() is None:
        pytest.fail(INSTALL)
    data = Path(tempfile.mkdtemp(prefix="tollgate-bench-postgres-"))  # not pytest's: the postgres user enters it
    try:
        done = subprocess.run(
            [sys.executable, "-c", WITHOUT_PYTEST, str(ROOT / "bench" / "console_postgres.py"), "--records", "3000",
             "--data", str(data)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout[-2000:]
    said = done.stdout
    assert "3,000 records made (" in said
    assert "first open: the first view (Live) ready in" in said and "restart: the first view (Live) ready in" in said
    assert said.count("slowest p95:") == 2
