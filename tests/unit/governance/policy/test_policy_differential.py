"""Tollgate decides as OPA decides: generated policies and calls, each decided by Tollgate's own path
(the input document built from a call's facts, the decision cache keyed by the facts the policy
reads, the worker process and its JSON lines) and by OPA's engine on the same document, queried
for `data.tollgate.deny` as `opa eval --strict-builtin-errors` would be. Every difference fails.

The rules are of the kinds that surprise people: comparisons across types and null, `in` and
`every`, globs with and without delimiters, regexes, time, sets and objects, and fields that are
missing inside `not`. A call's facts are drawn across types too, so that the cache's key is put to
the test: two calls that differ only in a fact no rule reads share a decision, and a policy that
reads a fact any other way than by its path is never answered from another call's decision."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.governance.identity.jwt_identity import JwtIdentity
from tollgate.governance.policy.policy import CALL_DECISION, POLICY_ERROR, Decision, Policy, input_document
from tollgate.governance.subscriptions.plan import Subscription

QUICK = os.environ.get("TOLLGATE_EXAMPLES") == "quick"

# Values of every JSON type, and the awkward ones: null, numbers as strings, large and fractional
# numbers, text beyond ASCII.
SCALARS = st.sampled_from([
    None, True, False, 0, 1, -1, 8192, 9000, 2**53, 1.5, -0.0, "", "9000", "gpt-4o", "gpt-4o-mini",
    "claude-3.7-sonnet", "GPT-4O", "ÀÉÎ", "gemini-2.5-pro", "anthropic.claude-3-5-sonnet-v1:0",
])  # fmt: skip
NAMES = st.sampled_from(["alice", "bob", "sam", "ci-build", "ÀÉÎ"])
GROUPS = st.lists(st.sampled_from(["research", "support", "agents", "suspended"]), max_size=3, unique=True)


@st.composite
def identities(draw: st.DrawFn) -> JwtIdentity | None:
    if not draw(st.booleans()):
        return None
    claims = {"role": draw(st.sampled_from(["read-only", "admin", None, 3])), "ref": draw(SCALARS)}
    return JwtIdentity(
        "https://issuer.example", "agent", (), claims, json.dumps(claims, sort_keys=True, separators=(",", ":"))
    )


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription | None:
    """`input.subscription`: null for a call made with a key, else what its plan tells."""
    if not draw(st.booleans()):
        return None
    return Subscription("anthropic", draw(st.one_of(st.none(), NAMES)), None, draw(st.sampled_from([None, "max"])))


@st.composite
def facts(draw: st.DrawFn) -> tuple[Any, ...]:
    """A call's facts (`policy.input_facts`), each slot drawn across the types it may take and
    others beside, as a policy must be ready for."""
    counters = draw(st.sampled_from([(), (("tokens_per_day", "alice", "tokens_per_day", 9000, 20000, "tokens"),)]))
    fallback = draw(st.sampled_from([None, ("openai", "gpt-4o")]))
    findings = draw(st.sampled_from([None, (), (("pii.email", 2), ("secrets.github_token", 1))]))
    return (
        draw(st.one_of(st.none(), NAMES)), tuple(draw(GROUPS)), draw(st.sampled_from(["virtual_key", "anonymous"])),
        draw(st.sampled_from(["openai", "anthropic", "gemini"])), "api.openai.com", draw(st.sampled_from(["POST", "GET"])),
        "/v1/chat/completions", draw(st.one_of(st.none(), st.sampled_from(["chat.completions", "files", "models"]))),
        draw(SCALARS), draw(SCALARS), draw(SCALARS), draw(SCALARS), draw(st.booleans()), draw(SCALARS),
        draw(SCALARS), tuple(draw(st.lists(st.sampled_from(["model", "tools"]), max_size=2, unique=True))),
        draw(identities()), counters, draw(SCALARS), None, None, (), None, fallback, findings, draw(subscriptions()),
    )  # fmt: skip


# The slots of `input_facts` that hold a plain value (`SCALARS` fit them all).
PLAIN = (0, 7, 8, 9, 10, 11, 12, 13, 14, 18)


@st.composite
def calls(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Calls alike but for a fact or two, as a conversation's calls are: the cache's key must tell
    apart exactly those that differ in what the policy reads."""
    base = draw(facts())
    alike = [base]
    for _ in range(draw(st.integers(1, 5))):
        call = list(draw(st.sampled_from(alike)))
        for slot in draw(st.lists(st.sampled_from(PLAIN), min_size=1, max_size=2)):
            call[slot] = draw(SCALARS)
        alike.append(tuple(call))
    return alike


