"""What the docs and the code's comments say agrees with the repository and the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollgate.auditlog import BATCH_DELAY

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
