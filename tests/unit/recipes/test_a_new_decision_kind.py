"""A kind of policy decision added as the recipe in docs/architecture.md says: one `DecisionKind`
(its deny rule, how its facts become the `input` document, how its decisions are cached) and its
place in `KINDS` (patched in). A policy that writes only that kind's rule then loads, and the kind
is asked of the real policy (OPA's engine) the one way every kind is, `Policy.decide(kind, facts)`:
here, and in the worker as the proxy asks; and `tollgate policy eval --kind
upload` evaluates a sample of it. Nothing else in `Policy`, nor in the command, changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tollgate.cli.main import main
from tollgate.governance.policy import policy as policy_module
from tollgate.governance.policy.policy import CALL_DECISION, KINDS, Decision, DecisionKind, Policy, PolicyError, whole

# The throw-away kind: a file a client uploads, decided by `package tollgate.upload`.
UPLOAD_FACTS = ("client", "purpose", "bytes")


def upload_input(facts: tuple[Any, ...]) -> dict[str, Any]:
    """The document `data.tollgate.upload.deny` evaluates as `input`."""
    return dict(zip(UPLOAD_FACTS, facts, strict=True))


def keyed_on_the_facts(sources: Sequence[str]) -> Callable[[tuple[Any, ...]], Hashable]:
    return lambda facts: facts


UPLOAD_DECISION: DecisionKind[tuple[Any, ...]] = DecisionKind(
    "upload", "data.tollgate.upload.deny", upload_input, keyed_on_the_facts, UPLOAD_FACTS.__contains__
)

UPLOAD_POLICY = """package tollgate.upload

import rego.v1

deny contains sprintf("%s may not upload files for %s", [input.client, input.purpose]) if {
	input.purpose == "fine-tune"
	input.client != "ml-team"
}

deny contains "a file over 1 MB" if input.bytes > 1000000
"""


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kind's place in `KINDS`."""
    monkeypatch.setattr(policy_module, "KINDS", (*KINDS, UPLOAD_DECISION))


@pytest.fixture
def upload_policy(tmp_path: Path) -> Path:
    path = tmp_path / "upload.rego"
    path.write_text(UPLOAD_POLICY, encoding="utf-8")
    return path


def test_a_policy_of_only_the_new_kind_loads_once_the_kind_is_declared(upload_policy: Path) -> None:
    with pytest.raises(PolicyError, match=r"no rule defines data\.tollgate\.deny"):
        Policy([upload_policy])  # no kind's package: a policy that would allow everything


def test_the_new_kind_is_asked_of_the_policy_as_every_kind_is(declared: None, upload_policy: Path) -> None:
    policy = Policy([upload_policy])

    assert policy.decide(UPLOAD_DECISION, ("bob", "fine-tune", 10)) == Decision(
        ("bob may not upload files for fine-tune",)
    )
    assert policy.decide(UPLOAD_DECISION, ("ml-team", "fine-tune", 2_000_000)) == Decision(("a file over 1 MB",))
    assert policy.decide(UPLOAD_DECISION, ("ml-team", "fine-tune", 10)) == Decision(())
    # Its decisions are its own: an LLM call is decided by `data.tollgate.deny`, which it does not write.
    assert policy.decide(whole(CALL_DECISION), {"client": {"name": "bob"}}) == Decision(())


def test_the_new_kinds_decisions_are_cached_by_its_key(declared: None, upload_policy: Path) -> None:
    policy = Policy([upload_policy])
    evaluated: list[str] = []
    evaluate = policy.rules.evaluate

    def counted(document: Any, rule: str = "") -> Decision:
        evaluated.append(rule)
        return evaluate(document, rule)

    policy.rules.evaluate = counted  # type: ignore[method-assign]
    for _ in range(3):
        assert policy.decide(UPLOAD_DECISION, ("bob", "assistants", 10)).allowed
    assert evaluated == ["data.tollgate.upload.deny"]


@pytest.mark.slow
def test_the_new_kind_is_decided_in_the_worker_as_the_proxy_asks(declared: None, upload_policy: Path) -> None:
    policy = Policy([upload_policy], apart=True)

    async def asked() -> Decision:
        try:
            decision = policy.decide(UPLOAD_DECISION, ("bob", "fine-tune", 10))
            assert not isinstance(decision, Decision)  # not cached yet: awaited from the worker
            return await decision
        finally:
            await policy.aclose()

    assert asyncio.run(asked()) == Decision(("bob may not upload files for fine-tune",))
    assert policy.decide(UPLOAD_DECISION, ("bob", "fine-tune", 10)) == Decision(
        ("bob may not upload files for fine-tune",)
    )


@pytest.mark.slow
def test_the_command_evaluates_a_sample_of_the_new_kind_by_its_name(
    declared: None, upload_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "upload.json"
    sample.write_text(json.dumps({"client": "bob", "purpose": "fine-tune"}), encoding="utf-8")

    code = main(["policy", "eval", "--policy", str(upload_policy), "--kind", "upload", "--input", str(sample)])

    out, err = capsys.readouterr()
    assert (code, json.loads(out)) == (1, {"allowed": False, "deny": ["bob may not upload files for fine-tune"]})
    assert err == (
        f"warning: {sample} lacks what the policy reads: bytes; the proxy gives every upload request these"
        " (rules that read them do not hold here)\n"
    )
