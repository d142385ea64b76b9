"""Google's enterprise backends end to end: google-genai (vertexai=True), AnthropicVertex and the
OpenAI SDK through mitmdump to a fake Vertex AI, and google-genai to a fake Gemini API, Tollgate
calling them with OAuth tokens it obtains for a service account from a fake Google token
endpoint (or Vertex AI with an express-mode API key)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.support import streams
from tests.support.canned import ANTHROPIC_MESSAGE, GEMINI_GENERATE, OPENAI_CHAT
from tests.support.fake_upstream import Received, Reply

ALICE = "tg-alice-vertex-0123456789"
ACCESS_TOKEN = "ya29.tollgate-test-access-token-000000000001"
EXPRESS_KEY = "AQ.real-vertex-express-key-000000000001"
PROJECT = "tollgate-proj"
ACCOUNT = f"gateway@{PROJECT}.iam.gserviceaccount.com"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def service_account(directory: Path, token_uri: str) -> Path:
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "key-1",
                "private_key": PRIVATE_PEM,
                "client_email": ACCOUNT,
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path


class FakeVertex:
    """Answers like Vertex AI, and like Google's token endpoint at /token (counting the tokens it gave)."""

    def __init__(self, token_status: int = 200) -> None:
        self.token_status = token_status
        self.tokens_given = 0
        self.lock = threading.Lock()

    def __call__(self, r: Received) -> Reply:
        path = r.path.split("?", 1)[0]
        if path == "/token":
            if self.token_status != 200:
                return Reply(
                    self.token_status, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                )
            with self.lock:
                self.tokens_given += 1
            return Reply(200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
        if path.endswith(":generateContent"):
            return Reply(200, GEMINI_GENERATE)
        if path.endswith(":streamGenerateContent"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.gemini_sse())
        if "/models/claude-quota" in path:  # Vertex AI's own error, in Google's shape
            quota = {
                "code": 429,
                "message": "Quota exceeded for aiplatform.googleapis.com",
                "status": "RESOURCE_EXHAUSTED",
            }
            return Reply(429, {"error": quota})
        if "/models/claude-bad" in path:  # Claude's, in Anthropic's
            return Reply(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}
            )
        if path.endswith(":rawPredict"):
            return Reply(200, ANTHROPIC_MESSAGE)
        if path.endswith(":streamRawPredict"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.anthropic())
        if path.endswith("/chat/completions"):
            if r.json().get("stream"):
                return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat())
            return Reply(200, OPENAI_CHAT)
        return Reply(404, {"error": {"code": 404, "message": f"no fake for {path}", "status": "NOT_FOUND"}})


def start(
    start_gateway,
    tmp_path_factory,
    upstream_ca_pem: Path,
    settings: dict,
    *extra: str,
    token_status: int = 200,
    provider: str = "vertex",
    more: dict | None = None,
):
    """A gateway whose `provider` has these settings, and "service-account" as its credentials
    means a service account's key file whose token endpoint is the fake's ("adc": that file as
    Application Default Credentials, `default`); `more` is the rest of the configuration."""
    directory = tmp_path_factory.mktemp("google")
    fake = FakeVertex(token_status)
    # google-auth asks the token endpoint through requests, which trusts the fake's CA so.
    env = {"REQUESTS_CA_BUNDLE": str(upstream_ca_pem)}

    def config(urls: dict[str, str]) -> dict:
        provider_settings = {"upstream": urls[provider], **settings}
        if provider_settings.get("credentials") in ("service-account", "adc"):
            key_file = str(service_account(directory, f"{urls[provider]}/token"))
            if provider_settings["credentials"] == "adc":  # mitmdump starts after the configuration is written
                env["GOOGLE_APPLICATION_CREDENTIALS"] = key_file
            provider_settings["credentials"] = "default" if "GOOGLE_APPLICATION_CREDENTIALS" in env else key_file
        return {
            "providers": {provider: provider_settings},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            **(more or {}),
        }

    gw = start_gateway(config, *extra, env=env, providers=(provider,))
    gw.fakes[provider].handler = fake
    gw.vertex = fake
    return gw


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory, upstream_ca_pem):
    return start(
        start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": "service-account", "location": "us-central1"}
    )


