"""`tollgate serve`'s plan: its command line, the configurations a fleet refuses, HAProxy's
configuration, the back-off."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from tollgate.configuration import fleet
from tollgate.configuration.config import parse_config
from tollgate.configuration.fleet import (
    FleetError,
    Worker,
    backoff,
    cgroup_cpu_quota,
    cpu_count,
    fleet_config_problem,
    fleet_mode_problem,
    haproxy_config,
    host_port,
    parse_serve_args,
    worker_args,
    worker_env,
    worker_instance,
)


def test_workers_and_the_listen_address_are_taken_out_of_mitmdumps_arguments():
    args = parse_serve_args(
        ["--workers", "3", "-s", "g.py", "--set", "confdir=c", "--listen-host", "0.0.0.0", "-p", "9000", "-q"], {}
    )
    assert args.workers == 3
    assert (args.listen_host, args.listen_port) == ("0.0.0.0", 9000)
    assert args.passed == ["-s", "g.py", "--set", "confdir=c", "-q"]
    assert args.scripts


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["--listen-port=9001"], "127.0.0.1", 9001),
        (["-p9002"], "127.0.0.1", 9002),
        (["--set", "listen_port=9003", "--set=listen_host=::1"], "::1", 9003),
        (["--listen-host", "[::]"], "::", 8080),
        ([], "127.0.0.1", 8080),
    ],
)
def test_every_form_of_the_listen_address_is_read(argv, host, port):
    args = parse_serve_args(argv, {})
    assert (args.listen_host, args.listen_port, args.passed) == (host, port, [])


def test_the_environment_gives_defaults_the_command_line_replaces():
    env = {"TOLLGATE_WORKERS": "2", "TOLLGATE_LISTEN": ":9100"}
    args = parse_serve_args([], env)
    assert (args.workers, args.listen_host, args.listen_port) == (2, "127.0.0.1", 9100)
    args = parse_serve_args(["--workers=4", "--listen-port", "9200"], env)
    assert (args.workers, args.listen_port) == (4, 9200)


def test_modes_config_and_scripts_are_read_and_passed_on():
    argv = ["--mode", "regular", "-m", "transparent", "--set", "tollgate_config=t.yaml", "--scripts", "x.py"]
    args = parse_serve_args(argv, {})
    assert args.modes == ["regular", "transparent"]
    assert args.config == "t.yaml"
    assert args.scripts
    assert args.passed == argv


def test_serve_takes_the_configuration_as_config():
    """`tollgate serve --config FILE`, as every command that reads a configuration takes it."""
    for argv in (["--workers", "2", "--config", "t.yaml"], ["--config=t.yaml"]):
        args = parse_serve_args(argv, {})
        assert args.config == "t.yaml"
        assert args.passed == ["--set", "tollgate_config=t.yaml"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers 0: expected a number of workers (1 or more) or auto"),
        (["--workers", "two"], "--workers two: expected a number of workers (1 or more) or auto"),
        (["--workers"], "--workers needs a value"),
        (["--listen-port", "70000"], "listen port '70000': expected a number from 1 to 65535"),
    ],
)
def test_bad_arguments_are_refused_naming_them(argv, message):
    with pytest.raises(FleetError) as e:
        parse_serve_args(argv, {})
    assert str(e.value) == message


def test_auto_is_one_worker_per_core_within_a_cgroup_quota(tmp_path):
    assert parse_serve_args(["--workers", "auto"], {}).workers == cpu_count() >= 1
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_quota(cpu_max) == 1.5
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_quota(cpu_max) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_capture_modes_cannot_run_behind_haproxy():
    assert fleet_mode_problem([]) is None
    assert fleet_mode_problem(["regular"]) is None
    problem = fleet_mode_problem(["regular", "transparent@8081"])
    assert problem is not None
    assert "--mode transparent@8081" in problem
    assert "--workers 1" in problem


LIMITED = {"limits": [{"name": "rpm", "per": "client", "requests_per_minute": 10}]}


def test_limits_in_a_fleet_need_the_ledger_on_redis():
    sqlite = parse_config(LIMITED)
    problem = fleet_config_problem(sqlite, 2)
    assert problem is not None
    assert problem.startswith("ledger.store: 2 workers with limits must share their counters on Redis")
    assert fleet_config_problem(sqlite, 1) is None
    assert fleet_config_problem(parse_config({}), 2) is None  # no limits: nothing to share exactly
    redis = parse_config({**LIMITED, "ledger": {"store": "redis://127.0.0.1:6379/0"}})
    assert fleet_config_problem(redis, 2) is None


def test_each_worker_has_its_port_instance_and_the_fleets_metrics(tmp_path):
    worker = Worker(2, 40001, 40002)
    assert worker_args(["-s", "g.py"], worker) == ["-s", "g.py", "--listen-host", "127.0.0.1", "--listen-port", "40001"]
    env = worker_env({"TOLLGATE_INSTANCE": "gw-7", "HOME": "/h"}, worker, 3, tmp_path)
    assert env == {
        "HOME": "/h",
        "TOLLGATE_INSTANCE": "gw-7/w2",
        "TOLLGATE_FLEET_WORKERS": "3",
        "TOLLGATE_METRICS_LISTEN": "127.0.0.1:40002",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    assert worker_instance({}, 1) == f"{socket.gethostname()}/w1"


@pytest.mark.parametrize(("host", "address"), [("127.0.0.1", "127.0.0.1:8080"), ("::1", "[::1]:8080"), ("", ":::8080")])
def test_addresses_as_haproxy_takes_them(host, address):
    assert host_port(host, 8080) == address


def test_haproxy_config_balances_checked_workers_and_serves_the_fleets_metrics(tmp_path):
    workers = [Worker(1, 40001, 40002), Worker(2, 40003, 40004)]
    text = haproxy_config(("0.0.0.0", 8080), workers, ("127.0.0.1", 9464), 30, tmp_path)
    assert "    mode tcp\n" in text
    assert "    bind 0.0.0.0:8080\n" in text
    assert "    balance leastconn\n" in text
    assert "    server w1 127.0.0.1:40001 check port 40002\n" in text
    assert "    server w2 127.0.0.1:40003 check port 40004\n" in text
    assert "    bind 127.0.0.1:9464\n" in text
    assert "    server w2 127.0.0.1:40004 check\n" in text
    assert "    hard-stop-after 35s\n" in text
    assert "frontend metrics" not in haproxy_config(("", 8080), workers, None, 30, tmp_path)


def test_backoff_doubles_up_to_thirty_seconds():
    assert [backoff(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [0.5, 1, 2, 4, 30, 30, 30]


def test_the_gateway_script_is_found_in_the_checkout():
    from tollgate.cli.supervisor import gateway_script

    assert gateway_script() == Path(__file__).resolve().parents[3] / "addons" / "gateway.py"


def test_a_process_that_failed_is_named_by_the_last_error_it_logged():
    from tollgate.cli.supervisor import last_reason

    mitmdump = [
        "[19:18:35.356] error in script addons/gateway.py",
        "Traceback (most recent call last):",
        '  File "settings.py", line 165, in configure',
        "mitmproxy.exceptions.OptionsError: Tollgate configuration: policy.rego: broken.rego:2:22: this is unclosed",
        "[19:18:35.366] HTTP(S) proxy listening at 127.0.0.1:44495.",
        "Error logged during startup, exiting...",
    ]
    assert last_reason(mitmdump) == "Tollgate configuration: policy.rego: broken.rego:2:22: this is unclosed"
    assert last_reason(["[ALERT] Cannot raise FD limit", ""]) == "[ALERT] Cannot raise FD limit"
    assert last_reason([]) is None


def test_a_listen_address_that_cannot_be_had_is_told_in_tollgates_words():
    taken = fleet.listen_advice("127.0.0.1:8080", errno.EADDRINUSE)
    assert taken == (
        "Tollgate cannot listen on 127.0.0.1:8080: another program listens there (another Tollgate?). Stop what"
        " holds it, or listen elsewhere: --listen-port PORT (and --listen-host HOST), or TOLLGATE_LISTEN=HOST:PORT"
        " for ./run.sh and tollgate serve; clients then need the HTTPS_PROXY that `./run.sh env` prints for it"
    )
    assert "--mode" not in taken
    assert fleet.listen_advice("*:80", errno.EACCES).startswith(
        "Tollgate cannot listen on *:80: permission denied (a port below 1024 needs root, or CAP_NET_BIND_SERVICE)."
    )
    assert "no network interface of this host has that address" in fleet.listen_advice(
        "10.9.9.9:8080", errno.EADDRNOTAVAIL
    )
    capture = fleet.listen_advice("*:8081", errno.EADDRINUSE, "transparent")
    assert capture.endswith(
        "listen elsewhere: --capture transparent@PORT (./run.sh), or mitmdump's --mode transparent@PORT"
    )
    worker = fleet.listen_advice("127.0.0.1:40001", errno.EADDRINUSE, worker=True)
    assert worker.endswith("the fleet's worker ports are chosen anew at its next start")


def test_a_taken_listen_address_stops_a_fleet_saying_where_else_to_listen():
    from tollgate.cli.supervisor import LISTEN_WHAT, check_listenable

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(FleetError) as info:
            check_listenable("127.0.0.1", port, LISTEN_WHAT)
        assert str(info.value) == fleet.listen_advice(f"127.0.0.1:{port}", errno.EADDRINUSE)
        with pytest.raises(
            FleetError, match=f"metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            check_listenable("127.0.0.1", port, "metrics.listen")


def test_mcp_servers_in_a_fleet_need_the_ledger_on_redis():
    servers = {"mcp": {"servers": [{"name": "notes", "url": "https://mcp.example.test/mcp"}]}}
    problem = fleet_config_problem(parse_config(servers), 3)
    assert problem is not None
    assert problem.startswith("ledger.store: 3 workers with MCP servers must share whose each session is on Redis")
    assert fleet_config_problem(parse_config(servers), 1) is None
    shared = parse_config({**servers, "ledger": {"store": "redis://127.0.0.1:6379/0"}})
    assert fleet_config_problem(shared, 3) is None


def test_serve_named_no_configuration_names_tollgate_yaml_here(tmp_path: Path, monkeypatch) -> None:
    from tollgate.cli.supervisor import with_tollgate_yaml_here

    monkeypatch.chdir(tmp_path)
    args = parse_serve_args(["--workers", "2"], {})
    assert with_tollgate_yaml_here(args) == args  # none here: the built-in defaults
    (tmp_path / "tollgate.yaml").write_text("clients: []\n")
    named = with_tollgate_yaml_here(args)
    assert named.config == str(tmp_path / "tollgate.yaml")
    assert named.passed[-2:] == ["--set", f"tollgate_config={tmp_path / 'tollgate.yaml'}"]
    other = parse_serve_args(["--set", "tollgate_config=other.yaml"], {})
    assert with_tollgate_yaml_here(other) == other
    empty = parse_serve_args(["--set", "tollgate_config="], {})
    assert with_tollgate_yaml_here(empty) == empty  # named, empty: left as given (one value per option)


def test_a_free_listen_address_is_held_until_released():
    """Held from the check until HAProxy starts: no other process binds it meanwhile, not even one
    that binds with SO_REUSEADDR (as Python's servers do, with a port of their own choosing)."""
    from tollgate.cli.supervisor import LISTEN_WHAT, check_listenable, release

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    held = check_listenable("127.0.0.1", port, LISTEN_WHAT)
    try:
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
    finally:
        release([held])
    with socket.socket() as other:  # HAProxy's, once released
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))


