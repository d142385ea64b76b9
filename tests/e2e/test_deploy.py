"""deploy/install.sh as the container image runs it, on the build context Docker would send, and
what it installs serving the cluster's own configuration, policy and CA Secret with official SDKs."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import trustme
import yaml
from tests.support.canned import provider_answers
from tests.support.clients import run_client
from tests.support.deploy import ROOT, dockerfile, example_copy, find, kustomize, run_roles
from tests.support.dockerignore import copy_context
from tests.support.fake_upstream import FakeUpstream
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port
from tests.support.redis import RedisServer, redis_server
from tests.support.run_sh import wait_listening

# Where the Dockerfile puts them (COPY . /opt/tollgate/src; RUN …/install.sh /opt/tollgate/venv).
SRC, VENV = "opt/tollgate/src", "opt/tollgate/venv"
# The environment of a process of the image's: without the PYTHONPATH the tests give what they start
# (tests/conftest.py), which would put this checkout's package ahead of the image's.
OUTSIDE = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def install(source: Path, venv: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(source / "deploy" / "install.sh"), str(venv)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**OUTSIDE, "PYTHON": python},
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's files: the build context where COPY puts it, installed by the script the
    Dockerfile runs (its dependencies from the package index, as `docker build` gets them)."""
    root = tmp_path_factory.mktemp("image")
    copy_context(ROOT, ROOT / ".dockerignore", root / SRC)
    done = install(root / SRC, root / VENV)
    assert done.returncode == 0, done.stderr[-4000:]
    return root


def test_the_install_script_installs_tollgate_in_place_in_a_new_venv(image: Path) -> None:
    venv = image / VENV
    assert (venv / "bin" / "tollgate").exists() and (venv / "bin" / "mitmdump").exists()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tollgate, gateway; print(tollgate.__file__, gateway.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=OUTSIDE,
    )
    # The package and the script mitmdump loads come from the image's source tree, side by side.
    addons = image / SRC / "addons"
    assert done.stdout.split() == [str(addons / "tollgate" / "__init__.py"), str(addons / "gateway.py")]


def test_the_install_script_refuses_a_python_before_3_12(tmp_path: Path) -> None:
    older = next((p for p in ("python3.11", "python3.10", "/usr/bin/python3") if old_python(p)), None)
    if older is None:
        pytest.skip("no Python older than 3.12 on this machine to refuse")
    done = install(ROOT, tmp_path / "venv", python=older)
    assert done.returncode == 1
    assert done.stderr == (
        f"install.sh: {older} is not Python 3.12 or newer (mitmproxy 12 needs it): set PYTHON=/path/to/python3.12\n"
    )
    assert not (tmp_path / "venv").exists()
    usage = subprocess.run([str(ROOT / "deploy" / "install.sh")], capture_output=True, text=True, timeout=30)
    assert (usage.returncode, usage.stderr) == (2, "install.sh: usage: deploy/install.sh VENV\n")


def old_python(command: str) -> bool:
    found = shutil.which(command)
    if found is None:
        return False
    done = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() == "False"


@pytest.fixture
def keys(example: list[dict[str, Any]]) -> dict[str, str]:
    """The Secret tollgate-keys of the example, as the pods get it in their environment."""
    data = find(example, "Secret", "tollgate-keys")["data"]
    return {name: base64.b64decode(value).decode() for name, value in data.items()}


@pytest.fixture
def records(example: list[dict[str, Any]]) -> dict[str, str]:
    """The Secret tollgate-records, as the pods get it in their environment."""
    data = find(example, "Secret", "tollgate-records")["data"]
    return {name: base64.b64decode(value).decode() for name, value in data.items()}


