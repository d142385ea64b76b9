"""The lock files every install takes (requirements/*.lock, written by `./run.sh lock`): what
pyproject.toml asks, at exact versions within its ranges, each with its hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# An entry: `name==version [; marker] \` then its `--hash=sha256:…` lines.
ENTRY = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ;[^\\\n]*)?((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M)


def locked(name: str) -> list[tuple[str, Version, int]]:
    """The lock file's entries: (name, version, how many hashes)."""
    text = (ROOT / "requirements" / name).read_text(encoding="utf-8")
    return [(canonicalize_name(m[1]), Version(m[2]), m[3].count("--hash=")) for m in ENTRY.finditer(text)]


def wanted(lock: str) -> list[Requirement]:
    asked = PROJECT["project"]["dependencies"] + PROJECT["build-system"]["requires"]
    if lock == "test.lock":
        asked = asked + PROJECT["project"]["optional-dependencies"]["test"]
    return [Requirement(r) for r in asked]


@pytest.mark.parametrize("lock", ["run.lock", "test.lock"])
def test_a_lock_pins_what_pyproject_asks_within_its_ranges_with_hashes(lock):
    entries = locked(lock)
    assert entries, f"requirements/{lock} has no entry"
    assert [name for name, _, hashes in entries if hashes == 0] == []
    versions: dict[str, list[Version]] = {}
    for name, version, _ in entries:
        versions.setdefault(name, []).append(version)
    # A requirement under a marker (Hyperscan's per platform) may have an entry per marker: one of
    # them is within its range. Changed ranges need `./run.sh lock`.
    outside = [
        str(r)
        for r in wanted(lock)
        if not any(r.specifier.contains(v, prereleases=True) for v in versions.get(canonicalize_name(r.name), []))
    ]
    assert outside == [], f"requirements/{lock} does not satisfy these: run ./run.sh lock"


def test_the_tests_run_on_the_versions_the_proxy_runs_on():
    run = {(name, version) for name, version, _ in locked("run.lock")}
    test_versions = {(name, version) for name, version, _ in locked("test.lock")}
    assert run - test_versions == set()
