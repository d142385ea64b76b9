"""`tollgate scan FILE|-`: what the guardrails of a configuration find in a body, by kind, count and
offset, and never a value. One test runs it as a process (`python -m tollgate`); the others call
its `main` in this one, which computes the same."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import run_tollgate

from support.guardrail_samples import AWS_KEY_ID, AWS_SECRET, EMAIL, crc_token
from tollgate.cli.main import main

OWN_KEY = "sk-" + "own-upstream-key-0123456789"
TOKEN = crc_token("gh" + "p_")
PLANTED = [AWS_KEY_ID, AWS_SECRET, EMAIL, TOKEN, OWN_KEY]
Scan = Callable[..., subprocess.CompletedProcess[str]]


def scan(cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return run_tollgate("scan", *args, cwd=cwd, stdin=stdin.decode() if stdin is not None else None)


@pytest.fixture
def scan_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Scan:
    """`scan`, in this process: `tollgate.cli.main.main` with `cwd` as the working directory."""

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        status = main(["scan", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["tollgate", "scan", *args], status, out, err)

    return run


@pytest.fixture
def body() -> bytes:
    env = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\nGITHUB_TOKEN={TOKEN}\n"
    messages = [
        {"role": "user", "content": f"Mail {EMAIL} the report; our key is {OWN_KEY}"},
        {"role": "tool", "content": env},
    ]
    return json.dumps({"model": "gpt-4o", "messages": messages}).encode()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(
        f"providers: {{openai: {{keys: [{OWN_KEY}]}}}}\n"
        "guardrails:\n"
        "  - {match: {provider: anthropic}, detect: [secrets], action: deny}\n"
        "  - {detect: [pii.email], action: redact}\n"
    )
    return path


def assert_no_value(output: str) -> None:
    for value in PLANTED:
        assert value not in output


def test_a_file_with_the_configuration_in_the_working_directory(
    tmp_path: Path, body: bytes, config: Path, scan_here: Scan
) -> None:
    (tmp_path / "body.json").write_bytes(body)
    result = scan_here(tmp_path, "body.json")
    assert result.returncode == 1, result.stderr
    assert_no_value(result.stdout + result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0] == f"body.json: 5 findings ({len(body)} bytes, JSON)"
    # Every rule applies, whatever its match; tollgate_keys always, with deny.
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows == {
        "pii.email": ["1", "redact", "at", str(body.index(EMAIL.encode()))],
        "tollgate_keys": ["1", "deny", "at", str(body.index(OWN_KEY.encode()))],
        "secrets.aws_access_key_id": ["1", "deny", "at", str(body.index(AWS_KEY_ID.encode()))],
        "secrets.aws_secret_access_key": ["1", "deny", "at", str(body.index(AWS_SECRET.encode()))],
        "secrets.github_token": ["1", "deny", "at", str(body.index(TOKEN.encode()))],
    }


@pytest.mark.slow
def test_standard_input_and_a_named_configuration(tmp_path: Path, body: bytes, config: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = scan(elsewhere, "-", "--config", str(config), stdin=body)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("(stdin): 5 findings")
    assert_no_value(result.stdout + result.stderr)


def test_nothing_found(tmp_path: Path, scan_here: Scan) -> None:
    (tmp_path / "clean.txt").write_text("Nothing to see here.\n")
    result = scan_here(tmp_path, "clean.txt")
    assert (result.returncode, result.stdout) == (0, "clean.txt: nothing found: no rule or key applied (21 bytes)\n")


def test_without_a_configuration_it_says_nothing_was_applied(tmp_path: Path, body: bytes, scan_here: Scan) -> None:
    (tmp_path / "body.json").write_bytes(body)
    result = scan_here(tmp_path, "body.json")
    assert result.returncode == 0
    assert result.stdout == f"body.json: nothing found: no rule or key applied ({len(body)} bytes, JSON)\n"
    assert result.stderr == (
        "applied: no configuration (no ./tollgate.yaml, no --config): no guardrails rule, no key of Tollgate's own\n"
    )


def test_it_says_which_rules_and_keys_it_applied(tmp_path: Path, config: Path, scan_here: Scan) -> None:
    (tmp_path / "clean.txt").write_text("x")
    result = scan_here(tmp_path, "clean.txt")
    assert (result.returncode, result.stdout) == (0, "clean.txt: nothing found (1 byte)\n")
    assert result.stderr == (
        "applied: tollgate.yaml: 2 guardrails rules (pii.email, secrets), 1 key of Tollgate's own (tollgate_keys)\n"
    )


def test_what_cannot_be_read(tmp_path: Path, body: bytes, scan_here: Scan) -> None:
    (tmp_path / "bad.yaml").write_text("guardrails: [{detect: [secretz], action: deny}]\n")
    (tmp_path / "body.json").write_bytes(body)
    result = scan_here(tmp_path, "body.json", "--config", "bad.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad.yaml: guardrails.0.detect.0: unknown detector 'secretz'")
    missing = scan_here(tmp_path, "missing.json")
    assert missing.returncode == 2
    assert missing.stderr == "error: missing.json: cannot read: No such file or directory\n"


def test_many_offsets_are_cut_short(tmp_path: Path, config: Path, scan_here: Scan) -> None:
    (tmp_path / "many.txt").write_text(" ".join([EMAIL] * 25))
    result = scan_here(tmp_path, "many.txt")
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].endswith(", … (5 more)")
    assert_no_value(result.stdout)
