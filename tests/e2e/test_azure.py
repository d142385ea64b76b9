"""Azure OpenAI end to end: the openai SDK's AzureOpenAI client (chat, stream, responses) through
mitmdump to a fake Azure resource, with a virtual key and Tollgate's resource key, or with an Entra
ID token Tollgate obtains from a fake token endpoint (azure-identity's client-secret credential,
AZURE_AUTHORITY_HOST pointing at it); routes from OpenAI to Azure and from Azure to Anthropic; and
the other products an Azure AI services host serves, passed with the caller's own key."""

from __future__ import annotations

import re

import pytest
from tests.support import streams
from tests.support.azure import CLIENT_SECRET, ENTRA_TOKEN, GOV_SCOPE, GOV_TOKEN, FakeAzure, entra_env

ALICE = "tg-alice-azure-0123456789"
RESOURCE_KEY = "azure-REAL-resource-key-000000000001"
PROVIDER_KEY = "azure-REAL-provider-key-000000000002"
OWN_KEY = "azure-CALLERS-own-key-000000000003"
ENDPOINT = "https://contoso.openai.azure.com"
API_VERSION = "2024-10-21"

CLIENT = f"""
    from openai import AzureOpenAI
    client = AzureOpenAI(api_key="{ALICE}", azure_endpoint="{ENDPOINT}", api_version="{API_VERSION}", max_retries=0)
"""


def start(start_gateway, settings: dict, *, more: dict | None = None, env: dict | None = None):
    """A gateway whose Azure resource `contoso` goes to the fake; `settings` are providers.azure's."""

    def config(urls: dict[str, str]) -> dict:
        azure = {key: value(urls) if callable(value) else value for key, value in settings.items()}
        return {
            "providers": {
                "azure": azure,
                "openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-000000000001"]},
                "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-000000000001"]},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
            **(more or {}),
        }

    gw = start_gateway(config, env=env, providers=("azure", "openai", "anthropic"))
    gw.azure = FakeAzure(gw.fakes["azure"].url)
    gw.fakes["azure"].handler = gw.azure
    return gw


def contoso(key: str = RESOURCE_KEY):
    return lambda urls: {"contoso": {"keys": [key], "upstream": urls["azure"]}}


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start(
        start_gateway,
        {"keys": [PROVIDER_KEY], "resources": contoso(), "deployments": {"prod-4o": "gpt-4o"}},
    )


@pytest.fixture
def g(gw):
    gw.fakes["azure"].received.clear()
    return gw


def test_azure_openai_chat_with_a_virtual_key_goes_with_the_resources_key(g):
    result = g.run(
        CLIENT
        + """
    r = client.chat.completions.create(model="prod-4o", max_tokens=50,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
"""
    )
    assert result == {"text": "Hi there.", "tokens": 28}
    (seen,) = g.fakes["azure"].received
    assert seen.path == f"/openai/deployments/prod-4o/chat/completions?api-version={API_VERSION}"
    assert seen.headers["api-key"] == RESOURCE_KEY
    assert "authorization" not in seen.headers
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["host"]) == (
        "alice", "azure", "chat.completions", "contoso.openai.azure.com",
    )  # fmt: skip
    # The model is the deployment, named gpt-4o for prices and the policy.
    assert (record["requested_model"], record["model"]) == ("prod-4o", "gpt-4o")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (21, 7, 28)
    # gpt-4o ($ per Mtok, OpenAI's through Azure's table): 16 x 2.50 + 5 cache reads x 1.25 + 7 x 10
    assert record["cost_usd"] == pytest.approx((16 * 2.5 + 5 * 1.25 + 7 * 10) / 1e6)


def test_a_stream_asks_for_its_usage_and_streams_back(g):
    result = g.run(
        CLIENT
        + """
    stream = client.chat.completions.create(model="prod-4o", stream=True,
        messages=[{"role": "user", "content": "hi"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    report(text=text)
"""
    )
    assert result["text"]
    (seen,) = g.fakes["azure"].received
    assert seen.json()["stream_options"] == {"include_usage": True}
    record = g.last_audit()
    assert record["stream"] is True
    expected = streams.OPENAI_STREAM_USAGE
    assert (record["input_tokens"], record["output_tokens"]) == (
        expected["prompt_tokens"], expected["completion_tokens"],
    )  # fmt: skip


