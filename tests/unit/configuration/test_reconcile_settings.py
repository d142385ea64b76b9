"""`reconcile:` an admin key is a variable's name the proxy, the console and `tollgate check` never
read: they load the file without it set; only `tollgate reconcile` reads the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.configuration.config import ConfigError, file_problems, load_config, parse_config

FILE = """
reconcile:
  openai: {admin_key: "${OPENAI_ADMIN_KEY}", base_url: "https://admin.example:8443"}
  anthropic: {admin_key: "${ANTHROPIC_ADMIN_KEY}"}
  days: 3
  tolerance: {share: 0.02, tokens: 10}
"""


def test_the_file_loads_without_the_admin_keys_set(tmp_path: Path):
    path = tmp_path / "tollgate.yaml"
    path.write_text(FILE)
    config = load_config(path, env={})  # as the proxy and the console load it
    assert config.reconcile is not None
    assert set(config.reconcile.vendors()) == {"openai", "anthropic"}
    assert config.reconcile.vendors()["openai"].base_url == "https://admin.example:8443"
    assert (config.reconcile.days, config.reconcile.tolerance.share, config.reconcile.tolerance.tokens) == (3, 0.02, 10)
    assert file_problems(path, env={}) == []  # `tollgate check` too


def test_the_key_is_read_from_its_variable_only_when_asked_and_never_held():
    secret = "sk-admin-secret-value-0123456789"
    config = parse_config({"reconcile": {"openai": {"admin_key": "${OPENAI_ADMIN_KEY}"}}},
                          env={"OPENAI_ADMIN_KEY": secret})  # fmt: skip
    assert config.reconcile is not None
    vendor = config.reconcile.vendors()["openai"]
    assert secret not in repr(config) and secret not in config.model_dump_json()
    assert vendor.variable == "OPENAI_ADMIN_KEY"
    assert vendor.admin_key_value({"OPENAI_ADMIN_KEY": secret}) == secret
    with pytest.raises(ValueError, match="environment variable OPENAI_ADMIN_KEY is not set"):
        vendor.admin_key_value({})


def test_a_key_written_in_the_file_is_refused_without_repeating_it():
    secret = "sk-admin-written-in-the-file-123"
    with pytest.raises(ConfigError) as refused:
        parse_config({"reconcile": {"openai": {"admin_key": secret}}}, env={})
    assert "reconcile.openai.admin_key: must be one ${NAME} alone" in str(refused.value)
    assert secret not in str(refused.value)


@pytest.mark.parametrize(("field", "value", "said"), [
    ("days", 0, "reconcile.days"), ("tolerance", {"share": 2}, "reconcile.tolerance.share"),
    ("bedrock", {"admin_key": "${X}"}, "reconcile.bedrock: unknown key"),
])  # fmt: skip
def test_a_bad_setting_names_its_field(field, value, said):
    with pytest.raises(ConfigError, match=said.replace(".", r"\.")):
        parse_config({"reconcile": {field: value}}, env={})
