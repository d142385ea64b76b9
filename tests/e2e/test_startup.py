"""A configuration that is wrong stops mitmdump at start-up, naming the field."""

from __future__ import annotations

import pytest
from tests.support.proxy import run_to_exit


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("providers:\n  openai:\n    keyz: [a]\n", {}, "providers.openai.keyz: unknown key"),
        ("clients:\n  - name: alice\n    keys: [a]\n    grups: [x]\n", {}, "clients.0.grups: unknown key"),
        (
            "providers:\n  gemini:\n    keys: ['${TOLLGATE_TEST_UNSET_VAR}']\n",
            {},
            "providers.gemini.keys.0: environment variable TOLLGATE_TEST_UNSET_VAR is not set",
        ),
        ("providers:\n  openai:\n    timeout: -1\n", {}, "providers.openai.timeout: Input should be greater than 0"),
        ("providers:\n  openai:\n    upstream: api.openai.com\n", {}, "providers.openai.upstream: must look like"),
        ("providers: [\n", {}, "not valid YAML at line"),
        (
            "ledger:\n  store: sqlite:////nonexistent-tollgate-dir/ledger.sqlite\n",
            {},
            "ledger.store: cannot open the ledger at /nonexistent-tollgate-dir/ledger.sqlite: its directory",
        ),
        ("ledger:\n  store: redis://host:port/0\n", {}, "ledger.store: bad port"),
        (
            "limits:\n  - match: {group: interns}\n",
            {},
            "limits.0: a limit must set at least one of requests_per_minute",
        ),
        ("prices:\n  - input_per_mtok: 1\n", {}, "prices.0.output_per_mtok: Field required"),
        (
            "clients:\n  - name: alice\n    keys: [tg-alice-1]\nidentity:\n  jwt:\n    - issuer: https://idp.example\n"
            "      audience: tollgate\n      secret: 0123456789abcdef0123456789abcdef\n      algorithms: [HS256]\n",
            {},
            "identity.jwt.0.client_prefix: not set, and clients are configured: a token of https://idp.example"
            " could take a configured client's name",
        ),
    ],
)
def test_bad_configuration_stops_start_up(tmp_path, confdir, monkeypatch, text, env, expected):
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_VAR", raising=False)
    config = tmp_path / "tollgate.yaml"
    config.write_text(text)
    done = run_to_exit(confdir, config)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert expected in output, output


def test_missing_configuration_file_stops_start_up(tmp_path, confdir):
    done = run_to_exit(confdir, tmp_path / "nope.yaml")
    assert done.returncode != 0
    assert "nope.yaml: cannot read" in done.stdout + done.stderr


def test_environment_variables_are_expanded(tmp_path, confdir, start_gateway, monkeypatch):
    monkeypatch.setenv("TOLLGATE_TEST_OPENAI_KEY", "sk-from-the-environment")
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["${TOLLGATE_TEST_OPENAI_KEY}"]}},
            "clients": [{"name": "ci", "keys": ["tg-ci-1"]}],
        }
    )
    result = gw.run("""
        from openai import OpenAI
        OpenAI(api_key="tg-ci-1", max_retries=0).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        report(ok=True)
    """)
    assert result == {"ok": True}
    assert gw.fakes["openai"].received[-1].headers["authorization"] == "Bearer sk-from-the-environment"
