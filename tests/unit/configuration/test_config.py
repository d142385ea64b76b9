"""The configuration file: validation, `${VAR}` expansion, defaults, and errors that name the field."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.configuration.config import (
    PROVIDER_NAMES,
    Config,
    ConfigError,
    expand_env,
    load_config,
    parse_config,
)


def error_of(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {} if env is None else env)
    return str(info.value)


def file_error_of(path: Path) -> str:
    """What the `ConfigError` loading the file at `path` (with no environment) says."""
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return str(info.value)


def write(tmp_path: Path, text: str | bytes, name: str = "tollgate.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- defaults ---------------------------------------------------------------------------------


def test_no_path_means_built_in_defaults() -> None:
    for nothing in (None, ""):
        config = load_config(nothing)
        assert config == Config()


def test_defaults() -> None:
    config = Config()
    assert PROVIDER_NAMES == (
        "openai", "gemini", "anthropic", "bedrock", "vertex", "azure", "chatgpt", "code_assist", "copilot",
        "mistral", "groq", "deepseek", "xai", "openrouter", "together", "fireworks", "cerebras", "perplexity",
    )  # fmt: skip
    for name in PROVIDER_NAMES:
        p = config.providers.get(name)
        assert p.upstream is None
        assert p.keys == ()
        assert p.timeout == 120.0
    assert config.providers.bedrock.credentials is None
    assert config.providers.bedrock.bearer_token is None
    assert config.clients == ()
    assert config.allow_anonymous is None
    assert config.overrides == ()
    assert config.policy.rego == ()
    assert config.audit.path == "audit.jsonl"
    assert config.audit.stream_usage == "inject"
    assert config.drain_s == 30.0


def test_empty_file_and_empty_mapping_are_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), {}) == Config()
    assert load_config(write(tmp_path, "# only a comment\n", "c.yaml"), {}) == Config()
    assert parse_config(None, {}) == Config()
    assert parse_config({}, {}) == Config()


def test_a_full_valid_file(tmp_path: Path) -> None:
    text = """
providers:
  openai:
    upstream: https://api.openai.com/
    keys: ["${OPENAI_API_KEY}", "sk-second"]
    timeout: 30
  gemini:
    keys: ["${GEMINI_API_KEY}"]
  anthropic:
    upstream: http://127.0.0.1:8443
  bedrock:
    bearer_token: "${BEDROCK_TOKEN}"
    timeout: 2.5
clients:
  - name: alice
    keys: ["tg-alice-0123456789"]
    groups: [research]
  - name: bob
    keys: ["tg-bob-0123456789", "tg-bob-second"]
allow_anonymous: true
audit:
  path: "-"
  stream_usage: passive
