"""The trap `tollgate policy test` warns of: a rule that hands the model to a string built-in
without guarding `null` (a call that names no model then ends in a policy error, refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.governance.policy.policy import CALL_DECISION, Policy, whole
from tollgate.governance.policy.policy_lint import unguarded_model_reads

EXAMPLES = Path(__file__).resolve().parents[4] / "docs" / "examples" / "policies"

HEAD = "package tollgate\n\nimport rego.v1\n\n"


def lines(source: str) -> list[tuple[int, str]]:
    return [(u.line, u.call) for u in unguarded_model_reads("p.rego", HEAD + source)]


def test_an_unguarded_startswith_is_named_by_its_line() -> None:
    source = (
        'deny contains "no opus on plans" if {\n\tinput.subscription\n\tstartswith(input.model, "claude-opus")\n}\n'
    )
    assert lines(source) == [(7, "startswith(input.model, …)")]
    (found,) = unguarded_model_reads("p.rego", HEAD + source)
    assert str(found) == (
        "p.rego:7: startswith(input.model, …) fails on a call with no model (input.model is null: listings,"
        " uploads, Claude Code's service calls), and the call is refused (policy error): guard the rule with"
        " is_string(input.model)"
    )


@pytest.mark.parametrize(
    "guard", ["is_string(input.model)", "input.model != null", 'input.model == "gpt-4o"', "null != input.model"]
)
def test_a_guard_in_the_rule_silences_it(guard: str) -> None:
    assert lines(f'deny contains "x" if {{\n\t{guard}\n\tstartswith(input.model, "claude-opus")\n}}\n') == []


def test_each_rule_is_judged_alone_and_each_builtin_and_field_found() -> None:
    source = (
        'deny contains "a" if {\n\tis_string(input.model)\n\tstartswith(input.model, "a")\n}\n\n'
        'deny contains "b" if {\n\tglob.match("gpt-*", null, input.model)\n}\n\n'
        'deny contains "c" if {\n\tregex.match("^o[0-9]", input.requested_model)\n'
        '\tcontains(lower(input.model), "mini")\n}\n'
    )
    assert lines(source) == [
        (11, "glob.match(…, …, input.model)"),
        (15, "regex.match(…, input.requested_model)"),
        (16, "lower(input.model)"),
    ]


def test_a_helper_is_guarded_when_every_rule_that_uses_it_is() -> None:
    helper = 'permitted if {\n\tsome p in ["gpt-*"]\n\tglob.match(p, null, input.model)\n}\n\n'
    guarded = 'deny contains "x" if {\n\tis_string(input.model)\n\tnot permitted\n}\n'
    unguarded = 'deny contains "y" if {\n\tnot permitted\n}\n'
    assert lines(helper + guarded) == []
    assert lines(helper + guarded + "\n" + unguarded) == [(7, "glob.match(…, …, input.model)")]


def test_comments_and_strings_are_not_read() -> None:
    source = '# startswith(input.model, "x") in a comment\ndeny contains "startswith(input.model, \\"x\\")" if {\n\tfalse\n}\n'
    assert lines(source) == []


def test_the_examples_guard_a_null_model() -> None:
    for path in sorted(EXAMPLES.glob("*.rego")):
        assert unguarded_model_reads(str(path), path.read_text(encoding="utf-8")) == [], path


def test_what_it_warns_of_is_a_policy_error_on_a_call_with_no_model(tmp_path: Path) -> None:
    """The warning's claim, checked by the engine that decides calls."""
    path = tmp_path / "p.rego"
    path.write_text(HEAD + 'deny contains "no opus" if {\n\tstartswith(input.model, "claude-opus")\n}\n')
    assert [u.line for u in unguarded_model_reads(str(path), path.read_text())] == [6]
    decision = Policy([path]).decide(whole(CALL_DECISION), {"model": None, "endpoint": "api.claude_code.settings"})
    assert not decision.allowed and decision.error is not None
