"""The credential stage: the caller's credentials and side headers out, the upstream key in, in one
pass over the header fields."""

from __future__ import annotations

from tollgate.config import Config
from tollgate.fingerprint import fingerprint
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.credential import Credential

from .conftest import configured, openai_flow


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
    assert call.upstream_key == fingerprint("sk-real")


def test_credential_prefers_the_callers_side_header_and_removes_it():
    shared = configured(Config(providers={"openai": {"keys": ["sk-pooled"]}}))
    flow, call = openai_flow(("authorization", "Bearer tg-virtual"), ("x-openai-key", "  sk-own  "), shared=shared)
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.request.headers.fields == ((b"authorization", b"Bearer sk-own"),)
    assert call.upstream_key == fingerprint("sk-own")
