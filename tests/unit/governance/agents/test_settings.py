"""The `agents` settings: their defaults as the design gives them, and a wrong value refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.governance.agents.settings import AgentsSettings


def test_defaults() -> None:
    s = AgentsSettings()
    assert s.acting_tools == ["*"] and s.on_tainted == "refuse" and s.after_injection == "refuse"
    assert s.taint_min_chars == 5 and s.quarantine_s == 600 and s.trusted_tools == [] and s.item_tools == []
    assert s.item_fields == ["sender", "from", "author", "organizer", "owner", "created_by"]
    assert s.egress_allow is None and s.links is None


@pytest.mark.parametrize(
    "bad",
    [
        {"on_tainted": "block"},
        {"taint_min_chars": 0},
        {"trusted_tools": [""]},
        {"acting": ["*"]},
        {"links": {"action": "drop"}},
    ],
)
def test_wrong_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AgentsSettings.model_validate(bad)


def test_empty_means_default() -> None:
    assert AgentsSettings.model_validate({"acting_tools": None, "item_fields": None}).acting_tools == ["*"]
