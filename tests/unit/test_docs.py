"""The code's comments cite only documents the repository has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
