"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tollgate.records.audit.auditlog import AuditLog


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def audit_log(audit_path: Path) -> Iterator[AuditLog]:
    """A real audit log on a temporary file; closing it writes what it holds."""
    log = AuditLog(str(audit_path))
    yield log
    log.close()