def test_the_responses_api_names_the_deployment_in_the_body(g):
    result = g.run(
        CLIENT
        + """
    r = client.responses.create(model="prod-4o", input="hi")
    report(tokens=r.usage.total_tokens)
"""
    )
    (seen,) = g.fakes["azure"].received
    assert seen.path == f"/openai/responses?api-version={API_VERSION}"
    assert seen.headers["api-key"] == RESOURCE_KEY
    record = g.last_audit()
    assert (record["endpoint"], record["requested_model"], record["model"]) == ("responses", "prod-4o", "gpt-4o")
    assert record["total_tokens"] == result["tokens"]


def test_another_resource_goes_with_the_providers_key_and_an_unknown_key_is_refused(g):
    result = g.run(f"""
    import openai
    from openai import AzureOpenAI
    client = AzureOpenAI(api_key="tg-unknown", azure_endpoint="{ENDPOINT}", api_version="{API_VERSION}",
        max_retries=0)
    try:
        client.chat.completions.create(model="prod-4o", messages=[{{"role": "user", "content": "hi"}}])
        report(ok=False)
    except openai.AuthenticationError as e:
        report(status=e.status_code, code=e.code)
""")
    assert result == {"status": 401, "code": "invalid_api_key"}
    assert g.fakes["azure"].received == []


def test_listing_models_is_read_audited_and_goes_with_the_resources_key(g):
    result = g.run(
        CLIENT
        + f"""
    from openai import OpenAI
    listed = client.models.list()
    v1 = OpenAI(api_key="{ALICE}", base_url="{ENDPOINT}/openai/v1/", max_retries=0).models.list()
    report(n=len(listed.data), v1=len(v1.data))
"""
    )
    assert result == {"n": 0, "v1": 0}
    first, second = g.fakes["azure"].received
    assert (first.method, first.path) == ("GET", f"/openai/models?api-version={API_VERSION}")
    assert (second.method, second.path) == ("GET", "/openai/v1/models")
    for seen in (first, second):
        assert seen.headers["api-key"] == RESOURCE_KEY
        assert "authorization" not in seen.headers
    for record in g.new_audit(2):
        assert (record["client"], record["endpoint"], record["model"], record["status"], record["decision"]) == (
            "alice", "models", None, 200, "allow",
        )  # fmt: skip
        assert record["total_tokens"] in (0, None)


INFERENCE = f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", base_url="https://contoso.services.ai.azure.com/models",
        default_query={{"api-version": "2024-05-01-preview"}}, max_retries=0)
"""


def test_the_model_inference_api_is_read_as_openais_chat(g):
    result = g.run(
        INFERENCE
        + """
    import openai
    r = client.chat.completions.create(model="prod-4o", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    s = client.chat.completions.create(model="prod-4o", stream=True, messages=[{"role": "user", "content": "hi"}])
    text = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    try:
        client.chat.completions.create(model="prod-4o", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"extra-parameters": "pass-through"}, extra_body={"safe_mode": True})
        refused = None
    except openai.BadRequestError as e:
        refused = (e.status_code, e.code)
    report(tokens=r.usage.total_tokens, text=text, refused=refused)
"""
    )
    assert result == {"tokens": 28, "text": "Hello", "refused": [400, "bad_request"]}
    plain, streamed = g.fakes["azure"].received
    assert plain.path == streamed.path == "/models/chat/completions?api-version=2024-05-01-preview"
    assert plain.headers["api-key"] == streamed.headers["api-key"] == RESOURCE_KEY
    assert "authorization" not in plain.headers
    # It refuses a field it does not define: its stream is not asked for usage, and reports it unasked.
    assert "stream_options" not in streamed.json()
    first, second, third = g.new_audit(3)
    assert (first["endpoint"], first["requested_model"], first["model"], first["total_tokens"]) == (
        "chat.completions", "prod-4o", "gpt-4o", 28,
    )  # fmt: skip
    assert (second["stream"], second["input_tokens"], second["output_tokens"]) == (
        True, streams.OPENAI_STREAM_USAGE["prompt_tokens"], streams.OPENAI_STREAM_USAGE["completion_tokens"],
    )  # fmt: skip
    assert (third["status"], third["decision"]) == (400, "deny")
    assert "extra-parameters" in third["error"]


def test_an_unknown_path_is_refused_in_azures_shape(g):
    result = g.run(
        CLIENT
        + """
    import openai
    try:
        client.post("/deployments/prod-4o/extensions/chat/completions", body={"messages": []}, cast_to=object)
        report(ok=False)
    except openai.BadRequestError as e:
        report(status=e.status_code, code=e.code)
