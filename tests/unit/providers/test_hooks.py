"""The provider hooks the stages call, without a proxy: the defaults that fit the header-key
providers, and Bedrock's own (SigV4 verification and signing, its upstream credentials, its
settings and what it loads)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.credentials import ReadOnlyCredentials
from tests.support.aws import signed_over_authority

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import OPENAI_COMPATIBLE_TARGETS, Config, ConfigError, parse_config
from tollgate.credentials import sigv4
from tollgate.credentials.base import Applied, RequestParts
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.credentials.header_key import HeaderKey
from tollgate.credentials.keypool import KeyPool
from tollgate.credentials.sigv4 import SigV4Signature
from tollgate.formats import OPENAI_API
from tollgate.formats.bodies.raw_headers import header_index
from tollgate.formats.openai_chat import ask_for_usage
from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.providers import PROVIDERS
from tollgate.providers.bedrock import BedrockConfig
from tollgate.providers.credentials import CallerCheck, OwnCredential, UpstreamCredentials, VerifiedCaller
from tollgate.proxy.stages.process.settings import load

BEDROCK = PROVIDERS["bedrock"]
OPENAI = PROVIDERS["openai"]
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
VIRTUAL = ("AKIAVIRTUAL0000000001", "virtual-secret")
REAL = ("AKIAREAL000000000001", "real-secret", "real-session-token")
CHAT = Classification(endpoint="chat.completions", facts=RequestFacts(stream=True), wire_format=OPENAI_API)
CONVERSE = Classification(endpoint="converse", model="m", wire_format="bedrock-converse")


def signed_fields(
    access: str = VIRTUAL[0],
    secret: str = VIRTUAL[1],
    body: bytes = BODY,
    host: str | None = HOST,
    path: str = PATH,
    extra: tuple[tuple[str, str], ...] = (),
) -> tuple[tuple[bytes, bytes], ...]:
    """A request as boto3 signs it for Bedrock, as raw header fields (no Host field: HTTP/2)."""
    headers = {"host": HOST, "content-type": "application/json", **dict(extra)}
    signature = sigv4.sign(
        method="POST",
        url=f"https://{HOST}{path}",
        headers=headers,
        body=body,
        credentials=ReadOnlyCredentials(access, secret, None),
        region="us-east-1",
        service="bedrock",
    )
    fields = {**headers, **signature}
    if host is None:
        del fields["host"]
    return tuple((k.encode(), v.encode()) for k, v in fields.items())


def parts(
    fields: tuple[tuple[bytes, bytes], ...],
    body: bytes = BODY,
    path: str = PATH,
    host: str = HOST,
    authority: str = "",
    upstream: str | None = f"https://{HOST}",
    payload_hash: str | None = None,
) -> RequestParts:
    return RequestParts(
        method=b"POST",
        scheme=b"https",
        host=host,
        authority=authority,
        path=path.encode(),
        fields=fields,
        body=body,
        index=header_index(fields),
        called_host=HOST,
        upstream=upstream,
        payload_hash=payload_hash,
    )


def applied_to(credential: Any, request: RequestParts) -> Applied:
    return credential.apply(request.fields, lambda: request)


def not_read() -> RequestParts:
    raise AssertionError("the whole request was read")


def as_text(fields: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in fields]


def verifies_with(applied_fields: tuple[tuple[bytes, bytes], ...], body: bytes, access: str, secret: str) -> str:
    """The access key id the final request's signature holds for, by Tollgate's own verifier."""
    headers = as_text(applied_fields)
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("host", HOST))
    verified = sigv4.verify_request(
        method="POST",
        raw_path=PATH,
        headers=headers,
        body=body,
        secrets={access: secret},
        service="bedrock",
        region=None,
    )
    return verified.authorization.access_key_id


# --- the registry -------------------------------------------------------------------------------


def test_routes_prefixes_and_settings_come_from_the_registry() -> None:
    assert OPENAI_COMPATIBLE_TARGETS[:4] == ("gemini", "anthropic", "bedrock", "azure")
    prefixes = {
        name: p.routing.openai_compatible_prefix for name, p in PROVIDERS.items() if p.routing.openai_compatible_prefix
    }
    assert {k: prefixes[k] for k in OPENAI_COMPATIBLE_TARGETS[:4]} == {
        "gemini": "/v1beta/openai/",
        "anthropic": "/v1/",
        "bedrock": "/openai/v1/",
        "azure": "/openai/v1/",
    }
    assert {
        name: set(PROVIDERS[name].routing.openai_compatible_endpoints) for name in OPENAI_COMPATIBLE_TARGETS[:4]
    } == {
        "gemini": {"chat.completions", "embeddings"},
        "anthropic": {"chat.completions"},
        "bedrock": {"chat.completions"},
        "azure": {"chat.completions", "embeddings", "responses"},
    }
    # The OpenAI-compatible vendors' presets come after them, each one a route's possible target.
    assert prefixes["groq"] == "/openai/v1/"
    assert prefixes["perplexity"] == "/"
    for name, provider in PROVIDERS.items():
        assert type(Config().providers.get(name)) is provider.settings_model
    assert BEDROCK.settings_model is BedrockConfig
    assert OPENAI.settings_model is ProviderConfig


def test_a_route_to_a_provider_without_a_default_host_needs_upstream() -> None:
    assert BEDROCK.upstream.default_host is None
    rule = {"match": {"provider": "openai"}, "provider": "bedrock"}
    with pytest.raises(ConfigError) as info:
        parse_config({"overrides": [rule]})
    assert str(info.value) == (
        "overrides.0: a route to bedrock needs upstream: here or under providers.bedrock"
        " (its region's https://bedrock-runtime.REGION.amazonaws.com)"
    )
    parse_config({"overrides": [{**rule, "upstream": f"https://{HOST}"}]})
    parse_config({"overrides": [rule], "providers": {"bedrock": {"upstream": f"https://{HOST}"}}})
    parse_config({"overrides": [{"match": {"provider": "openai"}, "provider": "gemini"}]})  # a default host


def test_only_bedrock_verifies_its_callers() -> None:
    assert {name for name, p in PROVIDERS.items() if p.credentials.check.verifies_callers} == {"bedrock"}


# --- the defaults ---------------------------------------------------------------------------------


def test_the_default_verifies_no_caller() -> None:
    assert CallerCheck.verify_caller(OPENAI.credentials.check, parts(signed_fields()), {VIRTUAL[0]: VIRTUAL[1]}) is None


def test_the_default_prepare_asks_an_openai_format_chat_stream_for_usage() -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "stream": True, "stream_options": {"x": 1}}
    assert OPENAI.prepare(CHAT, body, {}, inject_usage=True)
    assert body["stream_options"] == {"x": 1, "include_usage": True}
    # Asked already, passive, not a stream, not chat, not the OpenAI format, no body: unchanged.
    assert not OPENAI.prepare(CHAT, body, {}, inject_usage=True)
    untouched = {"model": "gpt-4o", "stream": True}
    assert not OPENAI.prepare(CHAT, untouched, {}, inject_usage=False)
    assert not OPENAI.prepare(Classification("chat.completions", wire_format=OPENAI_API), untouched, {}, True)
    assert not OPENAI.prepare(
        Classification("embeddings", facts=RequestFacts(stream=True), wire_format=OPENAI_API), untouched, {}, True
    )
    native = Classification("messages", facts=RequestFacts(stream=True), wire_format="anthropic-messages")
    assert not PROVIDERS["anthropic"].prepare(native, untouched, {}, True)
    assert not OPENAI.prepare(CHAT, None, {}, True)
    assert not ask_for_usage(CHAT, {"stream_options": "bad"})
    assert untouched == {"model": "gpt-4o", "stream": True}
    # Any provider's OpenAI-compatible endpoint: Gemini's too.
    routed: dict[str, Any] = {"stream": True}
    assert PROVIDERS["gemini"].prepare(CHAT, routed, {}, True)
    assert routed["stream_options"] == {"include_usage": True}


def test_the_default_upstream_credential_is_the_side_header_then_the_pool() -> None:
    anthropic = PROVIDERS["anthropic"]
    pool = KeyPool(["sk-ant-pooled"])
    settings = ProviderConfig(keys=("sk-ant-pooled",))
    own = anthropic.credentials.source.upstream_credential(
        CONVERSE, {"x-anthropic-key": "sk-ant-own"}, pool, settings, None
    )
    assert isinstance(own, HeaderKey)
    assert (own.name, own.value, own.pooled_key) == (b"x-api-key", b"sk-ant-own", None)
    pooled = anthropic.credentials.source.upstream_credential(CONVERSE, {"x-anthropic-key": ""}, pool, settings, None)
    assert isinstance(pooled, HeaderKey)
    assert (pooled.value, pooled.pooled_key, pooled.fingerprint) == (
        b"sk-ant-pooled",
        "sk-ant-pooled",
        fingerprint("sk-ant-pooled"),
    )
    assert anthropic.credentials.source.upstream_credential(CONVERSE, {}, KeyPool([]), ProviderConfig(), None) is None


def test_every_provider_chooses_its_upstream_credential_in_the_one_order() -> None:
    """The order is written once (`UpstreamCredentials.upstream_credential`); a provider declares what
    differs: its side credential, the pools its runtime holds, what else Tollgate holds for it."""
    overriding = {
        name
        for name, p in PROVIDERS.items()
        if type(p.credentials.source).upstream_credential is not UpstreamCredentials.upstream_credential
    }
    assert overriding == set()


def test_a_header_key_replaces_the_callers_credentials_in_one_pass() -> None:
    key = OPENAI.credentials.source.upstream_credential(
        CHAT, {"x-openai-key": "sk-real"}, KeyPool([]), ProviderConfig(), None
    )
    assert key is not None
    fields = ((b"Authorization", b"Bearer tg-virtual"), (b"Content-Type", b"application/json"))
    applied = key.apply(fields, not_read)  # a header key needs only the header fields
    assert applied.fields == ((b"Content-Type", b"application/json"), (b"authorization", b"Bearer sk-real"))
    assert (applied.fingerprint, applied.host) == (fingerprint("sk-real"), None)
    # The OpenAI format takes a Bearer token at any provider; Gemini's own takes its header.
    gemini = PROVIDERS["gemini"]
    assert gemini.credentials.key.header_key("AIza", CHAT).name == b"authorization"
    assert (
        gemini.credentials.key.header_key("AIza", Classification("generateContent", wire_format="gemini-generate")).name
        == b"x-goog-api-key"
    )


def test_a_pooled_key_bills_its_own_account_and_a_callers_key_the_callers() -> None:
    fields = (
        (b"Authorization", b"Bearer tg-virtual"),
        (b"OpenAI-Organization", b"org-callers"),
        (b"OpenAI-Project", b"proj_callers"),
    )
    pooled = OPENAI.credentials.source.upstream_credential(CHAT, {}, KeyPool(["sk-pooled"]), ProviderConfig(), None)
    assert pooled is not None
    assert pooled.apply(fields, not_read).fields == ((b"authorization", b"Bearer sk-pooled"),)
    own = OPENAI.credentials.source.upstream_credential(
        CHAT, {"x-openai-key": "sk-own"}, KeyPool(["sk-pooled"]), ProviderConfig(), None
    )
    assert own is not None
    assert own.apply(fields, not_read).fields == (*fields[1:], (b"authorization", b"Bearer sk-own"))


def test_the_default_own_credential_is_the_first_key_presented() -> None:
    own = OPENAI.credentials.check.own_credential({}, {"authorization": "Bearer sk-own"}, {})
    assert own == OwnCredential(fingerprint("sk-own"))
    assert OPENAI.credentials.check.own_credential({}, {}, {}) == OwnCredential(None)


def test_the_default_loads_nothing() -> None:
    assert OPENAI.credentials.source.load_runtime(Config(), ProviderConfig(), None) is None


# --- Bedrock: verifying the caller ------------------------------------------------------------------


def test_bedrock_verifies_a_virtual_credentials_signature() -> None:
    secrets = {VIRTUAL[0]: VIRTUAL[1]}
    verified = BEDROCK.credentials.check.verify_caller(parts(signed_fields()), secrets)
    assert verified == VerifiedCaller(VIRTUAL[0], hashlib.sha256(BODY).hexdigest())
    # HTTP/2: no Host field, the :authority stands for it.
    assert BEDROCK.credentials.check.verify_caller(parts(signed_fields(host=None), authority=HOST), secrets) == verified


def test_bedrock_leaves_alone_what_is_no_virtual_credential() -> None:
    secrets = {VIRTUAL[0]: VIRTUAL[1]}
    assert BEDROCK.credentials.check.verify_caller(parts(((b"authorization", b"Bearer ABSK-key"),)), secrets) is None
    assert (
        BEDROCK.credentials.check.verify_caller(parts(signed_fields(access="AKIAOTHER")), secrets) is None
    )  # not ours
    malformed = ((b"authorization", b"AWS4-HMAC-SHA256 Credential=nonsense"),)
    assert BEDROCK.credentials.check.verify_caller(parts(malformed), secrets) is None
    assert BEDROCK.credentials.check.verify_caller(parts(()), secrets) is None


def test_bedrock_refuses_a_virtual_credentials_bad_signature() -> None:
    with pytest.raises(sigv4.SignatureError) as info:
        BEDROCK.credentials.check.verify_caller(parts(signed_fields(secret="wrong")), {VIRTUAL[0]: VIRTUAL[1]})
    assert info.value.code == sigv4.BAD_SIGNATURE
    with pytest.raises(sigv4.SignatureError):  # the body changed after signing
        BEDROCK.credentials.check.verify_caller(parts(signed_fields(), body=BODY + b" "), {VIRTUAL[0]: VIRTUAL[1]})


# --- Bedrock: the upstream credential ----------------------------------------------------------------

REAL_SOURCE = sigv4.credential_source(
    BedrockConfig(credentials={"access_key_id": REAL[0], "secret_access_key": REAL[1]}).credentials
)


def bedrock_credential(
    side: dict[str, str] | None = None,
    keys: tuple[str, ...] = (),
    bearer_token: str | None = None,
    runtime: Any = None,
) -> Any:
    settings = BedrockConfig(keys=keys, bearer_token=bearer_token)
    return BEDROCK.credentials.source.upstream_credential(CONVERSE, side or {}, KeyPool(keys), settings, runtime)


AWS_SIDE = {"x-aws-access-key": "AKIASIDE", "x-aws-secret-key": "side-secret"}


def test_bedrock_upstream_credentials_in_order_of_precedence() -> None:
    everything: dict[str, Any] = {"keys": ("ABSK-pooled",), "bearer_token": "ABSK-setting", "runtime": REAL_SOURCE}
    # The side bearer token wins over every other.
    key = bedrock_credential({"x-aws-bearer-token": "ABSK-side", **AWS_SIDE}, **everything)
    assert isinstance(key, HeaderKey) and key.value == b"Bearer ABSK-side"
    # Then AWS credentials in side headers, signed with.
    assert isinstance(bedrock_credential(AWS_SIDE, **everything), SigV4Signature)
    # Then the provider's keys in turn.
    pooled = bedrock_credential({"x-aws-access-key": "AKIASIDE"}, **everything)  # half a side pair: ignored
    assert isinstance(pooled, HeaderKey) and (pooled.value, pooled.pooled_key) == (b"Bearer ABSK-pooled", "ABSK-pooled")
    # Then bearer_token, then credentials.
    bearer = bedrock_credential(bearer_token="ABSK-setting", runtime=REAL_SOURCE)
    assert isinstance(bearer, HeaderKey) and (bearer.value, bearer.pooled_key) == (b"Bearer ABSK-setting", None)
    assert isinstance(bedrock_credential(runtime=REAL_SOURCE), SigV4Signature)
    # Nothing: the anonymous caller's own goes, or the call is refused.
    assert bedrock_credential() is None


def test_a_bedrock_signature_replaces_the_callers_over_the_final_request() -> None:
    credential = bedrock_credential(runtime=REAL_SOURCE)
    changed = BODY.replace(b"hi", b"hello")  # Tollgate changed the body after the caller signed
    applied = applied_to(
        credential, parts(signed_fields(extra=(("x-amz-security-token", "caller-token"),)), body=changed)
    )
    names = [k for k, _ in as_text(applied.fields)]
    assert names.count("Authorization") == 1 and "x-amz-security-token" not in names
    assert verifies_with(applied.fields, changed, REAL[0], REAL[1]) == REAL[0]
    assert (applied.fingerprint, applied.host) == (fingerprint(REAL[0]), None)


def test_a_bedrock_signature_reuses_a_known_payload_hash() -> None:
    credential = bedrock_credential(runtime=REAL_SOURCE)
    applied = applied_to(credential, parts(signed_fields(), payload_hash="0" * 64))
    with pytest.raises(sigv4.SignatureError):  # signed over the hash it was told, not the body's
        verifies_with(applied.fields, BODY, REAL[0], REAL[1])


def test_a_side_header_region_moves_a_call_without_upstream() -> None:
    credential = bedrock_credential({**AWS_SIDE, "x-aws-region": "eu-west-1"})
    applied = applied_to(credential, parts(signed_fields()))
    moved = "bedrock-runtime.eu-west-1.amazonaws.com"
    assert applied.host == moved
    assert dict(as_text(applied.fields))["host"] == moved
    assert "/eu-west-1/bedrock/aws4_request" in dict(as_text(applied.fields))["Authorization"]
    # HTTP/2: signed for the moved :authority.
    applied = applied_to(credential, parts(signed_fields(host=None), authority=HOST))
    assert applied.host == moved
    # An upstream is configured: the call stays where it goes, signed for the region asked.
    applied = applied_to(credential, parts(signed_fields(), upstream="https://127.0.0.1:9999"))
    assert applied.host is None
    assert dict(as_text(applied.fields))["host"] == HOST
    assert "/eu-west-1/bedrock/aws4_request" in dict(as_text(applied.fields))["Authorization"]


def test_credentials_that_cannot_be_had_are_reported_not_raised() -> None:
    def failing() -> ReadOnlyCredentials:
        raise RuntimeError("the metadata service is down: secret details")

    with pytest.raises(CredentialUnavailable) as info:
        applied_to(bedrock_credential(runtime=failing), parts(signed_fields()))
    assert str(info.value) == "Tollgate could not obtain AWS credentials to sign with: RuntimeError"


# --- Bedrock: the caller's own credential, and the usage request ------------------------------------


def test_bedrock_passes_a_callers_own_signature_through_as_signed() -> None:
    index = header_index(signed_fields(access="AKIAOWN"))
    assert BEDROCK.credentials.check.own_credential(index, {}, {}) == OwnCredential(fingerprint("AKIAOWN"), signed=True)
    unreadable = {b"authorization": b"AWS4-HMAC-SHA256 nonsense"}
    assert BEDROCK.credentials.check.own_credential(unreadable, {}, {}) == OwnCredential(None, signed=True)
    bearer = {b"authorization": b"Bearer ABSK-own"}
    assert BEDROCK.credentials.check.own_credential(bearer, {"authorization": "Bearer ABSK-own"}, {}) == OwnCredential(
        fingerprint("ABSK-own")
    )


def test_bedrock_asks_for_usage_unless_the_caller_signed_the_body() -> None:
    body: dict[str, Any] = {"model": "m", "stream": True}
    assert not BEDROCK.prepare(CHAT, body, header_index(signed_fields()), inject_usage=True)
    assert "stream_options" not in body
    assert BEDROCK.prepare(CHAT, body, {b"authorization": b"Bearer ABSK"}, inject_usage=True)
    assert body["stream_options"] == {"include_usage": True}


# --- Bedrock: its settings and what it loads ---------------------------------------------------------


def test_bedrock_keeps_its_credentials_while_their_setting_is_unchanged() -> None:
    static = BedrockConfig(credentials={"access_key_id": REAL[0], "secret_access_key": REAL[1]})
    source = BEDROCK.credentials.source.load_runtime(Config(), static, None)
    assert source().access_key == REAL[0]
    assert (
        BEDROCK.credentials.source.load_runtime(Config(), static.model_copy(update={"keys": ("k",)}), (static, source))
        is source
    )
    other = BedrockConfig(credentials={"access_key_id": "AKIAOTHER", "secret_access_key": "s"})
    assert BEDROCK.credentials.source.load_runtime(Config(), other, (static, source))().access_key == "AKIAOTHER"
    assert BEDROCK.credentials.source.load_runtime(Config(), BedrockConfig(), (static, source)) is None


def test_bedrock_names_the_setting_its_credentials_fail_in(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_chain(setting: object) -> None:
        raise ValueError("default: botocore's credential chain found no credentials")

    monkeypatch.setattr(sigv4, "credential_source", no_chain)
    with pytest.raises(ValueError) as info:
        BEDROCK.credentials.source.load_runtime(Config(), BedrockConfig(credentials="default"), None)
    assert str(info.value) == "credentials: default: botocore's credential chain found no credentials"


def test_bedrock_loads_botocore_when_the_configuration_mentions_it(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[bool] = []
    monkeypatch.setattr(sigv4, "load_botocore", lambda: loads.append(True))
    BEDROCK.credentials.source.load_runtime(Config(), BedrockConfig(), None)
    assert loads == []
    virtual = parse_config(
        {"clients": [{"name": "a", "aws_credentials": [{"access_key_id": "A", "secret_access_key": "s"}]}]}
    )
    BEDROCK.credentials.source.load_runtime(virtual, BedrockConfig(), None)
    BEDROCK.credentials.source.load_runtime(Config(), BedrockConfig(bearer_token="ABSK"), None)
    assert loads == [True, True]
    assert "botocore" in sys.modules  # (this process has it anyway: the tests sign with it)


def test_bedrock_settings_take_the_yaml_shape() -> None:
    config = parse_config({"providers": {"bedrock": {"bearer_token": "ABSK", "credentials": "default"}}})
    assert config.providers.bedrock == BedrockConfig(bearer_token="ABSK", credentials="default")
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"openai": {"bearer_token": "x"}}})
    assert str(info.value) == "providers.openai.bearer_token: unknown key"
    assert json.loads(BedrockConfig().model_dump_json())["credentials"] is None


def test_a_reload_keeps_what_each_provider_loaded_and_names_the_setting_at_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = {"access_key_id": REAL[0], "secret_access_key": REAL[1]}
    path = tmp_path / "tollgate.yaml"
    audit = str(tmp_path / "audit.jsonl")
    path.write_text(yaml.safe_dump({"providers": {"bedrock": {"credentials": static}}, "audit": {"path": audit}}))
    first, log, store = load(str(path), None, None)
    source = first.runtimes["bedrock"]
    assert source().access_key == REAL[0] and first.runtimes["openai"] is None
    path.write_text(
        yaml.safe_dump({"providers": {"bedrock": {"credentials": static, "keys": ["k"]}}, "audit": {"path": audit}})
    )
    second, _, same_store = load(str(path), first, log, (first.config.ledger_store, store))
    assert same_store is store
    assert second.runtimes["bedrock"] is source  # its setting unchanged

    def no_chain(setting: object) -> None:
        raise ValueError("default: botocore's credential chain found no credentials")

    monkeypatch.setattr(sigv4, "credential_source", no_chain)
    path.write_text(yaml.safe_dump({"providers": {"bedrock": {"credentials": "default"}}, "audit": {"path": audit}}))
    with pytest.raises(ConfigError) as info:
        load(str(path), second, log, (second.config.ledger_store, store))
    assert str(info.value) == "providers.bedrock.credentials: default: botocore's credential chain found no credentials"
    log.close()
    asyncio.run(store.aclose())


# --- a call's conversation: where rollup: finds one, by the call's wire format ------------------------


@pytest.mark.parametrize(
    ("name", "classification", "fmt"),
    [
        ("openai", Classification("chat.completions", "gpt-4o", wire_format="openai-api"), "openai-chat"),
        ("openai", Classification("responses", "gpt-4o", wire_format="openai-api"), None),
        (
            "gemini",
            Classification("streamGenerateContent", "gemini-2.5-flash", wire_format="gemini-generate"),
            "gemini-generate",
        ),
        (
            "anthropic",
            Classification("messages", "claude-sonnet-4-5", wire_format="anthropic-messages"),
            "anthropic-messages",
        ),
        (
            "bedrock",
            Classification("converse", "amazon.nova-lite-v1:0", wire_format="bedrock-converse"),
            "bedrock-converse",
        ),
        (
            "bedrock",
            Classification("invoke", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", wire_format="bedrock-invoke"),
            "anthropic-messages",
        ),
        (
            "bedrock",
            Classification("invoke", "meta.llama3-70b-instruct-v1:0", wire_format="bedrock-invoke"),
            None,
        ),  # Llama's own body
        ("vertex", Classification("rawPredict", "claude-x@1", wire_format="anthropic-messages"), "anthropic-messages"),
        (
            "vertex",
            Classification("generateContent", "gemini-2.5-flash", wire_format="gemini-generate"),
            "gemini-generate",
        ),
        ("vertex", Classification("predict", "text-embedding-005", wire_format="gemini-generate"), None),
    ],
)
def test_the_conversation_format_of_each_providers_calls(
    name: str, classification: Classification, fmt: str | None
) -> None:
    assert wire_format(classification.wire_format).conversation(classification) == fmt


def test_bedrock_verifies_a_signature_over_the_authority() -> None:
    """HTTP/2 with `:authority` signed in place of `host` (the AWS SDK for JavaScript): the
    request's :authority is what was signed; over HTTP/1.1 there is none to verify."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = signed_over_authority(
        access_key=VIRTUAL[0], secret_key=VIRTUAL[1], authority=HOST, path=PATH, body=BODY, amz_date=now
    )
    fields = tuple((k.encode(), v.encode()) for k, v in headers.items() if k != ":authority")
    secrets = {VIRTUAL[0]: VIRTUAL[1]}
    assert BEDROCK.credentials.check.verify_caller(parts(fields, authority=HOST), secrets) == VerifiedCaller(
        VIRTUAL[0], hashlib.sha256(BODY).hexdigest()
    )
    with pytest.raises(sigv4.SignatureError, match="signature we calculated does not match"):
        BEDROCK.credentials.check.verify_caller(
            parts(fields, authority="bedrock-runtime.us-west-2.amazonaws.com"), secrets
        )
    with pytest.raises(sigv4.SignatureError, match="':authority' is signed but the request has none"):
        BEDROCK.credentials.check.verify_caller(parts(((b"host", HOST.encode()), *fields)), secrets)
