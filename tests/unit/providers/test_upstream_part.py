"""The upstream part alone (`providers/upstream.py`): where a provider's calls go when no rule
routes them, without a provider around it."""

import pytest

from tollgate.common.config_base import ProviderConfig
from tollgate.formats.request_facts import Classification
from tollgate.providers import PROVIDERS
from tollgate.providers.azure import AzureConfig, AzureUpstream
from tollgate.providers.gemini import GeminiConfig, GoogleUpstream
from tollgate.providers.upstream import Upstream


def test_a_plain_upstream_goes_where_the_settings_say() -> None:
    upstream = Upstream("api.example.com")
    assert (upstream.default_host, upstream.hint) == ("api.example.com", "")
    assert upstream.configured(ProviderConfig(upstream="https://gw.example.com"), None) == "https://gw.example.com"
    assert upstream.configured(ProviderConfig(), None) is None
    assert upstream.host("api.example.com", ProviderConfig()) is None
    assert not upstream.is_mtls_host("api.example.com")


def test_googles_mtls_hosts_go_to_their_twins_without_a_client_cert() -> None:
    upstream = GoogleUpstream("generativelanguage.googleapis.com")
    mtls = "generativelanguage.mtls.googleapis.com"
    assert upstream.is_mtls_host(mtls) and not upstream.is_mtls_host("generativelanguage.googleapis.com")
    assert upstream.host(mtls, GeminiConfig()) == "generativelanguage.googleapis.com"
    assert upstream.host(mtls, GeminiConfig(client_cert="/etc/tollgate/client.pem")) is None


def test_an_azure_resource_may_have_its_own_upstream() -> None:
    settings = AzureConfig(upstream="https://all.example", resources={"res": {"upstream": "https://res.example"}})
    upstream = AzureUpstream(hint="h")
    assert upstream.configured(settings, Classification("chat.completions", resource="res")) == "https://res.example"
    assert upstream.configured(settings, Classification("chat.completions", resource="other")) == "https://all.example"
    assert upstream.configured(settings, None) == "https://all.example"


@pytest.mark.parametrize(
    ("name", "default_host"),
    [
        ("openai", "api.openai.com"),
        ("anthropic", "api.anthropic.com"),
        ("gemini", "generativelanguage.googleapis.com"),
        ("vertex", "aiplatform.googleapis.com"),
        ("code_assist", "cloudcode-pa.googleapis.com"),
        ("azure", None),
        ("bedrock", None),
    ],
)
def test_each_provider_declares_where_its_calls_go(name: str, default_host: str | None) -> None:
    upstream = PROVIDERS[name].upstream
    assert upstream.default_host == default_host
    assert bool(upstream.hint) is (default_host is None)  # one that has no host says where to point
