"""What the docs and the code's comments say agrees with the repository and the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tollgate.config import LEDGER_FILE, AuditConfig
from tollgate.records.auditlog import BATCH_DELAY

ROOT = Path(__file__).resolve().parents[2]
_CITED = re.compile(r"[A-Za-z0-9_./-]+\.md\b")


@pytest.mark.parametrize("folder", ["addons", "bench"])
def test_every_cited_document_is_in_the_repository(folder: str) -> None:
    missing = {
        f"{source.relative_to(ROOT)}: {name}"
        for source in (ROOT / folder).rglob("*.py")
        for name in _CITED.findall(source.read_text(encoding="utf-8"))
        if not (ROOT / name).is_file()
    }
    assert not missing


@pytest.mark.parametrize(
    ("document", "passage"),
    [
        ("docs/performance.md", r"\*\*Audit writes in batches\.\*\*.*?(?=\n- )"),
        ("docs/configuration.md", r"A thread of its\s+own writes the file.*?\."),
    ],
)
def test_the_docs_give_the_audit_writers_batch_delay_as_the_code_has_it(document: str, passage: str) -> None:
    text = re.search(passage, (ROOT / document).read_text(encoding="utf-8"), re.DOTALL)
    assert text is not None
    assert {float(ms) for ms in re.findall(r"(\d+) ms", text.group())} == {BATCH_DELAY * 1000}


def test_what_tollgate_writes_in_a_checkout_is_ignored_by_git() -> None:
    # Run from the checkout, Tollgate writes its audit and, beside it, the ledger's SQLite files
    # (with its write-ahead log); logrotate leaves the audit's older files there too.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    audit = AuditConfig().path
    written = [audit, f"{audit}.1", f"{audit}.2.gz", LEDGER_FILE, f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm"]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *written],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    tracked = [line.split("\t")[1] for line in done.stdout.splitlines() if line.startswith("::")]
    assert tracked == [], done.stdout


def test_the_architectures_map_names_modules_that_exist() -> None:
    """Each module in the first column of docs/architecture.md's map is where it says, under its
    section's folder (`### \\`proxy/\\`: …`) or the package's top."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("## Where each concern lives") : text.index("## Layers")]
    package = ROOT / "addons" / "tollgate"
    named, missing = 0, []
    for part in re.split(r"\n### ", section)[1:]:
        heading, _, body = part.partition("\n")
        folder = re.match(r"`([a-z_]+/)`", heading)
        base = package / folder.group(1) if folder else package
        for row in re.findall(r"^\| ([^|]+) \|", body, re.MULTILINE):
            for name in re.findall(r"`([a-z_/<>]+(?:\.py|/))`", row):
                if "<" in name:
                    continue
                named += 1
                if not (base / name).exists():
                    missing.append(f"{heading}: {name}")
    assert named > 60 and missing == []
