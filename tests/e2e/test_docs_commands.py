"""The commands the README and the docs' first pages show, run as written and in their order, in a
checkout of their own (tests/support/checkout.py), as a new user would type them: a proxy command
(`./run.sh`, mitmdump by hand, `tollgate serve`) in a terminal of its own, the others in one shell
whose exports carry over (`eval "$(./run.sh env)"`), the quick start's tollgate.yaml written where
the README says. No internet and no real key: the environment the test controls sends the
provider's host to a fake upstream over TLS (support/site/sitecustomize.py, mitmproxy's
config.yaml in the checkout's certs/ for its CA), moves the listen address (TOLLGATE_LISTEN, which
`./run.sh` and `./run.sh env` read alike) and gives OPENAI_API_KEY a key of the test's."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from tests.support.canned import provider_answers
from tests.support.checkout import linked_checkout
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import wait_listening

# The pages whose commands are run, each to the heading where its first part ends (None: whole).
PAGES = (("README.md", None), ("docs/overview.md", None), ("docs/configuration.md", "## Validation"))
# Shown, and not run here, each for its reason.
NOT_RUN = {
    "./run.sh test": "the whole suite, which this test is part of",
    "./run.sh test unit": "the unit tests, which the whole suite runs",
    "./run.sh test tests/e2e/test_core.py -k stream": "a file of the suite, which this test is part of",
    "./run.sh demo": "a proxy of its own, run and its printed lines pasted by test_demo.py",
    "./run.sh demo --sign-in": "the demo with its OpenID Connect provider, signed in to with Chromium by test_demo.py",
    "tollgate console": "a server until it is stopped, which test_web_console.py drives",
    "./run.sh lock": "the lock files written anew from the package index, which tests/unit/test_lock.py checks",
    "git diff requirements/": "what the lock files' update changed, in a git checkout",
}
SITE = ROOT / "tests" / "support" / "site"
REAL_KEY = "sk-docs-commands-real-0123456789"
VIRTUAL_KEY = "tg-alice-0123456789"  # the README's
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass
class Step:
    page: str
    kind: str  # "sh": a command; "yaml": the quick start's tollgate.yaml, written
    text: str


def uncommented(text: str) -> str:
    """A command without its trailing `# …` comments (a `#` outside quotes, after a space)."""
    lines, quote = [], ""
    for line in text.split("\n"):
        kept = []
        for i, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#" and (i == 0 or line[i - 1].isspace()):
                break
            kept.append(char)
        lines.append("".join(kept).rstrip())
    return "\n".join(line for line in lines if line).strip()


def commands(block: str) -> list[str]:
    """A shell block's commands: lines joined while a quote is open, comments dropped."""
    found, pending = [], ""
    for line in block.split("\n"):
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote goes on on the next line
            continue
        command = uncommented(pending)
        pending = ""
        if command:
            found.append(command)
    assert not pending, f"an unclosed quote: {pending!r}"
    return found


def steps() -> list[Step]:
    found = []
    for page, end in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        if end is not None:
            text = text[: text.index(end)]
        for block in BLOCK.finditer(text):
            language, body = block.group(1), block.group(2)
            if language == "sh":
                found += [Step(page, "sh", c) for c in commands(body)]
            elif language == "console":
                found += [Step(page, "sh", line[2:]) for line in body.splitlines() if line.startswith("$ ")]
            elif language == "yaml" and page == "README.md":
                found.append(Step(page, "yaml", body))
    return found


def test_the_pages_show_the_commands_this_test_knows() -> None:
    shown = [s.text for s in steps() if s.kind == "sh"]
    assert set(NOT_RUN) <= set(shown)
    assert "tollgate audit verify --live audit.jsonl" in shown and "./run.sh" in shown
    assert [s.kind for s in steps()].count("yaml") == 1  # the quick start's file