@pytest.fixture
def g(gw):
    gw.fakes["vertex"].received.clear()
    return gw


def model_calls(g) -> list[Received]:
    return [r for r in g.fakes["vertex"].received if r.path != "/token"]


GENAI_PROJECT = f"""
    import google.oauth2.credentials
    from google import genai
    client = genai.Client(vertexai=True, project="caller-proj", location="europe-west4",
        credentials=google.oauth2.credentials.Credentials(token="{ALICE}"))
"""
# The call most tests make: what the caller gets is the total its answer reports.
GENAI_CALL = (
    GENAI_PROJECT
    + """
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    report(total=r.usage_metadata.total_token_count)
"""
)


def test_google_genai_on_a_project_goes_to_tollgates_project_with_its_token(g):
    result = g.run(
        GENAI_PROJECT
        + """
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi",
        config={"system_instruction": "be brief", "max_output_tokens": 64})
    report(text=r.text, total=r.usage_metadata.total_token_count)
    """
    )
    assert result == {"text": "Hello!", "total": 15}
    (seen,) = model_calls(g)
    # Tollgate's project and location, whatever the caller named.
    assert (
        seen.path
        == f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert seen.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert ALICE not in json.dumps(seen.headers)
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["client"]) == (
        "vertex", "generateContent", "gemini-2.5-flash", "alice",
    )  # fmt: skip
    assert record["publisher"] == "google"  # publishers/google/models/…
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (12, 3, 15)
    assert (record["has_system"], record["max_tokens"], record["status"]) == (True, 64, 200)
    assert record["upstream_key"].startswith("sha256:")
    assert record["cost_usd"] == 0.0000111  # Google's list price: 12 x $0.30 + 3 x $2.50 per Mtok


def test_the_token_is_reused_while_fresh(g):
    assert g.run(GENAI_CALL) == {"total": 15}
    given = g.vertex.tokens_given
    for _ in range(2):
        assert g.run(GENAI_CALL) == {"total": 15}
    assert given >= 1 and g.vertex.tokens_given == given


