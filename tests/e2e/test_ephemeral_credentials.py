"""Endpoints that mint a credential usable without Tollgate (OpenAI's Realtime client secrets,
sessions and calls, ChatKit's sessions, Gemini's ephemeral tokens, Azure OpenAI's Realtime sessions) are
refused, 403 `mints_credential` in the provider's shape, audited `deny`, and reach no upstream,
unless `providers.<name>.ephemeral_credentials: allow`, which no token or USD cap stands beside."""

from __future__ import annotations

import json

import pytest
from tests.support.fake_upstream import Reply
from tests.support.raw import RawResponse, send

REAL = "sk-REAL-openai-mint-000000000001"
GEMINI_REAL = "AIza-REAL-gemini-mint-000000000002"
AZURE_REAL = "azure-REAL-resource-mint-000000000003"
ANTHROPIC_REAL = "sk-ant-REAL-anthropic-mint-000000000005"
ALICE = "tg-VIRTUAL-alice-mint-000000000004"
AZURE_HOST = "contoso.openai.azure.com"


def config(allow: bool):
    def build(urls: dict[str, str]) -> dict:
        minting = {"ephemeral_credentials": "allow"} if allow else {}
        return {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [REAL], **minting},
                "gemini": {"upstream": urls["gemini"], "keys": [GEMINI_REAL]},
                "azure": {"resources": {"contoso": {"keys": [AZURE_REAL], "upstream": urls["azure"]}}},
                "anthropic": {"upstream": urls["anthropic"], "keys": [ANTHROPIC_REAL]},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "limits": [{"match": {"client": "alice"}, "requests_per_minute": 100}],
        }

    return build


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config(allow=False), providers=("openai", "gemini", "azure", "anthropic"))


def post(g, host: str, path: str, body: dict, headers: dict[str, str], method: str = "POST") -> RawResponse:
    g.run("report(ready=True)")  # the records counted from here
    headers = {"Content-Type": "application/json", **headers}
    return send(g.proxy.port, g.bundle, host, path, method=method, headers=headers, body=json.dumps(body).encode())


def received(g) -> int:
    return sum(len(fake.received) for fake in g.fakes.values())


