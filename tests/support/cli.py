"""The `tollgate` command as a user runs it, from this checkout's code (not an installed one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.proxy import ROOT


def checkout_env() -> dict[str, str]:
    """This process's environment, with this checkout's `addons/` first on the Python path."""
    return {**os.environ, "PYTHONPATH": str(ROOT / "addons")}


def console_process(
    config: Path, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`tollgate console --config CONFIG ARGS` in `cwd` (the configuration's folder unless said):
    the process and the first line it printed (the address, or what went wrong)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "console", "--config", str(config), *args],
        cwd=cwd or config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else checkout_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    return process, process.stdout.readline()


@dataclass
class ConsoleRun:
    """A `tollgate console` run by `console_running`."""

    address: str  # the address it printed, its token in the query
    err: str = ""  # its standard error, once it stopped


@contextmanager
def console_running(config: Path, pattern: str, *args: str, cwd: Path | None = None) -> Iterator[ConsoleRun]:
    """`tollgate console --config CONFIG ARGS` (`console_process`) until the block ends, its first
    line matching `pattern`; then stopped as an operator stops it (SIGTERM)."""
    process, line = console_process(config, *args, cwd=cwd)
    try:
        assert re.fullmatch(pattern, line), line
        run = ConsoleRun(line.split(": ", 1)[1].strip())
        yield run
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    run.err = err


def run_tollgate(
    *args: str, cwd: Path = ROOT, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`tollgate ARGS` in `cwd` to its end (`stdin` its input): its exit status, output and errors."""
    return subprocess.run(
        [sys.executable, "-m", "tollgate", *args],
        cwd=cwd,
        input=stdin,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
