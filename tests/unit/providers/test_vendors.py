"""The OpenAI-compatible vendors: the presets' hosts and paths, what each reads and refuses, their
stream usage and price tables; a vendor the configuration adds."""

from __future__ import annotations

import itertools
import json
import re
from functools import partial

import pytest
from genai_prices.data import providers as table_providers
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats import ANTHROPIC_MESSAGES, BEDROCK_CONVERSE, GEMINI_GENERATE, OPENAI_API, OPENAI_CHAT
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.chat import ChatRequest, Message, Text, UsageReported
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.translation import Translation, chat_formats
from tollgate.formats.usage import Usage
from tollgate.governance.limits.pricing import table_rate
from tollgate.governance.routing.overrides import RuleBook, routed_path
from tollgate.providers import PROVIDERS, Hosts, allow_hosts, configured, provider_for
from tollgate.providers.vendors import PRESET_ROWS, OpenAICompatible, Vendor
from tollgate.providers.vendors import PRESETS as PRESET_PROVIDERS

from .common import VENDORS, classify, j

FORMATS = chat_formats()

CHAT = json.dumps({"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}).encode()
STREAM = json.dumps({"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
EMBED = json.dumps({"model": "e-1", "input": "hi"}).encode()

# name: (API host, the chat path, the embeddings path or None, the models listing's path)
PRESETS = {
    "mistral": ("api.mistral.ai", "/v1/chat/completions", "/v1/embeddings", "/v1/models"),
    "groq": ("api.groq.com", "/openai/v1/chat/completions", None, "/openai/v1/models"),
    "deepseek": ("api.deepseek.com", "/chat/completions", None, "/models"),
    "xai": ("api.x.ai", "/v1/chat/completions", None, "/v1/models"),
    "openrouter": ("openrouter.ai", "/api/v1/chat/completions", "/api/v1/embeddings", "/api/v1/models"),
    "together": ("api.together.xyz", "/v1/chat/completions", "/v1/embeddings", "/v1/models"),
    "fireworks": (
        "api.fireworks.ai",
        "/inference/v1/chat/completions",
        "/inference/v1/embeddings",
        "/inference/v1/models",
    ),
    "cerebras": ("api.cerebras.ai", "/v1/chat/completions", None, "/v1/models"),
    "perplexity": ("api.perplexity.ai", "/chat/completions", None, None),
}


def test_every_preset_is_listed_here() -> None:
    assert {v.name for v in VENDORS} == set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_host_is_its_own_and_decrypted(name: str) -> None:
    host = PRESETS[name][0]
    assert provider_for(host) is PROVIDERS[name]
    assert provider_for(host.upper() + ".") is PROVIDERS[name]
    assert provider_for(f"evil{host}") is None
    assert provider_for(f"{host}.evil.example") is None
    assert any(__import__("re").fullmatch(p, f"{host}:443") for p in allow_hosts())


@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_chat_is_read_as_openais(name: str) -> None:
    vendor = PROVIDERS[name]
    c = classify(vendor, "POST", PRESETS[name][1], CHAT)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "m-1", OPENAI_API)
    assert (c.facts.max_tokens, c.facts.message_count, c.facts.stream) == (7, 1, False)
    assert classify(vendor, "POST", PRESETS[name][1], STREAM).facts.stream is True


@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_embeddings_where_it_has_them(name: str) -> None:
    vendor = PROVIDERS[name]
    path = PRESETS[name][2]
    if path is None:
        chat = PRESETS[name][1]
        with pytest.raises(Unreadable, match="is not an endpoint of"):
            classify(vendor, "POST", chat.replace("chat/completions", "embeddings"), EMBED)
        return
    c = classify(vendor, "POST", path, EMBED)
    assert (c.endpoint, c.model) == ("embeddings", "e-1")


@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_models_listing(name: str) -> None:
    path = PRESETS[name][3]
    if path is None:
        return
    c = classify(PROVIDERS[name], "GET", path, None)
    assert (c.endpoint, c.model, c.passthrough) == ("models", None, False)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("groq", "/v1/chat/completions"),  # not under its base path
        ("groq", "/openai/V1/chat/completions"),  # a letter case a server may not tell apart
        ("groq", "/openai/v1/chat/Completions"),
        ("mistral", "/v1/fim/completions"),  # its own endpoint: not read, so refused
        ("mistral", "/v1/files"),  # an upload
        ("mistral", "/v1/batch/jobs"),
        ("together", "/v1/batches"),  # a job
        ("perplexity", "/v1/chat/completions"),
        ("fireworks", "/v1/chat/completions"),
        ("deepseek", "/beta/completions"),
        ("xai", "/v1/messages"),
        ("mistral", "/v1/chat/completions/"),
        ("groq", "/openai/v1/x1/chat/completions"),  # OpenAI's reading skips ids: a vendor's is exact
        ("groq", "/openai/v1/chat/completions/x"),
        ("openrouter", "/api//v1/chat/completions"),  # a path a server may normalise is not passed
    ],
)
def test_paths_a_preset_does_not_serve_as_read_are_refused(name: str, path: str) -> None:
    with pytest.raises(Unreadable):
        classify(PROVIDERS[name], "POST", path, CHAT)


def test_deepseek_serves_its_api_at_the_root_and_under_v1() -> None:
    deepseek = PROVIDERS["deepseek"]
    for path in ("/chat/completions", "/v1/chat/completions"):
        assert classify(deepseek, "POST", path, CHAT).endpoint == "chat.completions"
    with pytest.raises(Unreadable):
        classify(deepseek, "POST", "/V1/chat/completions", CHAT)


def test_openrouters_site_passes_with_the_callers_own_credential() -> None:
    openrouter = PROVIDERS["openrouter"]
    for method, path in (
        ("GET", "/"),
        ("GET", "/docs/quickstart"),
        ("GET", "/api/v1/credits"),
        ("POST", "/api/v1/keys"),
    ):
        c = classify(openrouter, method, path, None)
        assert c.passthrough is True and c.endpoint is None, path
    # Its model API is read, never passed.
    assert classify(openrouter, "POST", "/api/v1/chat/completions", CHAT).passthrough is False
    assert (
        classify(openrouter, "POST", "/api/v1/completions", json.dumps({"model": "m", "prompt": "x"}).encode()).endpoint
        == "completions"
    )
    # A path another vendor would refuse is none of OpenRouter's model API: it passes, unread.
    assert classify(openrouter, "POST", "/api/v1/files", None).passthrough is True


@pytest.mark.parametrize("name", ["groq", "xai", "openrouter"])
def test_the_responses_api_where_a_preset_has_it(name: str) -> None:
    vendor = PROVIDERS[name]
    base = vendor.base_paths[0]
    body = json.dumps({"model": "r-1", "input": "hi", "max_output_tokens": 9}).encode()
    c = classify(vendor, "POST", f"{base}/responses", body)
    assert (c.endpoint, c.model, c.facts.max_tokens) == ("responses", "r-1", 9)
    with pytest.raises(Unreadable, match="WebSocket"):
        classify(vendor, "GET", f"{base}/responses", None)


def test_mistral_is_not_asked_for_stream_usage_the_others_are() -> None:
    # Mistral refuses a field it does not know, and ends each stream with its usage unasked.
    for vendor in VENDORS:
        body = json.loads(STREAM)
        c = Classification("chat.completions", "m-1", RequestFacts(stream=True), OPENAI_API)
        asked = vendor.prepare(c, body, {}, inject_usage=True)
        expected = vendor.name not in ("mistral", "openrouter")
        assert asked is expected, vendor.name
        assert ("stream_options" in body) is expected


def test_deepseeks_cache_hits_are_the_cached_tokens() -> None:
    deepseek = PROVIDERS["deepseek"]
    answer = {
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_cache_hit_tokens": 100,
            "prompt_cache_miss_tokens": 20,
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }
    c = classify(deepseek, "POST", "/chat/completions", CHAT)
    usage = deepseek.cost.usage(c, {}, json.dumps(answer).encode())
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens) == (120, 30, 100, 12)
    # OpenAI's own field, where an answer has it, is the count.
    answer["usage"]["prompt_tokens_details"] = {"cached_tokens": 90}
    assert deepseek.cost.usage(c, {}, json.dumps(answer).encode()).cached_tokens == 90


