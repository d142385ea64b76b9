"""The `tollgate` command as pyproject.toml declares it: its entry point, run from any directory."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "policies"


@pytest.fixture
def tollgate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The function the installed `tollgate` script calls, run in a directory far from the checkout."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    entry = EntryPoint(name="tollgate", value=scripts["tollgate"], group="console_scripts").load()
    monkeypatch.chdir(tmp_path)
    return entry


def test_check_from_another_directory(tollgate, tmp_path: Path, capsys) -> None:
    Path("tollgate.yaml").write_text("clients: [{name: alice, keys: [tg-alice-0123456789]}]\n")
    Path("bad.yaml").write_text("providers: {openai: {keyz: []}}\n")
    assert tollgate(["check", "tollgate.yaml"]) == 0
    assert capsys.readouterr().out == "tollgate.yaml: ok (1 clients)\n"
    assert tollgate(["check", "bad.yaml"]) == 1
    assert "providers.openai.keyz: unknown key" in capsys.readouterr().err


def test_policy_eval_and_certs_from_another_directory(tollgate, tmp_path: Path, capsys) -> None:
    Path("input.json").write_text(
        json.dumps({"client": {"name": "sam", "groups": ["support"]}, "model": "gpt-4o", "unread": []})
    )
    code = tollgate(["policy", "eval", "--policy", str(EXAMPLES / "model_allowlist.rego"), "--input", "input.json"])
    assert (code, json.loads(capsys.readouterr().out)) == (
        1,
        {"allowed": False, "deny": ['model gpt-4o is not allowed for groups ["support"]']},
    )
    assert tollgate(["certs", "--confdir", "here"]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "here" / "mitmproxy-ca-cert.pem"),
        str(tmp_path / "here" / "ca-bundle.pem"),
    ]
