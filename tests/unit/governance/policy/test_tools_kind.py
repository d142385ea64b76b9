"""The `tools` kind of decision: `data.tollgate.tools.deny` on a tool call in an answer (its call's
facts, `input.tool`, `input.conversation`), asked only where a policy has the rule, never cached
(its arguments are not kept), and on the command line with `--kind tools` or by an input's `tool`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tollgate.cli.main import main
from tollgate.governance.policy.policy import CALL_DECISION, TOOLS_DECISION, Policy, input_document, tool_input

ROOT = Path(__file__).resolve().parents[4]
TOOL_CALLS = ROOT / "docs" / "examples" / "policies" / "tool_calls.rego"
ALLOWLIST = ROOT / "docs" / "examples" / "policies" / "model_allowlist.rego"
STRANGER = {"name": "send_money", "arguments": {"recipient": "XX00ATTACKER"}, "tainted": []}
CONVERSATION = {"outside": ["read_inbox"], "findings": {}, "provider_tools": []}


def run_eval(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main(["policy", "eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_policy_with_only_a_tools_rule_loads_and_decides_it() -> None:
    policy = Policy([TOOL_CALLS])
    assert policy.decides(TOOLS_DECISION) and policy.decides(CALL_DECISION) is False
    assert not Policy([ALLOWLIST]).decides(TOOLS_DECISION)


def test_a_tool_call_is_decided_on_its_calls_facts_and_its_own_never_cached(tmp_path: Path) -> None:
    source = (
        "package tollgate.tools\nimport rego.v1\n"
        'deny contains sprintf("%s may not call %s", [input.client.name, input.tool.name]) if {\n'
        '    input.tool.name == "send_money"\n    "read_inbox" in input.conversation.outside\n}\n'
    )
    (tmp_path / "tools.rego").write_text(source)
    policy = Policy([tmp_path / "tools.rego"])
    evaluated: list[dict] = []
    evaluate = policy.rules.evaluate
    policy.rules.evaluate = lambda doc, rule: evaluated.append(doc) or evaluate(doc, rule)  # type: ignore[method-assign]
    call_facts = _call_facts()
    facts = (call_facts, {"tool": STRANGER, "conversation": CONVERSATION})
    for _ in range(2):
        decision = policy.decide(TOOLS_DECISION, facts)
        assert decision.deny_reasons == ("alice may not call send_money",)  # type: ignore[union-attr]
    assert len(evaluated) == 2  # not cached: its arguments are not kept
    assert evaluated[0] == {**input_document(call_facts), "tool": STRANGER, "conversation": CONVERSATION}
    assert tool_input(facts)["tool"] is STRANGER


def _call_facts() -> tuple:
    return (
        "alice", ("finance",), "virtual_key", "openai", "api.openai.com", "POST", "/v1/chat/completions",
        "chat.completions", "gpt-4o", "gpt-4o", 3, False, True, False, None, (), None, (), None, None, None, (),
        None, None, None, None,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", [("--kind", "tools"), ()], ids=["named", "by-its-tool"])
def test_cli_decides_a_tool_call(tmp_path: Path, capsys, kind: tuple[str, ...]) -> None:
    document = tmp_path / "input.json"
    document.write_text(json.dumps({"client": {"name": "alice"}, "tool": STRANGER, "conversation": CONVERSATION}))
    assert run_eval(capsys, "--policy", TOOL_CALLS, *kind, "--input", document) == (
        1,
        json.dumps({"allowed": False, "deny": ["send_money to XX00ATTACKER, not a known payee"]}, indent=2) + "\n",
        "",
    )


@pytest.mark.slow
def test_cli_names_what_a_tool_call_lacks(tmp_path: Path, capsys) -> None:
    document = tmp_path / "input.json"
    document.write_text(json.dumps({"tool": {"name": "send_money", "arguments": {}}}))
    code, _out, err = run_eval(capsys, "--policy", TOOL_CALLS, "--input", document)
    assert code == 1
    assert err == (
        f"warning: {document} lacks what the policy reads: tool.tainted; the proxy gives every tool call these"
        " (rules that read them do not hold here)\n"
    )


@pytest.mark.slow
def test_a_call_is_not_warned_of_lacking_a_tool(tmp_path: Path, capsys) -> None:
    document = tmp_path / "input.json"
    document.write_text(json.dumps({"client": {"name": "alice", "groups": ["research"]}, "model": "gpt-4o"}))
    _, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--policy", TOOL_CALLS, "--input", document)
    assert json.loads(out)["allowed"] is True
    assert "lacks" in err and "tool" not in err  # what a call lacks is named, not what a tool call has