def chat_answer(usage: dict[str, object]) -> bytes:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    return json.dumps({"choices": [choice], "usage": usage}).encode()


def streamed(usage: dict[str, object]) -> list[bytes]:
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [f"data: {json.dumps(chunk)}\n\n".encode(), f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode(),
            b"data: [DONE]\n\n"]  # fmt: skip


def read_stream(vendor: object, c: Classification, pieces: list[bytes]) -> tuple[int | None, ...]:
    reader = vendor.cost.usage_reader(c, {"content-type": "text/event-stream"})  # type: ignore[attr-defined]
    for piece in pieces:
        reader.feed(piece)
    u = reader.result()
    return (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens)


# xAI's reasoning tokens are billed as output, reported beside completion_tokens (its total is the sum).
XAI_USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 339,
             "completion_tokens_details": {"reasoning_tokens": 310}}  # fmt: skip


def test_xais_reasoning_tokens_are_output_tokens_beside_its_completion_tokens() -> None:
    xai = PROVIDERS["xai"]
    c = classify(xai, "POST", "/v1/chat/completions", CHAT)
    u = xai.cost.usage(c, {}, chat_answer(XAI_USAGE))
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens) == (20, 319, 310, 339)
    assert read_stream(xai, c, streamed(XAI_USAGE)) == (20, 319, 310, 339)
    # Where its total says the completion held them, they are not counted twice.
    held = {**XAI_USAGE, "completion_tokens": 319}
    assert xai.cost.usage(c, {}, chat_answer(held)).output_tokens == 319
    # The other presets count reasoning among completion_tokens, as OpenAI does.
    groq = PROVIDERS["groq"]
    g = classify(groq, "POST", "/openai/v1/chat/completions", CHAT)
    assert groq.cost.usage(g, {}, chat_answer(XAI_USAGE)).output_tokens == 9
    assert read_stream(groq, g, streamed(XAI_USAGE)) == (20, 9, 310, 339)