"""
    )
    assert result == {"status": 400, "code": "bad_request"}
    assert g.fakes["azure"].received == []
    assert g.last_audit()["decision"] == "deny"


def test_other_products_pass_with_the_callers_own_key_and_a_virtual_one_is_refused(g):
    code = f"""
    import urllib.request, urllib.error
    def call(key):
        req = urllib.request.Request("https://contoso.cognitiveservices.azure.com/language/:analyze-text"
            "?api-version=2023-04-01", data=b"{{}}", headers={{"content-type": "application/json", "api-key": key}})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
    report(own=call("{OWN_KEY}"), virtual=call("{ALICE}"))
"""
    result = g.run(code)
    assert result == {"own": 404, "virtual": 401}  # the fake has no language API: its 404 came through
    (seen,) = g.fakes["azure"].received
    assert seen.path == "/language/:analyze-text?api-version=2023-04-01"
    assert seen.headers["api-key"] == OWN_KEY
    own, virtual = g.new_audit(2)
    assert (own["endpoint"], own["status"], own["decision"]) == (None, 404, "allow")
    assert (virtual["endpoint"], virtual["status"], virtual["decision"]) == (None, 401, "deny")


# --- Entra ID: Tollgate's own token ------------------------------------------------------------------


def start_entra(start_gateway, upstream_ca_pem, secret: str = CLIENT_SECRET):
    env: dict[str, str] = {}

    def upstream(urls: dict[str, str]) -> str:
        # mitmdump starts after the configuration is written: the token endpoint is the fake's.
        env.update(entra_env(upstream_ca_pem), AZURE_AUTHORITY_HOST=urls["azure"], AZURE_CLIENT_SECRET=secret)
        return urls["azure"]

    return start(start_gateway, {"credentials": "default", "upstream": upstream}, env=env)


def test_tollgates_entra_id_token_goes_upstream(start_gateway, upstream_ca_pem):
    gw = start_entra(start_gateway, upstream_ca_pem)
    code = (
        CLIENT
        + """
    r = client.chat.completions.create(model="prod-4o", messages=[{"role": "user", "content": "hi"}])
    s = client.chat.completions.create(model="prod-4o", stream=True, messages=[{"role": "user", "content": "hi"}])
    report(tokens=r.usage.total_tokens, streamed=sum(1 for _ in s) > 0)
"""
    )
    assert gw.run(code) == {"tokens": 28, "streamed": True}
    calls = [r for r in gw.fakes["azure"].received if r.path.startswith("/openai/")]
    assert len(calls) == 2
    for seen in calls:
        assert seen.headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
        assert "api-key" not in seen.headers
    assert gw.azure.tokens_given == 1  # one token, asked for ahead and reused
    first, second = gw.new_audit(2)
    assert first["upstream_key"] == second["upstream_key"] is not None


def test_azure_governments_hosts_are_governed_and_take_a_token_for_their_cloud(start_gateway, upstream_ca_pem):
    gw = start_entra(start_gateway, upstream_ca_pem)
    result = gw.run(f"""
    from openai import AzureOpenAI
    client = AzureOpenAI(api_key="{ALICE}", azure_endpoint="https://contoso.openai.azure.us",
        api_version="{API_VERSION}", max_retries=0)
    r = client.chat.completions.create(model="prod-4o", messages=[{{"role": "user", "content": "hi"}}])
    report(tokens=r.usage.total_tokens)
""")
    assert result == {"tokens": 28}
    (seen,) = [r for r in gw.fakes["azure"].received if r.path.startswith("/openai/")]
    assert seen.path == f"/openai/deployments/prod-4o/chat/completions?api-version={API_VERSION}"
    # Azure Government takes tokens for its own scope, never the public cloud's.
    assert seen.headers["authorization"] == f"Bearer {GOV_TOKEN}"
    assert "api-key" not in seen.headers
    assert GOV_SCOPE in gw.azure.scopes[-1].split()
    record = gw.last_audit()
    assert (record["client"], record["provider"], record["host"], record["total_tokens"]) == (
        "alice", "azure", "contoso.openai.azure.us", 28,
    )  # fmt: skip


def test_a_token_endpoint_that_refuses_fails_the_call_closed(start_gateway, upstream_ca_pem):
    gw = start_entra(start_gateway, upstream_ca_pem, secret="entra-WRONG-secret")
    result = gw.run(
        CLIENT
        + """
    import openai
    try:
        client.chat.completions.create(model="prod-4o", messages=[{"role": "user", "content": "hi"}])
        report(ok=False)
    except openai.InternalServerError as e:
        report(status=e.status_code, message=e.message)
