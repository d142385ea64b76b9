"""Azure OpenAI reads deployment names without regard to letter case, and so does Tollgate: a
deployment written in another case meets every limit, override, deployment map and policy rule
written in lower case, and the policy gets the names in lower case. The openai SDK's AzureOpenAI
client, through mitmdump, to a fake Azure resource."""

from __future__ import annotations

import pytest
from tests.support.azure import FakeAzure

ALICE = "tg-alice-azure-case-0123456789"
RESOURCE_KEY = "azure-REAL-resource-key-case-000000000001"
ENDPOINT = "https://contoso.openai.azure.com"
API_VERSION = "2024-10-21"

POLICY = """package tollgate

import rego.v1

deny contains "gpt-4o is not for alice" if input.model in {"gpt-4o"}

deny contains "the audit deployment is closed" if input.requested_model == "audit-dep"
"""

CLIENT = f"""
    from openai import AzureOpenAI
    client = AzureOpenAI(api_key="{ALICE}", azure_endpoint="{ENDPOINT}", api_version="{API_VERSION}", max_retries=0)
    def chat(model):
        try:
            r = client.chat.completions.create(model=model, max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])
            return {{"status": 200, "tokens": r.usage.total_tokens}}
        except Exception as e:
            return {{"status": e.status_code, "error": type(e).__name__}}
"""


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "azure_case.rego"
    policy.write_text(POLICY)
    gateway = start_gateway(
        lambda urls: {
            "providers": {
                "azure": {
                    "resources": {"contoso": {"keys": [RESOURCE_KEY], "upstream": urls["azure"]}},
                    "deployments": {"Mini-Dep": "gpt-4o-mini"},
                }
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "overrides": [{"match": {"provider": "azure", "model": "big-dep"}, "model": "mini-dep"}],
            "limits": [{"match": {"provider": "azure", "model": "secret-dep"}, "requests_per_day": 0}],
            "policy": {"rego": [str(policy)]},
        },
        providers=("azure",),
    )
    gateway.fakes["azure"].handler = FakeAzure(gateway.fakes["azure"].url)
    return gateway


@pytest.fixture
def g(gw):
    gw.fakes["azure"].received.clear()
    return gw


def test_a_limit_on_a_deployment_holds_in_every_letter_case(g):
    result = g.run(CLIENT + '    report(lower=chat("secret-dep"), upper=chat("SECRET-DEP"), mixed=chat("Secret-Dep"))')
    assert result == {
        "lower": {"status": 429, "error": "RateLimitError"},
        "upper": {"status": 429, "error": "RateLimitError"},
        "mixed": {"status": 429, "error": "RateLimitError"},
    }
    assert g.fakes["azure"].received == []
    records = g.new_audit(3)
    assert [r["requested_model"] for r in records] == ["secret-dep", "SECRET-DEP", "Secret-Dep"]
    assert {(r["model"], r["decision"], r["status"]) for r in records} == {("secret-dep", "deny", 429)}


def test_an_override_on_a_deployment_applies_in_every_letter_case(g):
    result = g.run(CLIENT + '    report(upper=chat("BIG-DEP"))')
    assert result == {"upper": {"status": 200, "tokens": 28}}
    (seen,) = g.fakes["azure"].received
    assert seen.path == f"/openai/deployments/mini-dep/chat/completions?api-version={API_VERSION}"
    record = g.last_audit()
    # mini-dep is Mini-Dep of `deployments`, whose model prices and the policy go by.
    assert (record["requested_model"], record["model"], record["decision"]) == ("BIG-DEP", "gpt-4o-mini", "allow")


def test_the_policy_gets_deployment_names_in_lower_case(g):
    result = g.run(CLIENT + '    report(model=chat("GPT-4o"), requested=chat("AUDIT-DEP"), mapped=chat("MINI-DEP"))')
    assert result == {
        "model": {"status": 403, "error": "PermissionDeniedError"},
        "requested": {"status": 403, "error": "PermissionDeniedError"},
        "mapped": {"status": 200, "tokens": 28},
    }
    (seen,) = g.fakes["azure"].received
    assert seen.path == f"/openai/deployments/MINI-DEP/chat/completions?api-version={API_VERSION}"
    denied, closed, mapped = g.new_audit(3)
    assert (denied["model"], denied["deny_reasons"]) == ("gpt-4o", ["gpt-4o is not for alice"])
    assert (closed["model"], closed["deny_reasons"]) == ("audit-dep", ["the audit deployment is closed"])
    assert (mapped["requested_model"], mapped["model"], mapped["decision"]) == ("MINI-DEP", "gpt-4o-mini", "allow")