TRANSLATED_SOURCES = (ANTHROPIC_MESSAGES, GEMINI_GENERATE, BEDROCK_CONVERSE)


def translation_to(vendor_name: str, source: str, stream: bool) -> Translation:
    """A call of `source`'s format routed to a vendor, as the Translate stage makes it: its body
    written in OpenAI's format, its usage counted as the vendor bills it (`billed_usage`)."""
    vendor = PROVIDERS[vendor_name]
    t = Translation(source)
    t.target = OPENAI_CHAT
    chat = ChatRequest("m", [Message("user", [Text("hi")])], max_tokens=50, stream=stream)
    body, _ = FORMATS[source].write_request(chat)
    written, _, _ = t.request(json.loads(json.dumps(body)), "grok-4", stream, {})
    path = vendor.native_chat("grok-4", stream, source).path
    t.billed = partial(vendor.cost.billed_usage, classify(vendor, "POST", path, j(written)))
    return t


def callers_usage(source: str, events: list) -> tuple[int | None, int | None]:
    usage = Usage()
    for event in events:
        if isinstance(event, UsageReported):
            usage.update(event.usage)
    return usage.input_tokens, usage.output_tokens


@pytest.mark.parametrize("source", TRANSLATED_SOURCES)
@pytest.mark.parametrize(
    ("vendor", "usage"),
    # Groq, as OpenAI, counts the reasoning among completion_tokens: not added twice.
    [("xai", XAI_USAGE), ("groq", {**XAI_USAGE, "completion_tokens": 319})],
)
def test_a_translated_caller_gets_xais_reasoning_as_output(source: str, vendor: str, usage: dict) -> None:
    t = translation_to(vendor, source, stream=False)
    rewrite = t.rewriter(stream=False)
    assert rewrite is not None
    got = rewrite.feed(chat_answer(usage)) + rewrite.flush()
    back = FORMATS[source].read_response(json.loads(got)).usage
    assert (back.input_tokens, back.output_tokens) == (20, 319)


@settings(max_examples=examples(30), deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=8), source=st.sampled_from(TRANSLATED_SOURCES))
def test_a_translated_stream_gives_xais_reasoning_as_output_however_split(cuts: list[int], source: str) -> None:
    t = translation_to("xai", source, stream=True)
    rewrite = t.rewriter(stream=True)
    assert rewrite is not None
    upstream = b"".join(streamed(XAI_USAGE))
    bounds = sorted({0, len(upstream), *(c % (len(upstream) + 1) for c in cuts)})
    got = b"".join(rewrite.feed(upstream[a:b]) for a, b in itertools.pairwise(bounds)) + rewrite.flush()
    reader = FORMATS[source].stream_reader()
    assert callers_usage(source, reader.feed(got) + reader.end()) == (20, 319)
    assert reader.error is None


def test_openrouters_cache_writes_are_the_cache_write_tokens() -> None:
    openrouter = PROVIDERS["openrouter"]
    usage = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95,
             "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 100}}  # fmt: skip
    c = classify(openrouter, "POST", "/api/v1/chat/completions", CHAT)
    u = openrouter.cost.usage(c, {}, chat_answer(usage))
    assert (u.input_tokens, u.cached_tokens, u.cache_write_tokens, u.output_tokens) == (194, 10, 100, 2)
    assert u.uncached_input_tokens == 84