"""
    )
    assert result["status"] == 500
    assert "Tollgate could not obtain a Microsoft Entra ID token" in result["message"]
    assert "AADSTS7000215" in result["message"]
    assert not [r for r in gw.fakes["azure"].received if r.path.startswith("/openai/")]
    assert gw.azure.tokens_given == 0


# --- routes -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routed(start_gateway):
    rules = [
        {"match": {"provider": "openai", "model": "gpt-4o"}, "provider": "azure", "model": "prod-4o"},
        {"match": {"provider": "azure", "model": "claude-dep"}, "provider": "anthropic", "model": "claude-sonnet-4-5"},
    ]
    return start(
        start_gateway,
        {"upstream": lambda urls: urls["azure"], "keys": [PROVIDER_KEY], "deployments": {"prod-4o": "gpt-4o"}},
        more={"overrides": rules},
    )


def test_a_route_takes_openai_sdk_calls_to_azure(routed):
    routed.fakes["azure"].received.clear()
    result = routed.run(f"""
    from openai import OpenAI
    r = OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(model="gpt-4o",
        messages=[{{"role": "user", "content": "hi"}}])
    report(text=r.choices[0].message.content)
""")
    assert result == {"text": "Hi there."}
    (seen,) = routed.fakes["azure"].received
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.json()["model"] == "prod-4o"
    assert seen.headers["api-key"] == PROVIDER_KEY
    assert "authorization" not in seen.headers
    record = routed.last_audit()
    assert (record["requested_provider"], record["provider"], record["model"]) == ("openai", "azure", "gpt-4o")


def test_a_route_takes_azure_calls_to_anthropic_translated(routed):
    routed.fakes["anthropic"].received.clear()
    result = routed.run(
        CLIENT
        + """
    r = client.chat.completions.create(model="claude-dep", max_tokens=20,
        messages=[{"role": "user", "content": "hi"}])
    report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
"""
    )
    (seen,) = routed.fakes["anthropic"].received
    assert seen.path == "/v1/messages"
    assert seen.json()["model"] == "claude-sonnet-4-5"
    assert seen.headers["x-api-key"] == "sk-ant-real-000000000001"
    assert "api-key" not in seen.headers
    assert result["text"]
    record = routed.last_audit()
    assert (record["requested_provider"], record["provider"], record["requested_model"], record["model"]) == (
        "azure", "anthropic", "claude-dep", "claude-sonnet-4-5",
    )  # fmt: skip
    assert record["total_tokens"] == result["tokens"]


def test_a_legacy_completion_on_a_deployment_reserves_every_answers_bound(start_gateway):
    limit = {"name": "daily", "match": {"client": "alice"}, "tokens_per_day": 20_000}
    gw = start(start_gateway, {"keys": [PROVIDER_KEY], "resources": contoso()}, more={"limits": [limit]})
    result = gw.run(
        CLIENT
        + """
    outcomes = []
    for best_of, max_tokens in ((10, 4000), (2, 100)):
        try:
            r = client.completions.create(model="instruct", prompt="hi", best_of=best_of, max_tokens=max_tokens)
            outcomes.append(r.usage.total_tokens)
        except Exception as e:
            outcomes.append([e.status_code, e.response.headers.get("x-tollgate-error"), e.message])
    report(outcomes=outcomes)
"""
    )
    refused, answered = result["outcomes"]
    assert refused[:2] == [429, "budget_exceeded"]
    needed = re.search(r"tokens_per_day is 20000 for alice; 0 used, this call needs up to (\d+)\.", refused[2])
    assert needed is not None and 40_000 < int(needed[1]) < 40_000 + 40, refused[2]  # 10 x 4000, and the prompt
    assert answered == 154
    (seen,) = gw.fakes["azure"].received
    assert seen.path == f"/openai/deployments/instruct/completions?api-version={API_VERSION}"
    denied, called = gw.new_audit(2)
    assert (denied["endpoint"], denied["status"], denied["decision"]) == ("completions", 429, "deny")
    assert (called["endpoint"], called["status"], called["total_tokens"]) == ("completions", 200, 154)
