"""Which calls mint a credential usable without Tollgate, read by each provider's module: a call, by
any method, to the endpoints that hand out an ephemeral key or client secret, or to an
administration API's keys, in the path's one spelling (another letter case, or a trailing slash,
is refused as unreadable)."""

from __future__ import annotations

import pytest
from tests.support.grouped_cases import flat_cases

from tollgate.formats.bodies.exact import Unreadable
from tollgate.providers import PROVIDERS

SESSION = {"session": {"type": "realtime", "model": "gpt-realtime"}}


@pytest.mark.parametrize(
    ("provider", "host", "path", "body", "endpoint"),
    flat_cases(
        {
            ("openai", "api.openai.com"): [
                ("/v1/realtime/client_secrets", SESSION, "realtime.client_secrets"),
                ("/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"}, "realtime.sessions"),
                ("/v1/realtime/transcription_sessions", {}, "realtime.transcription_sessions"),
                ("/v1/chatkit/sessions", {"user": "u"}, "chatkit.sessions"),
            ],
            ("gemini", "generativelanguage.googleapis.com"): [
                ("/v1alpha/auth_tokens", {"uses": 1}, "auth_tokens"),
                ("/v1/auth_tokens", {}, "auth_tokens"),
            ],
            ("azure", "contoso.openai.azure.com"): [
                ("/openai/realtimeapi/sessions", {"model": "m"}, "realtimeapi.sessions"),
                ("/openai/v1/realtime/client_secrets", SESSION, "realtime.client_secrets"),
                ("/openai/realtime/sessions", {"model": "m"}, "realtime.sessions"),
            ],
        }
    ),
)
def test_a_post_that_mints_a_credential_is_marked(provider, host, path, body, endpoint) -> None:
    classification = PROVIDERS[provider].classify_at(host, "POST", path, body)
    assert (classification.endpoint, classification.mints_credential) == (endpoint, True)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("provider", "host", "path", "endpoint"),
    flat_cases(
        {
            ("openai", "api.openai.com"): [
                ("/v1/realtime/client_secrets", "realtime.client_secrets"),
                ("/v1/realtime/sessions", "realtime.sessions"),
                ("/v1/realtime/transcription_sessions", "realtime.transcription_sessions"),
                ("/v1/chatkit/sessions", "chatkit.sessions"),
            ],
            ("gemini", "generativelanguage.googleapis.com"): [
                ("/v1alpha/auth_tokens", "auth_tokens"),
            ],
            ("azure", "contoso.openai.azure.com"): [
                ("/openai/realtimeapi/sessions", "realtimeapi.sessions"),
                ("/openai/v1/realtime/client_secrets", "realtime.client_secrets"),
            ],
        }
    ),
)
def test_a_minting_endpoint_is_marked_whatever_the_method(provider, host, method, path, endpoint) -> None:
    # A server may answer another method as it does POST: the path, not the method, makes the credential.
    classification = PROVIDERS[provider].classify_at(host, method, path, SESSION if method != "GET" else None)
    assert (classification.endpoint, classification.mints_credential) == (endpoint, True)
    assert not classification.administers_keys  # ephemeral: `ephemeral_credentials: allow` may admit it


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("provider", "path"),
    flat_cases(
        {
            "openai": [
                "/v1/organization/admin_api_keys",
                "/v1/organization/admin_api_keys/key_abc",
                "/v1/organization/projects/proj_abc/service_accounts",
                "/v1/organization/projects/proj_abc/service_accounts/svc_acct_abc",
                "/v1/organization/projects/proj_abc/api_keys",
                "/v1/organization/projects/proj_abc/api_keys/key_abc",
            ],
            "anthropic": [
                "/v1/organizations/api_keys",
                "/v1/organizations/api_keys/apikey_01abc",
            ],
        }
    ),
)
def test_the_administration_apis_keys_are_marked_whatever_the_method(provider, method, path) -> None:
    host = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}[provider]
    classification = PROVIDERS[provider].classify_at(host, method, path, {"name": "k"} if method != "GET" else None)
    assert (classification.mints_credential, classification.administers_keys) == (True, True)


@pytest.mark.parametrize(
    ("provider", "host", "method", "path"),
    flat_cases(
        {
            ("openai", "api.openai.com"): [
                ("POST", "/v1/chat/completions"),
                ("POST", "/v1/realtime/calls/rtc_1/hangup"),
                ("GET", "/v1/organization/projects/proj_abc"),
                ("GET", "/v1/organization/usage/completions"),
                ("GET", "/v1/models"),
            ],
            ("anthropic", "api.anthropic.com"): [
                ("GET", "/v1/organizations/users"),
            ],
            ("gemini", "generativelanguage.googleapis.com"): [
                ("POST", "/v1beta/cachedContents"),
                ("GET", "/v1beta/cachedContents"),
            ],
        }
    ),
)
def test_other_calls_mint_nothing(provider, host, method, path) -> None:
    assert (
        not PROVIDERS[provider]
        .classify_at(host, method, path, {"model": "m"} if method == "POST" else None)
        .mints_credential
    )


@pytest.mark.parametrize(
    ("provider", "host", "path"),
    flat_cases(
        {
            ("openai", "api.openai.com"): [
                "/v1/Realtime/client_secrets",
                "/v1/realtime/Transcription_Sessions",
                "/v1/realtime/client_secrets/",
                "/v1/ChatKit/sessions",
                "/v1/organization/Admin_API_Keys",
                "/v1/organization/projects/proj_abc/API_keys",
            ],
            ("gemini", "generativelanguage.googleapis.com"): [
                "/v1alpha/Auth_Tokens",
                "/v1alpha/authTokens",
            ],
            ("azure", "contoso.openai.azure.com"): [
                "/openai/RealtimeAPI/sessions",
                "/openai/realtimeapi/webrtc",
                "/openai/v1/Realtime/client_secrets",
            ],
            ("anthropic", "api.anthropic.com"): [
                "/v1/organizations/API_Keys",
            ],
        }
    ),
)
def test_another_spelling_is_unreadable(provider, host, path) -> None:
    with pytest.raises(Unreadable):
        PROVIDERS[provider].classify_at(host, "POST", path, {})