@pytest.mark.parametrize(
    ("name", "table", "model"),
    [
        ("mistral", "mistral", "mistral-large-latest"),
        ("groq", "groq", "llama-3.3-70b-versatile"),
        ("deepseek", "deepseek", "deepseek-chat"),
        ("xai", "x-ai", "grok-3"),
        ("openrouter", "openrouter", "openai/gpt-4o"),
        ("together", "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("fireworks", "fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
        ("cerebras", "cerebras", "llama3.1-8b"),
        ("perplexity", "perplexity", "sonar"),
    ],
)
def test_a_presets_prices_come_from_its_genai_prices_table(name: str, table: str, model: str) -> None:
    assert PROVIDERS[name].cost.price_table == table
    assert table in {p.id for p in table_providers}
    rate = table_rate(name, model, 1_767_225_600)  # 2026-01-01
    assert rate is not None and rate.input > 0 and rate.source.startswith(f"genai-prices {table}/")


# --- a vendor the configuration adds ----------------------------------------------------------


ACME = {"kind": "openai_compatible", "hosts": ["api.acme.example", "*.acme-eu.example"], "keys": ["sk-acme"]}


def loaded_with(**acme: object) -> Loaded:
    return Loaded.build(parse_config({"providers": {"acme": {**ACME, **acme}}}, {}))


def test_a_configured_vendor_joins_the_registry_its_hosts_and_its_pool() -> None:
    loaded = loaded_with(base_path="/api/v2", price_table="groq")
    acme = loaded.registry["acme"]
    assert loaded.hosts.provider_for("api.acme.example") is acme
    assert loaded.hosts.provider_for("X.ACME-EU.example.") is acme
    assert loaded.hosts.provider_for("acme.example") is None
    assert loaded.hosts.provider_for("api.groq.com") is PROVIDERS["groq"]
    assert loaded.pools["acme"].take() == "sk-acme"
    assert (acme.name, acme.semconv_name, acme.credentials.caller.side_header) == ("acme", "acme", "X-Vendor-Key")
    c = classify(acme, "POST", "/api/v2/chat/completions", CHAT)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "m-1", OPENAI_API)
    with pytest.raises(Unreadable):
        classify(acme, "POST", "/v1/chat/completions", CHAT)
    with pytest.raises(Unreadable):
        classify(acme, "POST", "/api/v2/responses", CHAT)  # not among its endpoints
    # Its price table is the one it names; built in, no provider is called acme.
    assert loaded.prices.rate("acme", "llama-3.3-70b-versatile", None, (), 1_767_225_600) is not None
    assert "acme" not in PROVIDERS
    assert Loaded.build(parse_config({}, {})).registry is PROVIDERS


def test_a_configured_vendors_endpoints_and_stream_options() -> None:
    acme = loaded_with(endpoints=["chat.completions", "responses"], stream_options=False).registry["acme"]
    body = json.dumps({"model": "r", "input": "x"}).encode()
    assert classify(acme, "POST", "/v1/responses", body).endpoint == "responses"
    with pytest.raises(Unreadable):
        classify(acme, "POST", "/v1/embeddings", EMBED)
    c = Classification("chat.completions", "m-1", RequestFacts(stream=True), OPENAI_API)
    body = json.loads(STREAM)
    assert acme.prepare(c, body, {}, inject_usage=True) is False and "stream_options" not in body


