"""A check of an audit record's fields by name: what the tests ask of a record, said field by field."""

from __future__ import annotations

from typing import Any


def assert_fields(record: dict[str, Any], **expected: Any) -> None:
    """Each field named in `expected` holds that value in `record` (a field it lacks fails too)."""
    assert {name: record.get(name, "<missing>") for name in expected} == expected
