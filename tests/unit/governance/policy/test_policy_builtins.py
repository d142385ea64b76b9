"""A policy that calls `opa.runtime`, `http.send` or `net.lookup_ip_addr` is refused at load, naming
file, line and built-in; `policy.network: allow` admits the last two, never `opa.runtime`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.governance.policy.policy import Policy, PolicyError

HEAD = "package tollgate\n\nimport rego.v1\n\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(files: list[Path], *, apart: bool = False, network: bool = False) -> str:
    with pytest.raises(PolicyError) as info:
        Policy(files, apart=apart, network=network)
    return str(info.value)


@pytest.mark.parametrize(
    ("call", "builtin"),
    [
        ('r := sprintf("%v", [opa.runtime().env])', "opa.runtime"),
        ('r := http.send({"method": "GET", "url": "http://127.0.0.1:9/"}).body.reason', "http.send"),
        ('r := sprintf("%v", [net.lookup_ip_addr("example.com")])', "net.lookup_ip_addr"),
    ],
)
@pytest.mark.parametrize("apart", [False, True], ids=["in process", "apart"])
@pytest.mark.slow
def test_each_builtin_is_refused_naming_file_line_and_builtin(tmp_path, call, builtin, apart) -> None:
    path = write(tmp_path, "p.rego", HEAD + f'deny contains r if {{\n  input.model == "x"\n  {call}\n}}\n')
    message = refusal([path], apart=apart)
    assert message.startswith(f"{path}:7: calls {builtin}, which a policy may not call: "), message
    assert "\n" not in message


def test_a_call_in_a_helper_rule_and_a_bracketed_name_are_calls(tmp_path) -> None:
    path = write(
        tmp_path,
        "p.rego",
        HEAD + 'env := opa["runtime"]().env\n\n'  # line 5
        'ask(url) := r if {\n  r := http[`send`]({"method": "GET", "url": url})\n}\n\n'  # line 8
        'deny contains x if {\n  x := sprintf("%v %v", [env, ask("http://127.0.0.1:9/")])\n}\n'
        '# http.send(x) in a comment is no call\nnote := "http.send"\n',
    )
    message = refusal([path])
    assert message.startswith(f"{path}:5: calls opa.runtime, which a policy may not call: its env holds"), message
    assert f"; {path}:8: calls http.send, which a policy may not call: " in message


def test_a_function_replaced_by_a_network_builtin_calls_it(tmp_path) -> None:
    path = write(
        tmp_path,
        "p.rego",
        HEAD + 'f(x) := x\n\ndeny contains r if {\n  r := f("example.com") with f as net.lookup_ip_addr\n}\n',
    )
    assert refusal([path]).startswith(f"{path}:8: calls net.lookup_ip_addr, ")


def test_a_call_in_a_package_another_file_imports_names_that_file(tmp_path) -> None:
    main = write(tmp_path, "main.rego", HEAD + "import data.lib\n\ndeny contains r if {\n  r := lib.reason\n}\n")
    lib = write(
        tmp_path,
        "lib.rego",
        "package lib\n\nimport rego.v1\n\nreason := r if {\n"
        '  resp := http.send({"method": "GET", "url": "http://127.0.0.1:9/"})\n  r := resp.body\n}\n',
    )
    for apart in (False, True):
        message = refusal([main, lib], apart=apart)
        assert message.startswith(f"{lib}:6: calls http.send, ")
        assert str(main) not in message


@pytest.mark.slow
def test_network_allow_admits_the_network_builtins_but_never_opa_runtime(tmp_path) -> None:
    network = write(
        tmp_path,
        "net.rego",
        HEAD + 'deny contains r if {\n  input.model == "x"\n'
        '  r := http.send({"method": "GET", "url": "http://127.0.0.1:9/"}).body.reason\n'
        '  net.lookup_ip_addr("example.com")\n}\n',
    )
    assert Policy([network], network=True).files == (network,)
    # Its decisions depend on the network: none is cached, however the call is written.
    bracketed = write(
        tmp_path,
        "bracketed.rego",
        HEAD + 'deny contains r if {\n  r := http["send"]({"method": "GET", "url": "http://127.0.0.1:9/"}).body\n}\n',
    )
    assert Policy([network], network=True)._cache is None and Policy([bracketed], network=True)._cache is None
    assert Policy([network], apart=True, network=True).network
    runtime = write(tmp_path, "rt.rego", HEAD + "deny contains r if {\n  r := opa.runtime().env.HOME\n}\n")
    assert refusal([runtime], network=True).startswith(f"{runtime}:6: calls opa.runtime, ")
    assert refusal([runtime], apart=True, network=True).startswith(f"{runtime}:6: calls opa.runtime, ")


def test_policy_network_takes_deny_or_allow() -> None:
    assert parse_config({}).policy.network == "deny"
    assert parse_config({"policy": {"network": "allow"}}).policy.network == "allow"
    with pytest.raises(ConfigError) as info:
        parse_config({"policy": {"network": "yes"}})
    assert str(info.value).startswith("policy.network: ")