def test_a_realtime_client_secret_is_refused_with_the_sdks_permission_error(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0)
        client.realtime.client_secrets.create(session={{"type": "realtime", "model": "gpt-realtime"}})
        report(minted=True)
    """)
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403)
    assert result["message"].startswith("Error code: 403 - Tollgate refuses realtime.client_secrets: it mints")
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["client"], record["endpoint"], record["model"], record["status"]) == (
        "alice", "realtime.client_secrets", "gpt-realtime", 403,
    )  # fmt: skip
    assert record["decision"] == "deny"
    assert record["deny_reasons"] == ["realtime.client_secrets mints a credential usable without Tollgate"]
    assert record["upstream_key"] is None


@pytest.mark.parametrize(
    ("path", "body", "endpoint"),
    [
        ("/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"}, "realtime.sessions"),
        ("/v1/realtime/transcription_sessions", {}, "realtime.transcription_sessions"),
        ("/v1/chatkit/sessions", {"user": "u", "workflow": {"id": "wf_1"}}, "chatkit.sessions"),
    ],
)
def test_every_openai_minting_endpoint_is_refused(g, path, body, endpoint):
    r = post(g, "api.openai.com", path, body, {"Authorization": f"Bearer {ALICE}"})
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert r.json()["error"]["type"] == "permission_denied"
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["decision"], record["status"]) == (endpoint, "deny", 403)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "GET"])
def test_a_realtime_client_secret_is_refused_whatever_the_method(g, method):
    session = {"session": {"type": "realtime", "model": "gpt-realtime"}} if method != "GET" else {}
    r = post(g, "api.openai.com", "/v1/realtime/client_secrets", session, {"Authorization": f"Bearer {ALICE}"}, method)
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert r.json()["error"]["type"] == "permission_denied"
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["method"], record["decision"], record["status"]) == (
        "realtime.client_secrets", method, "deny", 403,
    )  # fmt: skip
    assert record["upstream_key"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/organization/admin_api_keys"),
        ("DELETE", "/v1/organization/admin_api_keys/key_abc"),
        ("POST", "/v1/organization/projects/proj_abc/service_accounts"),
        ("GET", "/v1/organization/projects/proj_abc/api_keys"),
        ("PUT", "/v1/organization/projects/proj_abc/api_keys/key_abc"),
    ],
)
def test_openais_key_administration_is_refused(g, method, path):
    r = post(g, "api.openai.com", path, {"name": "k"}, {"Authorization": f"Bearer {ALICE}"}, method)
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert "no setting permits it" in r.json()["error"]["message"]
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["provider"], record["decision"], record["status"], record["upstream_key"]) == (
        "openai", "deny", 403, None,
    )  # fmt: skip
    assert record["deny_reasons"][0].endswith("mints a credential usable without Tollgate")


def test_anthropics_admin_api_keys_are_refused_in_its_error_shape(g):
    # An update may set an inactive key active again: refused like the making of one.
    r = post(g, "api.anthropic.com", "/v1/organizations/api_keys/apikey_01abc", {"status": "active"},
             {"x-api-key": ALICE, "anthropic-version": "2023-06-01"})  # fmt: skip
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert r.json()["error"]["type"] == "permission_error"
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["provider"], record["endpoint"], record["decision"]) == (
        "anthropic",
        "organizations.api_keys",
        "deny",
    )


SDP = b"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def test_a_realtime_webrtc_offer_is_refused(g):
    # Its session would run between the browser and OpenAI, where Tollgate sees none of it.
    g.run("report(ready=True)")
    r = send(
        g.proxy.port, g.bundle, "api.openai.com", "/v1/realtime/calls?model=gpt-realtime",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {ALICE}"}, body=SDP,
    )  # fmt: skip
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["decision"], record["status"]) == ("realtime.calls", "deny", 403)


def test_accepting_a_sip_call_is_refused(g):
    r = post(g, "api.openai.com", "/v1/realtime/calls/rtc_0123/accept", {"type": "realtime", "model": "gpt-realtime"},
             {"Authorization": f"Bearer {ALICE}"})  # fmt: skip
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["decision"]) == ("realtime.calls.accept", "deny")


@pytest.mark.parametrize(
    "path", ["/v1/Realtime/client_secrets", "/v1/realtime/client_secrets/", "/v1/realtime/Sessions"]
)
def test_another_spelling_of_a_minting_path_is_refused_as_unreadable(g, path):
    r = post(g, "api.openai.com", path, {"session": {"type": "realtime"}}, {"Authorization": f"Bearer {ALICE}"})
    assert (r.status, r.headers["x-tollgate-error"]) == (400, "bad_request")
    assert received(g) == 0


def test_a_gemini_ephemeral_token_is_refused_with_the_sdks_client_error(g):
    result = g.run(f"""
        from google import genai
        client = genai.Client(api_key="{ALICE}", http_options={{"api_version": "v1alpha"}})
        client.auth_tokens.create(config={{"uses": 1}})
        report(minted=True)
    """)
    assert (result["error"], result["status"]) == ("ClientError", 403)
    assert "PERMISSION_DENIED" in result["message"]
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["provider"], record["endpoint"], record["decision"], record["status"]) == (
        "gemini", "auth_tokens", "deny", 403,
    )  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [
        "/openai/realtimeapi/sessions?api-version=2025-04-01-preview",
        "/openai/v1/realtime/client_secrets",
        "/openai/realtime/sessions?api-version=2025-04-01-preview",
    ],
)
def test_an_azure_realtime_ephemeral_key_is_refused(g, path):
    r = post(g, AZURE_HOST, path, {"model": "gpt-4o-realtime-preview"}, {"api-key": ALICE})
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert r.json()["error"]["code"] == "mints_credential"
    assert received(g) == 0
    (record,) = g.new_audit(1)
    assert (record["provider"], record["decision"]) == ("azure", "deny")


def test_allowed_a_client_secret_is_minted_with_the_real_key_and_audited(start_gateway):
    gw = start_gateway(config(allow=True), providers=("openai", "gemini", "azure", "anthropic"))
    gw.fakes["openai"].handler = lambda r: Reply(200, {"value": "ek_minted", "expires_at": 1})
    session = {"session": {"type": "realtime", "model": "gpt-realtime"}}
    r = post(gw, "api.openai.com", "/v1/realtime/client_secrets", session, {"Authorization": f"Bearer {ALICE}"})
    assert (r.status, r.headers.get("x-tollgate-error")) == (200, None)
    (seen,) = gw.fakes["openai"].received
    assert seen.path == "/v1/realtime/client_secrets"
    assert seen.headers["authorization"] == f"Bearer {REAL}"
    record = gw.last_audit()
    assert (record["endpoint"], record["decision"], record["status"]) == ("realtime.client_secrets", "allow", 200)
    # A WebRTC offer goes too, its body unread, with the real key.
    gw.fakes["openai"].handler = lambda r: Reply(201, b"v=0\r\n", {"content-type": "application/sdp"})
    r = send(
        gw.proxy.port, gw.bundle, "api.openai.com", "/v1/realtime/calls",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {ALICE}"}, body=SDP,
    )  # fmt: skip
    assert (r.status, r.headers.get("x-tollgate-error")) == (201, None)
    offer = gw.fakes["openai"].received[-1]
    assert (offer.path, offer.body, offer.headers["authorization"]) == ("/v1/realtime/calls", SDP, f"Bearer {REAL}")
    # A lasting key is never an ephemeral credential: still refused.
    r = post(
        gw, "api.openai.com", "/v1/organization/admin_api_keys", {"name": "k"}, {"Authorization": f"Bearer {ALICE}"}
    )
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert gw.fakes["openai"].received[-1].path == "/v1/realtime/calls"
    # Allowed for OpenAI only: Gemini's ephemeral tokens are still refused.
    r = post(gw, "generativelanguage.googleapis.com", "/v1alpha/auth_tokens", {"uses": 1}, {"x-goog-api-key": ALICE})
    assert (r.status, r.headers["x-tollgate-error"]) == (403, "mints_credential")
    assert gw.fakes["gemini"].received == []
