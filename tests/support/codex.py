"""OpenAI's Codex CLI (`@openai/codex` from npm) at the release the tests were written against,
installed into `.node-clients` when it is not there yet, and `codex exec` run in its own session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .npm_cli import NODE_CLIENTS, npm_command
from .processes import communicate_within

# The release these tests were written against: a newer one may warm up or ask otherwise.
CODEX_VERSION = "0.169.0"
# What a user's shell may carry that would route Codex without the test's help.
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY")


def installed_codex() -> Path:
    """The codex launcher, installed at CODEX_VERSION if need be (skips where node is missing)."""
    return npm_command(NODE_CLIENTS, "@openai/codex", "codex", CODEX_VERSION)


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without what would route Codex or sign it in otherwise, with `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(extra)
    return env


def run_in_session(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `command` in its own session (the native binary the npm wrapper starts is ended with it,
    should it hang); a hang is an assertion error carrying its last output."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err, ended = communicate_within(process, timeout)
    if not ended:
        raise AssertionError(f"codex did not finish within {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