# Where rules read the input, and how: by a path of names (the cache keys on what they read), a
# missing one, and otherwise (then every fact keys it).
REFS = [
    "input.model", "input.requested_model", "input.request.max_tokens", "input.request.stream",
    "input.request.message_count", "input.request.has_system", "input.client.name", "input.client.groups",
    "input.unread", "input.endpoint", "input.method", "input.nope", "input.request.nope",
    "input.identity.claims.role", "input.identity.claims.ref", "input.usage.tokens_per_day",
    "input.fallback_of.model", "input.subscription.vendor", "input.subscription.plan", 'input.findings["pii.email"]', 'input["model"]', 'object.get(input, ["request", "max_tokens"], "absent")',
]  # fmt: skip
LITERALS = [
    "null", "true", "false", "0", "8192", "-1.5", '"9000"', '"gpt-4o"', '"research"', "[]", "{}", '{"research"}',
    '["model"]',
]  # fmt: skip
GLOBS = ['"gpt-*"', '"claude-*"', '"gpt-4o*"', '"*mini"', '"**"']
DELIMITERS = ["[]", "null", '["/"]', '["-"]']
REGEXES = ['"^gpt"', '"(?i)GPT"', '"\\\\p{L}+"', '"^[a-z0-9.-]+$"', '"mini$"']


@st.composite
def conditions(draw: st.DrawFn) -> str:
    ref, literal = draw(st.sampled_from(REFS)), draw(st.sampled_from(LITERALS))
    kind = draw(st.integers(0, 13))
    condition = [
        f"{ref} {draw(st.sampled_from(['==', '!=', '<', '<=', '>', '>=']))} {literal}",
        f"{literal} in {ref}",
        f"some x in {ref}\n\tx == {literal}",
        f"every x in {ref} {{ x != {literal} }}",
        f"glob.match({draw(st.sampled_from(GLOBS))}, {draw(st.sampled_from(DELIMITERS))}, {ref})",
        f"regex.match({draw(st.sampled_from(REGEXES))}, {ref})",
        f"is_number({ref})\n\t{ref} > 8192",
        f'is_string({ref})\n\tstartswith(lower({ref}), "gpt")',
        f"count({ref}) > 1",
        f'{{x | some x in {ref}}} & {{"research", "model"}} != set()',
        f'object.union({{"a": {{"b": 1}}}}, {{"a": {{"c": {ref}}}}}).a.b == 1',
        'time.parse_rfc3339_ns("2024-01-01T00:00:00Z") > 0',
        f'semver.compare("1.0.0-alpha", "1.0.0") < 0\n\t{ref} == {literal}',
        f"{ref} == {ref}",
    ][kind]
    return f"not {condition}" if draw(st.booleans()) and "\n" not in condition and kind != 3 else condition


@st.composite
def policies(draw: st.DrawFn) -> str:
    rules = [f'deny contains "rule {i}" if {{\n\t{draw(conditions())}\n}}\n' for i in range(draw(st.integers(1, 4)))]
    return "package tollgate\n\nimport rego.v1\n\n" + "\n".join(rules)


def opa_decision(engine: Any, document: dict[str, Any]) -> Decision:
    """What OPA's engine says, as `opa eval --strict-builtin-errors 'data.tollgate.deny'` would."""
    from opa_bindings.engine import OpaError

    try:
        found = engine.eval_query("deny := data.tollgate.deny", document)
    except OpaError:
        return Decision((POLICY_ERROR,))
    return Decision(tuple(sorted(found[0]["deny"]))) if found else Decision(())


def reference(source: str) -> Any:
    from opa_bindings import OpaEngine

    engine = OpaEngine()
    engine.print_handler = lambda message, location: None
    engine.add_policy("policy.rego", source)
    return engine


def outcome(decision: Decision) -> Decision:
    """A decision without its error's words (OPA's reference gives none)."""
    return Decision(decision.deny_reasons)


def compared_with_opa(max_examples: int) -> settings:
    """Hypothesis' settings for a comparison with OPA: `max_examples` examples, the same each run,
    each given what time it takes."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
    )


def both_policies(tmp_path_factory: pytest.TempPathFactory, source: str, apart: bool = False) -> tuple[Policy, Any]:
    """Tollgate's policy of `source` (`apart`: decided in its worker process), and OPA's engine of it."""
    path = tmp_path_factory.mktemp("policy") / "policy.rego"
    path.write_text(source)
    return Policy([path], apart=apart), reference(source)


@compared_with_opa(examples(150))
@given(policies(), calls())
@pytest.mark.slow
def test_tollgate_decides_as_opa_does_in_process(tmp_path_factory, source: str, alike: list[tuple]) -> None:
    policy, engine = both_policies(tmp_path_factory, source)
    for call in alike:
        expected = opa_decision(engine, input_document(call))
        assert outcome(policy.decide(CALL_DECISION, call)) == expected, (source, input_document(call))
        # Asked again: from the cache where the policy is pure, the same answer.
        assert outcome(policy.decide(CALL_DECISION, call)) == expected, (source, input_document(call))


@compared_with_opa(3 if QUICK else 12)
@given(policies(), calls())
@pytest.mark.slow
def test_tollgate_decides_as_opa_does_through_its_worker(tmp_path_factory, source: str, alike: list[tuple]) -> None:
    policy, engine = both_policies(tmp_path_factory, source, apart=True)

    async def decide_all() -> list[Decision]:
        try:
            decided = []
            for call in alike:
                decision = policy.decide(CALL_DECISION, call)
                decided.append(decision if isinstance(decision, Decision) else await decision)
            return decided
        finally:
            await policy.aclose()

    decided = asyncio.run(decide_all())
    assert [outcome(d) for d in decided] == [opa_decision(engine, input_document(c)) for c in alike], source
