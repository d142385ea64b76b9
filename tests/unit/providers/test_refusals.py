"""Each provider's refusal of a call, for every reason Tollgate refuses one: its status, its
X-Tollgate-Error, and its body in the provider's own error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .common import (
    ANTHROPIC,
    ANTHROPIC_REFUSALS,
    BEDROCK,
    BEDROCK_REFUSALS,
    GEMINI,
    GEMINI_REFUSALS,
    MESSAGE,
    OPENAI,
    OPENAI_REFUSALS,
    REASONS,
    _common_refusal_headers,
)


def _openai(reason: str) -> tuple[int, dict[str, str], dict]:
    status, kind, code = OPENAI_REFUSALS[reason]
    return status, {}, {"error": {"message": MESSAGE, "type": kind, "param": None, "code": code}}


def _gemini(reason: str) -> tuple[int, dict[str, str], dict]:
    status, text = GEMINI_REFUSALS[reason]
    return status, {}, {"error": {"code": status, "message": MESSAGE, "status": text}}


def _anthropic(reason: str) -> tuple[int, dict[str, str], dict]:
    status, kind = ANTHROPIC_REFUSALS[reason]
    return status, {}, {"type": "error", "error": {"type": kind, "message": MESSAGE}}


def _bedrock(reason: str) -> tuple[int, dict[str, str], dict]:
    status, error_type = BEDROCK_REFUSALS[reason]
    return status, {"x-amzn-errortype": error_type}, {"message": MESSAGE}


# Each provider and what its refusal for a reason is: the status, headers of its own, the body.
EXPECTED: dict[str, tuple[Any, Any]] = {
    "openai": (OPENAI, _openai),
    "gemini": (GEMINI, _gemini),
    "anthropic": (ANTHROPIC, _anthropic),
    "bedrock": (BEDROCK, _bedrock),
}


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("provider", list(EXPECTED))
def test_a_refusal_is_in_the_providers_own_shape(provider: str, reason: str) -> None:
    spec, expected = EXPECTED[provider]
    status, own_headers, body = expected(reason)
    r = spec.refusal(reason, MESSAGE)
    assert r.status == status
    _common_refusal_headers(r, reason)
    for name, value in own_headers.items():
        assert r.headers[name] == value
    assert json.loads(r.body) == body
