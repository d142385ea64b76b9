"""Which calls mint a credential usable without Tollgate, read by each provider's module: a POST
to the endpoints that hand out an ephemeral key or client secret, in the path's one spelling
(another letter case, or a trailing slash, is refused as unreadable)."""

from __future__ import annotations

import pytest

from tollgate.formats.exact import Unreadable
from tollgate.providers import PROVIDERS

SESSION = {"session": {"type": "realtime", "model": "gpt-realtime"}}


@pytest.mark.parametrize(
    ("provider", "host", "path", "body", "endpoint"),
    [
        ("openai", "api.openai.com", "/v1/realtime/client_secrets", SESSION, "realtime.client_secrets"),
        (
            "openai",
            "api.openai.com",
            "/v1/realtime/sessions",
            {"model": "gpt-4o-realtime-preview"},
            "realtime.sessions",
        ),
        ("openai", "api.openai.com", "/v1/realtime/transcription_sessions", {}, "realtime.transcription_sessions"),
        ("openai", "api.openai.com", "/v1/chatkit/sessions", {"user": "u"}, "chatkit.sessions"),
        ("gemini", "generativelanguage.googleapis.com", "/v1alpha/auth_tokens", {"uses": 1}, "auth_tokens"),
        ("gemini", "generativelanguage.googleapis.com", "/v1/auth_tokens", {}, "auth_tokens"),
        ("azure", "contoso.openai.azure.com", "/openai/realtimeapi/sessions", {"model": "m"}, "realtimeapi.sessions"),
        ("azure", "contoso.openai.azure.com", "/openai/v1/realtime/client_secrets", SESSION, "realtime.client_secrets"),
        ("azure", "contoso.openai.azure.com", "/openai/realtime/sessions", {"model": "m"}, "realtime.sessions"),
    ],
)
def test_a_post_that_mints_a_credential_is_marked(provider, host, path, body, endpoint) -> None:
    classification = PROVIDERS[provider].classify_at(host, "POST", path, body)
    assert (classification.endpoint, classification.mints_credential) == (endpoint, True)


@pytest.mark.parametrize(
    ("provider", "host", "method", "path"),
    [
        ("openai", "api.openai.com", "GET", "/v1/realtime/sessions"),
        ("openai", "api.openai.com", "POST", "/v1/chat/completions"),
        ("openai", "api.openai.com", "POST", "/v1/realtime/calls/rtc_1/hangup"),
        ("gemini", "generativelanguage.googleapis.com", "GET", "/v1alpha/auth_tokens"),
        ("gemini", "generativelanguage.googleapis.com", "POST", "/v1beta/cachedContents"),
    ],
)
def test_other_calls_mint_nothing(provider, host, method, path) -> None:
    assert (
        not PROVIDERS[provider]
        .classify_at(host, method, path, {"model": "m"} if method == "POST" else None)
        .mints_credential
    )


@pytest.mark.parametrize(
    ("provider", "host", "path"),
    [
        ("openai", "api.openai.com", "/v1/Realtime/client_secrets"),
        ("openai", "api.openai.com", "/v1/realtime/Transcription_Sessions"),
        ("openai", "api.openai.com", "/v1/realtime/client_secrets/"),
        ("openai", "api.openai.com", "/v1/ChatKit/sessions"),
        ("gemini", "generativelanguage.googleapis.com", "/v1alpha/Auth_Tokens"),
        ("gemini", "generativelanguage.googleapis.com", "/v1alpha/authTokens"),
        ("azure", "contoso.openai.azure.com", "/openai/RealtimeAPI/sessions"),
        ("azure", "contoso.openai.azure.com", "/openai/realtimeapi/webrtc"),
        ("azure", "contoso.openai.azure.com", "/openai/v1/Realtime/client_secrets"),
    ],
)
def test_another_spelling_is_unreadable(provider, host, path) -> None:
    with pytest.raises(Unreadable):
        PROVIDERS[provider].classify_at(host, "POST", path, {})
