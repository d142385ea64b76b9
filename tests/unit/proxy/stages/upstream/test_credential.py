"""The credential stage: the caller's credentials and side headers out, the upstream key in, in one
pass over the header fields."""

from __future__ import annotations

import time

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import Config
from tollgate.formats.request_facts import Classification
from tollgate.governance.routing.failover import model_circuit
from tollgate.governance.routing.upstream import CIRCUIT
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.upstream.attempts import Attempts
from tollgate.proxy.stages.upstream.credential import Credential
from tollgate.proxy.state import Shared

from ..conftest import configured, openai_flow


def test_credential_swaps_every_credential_and_side_header_for_the_pooled_key():
    shared = configured(Config(providers={"openai": {"keys": ["sk-real"]}}))
    flow, call = openai_flow(
        ("Host", "api.openai.com"),
        ("AUTHORIZATION", "Bearer tg-virtual"),
        ("X-Gemini-Key", "AIza-wrong-provider"),
        ("Content-Type", "application/json"),
        ("authorization", "Bearer second"),
        shared=shared,
    )
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.response is None
    assert flow.request.headers.fields == (
        (b"Host", b"api.openai.com"),
        (b"Content-Type", b"application/json"),
        (b"authorization", b"Bearer sk-real"),
    )
    assert call.answer.upstream_key == fingerprint("sk-real")


def test_credential_prefers_the_callers_side_header_and_removes_it():
    shared = configured(Config(providers={"openai": {"keys": ["sk-pooled"]}}))
    flow, call = openai_flow(("authorization", "Bearer tg-virtual"), ("x-openai-key", "  sk-own  "), shared=shared)
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.request.headers.fields == ((b"authorization", b"Bearer sk-own"),)
    assert call.answer.upstream_key == fingerprint("sk-own")


async def _no_fallback(flow: http.HTTPFlow, call: Call) -> bool:
    return False


def _attempts(shared: Shared) -> Attempts:
    return Attempts(shared, _no_fallback, lambda flow, call: None)


def test_each_attempt_counts_once_for_its_keys_circuit():
    """A retried call's failed attempts count as they fail (its next key on as it goes again), its
    last attempt at its answer's headers; a key whose circuit opens is not taken, and a call whose
    every key's is gets 503 circuit_open."""
    shared = configured(
        {
            "providers": {
                "openai": {
                    "keys": ["sk-one", "sk-two"],
                    "retry": {"attempts": 3, "when": [503], "max_wait_s": 0},
                    "circuit": {"failures": 2, "rest_s": 60},
                }
            }
        }
    )
    credential, attempts = Credential(shared), _attempts(shared)
    flow, call = openai_flow(("authorization", "Bearer tg-virtual"), shared=shared)
    CallSteps(credential.handle).at_request(flow)
    used = [call.answer.upstream_key]
    for _ in range(2):  # two attempts fail and go again
        flow.response = http.Response.make(503)
        assert attempts.attempt_failed(flow) is None
        used.append(call.answer.upstream_key)
    assert used == [fingerprint("sk-one"), fingerprint("sk-two"), fingerprint("sk-one")]
    assert [a.upstream_key for a in call.failover.attempts or ()] == used[:2]
    flow.response = http.Response.make(503)  # the last attempt's answer goes to the client
    attempts.responseheaders(flow)
    attempts.responseheaders(flow)  # counted once, however often it is seen
    # sk-one failed twice in a row: only sk-two is taken now, until it fails once more.
    flow, call = openai_flow(("authorization", "Bearer tg-virtual"), shared=shared)
    CallSteps(credential.handle).at_request(flow)
    assert call.answer.upstream_key == fingerprint("sk-two")
    flow.response = http.Response.make(503)
    attempts.responseheaders(flow)
    flow, call = openai_flow(("authorization", "Bearer tg-virtual"), shared=shared)
    CallSteps(credential.handle).at_request(flow)
    assert flow.response is not None and flow.response.status_code == 503
    assert flow.response.headers["x-tollgate-error"] == "circuit_open"
    assert flow.response.headers["retry-after"] == "60"
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("circuit_open",))


def test_a_models_failures_rest_that_model_on_its_key_and_a_429_rests_the_key():
    """One caller's calls to a failing model rest that model on each key they fail on, not the key:
    other models' calls still go there. A 429 is the key's: it rests for every model."""
    shared = configured(
        {"providers": {"openai": {"keys": ["sk-one", "sk-two"], "circuit": {"failures": 1, "rest_s": 60}}}}
    )
    credential, attempts = Credential(shared), _attempts(shared)
    pool = shared.loaded.pools["openai"]

    def attempt(model: str, status: int | None = None) -> str | None:
        flow, call = openai_flow(("authorization", "Bearer tg-virtual"), shared=shared)
        call.classified(Classification("chat.completions", model))
        CallSteps(credential.handle).at_request(flow)
        if flow.response is not None:
            return flow.response.headers["x-tollgate-error"]
        if status is not None:
            flow.response = http.Response.make(status, headers={"retry-after": "0"})
            attempts.responseheaders(flow)
        return {fingerprint("sk-one"): "one", fingerprint("sk-two"): "two"}[call.answer.upstream_key]

    assert [attempt("gpt-broken", 503), attempt("gpt-broken", 504), attempt("gpt-broken")] == [
        "one", "two", "circuit_open",
    ]  # fmt: skip
    assert pool.resting() == 0  # each key still serves the other models
    assert [attempt("gpt-4o-mini", 200), attempt("gpt-4o-mini", 200)] == ["one", "two"]
    assert attempt("gpt-4o-mini", 429) == "one"
    assert [attempt("gpt-4o-mini"), attempt("gpt-4o-mini"), attempt("gpt-4o")] == ["two", "two", "two"]
    assert pool.resting() == 1


def test_a_models_circuit_opened_in_another_process_rests_that_model_here():
    shared = configured({"providers": {"openai": {"keys": ["sk-one", "sk-two"], "circuit": {"failures": 1}}}})
    pool = shared.loaded.pools["openai"]
    shared.rest_elsewhere(CIRCUIT + model_circuit(fingerprint("sk-one"), "gpt-broken"), time.time() + 60)
    assert [pool.take("gpt-broken"), pool.take("gpt-broken")] == ["sk-two", "sk-two"]
    assert sorted([pool.take("gpt-4o-mini"), pool.take("gpt-4o-mini")]) == ["sk-one", "sk-two"]
    assert pool.resting() == 0
