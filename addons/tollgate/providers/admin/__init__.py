"""The vendors' admin APIs that `tollgate reconcile` reads, by provider name: each reader asks its
vendor's usage, cost and keys for a span of UTC days (`openai.py`, `anthropic.py`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Protocol

from tollgate.providers.admin import anthropic, openai
from tollgate.providers.admin.pages import Admin, AdminRefused, VendorUnreadable
from tollgate.providers.admin.usage_types import VendorKey, VendorReport, VendorUsage

__all__ = [
    "NOT_YET_READ",
    "READERS",
    "Admin",
    "AdminRefused",
    "Reader",
    "VendorKey",
    "VendorReport",
    "VendorUnreadable",
    "VendorUsage",
]


class Reader(Protocol):
    base_url: str

    def admin(self, base_url: str | None, key: str, ca_file: object, sleep: Callable[[float], None]) -> Admin: ...

    def read(self, admin: Admin, since: date, until: date) -> VendorReport: ...


READERS: dict[str, Reader] = {"openai": openai.READER, "anthropic": anthropic.READER}
# Vendors whose billing Tollgate does not read yet, and where it is published.
NOT_YET_READ = {
    "bedrock": "AWS Cost and Usage Reports, by IAM principal",
    "vertex": "Google Cloud's billing export",
}