@pytest.fixture
def database(
    postgres: PostgresServer, records: dict[str, str], example: list[dict[str, Any]], image: Path, tmp_path: Path
) -> str:
    """A database of the test's PostgreSQL in which deploy/postgres-roles.sql made the roles, the
    sender's and the owner's passwords the Secrets', and the Job tollgate-migrate made the tables:
    its command, run from the image with its Secret's DSN (the database's address the test's); its
    superuser's DSN."""
    admin = postgres.database()
    data = find(example, "Secret", "tollgate-migrate")["data"]
    owner_dsn = base64.b64decode(data["TOLLGATE_RECORDS_DSN"]).decode()
    owner_password = urlsplit(owner_dsn).password or ""
    done = run_roles(admin, records["TOLLGATE_SENDER_PASSWORD"], "console-password", owner_password)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    test_server = urlsplit(admin)
    dsn = urlunsplit(urlsplit(moved(owner_dsn, test_server.port or 0))._replace(path=test_server.path, query=""))
    (container,) = find(example, "Job", "tollgate-migrate")["spec"]["template"]["spec"]["containers"]
    command = [str(image / VENV / "bin" / container["command"][0]), *container["command"][1:]]
    ran = subprocess.run(command, env={**image_env(image, tmp_path), "TOLLGATE_RECORDS_DSN": dsn},
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "tollgate_reconciliation migrated from schema version 0 to 1" in ran.stdout, ran.stdout
    assert owner_password not in ran.stdout + ran.stderr
    return admin


@pytest.fixture
def ledger(tmp_path: Path, keys: dict[str, str]) -> Iterator[RedisServer]:
    server = redis_server(tmp_path / "redis", password=keys["REDIS_PASSWORD"])
    yield server
    server.stop()


@pytest.fixture
def example(image: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """The example deployment rendered, its CA made by the image's own `tollgate certs`."""

    def make_ca(directory: Path) -> None:
        made = subprocess.run(
            [str(image / VENV / "bin" / "tollgate"), "certs", "--confdir", str(directory)], timeout=120, env=OUTSIDE
        )
        assert made.returncode == 0

    return kustomize(example_copy(tmp_path / "kubernetes", make_ca=make_ca))


def mounted(directory: Path, data: dict[str, str], binary: bool = False) -> Path:
    """A ConfigMap's or Secret's data as the kubelet mounts it: one read-only file per entry."""
    directory.mkdir(parents=True)
    for name, value in data.items():
        (directory / name).write_bytes(base64.b64decode(value) if binary else value.encode())
        (directory / name).chmod(0o440)
    directory.chmod(0o550)
    return directory


def moved(url: str, port: int) -> str:
    """The same URL, its host and port those of a stand-in on this machine."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"))


def test_the_installed_image_serves_the_cluster_configuration_with_its_ca_secret(
    image: Path,
    example: list[dict[str, Any]],
    tmp_path: Path,
    keys: dict[str, str],
    records: dict[str, str],
    database: str,
    ledger: RedisServer,
    upstream_ca: trustme.CA,
    upstream_ca_pem: Path,
) -> None:
    fakes = {name: FakeUpstream(upstream_ca, provider_answers) for name in ("openai", "anthropic")}
    # The ConfigMap's files, mounted; only where the cluster's names lead is changed, to the
    # stand-ins on this machine: the providers, the Redis of redis.yaml, the pod's address.
    files = dict(find(example, "ConfigMap", "tollgate-config")["data"])
    config = yaml.safe_load(files["tollgate.yaml"])
    for name, fake in fakes.items():
        config["providers"][name]["upstream"] = fake.url
    config["ledger"]["store"] = moved(config["ledger"]["store"], ledger.port)
    # PostgreSQL's address and database those of the test's (which has no TLS); the role and its
    # password as written.
    test_server = urlsplit(database)
    sender = urlsplit(moved(config["audit"]["postgres"]["dsn"], test_server.port or 0))
    config["audit"]["postgres"]["dsn"] = urlunsplit(sender._replace(path=test_server.path, query=""))
    metrics_port = free_port()
    config["metrics"]["listen"] = f"127.0.0.1:{metrics_port}"
    audit = tmp_path / Path(config["audit"]["path"]).relative_to("/")
    audit.parent.mkdir(parents=True)
    config["audit"]["path"] = str(audit)
    files["tollgate.yaml"] = yaml.safe_dump(config)
    config_dir = mounted(tmp_path / "etc" / "tollgate" / "config", files)
    # The CA Secret as the pod mounts it, read-only; the clients trust the CA it was made from.
    ca = mounted(tmp_path / "etc" / "tollgate" / "ca", find(example, "Secret", "tollgate-ca")["data"], binary=True)
    bundle = tmp_path / "kubernetes" / "example" / "ca" / "ca-bundle.pem"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in ca.iterdir())
    # The image's environment and working directory (its ENV and WORKDIR), laid out here.
    workdir = tmp_path / Path(instruction("WORKDIR")).relative_to("/")
    workdir.mkdir(parents=True, exist_ok=True)
    # The pod's environment: its Secrets' entries, and its name (the downward API's metadata.name).
    env = {**image_env(image, tmp_path), **keys, **records, "TOLLGATE_INSTANCE": "tollgate-0"}
    files = image_files(image)

    port = free_port()
    log = tmp_path / "mitmdump.log"
    with log.open("wb") as output:
        proxy = subprocess.Popen(
            [
                str(image / VENV / "bin" / "mitmdump"),  # as `tollgate serve --workers 1` runs its one worker
                "-s",
                str(image / SRC / "addons" / "gateway.py"),
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--set",
                f"confdir={ca}",
                "--set",
                f"tollgate_config={config_dir / 'tollgate.yaml'}",
                "--set",
                f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}",
            ],
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_listening(port, proxy)
        answer = run_client(
            f"""
            from openai import OpenAI
            reply = OpenAI(api_key={keys["TEAM_A_VIRTUAL_KEY"]!r}, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
            report(tokens=reply.usage.total_tokens)
            """,
            f"http://127.0.0.1:{port}",
            bundle,
        )
        assert answer == {"tokens": 28}, log.read_text()[-4000:]
        (seen,) = fakes["openai"].received
        assert seen.headers["authorization"] == f"Bearer {keys['OPENAI_API_KEY']}"
        record = wait_call_record(audit)
        assert (record["client"], record["decision"], record["total_tokens"]) == ("team-a", "allow", 28)
        assert record["instance"] == "tollgate-0"
        # The record sent to PostgreSQL by the sender's role, as written.
        assert wait_stored(database, record["chain"]) == ("tollgate-0", "team-a")
        # The limit counted the call in the Redis that ledger.store names, with its password.
        client = redis.Redis(host="127.0.0.1", port=ledger.port, password=keys["REDIS_PASSWORD"], socket_timeout=5)
        try:
            assert client.dbsize() > 0
        finally:
            client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as scraped:
            assert 'tollgate_calls_total{client="team-a"' in scraped.read().decode()
        # Nothing was written to the read-only CA directory: the Secret holds all mitmproxy needs.
        assert sorted((p.name, p.stat().st_mtime_ns) for p in ca.iterdir()) == before
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        for fake in fakes.values():
            fake.close()
    # Nor to the image's own files, from start to stop: its root filesystem may be read-only.
    assert image_files(image) == files


def instruction(keyword: str) -> str:
    (found,) = [i.arguments for i in dockerfile() if i.keyword == keyword]
    return found


def image_env(image: Path, tmp_path: Path) -> dict[str, str]:
    """The variables the image's ENV lines set, its paths laid out under `image` (/opt/tollgate)
    and `tmp_path` (the rest), $PATH this machine's."""
    env: dict[str, str] = {}
    for line in (i.arguments for i in dockerfile() if i.keyword == "ENV"):
        for pair in shlex.split(line):
            name, _, value = pair.partition("=")
            value = value.replace("$PATH", os.environ["PATH"])
            value = value.replace("/opt/tollgate", str(image / "opt" / "tollgate"))
            env[name] = value.replace("/var/lib/tollgate", str(tmp_path / "var" / "lib" / "tollgate"))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and "HOME" in env
    return env


def image_files(image: Path) -> dict[str, tuple[int, int]]:
    """Every file of the image's tree: its modification time and size."""
    return {
        str(p.relative_to(image)): (p.lstat().st_mtime_ns, p.lstat().st_size)
        for p in image.rglob("*")
        if not p.is_dir() or p.is_symlink()
    }


def wait_call_record(audit: Path, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if audit.exists():
            for line in audit.read_text().rpartition("\n")[0].splitlines():  # whole lines
                record = json.loads(line)
                if record.get("event") == "llm_call":
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no call in {audit}")


def wait_stored(dsn: str, chain: str, timeout: float = 20.0) -> tuple[str, str]:
    """The (instance, client) of the row of the record whose chain is `chain`, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT to_regclass('tollgate.tollgate_records')").fetchone() != (None,):
                row = conn.execute(
                    "SELECT instance, client FROM tollgate.tollgate_records WHERE chain = %s", (chain,)
                ).fetchone()
                if row is not None:
                    return row
        time.sleep(0.1)
    raise AssertionError(f"no row of {chain} in PostgreSQL")