"""
    env = {"OPENAI_API_KEY": "sk-first", "GEMINI_API_KEY": "AIza-g", "BEDROCK_TOKEN": "bedrock-token"}
    config = load_config(write(tmp_path, text), env)
    assert config.providers.openai.upstream == "https://api.openai.com"  # trailing slash dropped
    assert config.providers.openai.keys == ("sk-first", "sk-second")
    assert config.providers.openai.timeout == 30.0
    assert config.providers.gemini.keys == ("AIza-g",)
    assert config.providers.gemini.timeout == 120.0
    assert config.providers.anthropic.upstream == "http://127.0.0.1:8443"
    assert config.providers.bedrock.bearer_token == "bedrock-token"
    assert config.providers.bedrock.timeout == 2.5
    assert [c.name for c in config.clients] == ["alice", "bob"]
    alice = config.clients[0]
    assert [(k.key, k.expires) for k in alice.keys] == [("tg-alice-0123456789", None)]
    assert alice.groups == ("research",)
    assert config.clients[1].groups == ()
    assert config.allow_anonymous is True
    assert config.anonymous_allowed is True
    assert config.audit.path == "-"
    assert config.audit.stream_usage == "passive"


def test_providers_get_returns_each_section() -> None:
    config = parse_config({"providers": {"gemini": {"keys": ["g"]}}}, {})
    assert config.providers.get("gemini").keys == ("g",)
    assert config.providers.get("bedrock") is config.providers.bedrock


# --- anonymous default ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, True),
        ({"clients": []}, True),
        ({"clients": [{"name": "alice", "keys": ["k"]}]}, False),
        ({"allow_anonymous": False}, False),
        ({"allow_anonymous": True, "clients": [{"name": "alice", "keys": ["k"]}]}, True),
        ({"allow_anonymous": False, "clients": [{"name": "alice", "keys": ["k"]}]}, False),
        ({"allow_anonymous": None, "clients": [{"name": "alice"}]}, False),
    ],
)
def test_anonymous_default(data: dict, expected: bool) -> None:
    assert parse_config(data, {}).anonymous_allowed is expected


# --- unknown keys at every depth --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"provider": {}}, "provider"),
        ({"providers": {"openai": {"keyz": ["x"]}}}, "providers.openai.keyz"),
        ({"providers": {"bedrock": {"regions": ["us-east-1"]}}}, "providers.bedrock.regions"),
        ({"clients": [{"nmae": "alice"}]}, "clients.0.nmae"),
        ({"clients": [{"name": "a"}, {"name": "b", "group": ["x"]}]}, "clients.1.group"),
        (
            {"clients": [{"name": "a", "aws_credentials": [{"access_key_id": "A", "secret_access_key": "s", "x": 1}]}]},
            "clients.0.aws_credentials.0.x",
        ),
        ({"audit": {"file": "x.jsonl"}}, "audit.file"),
        ({"policy": {"regos": []}}, "policy.regos"),
        (
            {"providers": {"bedrock": {"credentials": {"access_key_id": "a", "secret_access_key": "b", "foo": 1}}}},
            "providers.bedrock.credentials.foo",
        ),
    ],
)
def test_unknown_keys_are_errors_naming_the_field(data: dict, field: str) -> None:
    assert f"{field}: unknown key" in error_of(data)


# --- OpenAI-compatible vendors ----------------------------------------------------------------

ACME = {"kind": "openai_compatible", "hosts": ["api.acme.example"], "keys": ["sk-acme"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"providers": {"mistrall": {"keys": ["k"]}}},
            "providers.mistrall: not a provider Tollgate knows (did you mean mistral?); add an OpenAI-compatible"
            " one with kind: openai_compatible",
        ),
        ({"providers": {"acme": {"kind": "openai"}}}, "providers.acme.kind: Input should be 'openai_compatible'"),
        ({"providers": {"acme": {**ACME, "hosts": []}}}, "providers.acme: hosts: name the hosts of its API"),
        ({"providers": {"acme": {**ACME, "keys": [" "]}}}, "providers.acme.keys: a key is empty"),
        ({"providers": {"acme": {**ACME, "base_path": "v1"}}}, "providers.acme.base_path: 'v1' is not a base path"),
        ({"providers": {"acme": {**ACME, "base_path": "/V1"}}}, "providers.acme.base_path: '/V1' is not a base path"),
        (
            {"providers": {"acme": {**ACME, "endpoints": ["chat.completions", "images"]}}},
            "providers.acme.endpoints.1: Input should be 'chat.completions', 'embeddings', 'responses',",
        ),
        (
            {"providers": {"acme": {**ACME, "price_table": "acme"}}},
            "providers.acme.price_table: 'acme' is not a provider of genai-prices' table",
        ),
        ({"providers": {"acme": {**ACME, "upstream": "https://x/v1"}}}, "providers.acme.upstream: must be scheme"),
        ({"providers": {"Acme": ACME}}, "providers: 'Acme': a provider's name is lower-case letters"),
        ({"providers": {"acme": {**ACME, "keyz": []}}}, "providers.acme.keyz: unknown key"),
        (
            {"providers": {"acme": ACME, "other": {**ACME, "hosts": ["*.acme.example"]}}},
            "providers.other.hosts.0: '*.acme.example' and providers.acme.hosts.0 ('api.acme.example') match the"
            " same hosts",
        ),
        ({"overrides": [{"match": {"provider": "acme"}, "model": "m"}]}, "overrides.0: unknown provider 'acme'"),
        ({"limits": [{"match": {"provider": "acme"}, "requests_per_day": 1}]}, "limits.0: unknown provider 'acme'"),
        (
            {
                "providers": {"acme": {**ACME, "hosts": ["*.acme.example"]}},
                "overrides": [{"match": {"provider": "openai"}, "provider": "acme"}],
            },
            "overrides.0: a route to acme needs upstream: here or under providers.acme",
        ),
    ],
)
def test_a_vendor_misconfigured_is_an_error_naming_the_field(data: dict, message: str) -> None:
    assert message in error_of(data)


def test_a_configured_vendor_is_a_provider_its_rules_may_name() -> None:
    config = parse_config(
        {
            "providers": {"acme": ACME, "groq": {"kind": "openai_compatible", "keys": ["gsk"]}},
            "overrides": [
                {"match": {"provider": "openai", "model": "gpt-*"}, "provider": "acme", "api": "openai_compatible"}
            ],
            "limits": [{"match": {"provider": "acme"}, "requests_per_day": 5}],
            "prices": [{"match": {"provider": "acme"}, "input_per_mtok": 1, "output_per_mtok": 2}],
            "rollup": [{"above_messages": 9, "summarizer": {"provider": "acme", "model": "small"}}],
        },
        {},
    )
    assert config.providers.names()[-1] == "acme"
    assert config.providers.configured()["acme"].keys == ("sk-acme",)
    assert config.providers.configured()["acme"].base_paths == ("/v1",)
    assert config.providers.get("groq").keys == ("gsk",)  # a preset: configured or not, built in
    assert "groq" not in config.providers.configured()


def test_misspelt_client_name_also_reports_the_missing_name() -> None:
    message = error_of({"clients": [{"nmae": "alice"}]})
    assert "clients.0.nmae: unknown key (did you mean name?)" in message
    assert "clients.0.name: missing (it is required)" in message


# --- ${VAR} expansion -------------------------------------------------------------------------


def test_env_expansion_in_every_string() -> None:
    env = {"OPENAI_API_KEY": "sk-real", "HOST": "proxy.internal", "PORT": "8443", "TG_ALICE": "tg-alice"}
    config = parse_config(
        {
            "providers": {"openai": {"keys": ["${OPENAI_API_KEY}"], "upstream": "https://${HOST}:${PORT}"}},
            "clients": [{"name": "alice", "keys": ["${TG_ALICE}"]}],
        },
        env,
    )
    assert config.providers.openai.keys == ("sk-real",)
    assert config.providers.openai.upstream == "https://proxy.internal:8443"
    assert [k.key for k in config.clients[0].keys] == ["tg-alice"]


def test_env_expansion_of_a_number_field() -> None:
    config = parse_config({"providers": {"gemini": {"timeout": "${T}"}}}, {"T": "7.5"})
    assert config.providers.gemini.timeout == 7.5


def test_env_expansion_is_single_pass() -> None:
    # A value containing ${…} is not expanded again.
    config = parse_config({"providers": {"openai": {"keys": ["${A}"]}}}, {"A": "${B}", "B": "no"})
    assert config.providers.openai.keys == ("${B}",)


def test_text_that_is_not_a_variable_stays() -> None:
    config = parse_config({"providers": {"openai": {"keys": ["$HOME-${}-$x"]}}}, {})
    assert config.providers.openai.keys == ("$HOME-${}-$x",)


@pytest.mark.parametrize(
    ("data", "field", "var"),
    [
        ({"providers": {"openai": {"keys": ["${OPENAI_API_KEY}"]}}}, "providers.openai.keys.0", "OPENAI_API_KEY"),
        ({"providers": {"gemini": {"keys": ["ok", "${GEMINI_KEY_2}"]}}}, "providers.gemini.keys.1", "GEMINI_KEY_2"),
        ({"clients": [{"name": "alice", "keys": ["${TG_ALICE}"]}]}, "clients.0.keys.0", "TG_ALICE"),
        ({"providers": {"bedrock": {"bearer_token": "x${TOKEN}y"}}}, "providers.bedrock.bearer_token", "TOKEN"),
        ({"audit": {"path": "${AUDIT_DIR}/audit.jsonl"}}, "audit.path", "AUDIT_DIR"),
    ],
)
def test_unset_variable_is_an_error_naming_field_and_variable(data: dict, field: str, var: str) -> None:
    message = error_of(data, {"SOMETHING_ELSE": "x"})
    assert message == f"{field}: environment variable {var} is not set"


def test_unset_variable_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'clients:\n  - name: alice\n    keys: ["${TG_ALICE}"]\n')
    assert file_error_of(path) == f"{path}: clients.0.keys.0: environment variable TG_ALICE is not set"


def test_empty_variable_counts_as_set_but_an_empty_key_is_refused() -> None:
    message = error_of({"providers": {"openai": {"keys": ["${EMPTY}"]}}}, {"EMPTY": ""})
    assert message == "providers.openai.keys: a key is empty"


def test_expand_env_leaves_non_strings() -> None:
    tree = {"a": [1, 2.5, True, None, {"b": "${X}"}]}
    assert expand_env(tree, {"X": "y"}) == {"a": [1, 2.5, True, None, {"b": "y"}]}


def test_load_config_reads_the_process_environment_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_UNIT_TEST_KEY", "sk-from-env")
    config = load_config(write(tmp_path, 'providers: {openai: {keys: ["${TOLLGATE_UNIT_TEST_KEY}"]}}\n'))
    assert config.providers.openai.keys == ("sk-from-env",)


@settings(max_examples=examples(100), deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=10), max_size=5))
def test_expansion_replaces_every_variable(env: dict[str, str]) -> None:
    for name, value in env.items():
        assert expand_env(f"<${{{name}}}>", env) == f"<{value}>"


# --- duplicates -------------------------------------------------------------------------------


def test_duplicate_client_names() -> None:
    message = error_of({"clients": [{"name": "alice"}, {"name": "bob"}, {"name": "alice"}]})
    assert message == "clients.2.name: 'alice' is used by another client"


def test_duplicate_virtual_keys_across_clients() -> None:
    message = error_of({"clients": [{"name": "alice", "keys": ["k1"]}, {"name": "bob", "keys": ["k2", "k1"]}]})
    assert message == "clients.1.keys.1: this virtual key is used twice"


def test_duplicate_virtual_key_within_one_client() -> None:
    message = error_of({"clients": [{"name": "alice", "keys": ["k1", "k1"]}]})
    assert message == "clients.0.keys.1: this virtual key is used twice"


def test_duplicate_virtual_key_does_not_leak_the_key() -> None:
    message = error_of(
        {"clients": [{"name": "a", "keys": ["tg-secret-123"]}, {"name": "b", "keys": ["tg-secret-123"]}]}
    )
    assert "tg-secret-123" not in message


def test_a_key_and_its_sha256_form_are_one_key_used_twice() -> None:
    hashed = "sha256:" + hashlib.sha256(b"tg-alice-1").hexdigest()
    message = error_of({"clients": [{"name": "a", "keys": ["tg-alice-1"]}, {"name": "b", "keys": [{"key": hashed}]}]})
    assert message == "clients.1.keys.0: this virtual key is used twice"
    message = error_of({"clients": [{"name": "a", "keys": [hashed, {"key": hashed, "expires": "2030-01-01"}]}]})
    assert message == "clients.0.keys.1: this virtual key is used twice"


def test_a_virtual_key_that_is_a_providers_real_key_is_refused_without_printing_it() -> None:
    real = "sk-REAL-openai-0123456789"
    message = error_of(
        {
            "providers": {"openai": {"keys": ["sk-other-real-1", real]}},
            "clients": [{"name": "alice", "keys": ["tg-alice-1"]}, {"name": "bob", "keys": ["tg-bob-1", real]}],
        }
    )
    assert message == (
        "clients.1.keys.1: client 'bob' is given providers.openai.keys.1, a real key of the provider;"
        " give the client a virtual key of its own (tollgate key new --client bob)"
    )
    assert real not in message
    hashed = "sha256:" + hashlib.sha256(real.encode()).hexdigest()  # its sha256: form is the same key
    message = error_of(
        {"providers": {"anthropic": {"keys": [real]}}, "clients": [{"name": "carol", "keys": [{"key": hashed}]}]}
    )
    assert message.startswith("clients.0.keys.0: client 'carol' is given providers.anthropic.keys.0, a real key")


# --- virtual keys: sha256: forms and expiries ---------------------------------------------------


def test_a_key_may_be_written_as_its_sha256_with_or_without_an_expiry() -> None:
    digest = hashlib.sha256("tg-bob-ключ".encode()).hexdigest()
    config = parse_config(
        {
            "clients": [
                {
                    "name": "bob",
                    "keys": [
                        f"sha256:{digest}",
                        {"key": "tg-bob-plain", "expires": "2027-03-01"},
                        {"key": f"sha256:{'0' * 64}", "expires": "2027-03-01T10:30:00+02:00"},
                        {"key": "tg-bob-z", "expires": "2027-03-01T00:00:00Z"},
                    ],
                }
            ]
        },
        {},
    )
    keys = config.clients[0].keys
    assert [(k.key, k.hashed, k.sha256) for k in keys[:2]] == [
        (f"sha256:{digest}", True, digest),
        ("tg-bob-plain", False, hashlib.sha256(b"tg-bob-plain").hexdigest()),
    ]
    assert [k.expires for k in keys] == [
        None,
        datetime(2027, 3, 1, tzinfo=UTC),  # a date alone: its start, UTC
        datetime(2027, 3, 1, 8, 30, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
    ]


def test_yaml_dates_and_datetimes_are_expiries_as_their_strings_are(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clients:\n  - name: a\n    keys:\n"
        "      - {key: tg-a-1, expires: 2027-03-01}\n"
        "      - {key: tg-a-2, expires: 2027-03-01T06:00:00-03:00}\n"
        "      - {key: tg-a-3, expires: '${WHEN}'}\n",
    )
    config = load_config(path, {"WHEN": "2027-03-02"})
    assert [k.expires for k in config.clients[0].keys] == [
        datetime(2027, 3, 1, tzinfo=UTC),
        datetime(2027, 3, 1, 9, tzinfo=UTC),
        datetime(2027, 3, 2, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("sha256:abc", "clients.0.keys.0: a sha256: key is sha256: and 64 lower-case hex digits"),
        ("sha256:" + "A" * 64, "clients.0.keys.0: a sha256: key is sha256: and 64 lower-case hex digits"),
        ({"key": "sha256:" + "0" * 63}, "clients.0.keys.0.key: a sha256: key is sha256: and 64 lower-case"),
        ("tg a", "clients.0.keys.0: a virtual key must be non-empty and hold no spaces"),
        ("", "clients.0.keys.0: a virtual key must be non-empty and hold no spaces"),
        ({"key": "tg-a\t1"}, "clients.0.keys.0.key: a virtual key must be non-empty and hold no spaces"),
        ({"key": "tg-a", "expires": "2027-03-01T10:00:00"}, "clients.0.keys.0.expires: a date and time needs its zone"),
        ({"key": "tg-a", "expires": "next tuesday"}, "clients.0.keys.0.expires: 'next tuesday' is no date"),
        ({"key": "tg-a", "expires": 20270301}, "clients.0.keys.0.expires: expected a date (2027-03-01)"),
        ({"key": "tg-a", "expiry": "2027-03-01"}, "clients.0.keys.0.expiry: unknown key"),
        ({"expires": "2027-03-01"}, "clients.0.keys.0.key: missing (it is required)"),
    ],
)
def test_a_bad_virtual_key_entry_is_named(entry: Any, expected: str) -> None:
    message = error_of({"clients": [{"name": "a", "keys": [entry]}]})
    assert message.startswith(expected), message


def test_a_naive_yaml_datetime_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "clients:\n  - name: a\n    keys: [{key: tg-a-1, expires: 2027-03-01T10:00:00}]\n")
    assert "clients.0.keys.0.expires: a date and time needs its zone" in file_error_of(path)


def test_duplicate_virtual_aws_access_key_ids() -> None:
    cred = {"access_key_id": "TGAK0000000000000000", "secret_access_key": "s"}
    message = error_of(
        {"clients": [{"name": "a", "aws_credentials": [cred]}, {"name": "b", "aws_credentials": [cred]}]}
    )
    assert message == "clients.1.aws_credentials.0.access_key_id: used by another client"


# --- field values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("api.openai.com", "must look like scheme://host[:port], e.g. https://api.openai.com"),
        ("//api.openai.com", "must look like scheme://host[:port], e.g. https://api.openai.com"),
        ("ftp://api.openai.com", "must look like scheme://host[:port], e.g. https://api.openai.com"),
        ("https://", "must look like scheme://host[:port], e.g. https://api.openai.com"),
        ("https://api.openai.com/v1", "must be scheme://host[:port] without a path or query"),
        ("https://api.openai.com?x=1", "must be scheme://host[:port] without a path or query"),
        ("https://api.openai.com#frag", "must be scheme://host[:port] without a path or query"),
        ("https://api.openai.com:99999", "bad port: Port out of range 0-65535"),
    ],
)
def test_bad_upstream_urls(upstream: str, expected: str) -> None:
    assert error_of({"providers": {"openai": {"upstream": upstream}}}) == f"providers.openai.upstream: {expected}"


@pytest.mark.parametrize(
    ("upstream", "stored"),
    [
        ("https://api.openai.com", "https://api.openai.com"),
        ("https://api.openai.com/", "https://api.openai.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_good_upstream_urls(upstream: str, stored: str) -> None:
    assert parse_config({"providers": {"anthropic": {"upstream": upstream}}}, {}).providers.anthropic.upstream == stored


def test_drain_s_is_a_top_level_number_of_seconds(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "drain_s: 5\n"), {}).drain_s == 5.0
    assert load_config(write(tmp_path, "drain_s: 0.5\n", "b.yaml"), {}).drain_s == 0.5
    assert load_config(write(tmp_path, "drain_s: 0\n", "c.yaml"), {}).drain_s == 0.0  # exit at once


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "drain_s: Input should be greater than or equal to 0"),
        (".inf", "drain_s: Input should be a finite number"),
        ("soon", "drain_s: Input should be a valid number, unable to parse string as a number"),
        ("[30]", "drain_s: Input should be a valid number"),
    ],
)
def test_drain_s_must_be_a_finite_number_of_seconds(tmp_path: Path, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"drain_s: {value}\n"), {})
    assert str(e.value) == f"{tmp_path / 'tollgate.yaml'}: {expected}"


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
@pytest.mark.parametrize("timeout", [0, -1, -0.5])
def test_timeout_must_be_positive(provider: str, timeout: float) -> None:
    assert error_of({"providers": {provider: {"timeout": timeout}}}) == (
        f"providers.{provider}.timeout: Input should be greater than 0"
    )


# --- providers.<name>.hosts --------------------------------------------------------------------


def test_hosts_are_kept_as_hosts_are_matched() -> None:
    config = parse_config(
        {"providers": {"vertex": {"hosts": ["AIPlatform-Corp.p.GoogleAPIs.com.", "*.llm.corp.example"]}}}, {}
    )
    assert config.providers.vertex.hosts == ("aiplatform-corp.p.googleapis.com", "*.llm.corp.example")
    assert config.providers.openai.hosts == ()


@pytest.mark.parametrize(
    ("glob", "why"),
    [
        ("localhost", "is not a host name glob"),
        ("llm..corp.example", "is not a host name glob"),
        ("llm corp.example", "is not a host name glob"),
        ("llm.corp.example:443", "is not a host name glob"),
        ("https://llm.corp.example", "is not a host name glob"),
        ("*.com", "write out its last two labels"),
        ("llm.*.example", "write out its last two labels"),
        ("llm.corp.*", "write out its last two labels"),
        ("llm.corp*.example", "write out its last two labels"),
    ],
)
def test_a_host_glob_that_names_no_domain_is_refused(glob: str, why: str) -> None:
    message = error_of({"providers": {"openai": {"hosts": ["ok.corp.example", glob]}}})
    assert message.startswith("providers.openai.hosts: ") and why in message, message


@pytest.mark.parametrize(
    ("name", "glob", "owner", "own"),
    [
        ("acme", "api.groq.com", "groq", "api.groq.com"),
        ("acme", "*.groq.com", "groq", "api.groq.com"),
        ("acme", "*.openai.azure.com", "azure", "*.openai.azure.com"),
        ("openai", "contoso.openai.azure.us", "azure", "*.openai.azure.us"),
        ("azure", "eu.api.openai.com", "openai", "*.api.openai.com"),
        ("acme", "bedrock-runtime.*.amazonaws.com", "bedrock", "bedrock-runtime.*.amazonaws.com"),
        ("openai", "ep.europe-west4-1.prediction.vertexai.goog", "vertex", "**.prediction.vertexai.goog"),
        ("acme", "generativelanguage-*.p.googleapis.com", "gemini", "generativelanguage-*.p.googleapis.com"),
    ],
)
def test_hosts_a_built_in_provider_owns_are_an_error_naming_the_field(
    name: str, glob: str, owner: str, own: str
) -> None:
    settings = {**ACME, "hosts": ["ok.acme.example", glob]} if name == "acme" else {"hosts": ["ok.acme.example", glob]}
    assert error_of({"providers": {name: settings}}) == (
        f"providers.{name}.hosts.1: {glob!r} matches hosts of {owner} ({own!r}), which are its own; a host belongs to"
        " one provider"
    )


@pytest.mark.parametrize(
    ("name", "glob"),
    [
        ("vertex", "aiplatform-corp.p.googleapis.com"),  # its own host, added again
        ("acme", "*.acme-groq.com"),
        ("acme", "groq.com"),
        ("acme", "a.b.api.openai.com.corp.example"),
        ("openai", "x.y.vertexai.goog"),  # not under prediction.vertexai.goog
    ],
)
def test_hosts_no_other_provider_owns_are_accepted(name: str, glob: str) -> None:
    settings = {**ACME, "hosts": [glob]} if name == "acme" else {"hosts": [glob]}
    assert parse_config({"providers": {name: settings}}, {}).providers.get(name).hosts


def test_two_stars_in_a_row_are_refused() -> None:
    assert "write no two in a row" in error_of({"providers": {"openai": {"hosts": ["**.corp.example"]}}})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("llm.corp.example", "LLM.corp.example."),
        ("*.corp.example", "llm.corp.example"),
        ("llm-*.corp.example", "*-eu.corp.example"),
        ("a*b.corp.example", "*b.corp.example"),
        ("*.*.corp.example", "x.y.corp.example"),
    ],
)
def test_hosts_two_providers_share_are_an_error_naming_both(first: str, second: str) -> None:
    message = error_of({"providers": {"openai": {"hosts": [first]}, "vertex": {"hosts": ["other.example", second]}}})
    assert message == (
        f"providers.vertex.hosts.1: {second.lower().removesuffix('.')!r} and providers.openai.hosts.0"
        f" ({first.lower()!r}) match the same hosts; a host belongs to one provider"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("llm-*.corp.example", "*-x.corp.dev"),
        ("llm-*.corp.example", "gpt-*.corp.example"),
        ("*.corp.example", "a.b.corp.example"),  # a '*' is one label
        ("a*b.corp.example", "*c.corp.example"),
    ],
)
def test_hosts_of_two_providers_that_cannot_meet_are_accepted(first: str, second: str) -> None:
    config = parse_config({"providers": {"openai": {"hosts": [first]}, "anthropic": {"hosts": [second]}}}, {})
    assert (config.providers.openai.hosts, config.providers.anthropic.hosts) == ((first,), (second,))


def test_bedrock_hosts_need_the_region_their_names_do_not_say() -> None:
    assert error_of({"providers": {"bedrock": {"hosts": ["bedrock.corp.example"]}}}) == (
        "providers.bedrock: hosts: set region too, the AWS region of these hosts (their names do not say it; Tollgate"
        " signs for it)"
    )
    config = parse_config({"providers": {"bedrock": {"hosts": ["bedrock.corp.example"], "region": "eu-west-1"}}}, {})
    assert (config.providers.bedrock.hosts, config.providers.bedrock.region) == (("bedrock.corp.example",), "eu-west-1")
    assert parse_config({"providers": {"bedrock": {"region": "eusc-de-east-1"}}}, {}).providers.bedrock.region
    assert error_of({"providers": {"bedrock": {"region": "Europe"}}}).startswith("providers.bedrock.region: ")


def test_timeout_of_wrong_type_names_the_field() -> None:
    assert error_of({"providers": {"openai": {"timeout": "soon"}}}).startswith("providers.openai.timeout: ")


def test_policy_timeout_defaults_to_a_second_and_survives_the_paths_being_resolved(tmp_path: Path) -> None:
    assert Config().policy.timeout == 1.0
    config = load_config(write(tmp_path, "policy:\n  rego: [p.rego]\n  timeout: 0.25\n"), env={})
    assert (config.policy.rego, config.policy.timeout) == ((str(tmp_path / "p.rego"),), 0.25)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [(0, "greater than 0"), (-1, "greater than 0"), ("soon", "a valid number")],
)
def test_policy_timeout_must_be_a_positive_number(timeout: Any, message: str) -> None:
    assert error_of({"policy": {"timeout": timeout}}).startswith(f"policy.timeout: Input should be {message}")


def test_blank_real_key_is_refused() -> None:
    assert error_of({"providers": {"gemini": {"keys": ["ok", "  "]}}}) == "providers.gemini.keys: a key is empty"


def test_wrong_types_name_the_field() -> None:
    assert error_of({"providers": {"openai": {"keys": [1234]}}}).startswith("providers.openai.keys.0: ")
    assert error_of({"clients": [{"name": "a", "groups": "research"}]}).startswith("clients.0.groups: ")
    assert error_of({"clients": [{"name": ""}]}).startswith("clients.0.name: ")
    assert error_of({"allow_anonymous": "perhaps"}).startswith("allow_anonymous: ")
    assert error_of({"audit": {"stream_usage": "loud"}}).startswith("audit.stream_usage: ")


def test_several_errors_are_all_reported() -> None:
    message = error_of({"providers": {"openai": {"timeout": 0, "keyz": 1}}, "bogus": 2})
    assert "providers.openai.timeout: Input should be greater than 0" in message
    assert "providers.openai.keyz: unknown key" in message
    assert "bogus: unknown key" in message


def test_empty_overrides_and_rego_are_accepted() -> None:
    config = parse_config({"overrides": [], "policy": {"rego": []}, "audit": {"stream_usage": "passive"}}, {})
    assert config.overrides == ()
    assert config.policy.rego == ()


def test_bearer_token_is_accepted_for_bedrock() -> None:
    assert parse_config({"providers": {"bedrock": {"bearer_token": "t"}}}, {}).providers.bedrock.bearer_token == "t"


# --- the file itself ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert file_error_of(path) == f"{path}: cannot read: No such file or directory"


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, {})
    assert str(info.value).startswith(f"{tmp_path}: cannot read: ")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  openai:\n\tkeys: []\n")
    assert (
        file_error_of(path)
        == f"{path}: not valid YAML at line 3, column 1: found character '\\t' that cannot start any token"
    )


def test_bad_yaml_unclosed_flow_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "audit:\n  path: a.jsonl\nproviders: {openai: {upstream: https://x}\nclients: []\n")
    assert file_error_of(path).startswith(f"{path}: not valid YAML at line 4, column ")


@pytest.mark.parametrize("text", ["- providers\n- clients\n", "just a string\n", "42\n"])
def test_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert file_error_of(path) == f"{path}: the file must hold a mapping (providers:, clients:, …)"


def test_validation_errors_from_a_file_name_the_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  openai:\n    keyz: [x]\n")
    assert file_error_of(path) == f"{path}: providers.openai.keyz: unknown key (did you mean keys?)"


def test_parse_config_refuses_non_mapping() -> None:
    assert error_of(["a"]) == "the file must hold a mapping (providers:, clients:, …)"


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"audit:\n  path: caf\xe9.jsonl\n")
    assert file_error_of(path).startswith(f"{path}: ")


def test_empty_clients_key_means_no_clients(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "clients:\n"), {})
    assert config.clients == ()
    assert config.anonymous_allowed is True


def test_the_documented_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "docs" / "examples" / "tollgate.yaml"
    env = {"OPENAI_API_KEY": "sk-o", "GEMINI_API_KEY": "g", "ANTHROPIC_API_KEY": "a", "AWS_BEARER_TOKEN_BEDROCK": "b"}
    config = load_config(example, env)
    assert config.clients and config.overrides


ROLLUP = {"above_messages": 20, "summarizer": {"provider": "openai", "model": "gpt-4o-mini"}}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({**ROLLUP, "above_tokens": 5000}, "rollup.0: set one of above_messages and above_tokens"),
        ({"summarizer": ROLLUP["summarizer"]}, "rollup.0: set one of above_messages and above_tokens"),
        ({**ROLLUP, "keep_last": 20}, "rollup.0: keep_last must be below above_messages"),
        ({**ROLLUP, "keep_last": 0}, "rollup.0.keep_last: Input should be greater than or equal to 1"),
        ({"above_messages": 20}, "rollup.0.summarizer: missing (it is required)"),
        ({**ROLLUP, "summarizer": {"provider": "cohere", "model": "m"}}, "rollup.0: unknown provider 'cohere'"),
        (
            {**ROLLUP, "summarizer": {"provider": "bedrock", "model": "m"}},
            "rollup.0.summarizer: bedrock needs providers.bedrock.upstream",
        ),
        ({**ROLLUP, "within": 3}, "rollup.0.within: unknown key"),
    ],
)
def test_a_rollup_rule_that_cannot_apply_is_refused_naming_it(rule: dict, message: str) -> None:
    assert message in error_of({"rollup": [rule]})


def test_a_rollup_rules_defaults() -> None:
    (rule,) = parse_config(
        {
            "rollup": [{"above_tokens": 90000, "summarizer": {"provider": "bedrock", "model": "m"}}],
            "providers": {"bedrock": {"upstream": "https://bedrock-runtime.us-east-1.amazonaws.com"}},
        }
    ).rollup
    assert (rule.keep_last, rule.cache_entries, rule.above_messages, rule.match.provider) == (4, 256, None, None)


def test_a_fallback_may_go_to_another_provider() -> None:
    fallbacks = [{"provider": "openai", "model": "m"}, {"provider": "anthropic", "model": "claude"}]
    config = parse_config({"overrides": [{"match": {"provider": "openai"}, "fallbacks": fallbacks}]}, {})
    assert [(f.provider, f.model) for f in config.overrides[0].fallbacks] == [("openai", "m"), ("anthropic", "claude")]


def test_an_override_rules_fallbacks_are_read_in_order() -> None:
    fallbacks = [{"provider": "openai", "model": "gpt-4o-mini"}, {"provider": "openai", "model": "o3"}]
    config = parse_config(
        {"overrides": [{"match": {"provider": "openai"}, "model": "gpt-4o", "fallbacks": fallbacks}]}, {}
    )
    assert [(f.provider, f.model) for f in config.overrides[0].fallbacks] == [
        ("openai", "gpt-4o-mini"),
        ("openai", "o3"),
    ]


@pytest.mark.parametrize(
    ("fallbacks", "match", "message"),
    [
        (
            [{"provider": "acme", "model": "m"}],
            {"provider": "openai"},
            "overrides.0: fallbacks[0].provider: unknown provider 'acme'",
        ),
        (
            [{"provider": "openai", "model": "m"}],
            {"model": "gpt-*"},
            "overrides.0: fallbacks[0].provider: a rule with fallbacks names its provider",
        ),
        (
            [{"provider": "openai", "model": ""}],
            {"provider": "openai"},
            "overrides.0.fallbacks.0.model: String should have at least 1 character",
        ),
        ([{"provider": "openai"}], {"provider": "openai"}, "overrides.0.fallbacks.0.model: missing (it is required)"),
        (
            [{"provider": "openai", "model": "m", "upstream": "x"}],
            {"provider": "openai"},
            "overrides.0.fallbacks.0.upstream",
        ),
    ],
)
def test_a_bad_fallback_is_an_error_naming_the_field(fallbacks: list, match: dict, message: str) -> None:
    assert message in error_of({"overrides": [{"match": match, "model": "gpt-4o", "fallbacks": fallbacks}]})


@pytest.mark.parametrize(
    ("limit", "refused"),
    [
        ({"tokens_per_day": 1000}, "limits.0 ('every call per client') caps tokens_per_day"),
        ({"match": {"provider": "openai"}, "usd_per_month": 5}, "caps usd_per_month"),
        ({"match": {"provider": "gemini"}, "tokens_per_day": 1000}, None),  # another provider's
        ({"requests_per_minute": 10}, None),  # requests are counted: minting is one
    ],
)
def test_ephemeral_credentials_allowed_stand_beside_no_token_or_usd_cap(limit: dict, refused: str | None) -> None:
    data = {"providers": {"openai": {"ephemeral_credentials": "allow"}}, "limits": [limit]}
    if refused is None:
        assert parse_config(data, {}).providers.openai.ephemeral_credentials == "allow"
        return
    message = error_of(data)
    assert message.startswith("providers.openai.ephemeral_credentials: allow lets a caller mint"), message
    assert refused in message


def test_ephemeral_credentials_are_refused_unless_allowed() -> None:
    assert parse_config({}, {}).providers.openai.ephemeral_credentials == "refuse"
    assert "providers.openai.ephemeral_credentials" in error_of(
        {"providers": {"openai": {"ephemeral_credentials": "yes"}}}
    )


def test_only_a_dsns_user_and_password_given_as_variables_are_uri_escaped() -> None:
    env = {"PW": "p@ss:w/rd%41#?x y", "USER": "tg@team", "HOST": "[::1]:5432", "DB": "records", "MODE": "require"}
    written = "postgresql://${USER}:${PW}@${HOST}/${DB}?sslmode=${MODE}"
    dsn = parse_config({"audit": {"postgres": {"dsn": written}}}, env).audit.postgres.dsn  # type: ignore[union-attr]
    assert dsn == "postgresql://tg%40team:p%40ss%3Aw%2Frd%2541%23%3Fx%20y@[::1]:5432/records?sslmode=require"
    # Outside a DSN, a value is taken as it is.
    key = {"KEY": "vk-p@ss:w/rd%41#?"}
    assert parse_config({"clients": [{"name": "a", "keys": ["${KEY}"]}]}, key).clients[0].keys[0].key == key["KEY"]


# --- agents -----------------------------------------------------------------------------------


def test_agents_is_off_by_default_and_read_when_set() -> None:
    assert parse_config({}, {}).agents is None
    agents = parse_config({"agents": {"acting_tools": ["send_*"], "on_tainted": "record"}}, {}).agents
    assert agents is not None
    assert (agents.acting_tools, agents.on_tainted, agents.after_injection) == (["send_*"], "record", "refuse")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"agents": {"on_tainted": "block"}}, "agents.on_tainted: Input should be 'refuse' or 'record'"),
        ({"agents": {"acting_tool": ["*"]}}, "agents.acting_tool: unknown key"),
        ({"agents": {"taint_min_chars": 0}}, "agents.taint_min_chars: Input should be greater than or equal to 1"),
        ({"agents": {"links": {"allow": [""]}}}, "agents.links.allow.0: String should have at least 1 character"),
    ],
)
def test_agents_misconfigured_is_an_error_naming_the_field(data: dict, message: str) -> None:
    assert message in error_of(data)