def test_the_instance_is_tollgate_instance_else_the_host_name() -> None:
    assert fleet.instance_name({"TOLLGATE_INSTANCE": "gw-7/w3"}) == "gw-7/w3"
    assert fleet.instance_name({"TOLLGATE_INSTANCE": ""}) == socket.gethostname()
    assert fleet.instance_name({}) == socket.gethostname()


def test_agents_quarantine_on_a_redis_ledger_needs_the_ledger_secret():
    """The quarantines' names in Redis are keyed with `ledger.secret` (from the environment): none
    on Redis is an error naming the field; a short one too; with SQLite, or no quarantine, none is
    needed; the secret never shows in the settings' repr."""
    from tollgate.common.config_base import ConfigError

    on_redis = {"agents": {}, "ledger": {"store": "redis://127.0.0.1:6379/0", "secret": "${TOLLGATE_LEDGER_SECRET}"}}
    with pytest.raises(ConfigError) as missing:
        parse_config({**on_redis, "ledger": {"store": "redis://127.0.0.1:6379/0"}}, {})
    assert "ledger.secret: required with agents' quarantine on a Redis ledger" in str(missing.value)
    with pytest.raises(ConfigError) as short:
        parse_config(on_redis, {"TOLLGATE_LEDGER_SECRET": "too short"})
    assert "ledger.secret" in str(short.value) and "too short" not in str(short.value)
    secret = "s" * 32
    config = parse_config(on_redis, {"TOLLGATE_LEDGER_SECRET": secret})
    assert config.ledger.secret == secret and secret not in repr(config.ledger)
    assert parse_config({"agents": {"quarantine_s": 0}, "ledger": {"store": "redis://127.0.0.1:6379/0"}}, {})
    assert parse_config({"agents": {}, "ledger": {"store": "sqlite:///ledger.sqlite"}}, {}).ledger.secret is None
