"""`python -m tollgate.proxy.start`: which configuration a command line names, and a wrong one
refused in one line before mitmproxy starts."""

from __future__ import annotations

from pathlib import Path

from tollgate.proxy.start import config_named, main
from tollgate.records.audit.auditlog import AuditLog


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
    assert (said.out, said.err) == (
        "",
        f"Tollgate configuration: {config}: clients.0.keyz: unknown key (did you mean keys?)\n",
    )
    assert main(["mitmproxy"]) == 2


def test_named_no_configuration_a_wrong_tollgate_yaml_here_is_refused_too(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tollgate.yaml").write_text("clients: [{name: a, grups: [x]}]\n")
    assert main(["mitmdump", "--listen-port", "1"]) == 1  # refused before mitmproxy starts
    assert (
        capsys.readouterr().err
        == "Tollgate configuration: tollgate.yaml: clients.0.grups: unknown key (did you mean groups?)\n"
    )


def test_a_second_process_of_a_running_instance_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"audit: {{path: {audit}}}\n")
    monkeypatch.setenv("TOLLGATE_INSTANCE", "twin")
    running = AuditLog(str(audit))  # the running process: it holds the instance's in-flight file
    try:
        assert main(["mitmdump", "--set", f"tollgate_config={config}"]) == 1
        said = capsys.readouterr().err
        assert said.startswith("Tollgate configuration: instance: another process of instance 'twin' is running")
        assert said.count("\n") == 1
    finally:
        running.close()