@dataclass
class Session:
    """The checkout, the environment its commands run in, and the proxy running, if any."""

    checkout: Path
    env: dict[str, str]
    listen_port: int  # TOLLGATE_LISTEN's: ./run.sh and tollgate serve
    bare_port: int  # mitmproxy's config.yaml's: mitmdump by hand, which no TOLLGATE_LISTEN moves
    proxy: subprocess.Popen | None = None
    proxy_command: str = ""
    proxy_log: Path | None = None
    said: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def run(self, step: Step) -> None:
        if step.kind == "yaml":
            self.write_config(step.text)
        elif step.text in NOT_RUN:
            return
        elif proxy_command(step.text):
            self.start(step.text)
        else:
            self.shell(step)

    def shell(self, step: Step) -> None:
        """The command in a shell of the environment, which takes what it exports."""
        state = self.checkout / ".shell-state"
        script = f"{step.text}\n__status=$?\nenv -0 > {shlex.quote(str(state))}\nexit $__status\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=self.checkout, env=self.env, capture_output=True, text=True, timeout=300
        )
        # `tollgate scan` exits 1 when it finds something, which the examples it is shown on hold.
        expected = 1 if step.text.startswith("tollgate scan ") else 0
        assert done.returncode == expected, (
            f"{step.page}: `{step.text}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
        exported = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
        self.env = {k: v for k, v in exported.items() if k not in ("_", "SHLVL", "PWD", "OLDPWD", "__status")}
        self.said[step.text] = done

    def start(self, command: str) -> None:
        """A proxy command, in a terminal of its own, until it listens; the one before it stopped."""
        if command == self.proxy_command and self.proxy is not None and self.proxy.poll() is None:
            return  # running already (the README's two commands, then its quick start)
        self.stop()
        self.proxy_log = self.checkout / f"terminal-{len(self.said)}.log"
        with open(self.proxy_log, "wb") as log:
            self.proxy = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.checkout,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proxy_command = command
        port = self.bare_port if command.startswith("mitmdump ") else self.listen_port
        try:
            wait_listening(port, self.proxy, seconds=120)
        except AssertionError:
            raise AssertionError(f"`{command}` did not listen:\n{self.console()}") from None

    def console(self) -> str:
        return self.proxy_log.read_text(errors="replace") if self.proxy_log else ""

    def write_config(self, text: str) -> None:
        """The quick start's file written while the proxy runs, and taken within a second."""
        config = self.checkout / "tollgate.yaml"
        config.write_text(text)
        line = f"Tollgate: configuration loaded from {config}: 1 client, anonymous callers refused"
        deadline = time.monotonic() + 5
        while line not in self.console() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert line in self.console(), self.console()

    def stop(self) -> None:
        if self.proxy is None:
            return
        if self.proxy.poll() is None:
            os.killpg(self.proxy.pid, signal.SIGTERM)
            try:
                self.proxy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proxy.pid, signal.SIGKILL)
                self.proxy.wait(timeout=10)
        self.proxy = None
        self.proxy_command = ""


def proxy_command(command: str) -> bool:
    """Whether a command runs a proxy until it is stopped (a terminal of its own)."""
    words = command.split()
    if words[0] == "./run.sh":
        return len(words) == 1 or words[1] not in ("env", "test", "--help", "-h", "help")
    return words[0] == "mitmdump" or words[:2] == ["tollgate", "serve"]


def test_the_readme_and_first_pages_commands_run_as_written(tmp_path, upstream_ca, upstream_ca_pem):
    checkout = linked_checkout(tmp_path / "tollgate")
    openai = FakeUpstream(upstream_ca, provider_answers, names=("api.openai.com",))
    bin_dir = tmp_path / "bin"  # `python3` is one with the SDKs, as the README's reader has
    bin_dir.mkdir()
    python = os.environ.get("TOLLGATE_CLIENT_PYTHON") or str(ROOT / ".venv-clients" / "bin" / "python")
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')  # its venv found by its path
    (bin_dir / "python3").chmod(0o755)
    listen_port, bare_port = free_port(), free_port()
    # mitmproxy's own configuration file in the checkout's confdir: what no command line there sets.
    (checkout / "certs" / "config.yaml").write_text(
        yaml.safe_dump({"ssl_verify_upstream_trusted_ca": str(upstream_ca_pem), "listen_port": bare_port})
    )
    ignored = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "TOLLGATE_LISTEN", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in ignored and not k.startswith("PYTEST")}
    env |= {
        "PATH": f"{bin_dir}:{checkout / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "PYTHONPATH": str(SITE),
        "TOLLGATE_TEST_RESOLVE": json.dumps({"api.openai.com": openai.port}),
        "TOLLGATE_LISTEN": f"127.0.0.1:{listen_port}",
        "OPENAI_API_KEY": REAL_KEY,
    }
    session = Session(checkout, env, listen_port, bare_port)
    try:
        for step in steps():
            session.run(step)
    finally:
        session.stop()
        openai.close()

    # The quick start: the first call anonymous with the caller's own key; once the file is
    # written, alice's with her virtual key, which the provider never saw.
    calls = [json.loads(line) for line in (checkout / "audit.jsonl").read_text().splitlines()]
    llm_calls = [(c["auth"], c["client"], c["status"]) for c in calls if c["event"] == "llm_call"]
    assert llm_calls == [("anonymous", None, 200), ("virtual_key", "alice", 200)]
    sent = [r.headers["authorization"] for r in openai.received]
    assert sent == [f"Bearer {REAL_KEY}", f"Bearer {REAL_KEY}"]
    tails = [done.stdout for command, done in session.said.items() if command == "tail -n 1 audit.jsonl"]
    assert json.loads(tails[-1])["client"] == "alice"
    assert session.env["HTTPS_PROXY"] == f"http://127.0.0.1:{listen_port}"  # what `eval "$(./run.sh env)"` set
    assert "whole: " in session.said["tollgate audit verify --live audit.jsonl"].stdout
    assert "tollgate.yaml: ok (1 client)" in session.said["tollgate check"].stdout
    scans = [done.stdout for command, done in session.said.items() if command.startswith("tollgate scan ")]
    assert len(scans) == 2 and all("\n  pii.email     1  redact" in out for out in scans)
    assert "[REDACTED:pii.email]" in scans[1]


@pytest.mark.parametrize(("command", "expected"), [
    ("tollgate check   # a comment", ["tollgate check"]),
    ("python3 -c 'a\n    b'  # two lines", ["python3 -c 'a\n    b'"]),
    ('eval "$(./run.sh env)"   # # not a comment', ['eval "$(./run.sh env)"']),
])  # fmt: skip
def test_commands_are_read_as_a_shell_reads_them(command: str, expected: list[str]) -> None:
    assert commands(command) == expected
