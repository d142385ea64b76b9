"""The models part alone (`providers/models.py`): how a provider's calls name their model, without
a provider around it."""

import re

from tollgate.formats.request_facts import Classification
from tollgate.providers import PROVIDERS
from tollgate.providers.azure import AzureConfig, AzureModels
from tollgate.providers.bedrock import BedrockModels
from tollgate.providers.gemini import GeminiModels
from tollgate.providers.models import Models
from tollgate.providers.vertex import VertexModels

IN_PATH = re.compile(r"^/models/(?P<model>[^/:]+):call$")


def test_a_plain_part_names_the_model_in_its_body() -> None:
    models = Models()
    assert models.path_with_model("/models/a:call", "b") is None
    assert models.field(Classification("chat")) == "model"
    assert models.in_body("a", "b") == "b"
    assert models.names(AzureConfig()) is None
    assert not models.ignore_case


def test_a_model_in_the_path_is_rewritten_there_as_one_segment() -> None:
    models = Models(IN_PATH)
    assert models.path_with_model("/models/a:call?alt=sse", "b/c:d") == "/models/b%2Fc%3Ad:call?alt=sse"
    assert models.path_with_model("/other", "b") is None


def test_the_kinds_name_the_model_their_way() -> None:
    assert GeminiModels().in_body("models/a", "b") == "models/b"
    assert VertexModels().in_body("anthropic/claude-a", "claude-b") == "anthropic/claude-b"
    assert BedrockModels().field(Classification("async-invoke")) == "modelId"
    names = AzureModels(ignore_case=True).names(AzureConfig(deployments={"Prod": "gpt-4o"}))
    assert names is not None and (names("PROD"), names("Other")) == ("gpt-4o", "other")


def test_only_azure_ignores_case() -> None:
    assert {name for name, p in PROVIDERS.items() if p.models.ignore_case} == {"azure"}
