"""Who is calling: proxy login, virtual keys in every credential position, anonymous callers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from mitmproxy.http import Headers

from tollgate.configuration.config import parse_config
from tollgate.governance.identity import clients
from tollgate.governance.identity.clients import Directory, Expired, KnownCaller, expiry_notices
from tollgate.providers import PROVIDERS
from tollgate.providers.credentials import Presented

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
    assert caller == KnownCaller("alice", ("research", "ci"), "virtual_key")


def test_second_virtual_key_of_a_client() -> None:
    caller = directory().identify(None, [Presented("tg-alice-second", "x-api-key")])
    assert caller == KnownCaller("alice", ("research", "ci"), "virtual_key")


def test_client_without_groups() -> None:
    caller = directory().identify(None, [Presented(BOB_KEY, "query:key")])
    assert caller == KnownCaller("bob", (), "virtual_key")


def test_only_a_whole_virtual_key_identifies_its_client() -> None:
    d = directory(allow_anonymous=False)
    assert d.identify(None, [Presented(BOB_KEY, "authorization")]) == KnownCaller("bob", (), "virtual_key")
    for value in ("sk-real-openai-key", ALICE_KEY[:-1], ALICE_KEY + "x", ALICE_KEY.upper(), ""):
        assert d.identify(None, [Presented(value, "authorization")]) is None, value


def test_first_virtual_key_among_several_credentials_wins() -> None:
    presented = [
        Presented("sk-real-provider-key", "x-goog-api-key"),
        Presented(BOB_KEY, "authorization"),
        Presented(ALICE_KEY, "query:key"),
    ]
    assert directory().identify(None, presented) == KnownCaller("bob", (), "virtual_key")


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
    presented = PROVIDERS[provider].credentials.caller.presented(headers(*request_headers), query)
    caller = directory().identify(None, presented)
    assert caller == KnownCaller("alice", ("research", "ci"), "virtual_key")


def test_virtual_key_in_a_position_the_provider_does_not_use_is_not_seen() -> None:
    # OpenAI has no x-api-key position: the key there identifies no one.
    presented = PROVIDERS["openai"].credentials.caller.presented(headers(("x-api-key", ALICE_KEY)), {"key": ALICE_KEY})
    assert presented == []
    assert directory().identify(None, presented) is None


def test_sigv4_authorization_is_not_a_virtual_key() -> None:
    sigv4 = f"AWS4-HMAC-SHA256 Credential={ALICE_KEY}/20240101/us-east-1/bedrock/aws4_request, Signature=x"
    presented = PROVIDERS["bedrock"].credentials.caller.presented(headers(("Authorization", sigv4)), {})
    assert directory().identify(None, presented) is None


# --- proxy login ----------------------------------------------------------------------------------


def test_proxy_login_matched_to_a_client() -> None:
    assert directory().identify("alice", []) == KnownCaller("alice", ("research", "ci"), "proxyauth")


def test_proxy_login_wins_over_a_virtual_key() -> None:
    caller = directory().identify("alice", [Presented(BOB_KEY, "authorization")])
    # The caller is the login; the virtual key's position is still reported (it must not go upstream).
    assert caller == KnownCaller("alice", ("research", "ci"), "proxyauth")


def test_proxy_login_without_matching_client_is_that_name_without_groups() -> None:
    assert directory().identify("carol", []) == KnownCaller("carol", (), "proxyauth")
    assert directory().identify("carol", [Presented(ALICE_KEY, "x-api-key")]) == KnownCaller("carol", (), "proxyauth")


def test_proxy_login_with_a_real_provider_key() -> None:
    caller = directory().identify("bob", [Presented("sk-real", "authorization")])
    assert caller == KnownCaller("bob", (), "proxyauth")


def test_proxy_login_works_when_anonymous_is_refused_and_without_clients() -> None:
    assert directory(allow_anonymous=False).identify("alice", []) == KnownCaller(
        "alice", ("research", "ci"), "proxyauth"
    )
    assert directory(allow_anonymous=False, clients=[]).identify("dave", []) == KnownCaller("dave", (), "proxyauth")


# --- anonymous and refused --------------------------------------------------------------------------


def test_no_clients_means_anonymous_allowed() -> None:
    d = directory(clients=[])
    assert d.identify(None, []) == KnownCaller(None, (), "anonymous")
    assert d.identify(None, [Presented("sk-real", "authorization")]) == KnownCaller(None, (), "anonymous")


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
    assert d.identify(None, [Presented("sk-real", "authorization")]) == KnownCaller(None, (), "anonymous")
    assert d.identify(None, []) == KnownCaller(None, (), "anonymous")


def test_anonymous_explicitly_refused_without_clients() -> None:
    d = directory(allow_anonymous=False, clients=[])
    assert d.identify(None, []) is None
    assert d.identify(None, [Presented("anything", "authorization")]) is None


def test_identify_accepts_any_iterable() -> None:
    presented = (p for p in [Presented(ALICE_KEY, "authorization")])
    assert directory().identify(None, presented).name == "alice"


# --- keys written as their SHA-256, and expiries ---------------------------------------------------

CAROL_KEY = "tg-carol-hashed-0123456789"
CAROL_SHA256 = "sha256:" + hashlib.sha256(CAROL_KEY.encode()).hexdigest()
UNICODE_KEY = "tg-dave-ключ-0123"  # the SHA-256 of its UTF-8 bytes, as the client sends them


def hashed_directory(**more: Any) -> Directory:
    return directory(
        clients=[
            *CLIENTS,
            {"name": "carol", "keys": [CAROL_SHA256], "groups": ["ops"]},
            {"name": "dave", "keys": ["sha256:" + hashlib.sha256(UNICODE_KEY.encode()).hexdigest()]},
            {
                "name": "erin",
                "keys": [
                    {"key": "tg-erin-old", "expires": "2020-01-01"},
                    {"key": "sha256:" + hashlib.sha256(b"tg-erin-old-hashed").hexdigest(), "expires": "2020-01-01"},
                    {"key": "tg-erin-new", "expires": "2099-01-01T00:00:00Z"},
                ],
            },
        ],
        **more,
    )


def test_a_key_written_as_its_sha256_identifies_its_client() -> None:
    d = hashed_directory()
    assert d.identify(None, [Presented(CAROL_KEY, "x-api-key")]) == KnownCaller("carol", ("ops",), "virtual_key")
    assert d.identify(None, [Presented(ALICE_KEY, "authorization")]).name == "alice"  # the others as before
    # Hashed as the UTF-8 bytes the client sent.
    assert d.identify(None, [Presented(UNICODE_KEY, "authorization")]).name == "dave"


def test_only_the_key_itself_matches_its_sha256_not_the_line_in_the_file() -> None:
    d = hashed_directory()
    digest = CAROL_SHA256.removeprefix("sha256:")
    for value in (CAROL_SHA256, digest, CAROL_KEY + " ", CAROL_KEY[:-1], CAROL_KEY.upper(), "\udcff", "\ud800"):
        assert d.identify(None, [Presented(value, "authorization")]) is None, value
        assert not d.is_virtual_key(value), value
    assert d.is_virtual_key(CAROL_KEY)


def test_an_expired_key_is_refused_even_where_anonymous_callers_are_allowed() -> None:
    for allow in (False, True):
        d = hashed_directory(allow_anonymous=allow)
        for key in ("tg-erin-old", "tg-erin-old-hashed"):
            outcome = d.identify(None, [Presented(key, "authorization")])
            assert outcome == Expired("erin", datetime(2020, 1, 1, tzinfo=UTC).timestamp())
            assert outcome.reason == "virtual key of erin expired 2020-01-01T00:00:00Z"
            # Still Tollgate's own key: never the caller's own credential, which passes upstream.
            assert d.is_virtual_key(key)
    ends = datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    caller = hashed_directory().identify(None, [Presented("tg-erin-new", "authorization")])
    assert caller == KnownCaller("erin", (), "virtual_key", ends)


def test_a_key_is_refused_from_the_moment_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    d = hashed_directory()
    ends = datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    monkeypatch.setattr(clients.time, "time", lambda: ends - 0.001)
    assert d.identify(None, [Presented("tg-erin-new", "authorization")]).name == "erin"
    monkeypatch.setattr(clients.time, "time", lambda: ends)
    assert d.identify(None, [Presented("tg-erin-new", "authorization")]) == Expired("erin", ends)


def test_the_console_names_keys_expiring_soon_by_their_place_never_the_key() -> None:
    config = parse_config(
        {
            "clients": [
                {"name": "alice", "keys": ["tg-alice-1", {"key": "tg-alice-2", "expires": "2027-03-10"}]},
                {"name": "bob", "keys": [{"key": CAROL_SHA256, "expires": "2027-03-01T12:00:00Z"}]},
                {"name": "eve", "keys": [{"key": "tg-eve-1", "expires": "2027-02-01"}]},
                {"name": "zed", "keys": [{"key": "tg-zed-1", "expires": "2027-03-01T09:30:00Z"}]},
            ]
        },
        {},
    )
    now = datetime(2027, 3, 1, 9, tzinfo=UTC).timestamp()
    notices = expiry_notices(config, now)
    assert notices == [
        "clients.1.keys.0 (bob) expires 2027-03-01T12:00:00Z, in 3 hours",
        "clients.2.keys.0 (eve) expired 2027-02-01T00:00:00Z: it is refused",
        "clients.3.keys.0 (zed) expires 2027-03-01T09:30:00Z, in 30 minutes",
    ]  # alice's second key ends in 8 days 15 hours: beyond the week named
    assert expiry_notices(config, now, within=10 * 86400)[0] == (
        "clients.0.keys.1 (alice) expires 2027-03-10T00:00:00Z, in 8 days"
    )
    assert not any(secret in " ".join(notices) for secret in ("tg-", CAROL_SHA256[7:]))


def test_a_sessions_key_is_refused_once_removed_moved_or_expired_in_the_configuration_in_force() -> None:
    hashed = "sha256:" + hashlib.sha256(b"tg-bob-2").hexdigest()
    before = directory(clients=[{"name": "alice", "keys": ["tg-alice-1"]}, {"name": "bob", "keys": [hashed]}])
    alice = before.identify(None, [Presented("tg-alice-1", "authorization")])
    bob = before.identify(None, [Presented("tg-bob-2", "authorization")])
    assert isinstance(alice, KnownCaller) and isinstance(bob, KnownCaller)
    assert alice.key_sha256 == hashlib.sha256(b"tg-alice-1").hexdigest() and bob.key_sha256 == hashed[7:]
    assert alice.key_sha256 not in repr(alice)
    assert before.key_refusal(alice.key_sha256, "alice", 0) is None
    assert before.key_refusal(bob.key_sha256, "bob", 0) is None
    after = directory(
        clients=[
            {"name": "alice", "keys": []},
            {"name": "carol", "keys": [hashed]},
            {"name": "dave", "keys": [{"key": "tg-dave-3", "expires": "2026-01-01"}]},
        ]
    )
    assert after.key_refusal(alice.key_sha256, "alice", 0) == "virtual key of alice removed from the configuration"
    assert after.key_refusal(bob.key_sha256, "bob", 0) == "virtual key of bob removed from the configuration"
    dave = hashlib.sha256(b"tg-dave-3").hexdigest()
    assert after.key_refusal(dave, "dave", datetime(2025, 12, 31, tzinfo=UTC).timestamp()) is None
    assert after.key_refusal(dave, "dave", datetime(2026, 1, 1, tzinfo=UTC).timestamp()) == (
        "virtual key of dave expired 2026-01-01T00:00:00Z"
    )
