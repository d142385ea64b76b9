"""Who is calling: proxy login, virtual keys in every credential position, anonymous callers."""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy.http import Headers

from tollgate.config import parse_config
from tollgate.governance.clients import Caller, Directory
from tollgate.providers import PROVIDERS
from tollgate.providers.base import Presented

ALICE_KEY = "tg-alice-0123456789"
BOB_KEY = "tg-bob-9876543210"

CLIENTS = [
    {"name": "alice", "keys": [ALICE_KEY, "tg-alice-second"], "groups": ["research", "ci"]},
    {"name": "bob", "keys": [BOB_KEY]},
]


def directory(allow_anonymous: bool | None = None, clients: list[dict] | None = None) -> Directory:
    data: dict[str, Any] = {"clients": CLIENTS if clients is None else clients}
    if allow_anonymous is not None:
        data["allow_anonymous"] = allow_anonymous
    return Directory(parse_config(data, {}))


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in pairs:
        h.add(name, value)
    return h


# --- virtual keys ---------------------------------------------------------------------------------


def test_virtual_key() -> None:
    caller = directory().identify(None, [Presented(ALICE_KEY, "authorization")])
    assert caller == Caller("alice", ("research", "ci"), "virtual_key")


def test_second_virtual_key_of_a_client() -> None:
    caller = directory().identify(None, [Presented("tg-alice-second", "x-api-key")])
    assert caller == Caller("alice", ("research", "ci"), "virtual_key")


def test_client_without_groups() -> None:
    caller = directory().identify(None, [Presented(BOB_KEY, "query:key")])
    assert caller == Caller("bob", (), "virtual_key")


def test_only_a_whole_virtual_key_identifies_its_client() -> None:
    d = directory(allow_anonymous=False)
    assert d.identify(None, [Presented(BOB_KEY, "authorization")]) == Caller("bob", (), "virtual_key")
    for value in ("sk-real-openai-key", ALICE_KEY[:-1], ALICE_KEY + "x", ALICE_KEY.upper(), ""):
        assert d.identify(None, [Presented(value, "authorization")]) is None, value


def test_first_virtual_key_among_several_credentials_wins() -> None:
    presented = [
        Presented("sk-real-provider-key", "x-goog-api-key"),
        Presented(BOB_KEY, "authorization"),
        Presented(ALICE_KEY, "query:key"),
    ]
    assert directory().identify(None, presented) == Caller("bob", (), "virtual_key")


@pytest.mark.parametrize(
    ("provider", "request_headers", "query", "position"),
    [
        ("openai", [("Authorization", f"Bearer {ALICE_KEY}")], {}, "authorization"),
        ("gemini", [("x-goog-api-key", ALICE_KEY)], {}, "x-goog-api-key"),
        ("gemini", [], {"key": ALICE_KEY, "alt": "sse"}, "query:key"),
        ("gemini", [("authorization", f"Bearer {ALICE_KEY}")], {}, "authorization"),
        ("anthropic", [("X-Api-Key", ALICE_KEY)], {}, "x-api-key"),
        ("anthropic", [("Authorization", f"Bearer {ALICE_KEY}")], {}, "authorization"),
        ("bedrock", [("Authorization", f"Bearer {ALICE_KEY}")], {}, "authorization"),
    ],
)
def test_virtual_key_in_each_credential_position(
    provider: str, request_headers: list[tuple[str, str]], query: dict[str, str], position: str
) -> None:
    presented = PROVIDERS[provider].presented(headers(*request_headers), query)
    caller = directory().identify(None, presented)
    assert caller == Caller("alice", ("research", "ci"), "virtual_key")


def test_virtual_key_in_a_position_the_provider_does_not_use_is_not_seen() -> None:
    # OpenAI has no x-api-key position: the key there identifies no one.
    presented = PROVIDERS["openai"].presented(headers(("x-api-key", ALICE_KEY)), {"key": ALICE_KEY})
    assert presented == []
    assert directory().identify(None, presented) is None


def test_sigv4_authorization_is_not_a_virtual_key() -> None:
    sigv4 = f"AWS4-HMAC-SHA256 Credential={ALICE_KEY}/20240101/us-east-1/bedrock/aws4_request, Signature=x"
    presented = PROVIDERS["bedrock"].presented(headers(("Authorization", sigv4)), {})
    assert directory().identify(None, presented) is None


# --- proxy login ----------------------------------------------------------------------------------


def test_proxy_login_matched_to_a_client() -> None:
    assert directory().identify("alice", []) == Caller("alice", ("research", "ci"), "proxyauth")


def test_proxy_login_wins_over_a_virtual_key() -> None:
    caller = directory().identify("alice", [Presented(BOB_KEY, "authorization")])
    # The caller is the login; the virtual key's position is still reported (it must not go upstream).
    assert caller == Caller("alice", ("research", "ci"), "proxyauth")


def test_proxy_login_without_matching_client_is_that_name_without_groups() -> None:
    assert directory().identify("carol", []) == Caller("carol", (), "proxyauth")
    assert directory().identify("carol", [Presented(ALICE_KEY, "x-api-key")]) == Caller("carol", (), "proxyauth")


def test_proxy_login_with_a_real_provider_key() -> None:
    caller = directory().identify("bob", [Presented("sk-real", "authorization")])
    assert caller == Caller("bob", (), "proxyauth")


def test_proxy_login_works_when_anonymous_is_refused_and_without_clients() -> None:
    assert directory(allow_anonymous=False).identify("alice", []) == Caller("alice", ("research", "ci"), "proxyauth")
    assert directory(allow_anonymous=False, clients=[]).identify("dave", []) == Caller("dave", (), "proxyauth")


# --- anonymous and refused --------------------------------------------------------------------------


def test_no_clients_means_anonymous_allowed() -> None:
    d = directory(clients=[])
    assert d.identify(None, []) == Caller(None, (), "anonymous")
    assert d.identify(None, [Presented("sk-real", "authorization")]) == Caller(None, (), "anonymous")


def test_clients_configured_means_anonymous_refused() -> None:
    d = directory()
    assert d.identify(None, []) is None
    assert d.identify(None, [Presented("sk-unknown", "authorization")]) is None


def test_unknown_key_is_refused() -> None:
    assert directory().identify(None, [Presented("tg-mallory-0000000000", "x-api-key")]) is None


def test_anonymous_explicitly_allowed_with_clients() -> None:
    d = directory(allow_anonymous=True)
    # A known key still identifies its client…
    assert d.identify(None, [Presented(ALICE_KEY, "authorization")]).name == "alice"
    # …and an unknown key (e.g. the caller's own real key) is an anonymous call.
    assert d.identify(None, [Presented("sk-real", "authorization")]) == Caller(None, (), "anonymous")
    assert d.identify(None, []) == Caller(None, (), "anonymous")


def test_anonymous_explicitly_refused_without_clients() -> None:
    d = directory(allow_anonymous=False, clients=[])
    assert d.identify(None, []) is None
    assert d.identify(None, [Presented("anything", "authorization")]) is None


def test_identify_accepts_any_iterable() -> None:
    presented = (p for p in [Presented(ALICE_KEY, "authorization")])
    assert directory().identify(None, presented).name == "alice"