MAX_COMPLETION_TOKENS = {"groq", "xai", "cerebras"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_what_tollgate_writes_for_a_preset_bounds_its_output_with_the_field_it_takes(name: str) -> None:
    written = {"model": "m", "messages": [], "max_completion_tokens": 9, "stream": True,
               "stream_options": {"include_usage": True}}  # fmt: skip
    vendor = PROVIDERS[name]
    vendor.fit_chat_body(written)
    field = "max_completion_tokens" if name in MAX_COMPLETION_TOKENS else "max_tokens"
    other = "max_tokens" if name in MAX_COMPLETION_TOKENS else "max_completion_tokens"
    assert (written[field], other in written) == (9, False)
    assert ("stream_options" in written) is (name not in ("mistral", "openrouter"))


def test_a_configured_vendor_says_which_field_bounds_its_output() -> None:
    written = {"messages": [], "max_completion_tokens": 9}
    loaded_with().registry["acme"].fit_chat_body(written)
    assert written == {"messages": [], "max_tokens": 9}
    written = {"messages": [], "max_completion_tokens": 9}
    loaded_with(max_tokens_field="max_completion_tokens").registry["acme"].fit_chat_body(written)
    assert written == {"messages": [], "max_completion_tokens": 9}
    with pytest.raises(ConfigError, match=r"providers\.acme\.max_tokens_field"):
        loaded_with(max_tokens_field="max_output_tokens")


def test_a_route_from_openai_goes_to_a_vendors_compatible_api() -> None:
    config = parse_config(
        {
            "providers": {"acme": {**ACME, "base_path": "/api/v2"}},
            "overrides": [
                {"match": {"provider": "openai", "model": "to-acme"}, "provider": "acme"},
                {"match": {"provider": "openai", "model": "to-groq"}, "provider": "groq"},
            ],
        },
        {},
    )
    loaded = Loaded.build(config)
    book: RuleBook = loaded.rules
    assert book.find("openai", "to-acme", None, (), "chat.completions") is config.overrides[0]
    assert book.find("openai", "to-groq", None, (), "chat.completions") is config.overrides[1]
    assert routed_path(loaded.registry["acme"], "/v1/chat/completions") == "/api/v2/chat/completions"
    assert routed_path(PROVIDERS["groq"], "/v1/chat/completions?x=1") == "/openai/v1/chat/completions?x=1"
    assert routed_path(PROVIDERS["perplexity"], "/v1/chat/completions") == "/chat/completions"


def test_hosts_of_configured_vendors_may_hold_names_no_regex_group_takes() -> None:
    vendors = configured(parse_config({"providers": {"a-b": ACME}}, {}).providers.configured())
    hosts = Hosts({"a-b": ACME["hosts"]}, {**PROVIDERS, **vendors})
    assert hosts.provider_for("api.acme.example") is vendors["a-b"]


# A preset is a row: a vendor Tollgate knows is one more `Vendor` in `PRESET_ROWS`, its hosts written
# once. Here a row of a vendor that does not exist, made as the presets are made.
SAMPLE_ROW = Vendor(
    "acme-ai",
    ("api.acme.example",),
    "X-Acme-Key",
    ("/v2", "/openai/v2"),
    frozenset(("chat.completions", "models")),
    None,
    semconv_name="acme_ai",
    max_tokens_field="max_completion_tokens",
    reasoning_in_completion=False,
)


def test_a_preset_is_made_from_its_row() -> None:
    acme = OpenAICompatible.from_row(SAMPLE_ROW)
    assert (acme.name, acme.semconv_name, acme.credentials.caller.side_header) == ("acme-ai", "acme_ai", "X-Acme-Key")
    # Its host, written once: intercepted, matched, and where a call routed to it goes.
    assert re.fullmatch(acme.host_pattern, "api.acme.example") and not re.fullmatch(acme.host_pattern, "acme.example")
    assert (acme.host_globs, acme.upstream.default_host) == (("api.acme.example",), "api.acme.example")
    # Its base paths, the longest first; its endpoints, read as OpenAI's.
    c = classify(acme, "POST", "/openai/v2/chat/completions", CHAT)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "m-1", OPENAI_API)
    assert classify(acme, "GET", "/v2/models", None).endpoint == "models"
    with pytest.raises(Unreadable):
        classify(acme, "POST", "/v2/embeddings", EMBED)
    assert acme.native_chat("m-1", False, OPENAI_CHAT).path == "/v2/chat/completions"
    # What it takes and how it bills, as its row says.
    written = {"messages": [], "max_completion_tokens": 9}
    acme.fit_chat_body(written)
    assert written == {"messages": [], "max_completion_tokens": 9}
    answer = j({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9,
                          "completion_tokens_details": {"reasoning_tokens": 2}}})  # fmt: skip
    assert acme.cost.usage(c, {}, answer).output_tokens == 6  # its reasoning beside the completion: output
    assert json.loads(acme.refusal("policy_denied", "no").body)["error"]["type"] == "permission_denied"


def test_every_preset_is_its_row() -> None:
    assert [vendor.name for vendor in PRESET_PROVIDERS] == [row.name for row in PRESET_ROWS]
    for row, vendor in zip(PRESET_ROWS, PRESET_PROVIDERS, strict=True):
        assert PROVIDERS[row.name] is vendor
        assert vendor.host_globs == row.hosts and vendor.upstream.default_host == row.hosts[0]
