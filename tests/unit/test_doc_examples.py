"""The docs' YAML examples of tollgate.yaml load through the configuration loader as written: an
example that stops start-up is a bug of the docs or of the product."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tollgate.configuration.config import Config, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


class _Environment(dict):
    """Every `${NAME}` set, each to a value of its own (two keys of one file are never the same
    key), long enough for what takes a secret (an HS256 secret: 32 bytes)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> str:
        return f"{name.lower()}-value-0123456789abcdef0123456789abcdef"


def yaml_examples(document: Path) -> Iterator[tuple[int, str]]:
    """Each ```yaml block of a page, with the line it starts on."""
    text = document.read_text(encoding="utf-8")
    for block in _YAML_BLOCK.finditer(text):
        yield text[: block.start()].count("\n") + 1, block.group(1)


def configuration_examples() -> Iterator[pytest.param]:
    """The blocks that are a tollgate.yaml (every top-level key one of its own), not those that show
    a shape with placeholders (`…`) or another program's file (Prometheus', a Kubernetes manifest)."""
    for document in sorted((ROOT / "docs").rglob("*.md")):
        for line, text in yaml_examples(document):
            data = yaml.safe_load(text)
            if "…" in text or not isinstance(data, dict) or not set(data) <= set(Config.model_fields):
                continue
            yield pytest.param(text, id=f"{document.relative_to(ROOT)}:{line}")


def test_every_yaml_example_of_the_guardrails_page_is_a_configuration() -> None:
    examples = list(yaml_examples(ROOT / "docs" / "guardrails.md"))
    assert len(examples) >= 2  # each then loaded by test_the_docs_yaml_examples_load
    for line, text in examples:
        data = yaml.safe_load(text)
        assert isinstance(data, dict) and set(data) <= set(Config.model_fields), f"docs/guardrails.md:{line}"


@pytest.mark.parametrize("text", list(configuration_examples()))
def test_the_docs_yaml_examples_load(text: str) -> None:
    try:
        parse_config(yaml.safe_load(text), _Environment())
    except ConfigError as e:
        pytest.fail(str(e))


def test_the_first_guardrails_example_names_tollgate_keys_and_loads() -> None:
    config = parse_config(yaml.safe_load("guardrails:\n  - detect: [secrets, tollgate_keys]\n    action: deny\n"), {})
    assert config.guardrails[0].kinds[-1] == "tollgate_keys"