@pytest.mark.parametrize("credentials", ["service-account", "adc"])
def test_the_token_grant_holds_the_service_accounts_signature(
    start_gateway, tmp_path_factory, upstream_ca_pem, credentials
):
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": credentials})
    result = gw.run(GENAI_CALL)
    assert result == {"total": 15}
    grant = next(r for r in gw.fakes["vertex"].received if r.path == "/token")
    form = parse_qs(grant.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    # Signed by the service account's key, for Google's token endpoint (google-auth's audience
    # whatever the file's token_uri).
    claims = jwt.decode(
        form["assertion"][0], _KEY.public_key(), algorithms=["RS256"], audience="https://oauth2.googleapis.com/token"
    )
    assert claims["iss"] == ACCOUNT
    assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
    # No location set: the caller's.
    (seen,) = model_calls(gw)
    assert seen.path.startswith(f"/v1beta1/projects/{PROJECT}/locations/europe-west4/publishers/google/")


def test_google_genai_streams_and_its_usage_is_read(g):
    result = g.run(
        GENAI_PROJECT
        + """
    text, total = "", None
    for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
        text += chunk.text or ""
        total = chunk.usage_metadata.total_token_count
    report(text=text, total=total)
    """
    )
    assert result["total"] == 14
    (seen,) = model_calls(g)
    assert seen.path.endswith("/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    record = g.last_audit()
    assert (record["stream"], record["input_tokens"], record["output_tokens"], record["finish_reason"]) == (
        True, 8, 6, "STOP",
    )  # fmt: skip


def test_express_mode_moves_into_tollgates_project(g):
    result = g.run(f"""
    from google import genai
    client = genai.Client(vertexai=True, api_key="{ALICE}")
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    report(total=r.usage_metadata.total_token_count)
    """)
    assert result == {"total": 15}
    (seen,) = model_calls(g)
    assert (
        seen.path
        == f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert seen.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-goog-api-key" not in seen.headers


def test_claude_on_vertex_whole_and_streamed(g):
    result = g.run(f"""
    from anthropic import AnthropicVertex
    client = AnthropicVertex(region="us-east5", project_id="caller-proj", access_token="{ALICE}", max_retries=0)
    r = client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=100,
        messages=[{{"role": "user", "content": "hi"}}])
    with client.messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=100,
            messages=[{{"role": "user", "content": "hi"}}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    report(whole=r.usage.output_tokens, text=text, streamed=final.usage.output_tokens)
    """)
    assert result == {"whole": 11, "text": "Hello", "streamed": 9}
    whole, streamed = model_calls(g)
    base = f"/v1/projects/{PROJECT}/locations/us-central1/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    assert (whole.path, streamed.path) == (f"{base}:rawPredict", f"{base}:streamRawPredict")
    assert "anthropic_version" in whole.json() and "model" not in whole.json()  # the path names it
    first, second = g.new_audit(2)
    assert (first["endpoint"], first["model"], first["input_tokens"], first["output_tokens"]) == (
        "rawPredict", "claude-sonnet-4-5@20250929", 125, 11,
    )  # fmt: skip
    assert (first["cached_tokens"], first["finish_reason"], first["max_tokens"]) == (100, "end_turn", 100)
    assert first["cost_usd"] == 0.00027  # 25 x $3 + 100 cache reads x $0.30 + 11 x $15 per Mtok
    assert (second["endpoint"], second["stream"], second["input_tokens"], second["output_tokens"]) == (
        "streamRawPredict", True, 80, 9,
    )  # fmt: skip
    assert second["finish_reason"] == "end_turn"
    assert (first["publisher"], second["publisher"]) == ("anthropic", "anthropic")


def test_openai_sdk_on_vertex_openai_compatible_endpoint(g):
    result = g.run(f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0,
        base_url="https://us-central1-aiplatform.googleapis.com/v1/projects/caller-proj/locations/us-central1/endpoints/openapi")
    r = client.chat.completions.create(model="google/gemini-2.5-flash", messages=[{{"role": "user", "content": "hi"}}])
    chunks = list(client.chat.completions.create(model="google/gemini-2.5-flash", stream=True,
        messages=[{{"role": "user", "content": "hi"}}]))
    report(total=r.usage.total_tokens, text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
           usage_chunks=sum(1 for c in chunks if c.usage))
    """)
    # The stream's usage, asked for by Tollgate, is read and kept from the client that did not ask.
    assert result == {"total": 28, "text": "Hello", "usage_chunks": 0}
    whole, streamed = model_calls(g)
    assert whole.path == f"/v1/projects/{PROJECT}/locations/us-central1/endpoints/openapi/chat/completions"
    assert whole.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert streamed.json()["stream_options"] == {"include_usage": True}
    first, second = g.new_audit(2)
    # The model as Vertex AI's own paths name it, its publisher apart.
    assert (first["endpoint"], first["requested_model"], first["model"], first["publisher"]) == (
        "chat.completions", "gemini-2.5-flash", "gemini-2.5-flash", "google",
    )  # fmt: skip
    assert first["total_tokens"] == 28
    assert (second["stream"], second["input_tokens"], second["output_tokens"]) == (True, 19, 5)


OPUS_DENIED = """package tollgate
import rego.v1
deny contains sprintf("%s's %s is not allowed", [input.publisher, input.model]) if startswith(input.model, "claude-opus")
"""


@pytest.fixture(scope="module")
def by_publisher(start_gateway, tmp_path_factory, upstream_ca_pem):
    """Vertex AI's OpenAI-compatible endpoint under a policy, an override and limits on model ids."""
    policy = tmp_path_factory.mktemp("policy") / "opus.rego"
    policy.write_text(OPUS_DENIED)
    more = {
        "policy": {"rego": [str(policy)]},
        "overrides": [{"match": {"provider": "vertex", "model": "claude-haiku-*"}, "model": "claude-sonnet-4-5"}],
        "limits": [{"match": {"provider": "vertex", "model": "claude-sonnet-4-5"}, "requests_per_day": 1,
                    "usd_per_day": 1}],
    }  # fmt: skip
    settings = {"credentials": "service-account", "location": "us-central1"}
    return start(start_gateway, tmp_path_factory, upstream_ca_pem, settings, more=more)


OPENAPI_CLIENT = f"""
    import openai
    client = openai.OpenAI(api_key="{ALICE}", max_retries=0,
        base_url="https://us-central1-aiplatform.googleapis.com/v1/projects/caller-proj/locations/us-central1/endpoints/openapi")
"""


def test_a_rule_on_the_model_id_holds_on_the_openai_compatible_endpoint(by_publisher):
    result = by_publisher.run(
        OPENAPI_CLIENT
        + """
    client.chat.completions.create(model="anthropic/claude-opus-4", messages=[{"role": "user", "content": "hi"}])
    """
    )
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403), result
    assert "anthropic's claude-opus-4 is not allowed" in result["message"]
    assert not model_calls(by_publisher)
    record = by_publisher.last_audit()
    assert (record["requested_model"], record["model"], record["publisher"], record["decision"]) == (
        "claude-opus-4", "claude-opus-4", "anthropic", "deny",
    )  # fmt: skip


def test_an_override_limits_and_prices_match_the_model_id_and_it_goes_back_with_its_publisher(by_publisher):
    result = by_publisher.run(
        OPENAPI_CLIENT
        + """
    ask = dict(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    r = client.chat.completions.create(**ask)
    try:
        client.chat.completions.create(**ask)
    except openai.RateLimitError as e:
        report(total=r.usage.total_tokens, second=[e.status_code, e.response.headers["x-tollgate-error"]])
    """
    )
    assert result == {"total": 28, "second": [429, "budget_exceeded"]}
    (sent,) = model_calls(by_publisher)
    assert sent.json()["model"] == "anthropic/claude-sonnet-4-5"
    first, second = by_publisher.new_audit(2)
    assert (first["requested_model"], first["model"], first["publisher"], first["status"]) == (
        "claude-haiku-4-5", "claude-sonnet-4-5", "anthropic", 200,
    )  # fmt: skip
    assert first["cost_usd"] == 0.0001545  # 16 x $3 + 5 cache reads x $0.30 + 7 x $15 per Mtok
    assert second["status"] == 429
    assert "vertex model=claude-sonnet-4-5 per client" in second["deny_reasons"][0], second


def failing_call(model: str, error: str) -> str:
    """Client code: a call to `model` on Vertex AI that fails with `error` (of google.genai.errors):
    its code, status and message, reported."""
    return (
        GENAI_PROJECT
        + f"""
    from google.genai import errors
    try:
        client.models.generate_content(model="{model}", contents="hi")
    except errors.{error} as e:
        report(code=e.code, status=e.status, message=e.message)
    """
    )


def test_another_publishers_model_call_is_refused(g):
    result = g.run(failing_call("publishers/meta/models/llama-4", "ClientError"))
    assert result["code"] == 400 and result["status"] == "INVALID_ARGUMENT", result
    assert "publishers google and anthropic" in result["message"]
    assert not model_calls(g)
    assert g.last_audit()["error"]


def test_a_caller_without_a_virtual_key_is_refused(g):
    result = g.run("""
    import google.oauth2.credentials
    from google import genai
    from google.genai import errors
    client = genai.Client(vertexai=True, project="caller-proj", location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token="ya29.someone-elses-token"))
    try:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    except errors.ClientError as e:
        report(code=e.code, status=e.status)
    """)
    assert result == {"code": 401, "status": "UNAUTHENTICATED"}
    assert not model_calls(g)


def test_express_mode_with_tollgates_api_key_keeps_the_path(start_gateway, tmp_path_factory, upstream_ca_pem):
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, {"keys": [EXPRESS_KEY]})
    result = gw.run(f"""
    from google import genai
    client = genai.Client(vertexai=True, api_key="{ALICE}")
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    report(total=r.usage_metadata.total_token_count)
    """)
    assert result == {"total": 15}
    (seen,) = gw.fakes["vertex"].received
    assert seen.path == "/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == EXPRESS_KEY
    assert "authorization" not in seen.headers


def test_a_token_endpoint_that_refuses_fails_the_call_closed(start_gateway, tmp_path_factory, upstream_ca_pem):
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": "service-account"}, token_status=400)
    call = failing_call("gemini-2.5-flash", "APIError")
    for _ in range(2):  # and the proxy keeps serving
        result = gw.run(call)
        assert (result["code"], result["status"]) == (500, "INTERNAL"), result
        assert result["message"] == (
            "Tollgate could not obtain a Google access token: RefreshError (invalid_grant: Invalid JWT Signature.)"
        )
        record = gw.last_audit()
        assert (record["status"], record["error"]) == (500, "no upstream credential")
    assert not model_calls(gw)
    console = gw.proxy.console()
    assert "BEGIN PRIVATE KEY" not in console and PRIVATE_PEM.splitlines()[1] not in console


def test_gemini_api_with_tollgates_google_credentials(start_gateway, tmp_path_factory, upstream_ca_pem):
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": "service-account"}, provider="gemini")
    result = gw.run(f"""
    from google import genai
    client = genai.Client(api_key="{ALICE}")
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    report(total=r.usage_metadata.total_token_count)
    """)
    assert result == {"total": 15}
    grant = next(r for r in gw.fakes["gemini"].received if r.path == "/token")
    scopes = jwt.decode(parse_qs(grant.body.decode())["assertion"][0], options={"verify_signature": False})["scope"]
    assert set(scopes.split()) == {
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/generative-language",
    }
    (seen,) = [r for r in gw.fakes["gemini"].received if r.path != "/token"]
    assert seen.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert seen.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-goog-api-key" not in seen.headers
    record = gw.last_audit()
    assert (record["provider"], record["client"], record["total_tokens"]) == ("gemini", "alice", 15)


PROMPT = "PROMPT-TEXT-that-must-not-leak-v1"
OWN_TOKEN = "ya29.CALLERS-OWN-token-5ecret-v2"


def test_nothing_secret_reaches_any_output(start_gateway, tmp_path_factory, upstream_ca_pem):
    saved = tmp_path_factory.mktemp("saved") / "flows.mitm"
    gw = start(
        start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": "service-account"},
        "--set", f"save_stream_file={saved}", "--set", "flow_detail=4",
    )  # fmt: skip
    calls = [
        GENAI_PROJECT
        + f"""
    r = client.models.generate_content(model="gemini-2.5-flash", contents="{PROMPT}")
    report(ok=r.text == "Hello!")
    """,
        f"""
    from anthropic import AnthropicVertex
    client = AnthropicVertex(region="global", project_id="caller-proj", access_token="{ALICE}", max_retries=0,
        default_headers={{"X-Vertex-Token": "{OWN_TOKEN}"}})
    r = client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=10,
        messages=[{{"role": "user", "content": "{PROMPT}"}}])
    report(ok=r.content[0].text == "Hello!")
    """,
    ]
    for code in calls:
        assert gw.run(code) == {"ok": True}
    # The caller's own token went upstream in place of Tollgate's, as the caller asked.
    assert model_calls(gw)[-1].headers["authorization"] == f"Bearer {OWN_TOKEN}"
    gw.wait_audit(len(calls))
    gw.proxy.stop()  # flushes the saved flows
    outputs = {
        "audit": gw.audit_path.read_bytes(),
        "console": gw.proxy.output.read_bytes(),
        "saved flows": saved.read_bytes(),
    }
    assert b"aiplatform.googleapis.com" in outputs["saved flows"]
    key_line = PRIVATE_PEM.splitlines()[1]
    for where, content in outputs.items():
        for secret in (ALICE, ACCESS_TOKEN, OWN_TOKEN, PROMPT, key_line):
            assert secret.encode() not in content, f"{secret} found in {where}"


def test_a_route_takes_openai_sdk_calls_to_vertex_ais_gemini(start_gateway, tmp_path_factory, upstream_ca_pem):
    route = {"overrides": [{"match": {"provider": "openai", "model": "gemini-*"}, "provider": "vertex"}]}
    settings = {"credentials": "service-account", "location": "us-central1"}
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, settings, more=route)
    result = gw.run(f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0)
    r = client.chat.completions.create(model="gemini-2.5-flash", messages=[{{"role": "user", "content": "hi"}}])
    text, usage = "", None
    for chunk in client.chat.completions.create(model="gemini-2.5-flash", stream=True,
            stream_options={{"include_usage": True}},
            messages=[{{"role": "user", "content": "hi"}}]):
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    report(text=r.choices[0].message.content, total=r.usage.total_tokens, streamed=text, streamed_total=usage.total_tokens)
    """)
    assert result == {"text": "Hello!", "total": 15, "streamed": 'He said "[{\\"l]}lo', "streamed_total": 14}
    whole, streamed = model_calls(gw)
    base = f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash"
    assert (whole.path, streamed.path) == (f"{base}:generateContent", f"{base}:streamGenerateContent?alt=sse")
    assert whole.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "contents" in whole.json()  # written in Gemini's format
    first, second = gw.new_audit(2)
    assert (first["requested_provider"], first["provider"], first["total_tokens"]) == ("openai", "vertex", 15)
    assert (second["stream"], second["input_tokens"], second["output_tokens"]) == (True, 8, 6)


CLAUDE_ROUTES = {
    "overrides": [
        {"match": {"provider": "anthropic", "model": "claude-*"}, "provider": "vertex"},
        {"match": {"provider": "openai", "model": "claude-*"}, "provider": "vertex"},
    ]
}


@pytest.fixture(scope="module")
def routed(start_gateway, tmp_path_factory, upstream_ca_pem):
    settings = {"credentials": "service-account", "location": "us-east5"}
    return start(start_gateway, tmp_path_factory, upstream_ca_pem, settings, more=CLAUDE_ROUTES)


def test_a_route_takes_anthropic_sdk_calls_to_claude_on_vertex_as_they_came(routed):
    routed.fakes["vertex"].received.clear()
    result = routed.run(f"""
    import anthropic
    client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
    ask = dict(model="claude-sonnet-4-5@20250929", max_tokens=100, messages=[{{"role": "user", "content": "hi"}}],
               extra_headers={{"anthropic-beta": "context-1m-2025-08-07"}})
    r = client.messages.create(**ask)
    with client.messages.stream(**ask) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    report(whole=[r.content[0].text, r.usage.output_tokens], streamed=[text, final.usage.output_tokens])
    """)
    assert result == {"whole": ["Hello!", 11], "streamed": ["Hello", 9]}
    whole, streamed = model_calls(routed)
    base = f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    assert (whole.path, streamed.path) == (f"{base}:rawPredict", f"{base}:streamRawPredict")
    body = whole.json()
    assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16"
    assert (body["max_tokens"], body["messages"]) == (100, [{"role": "user", "content": "hi"}])
    assert streamed.json()["stream"] is True
    assert whole.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert whole.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-api-key" not in whole.headers and "anthropic-version" not in whole.headers
    first, second = routed.new_audit(2)
    assert (first["requested_provider"], first["provider"], first["endpoint"]) == ("anthropic", "vertex", "messages")
    assert (first["input_tokens"], first["output_tokens"], first["cost_usd"]) == (125, 11, 0.00027)
    assert (second["stream"], second["input_tokens"], second["output_tokens"]) == (True, 80, 9)


def test_a_route_translates_openai_sdk_calls_for_claude_on_vertex(routed):
    routed.fakes["vertex"].received.clear()
    result = routed.run(f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0)
    r = client.chat.completions.create(model="claude-sonnet-4-5@20250929", max_tokens=100,
        messages=[{{"role": "system", "content": "be brief"}}, {{"role": "user", "content": "hi"}}])
    report(text=r.choices[0].message.content, usage=[r.usage.prompt_tokens, r.usage.completion_tokens])
    """)
    assert result == {"text": "Hello!", "usage": [125, 11]}
    (seen,) = model_calls(routed)
    assert seen.path.endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    body = seen.json()
    assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16"
    assert (body["system"], body["messages"][0]["role"]) == ("be brief", "user")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-quota", ["RateLimitError", 429, "Quota exceeded for aiplatform.googleapis.com"]),
        ("claude-bad", ["BadRequestError", 400, "max_tokens: too big"]),
    ],
)
def test_vertex_ais_errors_and_claudes_reach_the_anthropic_sdk_in_its_shape(routed, model, expected):
    result = routed.run(f"""
    import anthropic
    try:
        anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
            model="{model}", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
    except anthropic.APIStatusError as e:
        report(error=[type(e).__name__, e.status_code, e.body["error"]["message"]])
    """)
    assert result == {"error": expected}


