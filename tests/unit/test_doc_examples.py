"""The docs' YAML examples of tollgate.yaml load through the configuration loader as written: an
example that stops start-up is a bug of the docs or of the product. Every ```yaml block of docs/
and README.md is read: a whole tollgate.yaml; a fragment whose first line says where it goes (`# in overrides:`),
read there; a shape, whose `…` stand for what is left out (a key `…` or a list item holding a `…`
is left out, the rest read); or another program's file, whose first line says whose
(`# prometheus.yml`). docs/examples/tollgate.yaml and agentdojo.yaml load too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollgate.configuration.config import Config, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)
# A fragment's first line: the top-level key it goes under.
_FRAGMENT = re.compile(r"# in ([a-z_]+):")
# Another program's file, as its first line names it.
_OTHER_PROGRAMS = ("# prometheus.yml", "# in the pod spec", "# a step of a GitHub Actions workflow")
_PLACEHOLDER = "…"
# The example files of docs/examples that are a tollgate.yaml (prometheus-alerts.yaml is Prometheus').
_CONFIGURATION_FILES = ("tollgate.yaml", "agentdojo.yaml")


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


def _placeholder_item(node: Any) -> bool:
    """A list item that is a `…` or has one as a value of its own (`{key: "sha256:…"}`)."""
    if isinstance(node, str):
        return _PLACEHOLDER in node
    return isinstance(node, dict) and any(isinstance(v, str) and _PLACEHOLDER in v for v in node.values())


def without_placeholders(node: Any) -> Any:
    """A shape as a configuration: its keys `…` left out, and its list items that are or hold a
    `…` (a `sha256:…` key, say); a `…` anywhere else stays, and fails to load."""
    if isinstance(node, dict):
        return {k: without_placeholders(v) for k, v in node.items() if k != _PLACEHOLDER}
    if isinstance(node, list):
        return [without_placeholders(v) for v in node if not _placeholder_item(v)]
    return node


def as_configuration(text: str) -> Any | None:
    """What a block holds as a tollgate.yaml, or None for another program's file."""
    first = text.split("\n", 1)[0].strip()
    if first in _OTHER_PROGRAMS:
        return None
    data = yaml.safe_load(text)
    if (fragment := _FRAGMENT.fullmatch(first)) is not None:
        data = {fragment.group(1): data}
    return without_placeholders(data)


def configuration_examples() -> Iterator[pytest.param]:
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line, text in yaml_examples(document):
            yield pytest.param(text, id=f"{document.relative_to(ROOT)}:{line}")


def _load(data: Any) -> Config:
    try:
        return parse_config(data, _Environment())
    except ConfigError as e:
        pytest.fail(str(e))


@pytest.mark.parametrize("text", list(configuration_examples()))
def test_the_docs_yaml_examples_load(text: str) -> None:
    data = as_configuration(text)
    if data is None:
        return  # another program's file, as its first line says
    assert isinstance(data, dict), (
        f"not a mapping: mark a fragment `# in KEY:`, another program's file {_OTHER_PROGRAMS}"
    )
    assert set(data) <= set(Config.model_fields), (
        f"not tollgate.yaml's keys: {sorted(set(data) - set(Config.model_fields))}"
    )
    _load(data)


@pytest.mark.parametrize("name", _CONFIGURATION_FILES)
def test_the_example_files_load(name: str) -> None:
    _load(yaml.safe_load((ROOT / "docs" / "examples" / name).read_text(encoding="utf-8")))


# A commented setting of an example file (`#   upstream: https://…`, `# - match: {…}`), not prose.
_COMMENTED_SETTING = re.compile(r"^(\s*)# ( *)((?:- )?[a-z_]+:(?: .*)?|- .*)$")


def uncommented(text: str) -> str:
    """An example file with the settings it leaves commented written in, as a reader would."""
    return "\n".join(_COMMENTED_SETTING.sub(r"\1\2\3", line) for line in text.splitlines())


def test_the_example_files_settings_left_commented_load_too() -> None:
    """Each commented setting of docs/examples/tollgate.yaml is what a reader turns on by deleting
    its `# `: turned on all at once, they load (a route to Bedrock once lacked its upstream)."""
    text = (ROOT / "docs" / "examples" / "tollgate.yaml").read_text(encoding="utf-8")
    written_in = uncommented(text)
    assert written_in.count("\n  - match:") > text.count("\n  - match:")  # the commented rules are in
    config = _load(yaml.safe_load(written_in))
    assert config.rollup and config.prices and config.policy.rego


def test_a_shape_is_read_without_its_placeholders() -> None:
    shape = yaml.safe_load('providers:\n  gemini: {…, keys: []}\nclients: [{name: a, keys: [tg-a-1, "sha256:…"]}]\n')
    assert without_placeholders(shape) == {
        "providers": {"gemini": {"keys": []}},
        "clients": [{"name": "a", "keys": ["tg-a-1"]}],
    }


def test_a_wrong_field_in_a_shape_fails() -> None:
    """What `…` does not cover is read: the shape of configuration.md once gave Azure's `resources`
    as a list, which the loader refuses."""
    with pytest.raises(ConfigError, match=r"providers\.azure\.resources"):
        parse_config(without_placeholders(yaml.safe_load("providers:\n  azure: {…, resources: []}\n")), {})


def test_a_fragment_is_read_where_its_first_line_says() -> None:
    data = as_configuration("# in overrides:\n- match: {model: a}\n  model: b\n")
    assert data == {"overrides": [{"match": {"model": "a"}, "model": "b"}]}
    assert _load(data).overrides[0].model == "b"
    assert as_configuration("# prometheus.yml\nscrape_configs: []\n") is None


def test_every_yaml_example_of_the_guardrails_page_is_a_configuration() -> None:
    examples = list(yaml_examples(ROOT / "docs" / "guardrails.md"))
    assert len(examples) >= 2  # each then loaded by test_the_docs_yaml_examples_load
    for line, text in examples:
        data = yaml.safe_load(text)
        assert isinstance(data, dict) and set(data) <= set(Config.model_fields), f"docs/guardrails.md:{line}"


def test_the_first_guardrails_example_names_tollgate_keys_and_loads() -> None:
    config = parse_config(yaml.safe_load("guardrails:\n  - detect: [secrets, tollgate_keys]\n    action: deny\n"), {})
    assert config.guardrails[0].kinds[-1] == "tollgate_keys"
