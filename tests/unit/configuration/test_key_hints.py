"""A configuration error says what a misspelt key likely meant, from the keys taken where it was
written, and speaks of lists and mappings, as the file does, never of tuples or model classes."""

from __future__ import annotations

import pytest

from tollgate.configuration.config import Config, ConfigError, parse_config
from tollgate.configuration.key_hints import likely_key


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, {})
    return str(e.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"provider": {}}, "provider: unknown key (did you mean providers?)"),
        ({"providers": {"openai": {"key": ["x"]}}}, "providers.openai.key: unknown key (did you mean keys?)"),
        (
            {"limits": [{"name": "a", "token_per_day": 1}]},
            "limits.0.token_per_day: unknown key (did you mean tokens_per_day?)",
        ),
        (
            {"overrides": [{"match": {"modle": "a"}, "model": "b"}]},
            "overrides.0.match.modle: unknown key (did you mean model?)",
        ),
        (
            {"providers": {"azure": {"resources": {"r": {"upstrem": "https://x"}}}}},
            "providers.azure.resources.r.upstrem: unknown key (did you mean upstream?)",
        ),
        ({"zzz": 1}, "zzz: unknown key"),  # near no key: no guess
    ],
)
def test_an_unknown_key_says_the_key_it_likely_meant(data: object, message: str) -> None:
    assert error_of(data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"providers": {"openai": {"keys": "sk-x"}}},
            "providers.openai.keys: expected a list ([a, b], or a '- ' line each)",
        ),
        ({"clients": {"alice": {}}}, "clients: expected a list ([a, b], or a '- ' line each)"),
        ({"clients": ["alice"]}, "clients.0: expected a mapping (key: value)"),
        ({"providers": {"openai": ["x"]}}, "providers.openai: expected a mapping (key: value)"),
        ({"clients": [{"keys": ["tg-a-0123456789"]}]}, "clients.0.name: missing (it is required)"),
    ],
)
def test_a_wrong_shape_is_said_in_yaml_terms(data: object, message: str) -> None:
    assert error_of(data) == message


def test_the_message_never_holds_the_value_written() -> None:
    assert "sk-secret" not in error_of({"providers": {"openai": {"keys": "sk-secret-0123456789"}}})


def test_a_place_the_models_do_not_know_guesses_nothing() -> None:
    assert likely_key(Config, ["providers", "no_such_provider", "kyes"]) is None
    assert likely_key(Config, ["clients", "0", "nmae"]) is None  # an index is a number, never a key
    assert likely_key(Config, ["clients", 0, 3]) is None


def test_a_misspelt_provider_is_told_the_built_in_one_it_likely_meant() -> None:
    assert error_of({"providers": {"opneai": {"keys": ["k"]}}}).startswith(
        "providers.opneai: not a provider Tollgate knows (did you mean openai?); add an OpenAI-compatible one"
    )
    assert error_of({"providers": {"acme": {"keys": ["k"]}}}).startswith(
        "providers.acme: not a provider Tollgate knows; add"  # a vendor of the user's own: no guess
    )
