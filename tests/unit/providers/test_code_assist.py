"""Gemini Code Assist: its envelope read (a stream's usage however it is cut into pieces), its
calls told from its service calls, its settings, and the accounts of Google tokens kept."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.grouped_cases import flat_cases

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.code_assist.envelope import EnvelopeStreamReader, text_runs, usage
from tollgate.formats.gemini_generate.stream import GenerateStreamReader
from tollgate.formats.usage import Usage
from tollgate.governance.subscriptions.asked_accounts import FAILED_FOR_S, AskedAccounts, parse_tokeninfo, token_key
from tollgate.governance.subscriptions.plan import Subscription, tenant_pins
from tollgate.providers import PROVIDERS, Hosts
from tollgate.providers.code_assist import current_tier

CODE_ASSIST = PROVIDERS["code_assist"]
META = {"promptTokenCount": 1200, "candidatesTokenCount": 30, "thoughtsTokenCount": 12, "totalTokenCount": 1242}


def event(response: dict) -> bytes:
    return b"data: " + json.dumps({"response": response, "traceId": "t"}).encode() + b"\r\n\r\n"


STREAM = b"".join(
    (
        event({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
        event(
            {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}], "usageMetadata": META}
        ),
    )
)
EXPECTED = Usage(input_tokens=1200, output_tokens=42, total_tokens=1242, reasoning_tokens=12, finish_reason="STOP")


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
@pytest.mark.slow
def test_a_streams_usage_is_the_same_however_it_is_cut(cuts: list[int]) -> None:
    reader = EnvelopeStreamReader()
    points = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(points):
        reader.feed(STREAM[start:end])
    assert reader.result() == EXPECTED
    assert reader.error is None


def test_gemini_s_own_reader_finds_no_usage_inside_the_envelope() -> None:
    # What the envelope's layer is for: Gemini's reader looks for usageMetadata at the top.
    reader = GenerateStreamReader()
    reader.feed(STREAM)
    assert reader.result().input_tokens is None


def test_a_whole_answer_and_a_count_are_read_through_the_envelope() -> None:
    whole = json.dumps({"response": {"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}}}).encode()
    assert (usage("generateContent", whole).input_tokens, usage("generateContent", whole).output_tokens) == (4, 2)
    assert usage("countTokens", b'{"totalTokens": 31}').input_tokens == 31
    assert usage("generateContent", b"not json") == Usage()


def envelope(**extra: object) -> dict:
    request = {"contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}], "generationConfig": {}}
    return {"model": "gemini-2.5-pro", "project": "p-1", "user_prompt_id": "u", "request": request, **extra}


def test_the_model_calls_are_read_through_the_envelope() -> None:
    c = CODE_ASSIST.classify("POST", "/v1internal:streamGenerateContent", envelope(), "alt=sse")
    assert (c.endpoint, c.model, c.service, c.facts.stream, c.facts.message_count) == (
        "streamGenerateContent",
        "gemini-2.5-pro",
        False,
        True,
        1,
    )
    body = {"request": {"model": "models/gemini-2.5-flash", "contents": []}}
    c = CODE_ASSIST.classify("POST", "/v1internal:countTokens", body)
    assert (c.endpoint, c.model) == ("countTokens", "gemini-2.5-flash")


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    flat_cases(
        {
            "POST": [
                ("/v1internal:loadCodeAssist", "loadCodeAssist"),
                ("/v1internal:onboardUser", "onboardUser"),
                ("/v1internal:retrieveUserQuota", "retrieveUserQuota"),
                ("/v1internal:fetchAdminControls", "fetchAdminControls"),
            ],
            "GET": [
                ("/v1internal:getCodeAssistGlobalUserSetting", "getCodeAssistGlobalUserSetting"),
                ("/v1internal/operations/abc", "operations"),
            ],
        }
    ),
)
def test_every_other_method_is_a_service_call_with_no_model(method: str, path: str, endpoint: str) -> None:
    c = CODE_ASSIST.classify(method, path, {"cloudaicompanionProject": "p-1"} if method == "POST" else None)
    assert (c.endpoint, c.model, c.service) == (endpoint, None, True)


@pytest.mark.parametrize(
    ("path", "query", "body"),
    [
        ("/v1internal:streamGenerateContent", "", envelope()),  # a stream not as server-sent events
        ("/v1internal:GenerateContent", "", envelope()),  # a model call in another case
        ("/V1internal:generateContent", "", envelope()),
        ("/v1internal:generateContent", "", {"model": "m"}),  # no request in the envelope
        ("/v1internal:generateContent", "", envelope(project=7)),
        ("/v1internal:generateContent", "fields=candidates", envelope()),
        ("/v1:generateContent", "", envelope()),
    ],
)
def test_what_cannot_be_read_exactly_is_refused(path: str, query: str, body: dict) -> None:
    with pytest.raises(Unreadable):
        CODE_ASSIST.classify("POST", path, body, query)


def test_the_guardrails_text_runs_are_at_their_place_in_the_envelope() -> None:
    assert text_runs(envelope()) == [[(("request", "contents", 0, "parts", 0, "text"), "a"),
                                      (("request", "contents", 0, "parts", 1, "text"), "b")]]  # fmt: skip


def tenant(project: str | None) -> Subscription:
    return Subscription("code_assist", tenant=project)


def test_the_settings_pin_projects_and_domains() -> None:
    data = {"subscriptions": {"code_assist": {"projects": ["p-1"], "domains": ["corp.example", "labs.example"]}}}
    subscriptions = parse_config(data).subscriptions
    assert subscriptions.code_assist.tokeninfo == "https://oauth2.googleapis.com/tokeninfo"
    headers = {name: p.plan.tenant_header if p.plan else None for name, p in PROVIDERS.items()}
    assert tenant_pins(subscriptions, headers) == {
        "code_assist": (b"x-geminicodeassist-allowed-domains", b"corp.example,labs.example")
    }
    outside = "Google Cloud project p-2 is not one of subscriptions.code_assist.projects"
    assert subscriptions.outside(tenant("p-2")) == outside
    assert subscriptions.outside(tenant("p-1")) is None
    assert subscriptions.outside(tenant(None)) is None  # countTokens names none
    assert parse_config({}).subscriptions.outside(tenant("p-2")) is None  # no projects: none refused
    assert subscriptions.outside(Subscription("anthropic", tenant="p-2")) is None  # another vendor's
    assert subscriptions.ungoverned() == frozenset()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ({"domains": ["a.example,b.example"]}, "comma"),
        ({"projects": [""]}, "non-empty"),
        ({"tokeninfo": "http://tokeninfo.example"}, "https"),
        ({"workspaces": ["w"]}, "workspaces"),
    ],
)
def test_bad_settings_are_refused(setting: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"subscriptions": {"code_assist": setting}})
    assert problem in str(info.value)


def test_govern_false_leaves_its_host_to_no_provider_and_undecrypted() -> None:
    subscriptions = parse_config({"subscriptions": {"code_assist": {"govern": False}}}).subscriptions
    hosts = Hosts(ungoverned=subscriptions.ungoverned())
    assert hosts.provider_for("cloudcode-pa.googleapis.com") is None
    assert hosts.provider_for("generativelanguage.googleapis.com") is PROVIDERS["gemini"]
    assert not any("cloudcode" in pattern for pattern in hosts.allow_hosts())
    assert any("cloudcode" in pattern for pattern in Hosts().allow_hosts())


def test_a_tokeninfo_answer_and_a_tier_are_read() -> None:
    assert parse_tokeninfo(b'{"email": "a@corp.example", "expires_in": "120"}') == ("a@corp.example", 120.0)
    assert parse_tokeninfo(b'{"expires_in": 999999}') == (None, 3600.0)  # kept an hour at most
    assert current_tier(b'{"currentTier": {"id": "standard-tier"}}') == "standard-tier"
    assert current_tier(b'{"allowedTiers": []}') is None and current_tier(b"<html>") is None


def test_an_account_is_asked_for_once_per_token_and_kept_until_it_expires() -> None:
    now = [100.0]
    accounts = AskedAccounts(clock=lambda: now[0])
    asked: list[str] = []

    def fetch(token: str) -> bytes:
        asked.append(token)
        return b'{"email": "a@corp.example", "expires_in": 60}'

    accounts._fetchers[("https://t.example", None)] = fetch

    async def run() -> list[object]:
        pending = [accounts.email("ya29.x", "https://t.example", None) for _ in range(3)]
        return [await p if not isinstance(p, str | None) else p for p in pending]

    assert asyncio.run(run()) == ["a@corp.example"] * 3
    assert asked == ["ya29.x"]  # three calls waiting on one token: asked once
    assert accounts.email("ya29.x", "https://t.example", None) == "a@corp.example"  # at once, no wait
    assert accounts.asked == 1


def test_after_its_first_a_tokens_ask_is_off_the_calls_path() -> None:
    # The first call of a token waits for its account (up to the endpoint's timeout); once it has
    # been asked about, a call never waits again: what is kept is answered at once, and asked
    # again in the background where it has expired or the ask failed.
    now = [100.0]
    accounts = AskedAccounts(clock=lambda: now[0])
    answers: list[bytes | None] = [None, b'{"email": "a@corp.example", "expires_in": 60}', None]

    def fetch(token: str) -> bytes:
        answer = answers.pop(0)
        if answer is None:
            raise OSError("unreachable")
        return answer

    accounts._fetchers[("https://t.example", None)] = fetch

    async def asked_in_the_background() -> None:
        await asyncio.gather(*accounts._asking.values())

    async def calls() -> list[object]:
        first = accounts.email("ya29.x", "https://t.example", None)
        assert not isinstance(first, str | None)  # never asked: the call waits
        seen: list[object] = [await first]
        now[0] += FAILED_FOR_S + 1
        seen.append(accounts.email("ya29.x", "https://t.example", None))  # failed before: not waited for
        await asked_in_the_background()  # which answers
        seen.append(accounts.email("ya29.x", "https://t.example", None))
        now[0] += 61
        seen.append(accounts.email("ya29.x", "https://t.example", None))  # expired: kept while asked again
        await asked_in_the_background()  # which fails: a token's account does not change
        seen.append(accounts.email("ya29.x", "https://t.example", None))
        return seen

    assert asyncio.run(calls()) == [None, None, "a@corp.example", "a@corp.example", "a@corp.example"]
    assert accounts.asked == 3 and answers == []


def test_a_token_is_kept_by_its_hash_with_its_tier() -> None:
    accounts = AskedAccounts()
    accounts.told(token_key("ya29.x"), current_tier(b'{"currentTier": {"id": "free-tier"}}'))
    assert accounts.plan(token_key("ya29.x")) == "free-tier"
    assert "ya29.x" not in repr(accounts.__dict__)  # kept by hash, never the token
