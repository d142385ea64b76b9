"""What the end-to-end tests of the answer guardrails build alike on `answers.py`: the answer rules
most of them configure (and a configuration with them), a whole OpenAI chat answer, the module fixtures of a gateway whose fake
upstreams all answer through one `AnswerUpstream`, and the checks of what a denied answer leaves:
a stream cut at the planted key, a whole answer refused for it, a stream stopped before the key's
tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.answers import AWS, CARD, KINDS, TEXT, AnswerUpstream, answered_by


def answer_rules(*denied: str) -> list[dict[str, Any]]:
    """KINDS redacted in every answer, denied in those of the models each of `denied` matches."""
    deny = [{"match": {"model": m}, "on": ["answer"], "detect": KINDS, "action": "deny"} for m in denied]
    return [{"on": ["answer"], "detect": KINDS, "action": "redact"}, *deny]


def guarded_config(urls: dict[str, str], keys: dict[str, str], virtual: str, *denied: str) -> dict[str, Any]:
    """A configuration: each of `keys`' providers on its fake upstream (`urls`) with its key, the
    client alice with the key `virtual`, and `answer_rules(*denied)`."""
    return {
        "providers": {name: {"upstream": urls[name], "keys": [key]} for name, key in keys.items()},
        "clients": [{"name": "alice", "keys": [virtual]}],
        "guardrails": answer_rules(*denied),
    }


def chat_completion(id_: str, message: dict[str, Any], finish: str) -> dict[str, Any]:
    """A whole OpenAI chat answer of `message`, 12 tokens used."""
    return {
        "id": id_,
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def answer_fixtures(
    upstream_type: type[AnswerUpstream], config: Callable[..., dict], providers: tuple[str, ...]
) -> tuple[Any, Any]:
    """A module's fixtures `upstream` (one `upstream_type` for the module) and `gw` (a gateway
    configured by `config`, a fake upstream for each of `providers`, all answering through
    `upstream`): assigned as `upstream, gw = answer_fixtures(...)`."""

    @pytest.fixture(scope="module", name="upstream")
    def upstream_fixture() -> AnswerUpstream:
        return upstream_type()

    @pytest.fixture(scope="module", name="gw")
    def gateway_fixture(start_gateway: Callable[..., Any], upstream: AnswerUpstream) -> Any:
        return answered_by(start_gateway(config, providers=providers), upstream)

    return upstream_fixture, gateway_fixture


def counted_fixture(config: Callable[..., dict], providers: tuple[str, ...]) -> Any:
    """A module's fixture `counted`: the gateway of `answer_fixtures`, every call counted by a limit
    (`config` takes the limits after the URLs), so that an answer's end waits for its settlement."""

    @pytest.fixture(scope="module", name="counted")
    def counted_gateway(start_gateway: Callable[..., Any], upstream: AnswerUpstream) -> Any:
        limits = [{"name": "all", "match": {}, "tokens_per_day": 10_000_000}]
        return answered_by(start_gateway(lambda urls: config(urls, limits), providers=providers), upstream)

    return counted_gateway


def cut_at_the_key(gateway: Any, text: str) -> None:
    """A denied stream was cut at the key: the client had everything before the key's first byte
    (`text`), nothing of it nor after it, and the call's record says so."""
    assert text == TEXT[: TEXT.index(AWS)]
    record = gateway.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


def refused_for_the_key(gateway: Any, result: dict[str, Any]) -> None:
    """A whole answer was refused for the key: what the client got (`result`) holds neither planted
    value, and the call's record says it was denied 403 for the key."""
    assert AWS not in json.dumps(result) and CARD not in json.dumps(result)
    record = gateway.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


def stopped_before_the_keys_tokens(gateway: Any, result: dict[str, Any], read: list[list[Any]]) -> None:
    """An answer whose event before the key's first piece carries that piece's tokens was stopped
    as unreadable there: the SDK raised, having `read` (each piece's text and tokens) only text
    before the key, each piece's tokens its text, and no token of the key (in `result`, all the
    client reported); the call's record says it was cut."""
    assert result["error"] == ["openai", "APIError"]
    said = "".join(text for text, _ in read)
    assert TEXT.startswith(said) and len(said) <= TEXT.index(AWS)
    assert all(tokens == [text] for text, tokens in read)
    assert AWS[:2] not in json.dumps(result)
    record = gateway.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
