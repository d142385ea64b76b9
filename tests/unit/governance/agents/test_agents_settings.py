"""The `agents` settings: their defaults as the design gives them, and a wrong value refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.governance.agents.agents_settings import AgentsSettings


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


def test_the_agentdojo_example_is_valid_settings() -> None:
    """docs/examples/agentdojo.yaml, which the bench runs and docs/agents.md shows, is read as
    tollgate.yaml's `agents` is."""
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[4] / "docs" / "examples" / "agentdojo.yaml"
    s = AgentsSettings.model_validate(yaml.safe_load(example.read_text())["agents"])
    assert "send_money" in s.acting_tools and "create_file" not in s.acting_tools and s.taint_min_chars == 8
