"""`python -m tollgate.proxy.start`: which configuration a command line names, and a wrong one
refused in one line before mitmproxy starts."""

from __future__ import annotations

from pathlib import Path

from tollgate.proxy.start import config_named, main


def test_the_configuration_is_the_last_tollgate_config_set() -> None:
    assert config_named(["-s", "gateway.py", "--listen-port", "8080"]) is None
    assert config_named(["--set", "confdir=x", "--set", "tollgate_config=a.yaml"]) == "a.yaml"
    assert config_named(["--set=tollgate_config=a.yaml", "--set", "tollgate_config=b.yaml"]) == "b.yaml"
    assert config_named(["--set", "tollgate_configx=a.yaml", "--set"]) is None


def test_a_wrong_configuration_is_one_line_and_status_1(tmp_path: Path, capsys) -> None:
    config = tmp_path / "tollgate.yaml"
    config.write_text("clients: [{name: a, keyz: [x]}]\n")
    assert main(["mitmdump", "--set", f"tollgate_config={config}"]) == 1
    said = capsys.readouterr()
    assert (said.out, said.err) == ("", f"Tollgate configuration: {config}: clients.0.keyz: unknown key\n")
    assert main(["mitmproxy"]) == 2
