"""A real PostgreSQL (Debian's `postgresql` package), started with `initdb` and `pg_ctl` on a directory
and a free port of 127.0.0.1 (as the `postgres` user where this runs as root): the tests' server
(`postgres.py`, its pytest fixture) and the benches'. Nothing here imports pytest, so that a bench
runs on an install made by `./run.sh` alone."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg

from .proxy import free_port

INSTALL = (
    "PostgreSQL is not installed, and the tests of audit.postgres need a real one: install it"
    " (Debian/Ubuntu: `sudo apt-get install -y postgresql`; macOS: `brew install postgresql`)."
    " ./run.sh test and .ci/run install it themselves when run as root on a system with apt-get."
)
SUPERUSER = "postgres"


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: Debian's (/usr/lib/postgresql/N/bin, the newest), else
    the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


class PostgresServer:
    """A server on `directory`, listening on 127.0.0.1:`port` (and a socket in `directory`)."""

    def __init__(self, directory: Path) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError(INSTALL)
        self.bin = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(directory, SUPERUSER, SUPERUSER)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")

    @classmethod
    def kept(cls, directory: Path) -> PostgresServer:
        """A server whose data stays in `directory` between runs (a benchmark's): made the first time."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120, cwd=self.directory
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stopped as an operator stops it (fast: connections ended, then a clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=10)

    def database(self) -> str:
        """A new, empty database; its DSN."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
