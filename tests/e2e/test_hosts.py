"""Every host of every provider governed: the regional, mTLS and private forms a caller may pick,
and the hosts a configuration adds (`providers.<name>.hosts`), each decrypted, read as its
provider's, decided and audited, and sent to the host it asked for (an mTLS host to its twin).

Where a call goes is seen by name: `support/resolve.py` sends the hosts named here to one fake
upstream whose certificate covers them, so the fake sees the SNI and Host a provider would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream

RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
REAL_OPENAI = "sk-real-openai-hosts-000000000001"
REAL_GEMINI = "AIza-real-gemini-hosts-000000000001"
REAL_VERTEX = "AQ.real-vertex-express-hosts-000000000001"
ALICE = "tg-alice-hosts-0123456789"
DEDICATED = "1234567890.us-central1-987654321.prediction.vertexai.goog"
# The hosts a call may go to here, by name, all to one fake.
NAMED = (
    "eu.api.openai.com",
    "us.api.openai.com",
    "gpt.llm.corp.example",
    "generativelanguage.googleapis.com",
    "generativelanguage.mtls.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "us-central1-aiplatform.mtls.googleapis.com",
    "us-central1-aiplatform-corp1.p.googleapis.com",
    DEDICATED,
)


@pytest.fixture(scope="module")
def named(upstream_ca) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(upstream_ca, provider_answers, names=NAMED)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gw(start_gateway, named):
    config = {
        "providers": {
            "openai": {"keys": [REAL_OPENAI], "hosts": ["*.llm.corp.example"]},
            "gemini": {"keys": [REAL_GEMINI]},
            "vertex": {"keys": [REAL_VERTEX]},
        },
        "clients": [{"name": "alice", "keys": [ALICE]}],
    }
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps(dict.fromkeys(NAMED, named.port))}
    return start_gateway(config, "-s", str(RESOLVE), env=env)


@pytest.fixture
def g(gw, named):
    gw.reset()
    named.received.clear()
    return gw


def openai_chat(base_url: str, key: str = ALICE) -> str:
    return f"""
        import openai
        client = openai.OpenAI(api_key="{key}", base_url="{base_url}", max_retries=0)
        try:
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
            report(tokens=r.usage.total_tokens)
        except openai.APIStatusError as e:
            report(status=e.status_code, error=e.response.headers.get("x-tollgate-error"))
    """


@pytest.mark.parametrize("host", ["eu.api.openai.com", "us.api.openai.com"])
def test_openais_data_residency_hosts_are_governed_and_the_call_stays_there(g, named, host):
    assert g.run(openai_chat(f"https://{host}/v1")) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"], seen.path) == (host, host, "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {REAL_OPENAI}"
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["host"], record["upstream"]) == (
        "alice",
        "openai",
        "chat.completions",
        host,
        f"https://{host}",
    )
    assert (record["model"], record["input_tokens"], record["output_tokens"], record["decision"]) == (
        "gpt-4o-mini",
        21,
        7,
        "allow",
    )


def test_a_data_residency_host_refuses_an_unknown_key_as_openai_does(g, named):
    assert g.run(openai_chat("https://eu.api.openai.com/v1", key="sk-own-key")) == {
        "status": 401,
        "error": "unauthenticated",
    }
    assert named.received == []
    assert (g.last_audit()["host"], g.last_audit()["decision"]) == ("eu.api.openai.com", "deny")


def test_a_host_the_configuration_adds_is_its_providers(g, named):
    assert g.run(openai_chat("https://gpt.llm.corp.example/v1")) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"], seen.headers["authorization"]) == (
        "gpt.llm.corp.example",
        "gpt.llm.corp.example",
        f"Bearer {REAL_OPENAI}",
    )
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["host"], record["total_tokens"]) == (
        "alice",
        "openai",
        "chat.completions",
        "gpt.llm.corp.example",
        28,
    )


def genai_call(base_url: str, vertexai: bool) -> str:
    return f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{ALICE}", vertexai={vertexai},
            http_options=types.HttpOptions(base_url="{base_url}"))
        r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        report(tokens=r.usage_metadata.total_token_count)
    """


@pytest.mark.parametrize(
    ("provider", "host", "goes_to", "vertexai"),
    [
        # An mTLS host takes only a client certificate's calls: its twin serves the same API.
        ("gemini", "generativelanguage.mtls.googleapis.com", "generativelanguage.googleapis.com", False),
        ("vertex", "us-central1-aiplatform.mtls.googleapis.com", "us-central1-aiplatform.googleapis.com", True),
        # A Private Service Connect name stays private: the call goes to it.
        ("vertex", "us-central1-aiplatform-corp1.p.googleapis.com", "us-central1-aiplatform-corp1.p.googleapis.com", True),
    ],
)  # fmt: skip
def test_google_genai_at_an_mtls_or_private_host_is_governed(g, named, provider, host, goes_to, vertexai):
    assert g.run(genai_call(f"https://{host}", vertexai)) == {"tokens": 15}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"]) == (goes_to, goes_to)
    assert seen.headers["x-goog-api-key"] == (REAL_VERTEX if vertexai else REAL_GEMINI)
    assert ALICE not in str(seen.headers)
    assert seen.path.endswith("/models/gemini-2.5-flash:generateContent")
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["model"]) == (
        "alice",
        provider,
        "generateContent",
        "gemini-2.5-flash",
    )
    assert (record["host"], record["upstream"], record["total_tokens"]) == (host, f"https://{goes_to}", 15)


def test_the_openai_sdk_at_a_vertex_ai_dedicated_endpoint_is_governed(g, named):
    base = f"https://{DEDICATED}/v1beta1/projects/p/locations/us-central1/endpoints/1234567890"
    assert g.run(openai_chat(base)) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.path) == (
        DEDICATED,
        "/v1beta1/projects/p/locations/us-central1/endpoints/1234567890/chat/completions",
    )
    assert seen.headers["x-goog-api-key"] == REAL_VERTEX and "authorization" not in seen.headers
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["host"]) == (
        "vertex",
        "chat.completions",
        "endpoints/1234567890",
        DEDICATED,
    )
    assert (record["input_tokens"], record["output_tokens"]) == (21, 7)