def test_anonymous_callers_spend_tollgates_credentials_and_start_up_says_so(
    start_gateway, tmp_path_factory, upstream_ca_pem
):
    gw = start(
        start_gateway, tmp_path_factory, upstream_ca_pem, {"credentials": "service-account"}, more={"clients": []}
    )
    gw.wait_console("anonymous callers are allowed and provider keys or credentials are configured (vertex)")
    result = gw.run(GENAI_CALL)
    assert result == {"total": 15}
    assert model_calls(gw)[-1].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert gw.last_audit()["auth"] == "anonymous"


def test_claude_on_vertex_rolled_up_by_vertex_ais_gemini(start_gateway, tmp_path_factory, upstream_ca_pem):
    rollup = {
        "rollup": [
            {"above_messages": 6, "keep_last": 2, "summarizer": {"provider": "vertex", "model": "gemini-2.5-flash"}}
        ]
    }
    settings = {"credentials": "service-account", "location": "us-east5"}
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, settings, more=rollup)
    result = gw.run(f"""
    from anthropic import AnthropicVertex
    client = AnthropicVertex(region="us-east5", project_id="caller-proj", access_token="{ALICE}", max_retries=0)
    messages = [{{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {{i}}"}} for i in range(8)]
    r = client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=100, messages=messages)
    report(text=r.content[0].text)
    """)
    assert result == {"text": "Hello!"}
    summarized, sent = model_calls(gw)
    # The summarizer: Vertex AI's Gemini, with Tollgate's token, in Tollgate's project.
    assert (
        summarized.path
        == f"/v1/projects/{PROJECT}/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert summarized.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert sent.path.endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    body = sent.json()
    assert body["system"].endswith("(rolled up by the gateway):\nHello!")
    assert [m["content"] for m in body["messages"]] == ["turn 6", "turn 7"]
    assert gw.last_audit()["rolled_up_messages"] == 6
