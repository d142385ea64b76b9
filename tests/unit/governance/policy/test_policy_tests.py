"""`tollgate policy test`: a policy's Rego tests run as `opa test` runs them; `tollgate check`
compiles the policy a configuration names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.cli.main import main

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = ROOT / "docs" / "examples" / "policies"
POLICY = 'package tollgate\nimport rego.v1\n\ndeny contains "streaming is off" if input.request.stream\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["policy", "test", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_the_examples_pass_their_tests_together(capsys) -> None:
    code, out, err = run(capsys, str(EXAMPLES))
    assert (code, out, err) == (0, "PASS: 29/29\n", "")


@pytest.mark.parametrize("test", sorted(EXAMPLES.glob("*_test.rego")), ids=lambda p: p.stem)
@pytest.mark.slow
def test_each_example_passes_its_tests_alone(capsys, test: Path) -> None:
    policy = test.with_name(test.name.removesuffix("_test.rego") + ".rego")
    code, out, _ = run(capsys, str(policy), str(test))
    assert code == 0, out
    assert out.startswith("PASS: ")


def test_a_rule_that_reads_the_model_unguarded_is_warned_of(tmp_path: Path, capsys) -> None:
    policy = write(
        tmp_path / "plans.rego",
        'package tollgate\nimport rego.v1\n\ndeny contains "no opus on plans" if {\n\tinput.subscription\n'
        '\tstartswith(input.model, "claude-opus")\n}\n',
    )
    write(
        tmp_path / "plans_test.rego",
        "package tollgate_test\nimport rego.v1\nimport data.tollgate\n\n"
        'test_opus if "no opus on plans" in tollgate.deny with input as {"subscription": {}, "model": "claude-opus-4"}\n',
    )
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (0, "PASS: 1/1\n")  # a warning, not a failure
    assert err == (
        f"warning: {policy}:6: startswith(input.model, …) fails on a call with no model (input.model is null:"
        " listings, uploads, Claude Code's service calls), and the call is refused (policy error): guard the rule"
        " with is_string(input.model)\n"
    )


def test_every_example_has_tests() -> None:
    policies = {p.stem for p in EXAMPLES.glob("*.rego") if not p.stem.endswith("_test")}
    assert {p.stem.removesuffix("_test") for p in EXAMPLES.glob("*_test.rego")} == policies


def test_a_failing_test_is_named_and_the_status_is_2(tmp_path: Path, capsys) -> None:
    write(tmp_path / "policy.rego", POLICY)
    write(
        tmp_path / "policy_test.rego",
        "package tollgate_test\nimport rego.v1\nimport data.tollgate\n\n"
        'test_streams_are_refused if "streaming is off" in tollgate.deny with input as {"request": {"stream": true}}\n'
        'test_wrong if "streaming is off" in tollgate.deny with input as {"request": {"stream": false}}\n'
        "test_undefined if input.nothing\n",
    )
    code, out, err = run(capsys, str(tmp_path))
    assert (code, err) == (2, "")
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path / 'policy_test.rego'}:"
    assert [line.split(" (")[0] for line in lines[1:3]] == [
        "data.tollgate_test.test_wrong: FAIL",
        "data.tollgate_test.test_undefined: FAIL",
    ]
    assert lines[3:] == ["-" * 80, "PASS: 1/3", "FAIL: 2/3"]


def test_verbose_names_every_test_and_shows_what_a_failing_one_printed(tmp_path: Path, capsys) -> None:
    write(tmp_path / "policy.rego", POLICY)
    write(
        tmp_path / "policy_test.rego",
        "package tollgate_test\nimport rego.v1\n\ntest_yes if true\n\n"
        'test_no if {\n\tprint("the value was", 1)\n\tfalse\n}\n',
    )
    code, out, _ = run(capsys, "-v", str(tmp_path))
    assert code == 2
    assert [line.split(" (")[0] for line in out.splitlines()[1:4]] == [
        "data.tollgate_test.test_yes: PASS",
        "data.tollgate_test.test_no: FAIL",
        f"  {tmp_path / 'policy_test.rego'}:7: the value was 1",
    ]


def test_a_todo_test_is_skipped_and_counts_as_not_passed_unless_told(tmp_path: Path, capsys) -> None:
    write(tmp_path / "policy.rego", POLICY)
    write(tmp_path / "policy_test.rego", "package tollgate_test\nimport rego.v1\n\ntodo_test_later if false\n")
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 2
    assert out.splitlines()[1:] == ["data.tollgate_test.todo_test_later: SKIPPED", "-" * 80, "SKIPPED: 1/1"]
    assert run(capsys, "-z", str(tmp_path))[0] == 0


def test_a_test_whose_evaluation_fails_is_an_error(tmp_path: Path, capsys) -> None:
    write(tmp_path / "policy.rego", POLICY)
    write(tmp_path / "policy_test.rego", 'package tollgate_test\nimport rego.v1\n\ntest_x if to_number("x") > 1\n')
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 2
    assert "data.tollgate_test.test_x: ERROR" in out
    assert f"{tmp_path / 'policy_test.rego'}:4: eval_builtin_error: to_number: strconv.ParseFloat" in out


def test_files_that_do_not_compile_stop_the_run_with_status_1(tmp_path: Path, capsys) -> None:
    write(tmp_path / "policy.rego", 'package tollgate\nimport rego.v1\n\ndeny contains "x" if no_such.builtin(1)\n')
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path / 'policy.rego'}:4: rego_type_error: undefined function no_such.builtin\n"


def test_a_path_that_does_not_exist_is_named(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, str(tmp_path / "nowhere"))
    assert (code, err) == (1, f"error: {tmp_path / 'nowhere'}: no such file or directory\n")


def test_a_directory_without_tests_is_named_and_the_status_is_1(tmp_path: Path, capsys) -> None:
    # As `opa test --fail-on-empty`: a run that tested nothing has passed nothing.
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: no tests were run: no .rego file under {tmp_path}\n"
    write(tmp_path / "policy.rego", POLICY)
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: no tests were run: no test_ or todo_test_ rule in the 1 .rego file under {tmp_path}\n"


def test_check_compiles_the_policy_a_configuration_names(tmp_path: Path, capsys) -> None:
    config = write(tmp_path / "tollgate.yaml", "policy: {rego: [policy.rego]}\naudit: {path: '-'}\n")
    write(tmp_path / "policy.rego", POLICY)
    assert main(["check", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: ok (0 clients, a policy of 1 file)\n"
    write(tmp_path / "policy.rego", 'package tollgate\nimport rego.v1\n\ndeny contains "x" if net.cidr_nope(1)\n')
    assert main(["check", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"error: {config}: policy.rego: {tmp_path / 'policy.rego'}:4: rego_type_error: undefined function"
        " net.cidr_nope\n"
    )
