"""OpenAI-compatible vendors through Tollgate: the `openai` SDK with `base_url` at a preset's real
API (Groq's, Mistral's) and at a vendor the configuration adds, each call's virtual key swapped for
the vendor's real one, its usage and cost audited exactly, streams and all; a route from OpenAI to
a vendor; a preset that is not configured still governed; OpenRouter's site passed with the
caller's own key."""

from __future__ import annotations

import pytest
from tests.support import streams
from tests.support.audit_fields import assert_fields
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Reply

REAL = {
    "openai": "sk-real-openai-vendors-01",
    "anthropic": "sk-ant-real-vendors-07",
    "groq": "gsk_real-groq-vendors-02",
    "mistral": "real-mistral-vendors-03",
    "openrouter": "sk-or-real-openrouter-04",
    "acme": "sk-real-acme-vendors-05",
}
ALICE = "tg-alice-vendors-0123456789"
OWN = "sk-or-callers-own-openrouter-06"
ACME_HOST = "api.acme.example"
GROQ = "https://api.groq.com/openai/v1"
MISTRAL = "https://api.mistral.ai/v1"


def config(urls: dict[str, str]) -> dict:
    providers: dict[str, dict] = {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()}
    providers["acme"].update(kind="openai_compatible", hosts=[ACME_HOST], base_path="/api/v2", price_table="groq")
    return {
        "providers": providers,
        "clients": [{"name": "alice", "keys": [ALICE]}],
        "overrides": [
            {
                "match": {"provider": "openai", "model": "fast-*"},
                "provider": "groq",
                "model": "llama-3.3-70b-versatile",
            },
            {"match": {"provider": "anthropic", "model": "claude-*"}, "provider": "acme", "model": "acme-large"},
            {
                "match": {"provider": "anthropic", "model": "to-mistral"},
                "provider": "mistral",
                "model": "mistral-small",
            },
            {"match": {"provider": "anthropic", "model": "to-groq"}, "provider": "groq", "model": "llama-3.3-70b"},
            {"match": {"provider": "groq", "model": "gpt-*"}, "provider": "openai"},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config, providers=("openai", "anthropic", "groq", "mistral", "openrouter", "acme"))


def chat(base_url: str, model: str, key: str = ALICE) -> str:
    return f"""
        from openai import OpenAI
        r = OpenAI(base_url="{base_url}", api_key="{key}", max_retries=0).chat.completions.create(
            model="{model}", messages=[{{"role": "user", "content": "hi"}}])
        report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
    """


def stream(base_url: str, model: str) -> str:
    return f"""
        from openai import OpenAI
        chunks = OpenAI(base_url="{base_url}", api_key="{ALICE}", max_retries=0).chat.completions.create(
            model="{model}", stream=True, messages=[{{"role": "user", "content": "hi"}}])
        chunks = list(chunks)
        report(text="".join(c.delta.content or "" for chunk in chunks for c in chunk.choices),
               usage=[chunk.usage.total_tokens for chunk in chunks if chunk.usage])
    """


def usage_of(record: dict) -> tuple:
    keys = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "total_tokens", "cost_usd")
    return tuple(record[k] for k in keys)


def test_groq_with_a_virtual_key(g):
    assert g.run(chat(GROQ, "llama-3.3-70b-versatile")) == {"text": "Hi there.", "tokens": 28}
    (seen,) = g.fakes["groq"].received
    assert (seen.method, seen.path) == ("POST", "/openai/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {REAL['groq']}"
    assert seen.json()["model"] == "llama-3.3-70b-versatile"
    record = g.last_audit()
    assert_fields(
        record, provider="groq", host="api.groq.com", endpoint="chat.completions", model="llama-3.3-70b-versatile"
    )
    assert_fields(record, client="alice", auth="virtual_key", status=200, decision="allow")
    # genai-prices' Groq table: $0.59 in, $0.79 out per million tokens.
    assert usage_of(record) == (21, 7, 5, 2, 28, 0.00001792)


def test_a_groq_stream_is_asked_for_its_usage(g):
    pieces = streams.openai_chat()
    g.fakes["groq"].handler = lambda r: Reply(200, chunks=pieces, headers={"content-type": "text/event-stream"})
    # The client did not ask for usage: Tollgate asks, and the usage chunk stays with it.
    assert g.run(stream(GROQ, "llama-3.3-70b-versatile")) == {"text": "Hello", "usage": []}
    (seen,) = g.fakes["groq"].received
    assert seen.json()["stream_options"] == {"include_usage": True}
    record = g.last_audit()
    assert (record["provider"], record["stream"], record["finish_reason"]) == ("groq", True, "stop")
    assert usage_of(record) == (19, 5, 3, 1, 24, 0.00001516)


def test_mistral_streams_its_usage_unasked(g):
    # Mistral refuses a field it does not know: no stream_options goes; its last chunk has the usage.
    pieces = streams.openai_chat(usage_with_choices=True)
    g.fakes["mistral"].handler = lambda r: Reply(200, chunks=pieces, headers={"content-type": "text/event-stream"})
    assert g.run(stream(MISTRAL, "mistral-small-latest")) == {"text": "Hello", "usage": [24]}
    (seen,) = g.fakes["mistral"].received
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {REAL['mistral']}"
    assert "stream_options" not in seen.json()
    record = g.last_audit()
    assert (record["provider"], record["model"], record["stream"]) == ("mistral", "mistral-small-latest", True)
    # Mistral's table: $0.15 in, $0.015 cached, $0.60 out per million tokens.
    assert usage_of(record) == (19, 5, 3, 1, 24, 0.000005445)


def test_mistral_embeddings(g):
    result = g.run(f"""
        from openai import OpenAI
        r = OpenAI(base_url="{MISTRAL}", api_key="{ALICE}", max_retries=0).embeddings.create(
            model="mistral-embed", input="hi")
        report(tokens=r.usage.prompt_tokens)
    """)
    assert result == {"tokens": 4}
    assert g.fakes["mistral"].received[-1].path == "/v1/embeddings"
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["input_tokens"], record["output_tokens"]) == (
        "mistral",
        "embeddings",
        4,
        0,
    )


def test_a_configured_vendor(g):
    assert g.run(chat(f"https://{ACME_HOST}/api/v2", "llama-3.3-70b-versatile")) == {
        "text": "Hi there.",
        "tokens": 28,
    }
    (seen,) = g.fakes["acme"].received
    assert (seen.path, seen.headers["authorization"]) == ("/api/v2/chat/completions", f"Bearer {REAL['acme']}")
    record = g.last_audit()
    assert (record["provider"], record["host"], record["client"]) == ("acme", ACME_HOST, "alice")
    assert usage_of(record) == (21, 7, 5, 2, 28, 0.00001792)  # the Groq table it names


def test_a_path_a_vendor_does_not_serve_as_read_is_refused(g):
    result = g.run(f"""
        import openai
        try:
            openai.OpenAI(base_url="{GROQ}", api_key="{ALICE}", max_retries=0).embeddings.create(
                model="e", input="hi")
            report(ok=True)
        except openai.BadRequestError as e:
            report(status=e.status_code, code=e.code, message=e.message)
    """)
    assert (result["status"], result["code"]) == (400, "bad_request"), result
    assert "not an endpoint of groq" in result["message"]
    assert g.fakes["groq"].received == []
    record = g.last_audit()
    assert (record["provider"], record["status"], record["decision"]) == ("groq", 400, "deny")


def test_a_preset_not_configured_is_governed_all_the_same(g):
    """No Together settings: its host is intercepted, an unknown key refused, a virtual key's call
    refused for want of a real key, and neither leaves Tollgate."""
    together = "https://api.together.xyz/v1"
    result = g.run(f"""
        import openai
        out = []
        for key in ("sk-not-a-tollgate-key", "{ALICE}"):
            try:
                openai.OpenAI(base_url="{together}", api_key=key, max_retries=0).chat.completions.create(
                    model="meta-llama/Llama-3.3-70B-Instruct-Turbo", messages=[{{"role": "user", "content": "hi"}}])
                out.append("sent")
            except openai.APIStatusError as e:
                out.append([e.status_code, e.response.headers["x-tollgate-error"]])
        report(out=out)
    """)
    assert result == {"out": [[401, "unauthenticated"], [500, "no_upstream_credential"]]}
    unknown, alice = g.new_audit(2)
    assert (unknown["provider"], unknown["host"], unknown["status"]) == ("together", "api.together.xyz", 401)
    assert (alice["provider"], alice["client"], alice["status"]) == ("together", "alice", 500)


def test_a_route_from_openai_to_groq(g):
    assert g.run(chat("https://api.openai.com/v1", "fast-chat")) == {"text": "Hi there.", "tokens": 28}
    assert g.fakes["openai"].received == []
    (seen,) = g.fakes["groq"].received
    assert (seen.path, seen.json()["model"]) == ("/openai/v1/chat/completions", "llama-3.3-70b-versatile")
    assert seen.headers["authorization"] == f"Bearer {REAL['groq']}"
    record = g.last_audit()
    assert (record["requested_provider"], record["provider"], record["host"]) == ("openai", "groq", "api.openai.com")
    assert (record["requested_model"], record["model"]) == ("fast-chat", "llama-3.3-70b-versatile")
    assert usage_of(record) == (21, 7, 5, 2, 28, 0.00001792)


def test_a_route_from_anthropic_to_a_configured_vendor_is_translated(g):
    result = g.run(f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=[{{"role": "user", "content": "hi"}}])
        report(text=r.content[0].text, usage=[r.usage.input_tokens, r.usage.output_tokens])
    """)
    # Anthropic's input_tokens leave out the 5 read from the cache.
    assert result == {"text": "Hi there.", "usage": [16, 7]}
    assert g.fakes["anthropic"].received == []
    (seen,) = g.fakes["acme"].received
    assert (seen.path, seen.headers["authorization"]) == ("/api/v2/chat/completions", f"Bearer {REAL['acme']}")
    # A configured vendor takes max_tokens unless it says it takes max_completion_tokens.
    assert seen.json()["model"] == "acme-large" and seen.json()["max_tokens"] == 50
    assert "max_completion_tokens" not in seen.json()
    record = g.last_audit()
    assert (record["requested_provider"], record["provider"], record["model"]) == ("anthropic", "acme", "acme-large")
    assert (record["input_tokens"], record["output_tokens"]) == (21, 7)


def test_a_route_to_a_vendor_writes_the_fields_that_vendor_takes(g):
    pieces = streams.openai_chat(usage_with_choices=True)
    g.fakes["mistral"].handler = lambda r: Reply(200, chunks=pieces, headers={"content-type": "text/event-stream"})
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
        with client.messages.stream(model="to-mistral", max_tokens=50,
                messages=[{{"role": "user", "content": "hi"}}]) as s:
            text = "".join(s.text_stream)
            usage = s.get_final_message().usage
        r = client.messages.create(model="to-groq", max_tokens=60, messages=[{{"role": "user", "content": "hi"}}])
        report(text=text, output=usage.output_tokens, groq=r.content[0].text)
    """)
    assert result == {"text": "Hello", "output": 5, "groq": "Hi there."}
    (mistral,) = g.fakes["mistral"].received
    # Mistral bounds the output with max_tokens and refuses a field it does not know: neither
    # max_completion_tokens nor stream_options goes to it; its stream reports usage unasked.
    assert mistral.json()["max_tokens"] == 50 and mistral.json()["stream"] is True
    assert "max_completion_tokens" not in mistral.json() and "stream_options" not in mistral.json()
    (groq,) = g.fakes["groq"].received
    assert groq.json()["max_completion_tokens"] == 60 and "max_tokens" not in groq.json()
    streamed, plain = g.new_audit(2)
    assert (streamed["provider"], streamed["model"], streamed["output_tokens"]) == ("mistral", "mistral-small", 5)
    assert (plain["provider"], plain["model"], plain["status"]) == ("groq", "llama-3.3-70b", 200)


def test_openrouters_cache_writes_are_audited(g):
    usage = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95,
             "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 100}}  # fmt: skip
    answer = {
        "id": "gen-1", "object": "chat.completion", "created": 1700000000, "model": "anthropic/claude-sonnet-4.5",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi."}}],
        "usage": usage,
    }  # fmt: skip
    g.fakes["openrouter"].handler = lambda r: Reply(200, answer)
    assert g.run(chat("https://openrouter.ai/api/v1", "anthropic/claude-sonnet-4.5")) == {"text": "Hi.", "tokens": 196}
    record = g.last_audit()
    assert (record["provider"], record["input_tokens"], record["cached_tokens"], record["cache_write_tokens"]) == (
        "openrouter", 194, 10, 100,
    )  # fmt: skip
    assert (record["output_tokens"], record["total_tokens"]) == (2, 196)


def test_a_vendors_call_routed_to_openai_goes_as_it_is(g):
    assert g.run(chat(GROQ, "gpt-4o-mini")) == {"text": "Hi there.", "tokens": 28}
    assert g.fakes["groq"].received == []
    (seen,) = g.fakes["openai"].received
    assert (seen.path, seen.headers["authorization"]) == ("/v1/chat/completions", f"Bearer {REAL['openai']}")
    record = g.last_audit()
    assert (record["requested_provider"], record["provider"], record["host"]) == ("groq", "openai", "api.groq.com")


CREDITS = """
    import json, urllib.request
    req = urllib.request.Request("https://openrouter.ai/api/v1/credits", headers={{"authorization": "Bearer {key}"}})
    try:
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status, body=json.loads(resp.read()))
    except urllib.error.HTTPError as e:
        report(status=e.code, error=e.headers["x-tollgate-error"])
"""


def test_openrouters_site_goes_with_the_callers_own_key(g):
    g.fakes["openrouter"].handler = lambda r: (
        Reply(200, {"data": {"total_credits": 10}}) if r.path == "/api/v1/credits" else provider_answers(r)
    )
    assert g.run(CREDITS.format(key=OWN)) == {"status": 200, "body": {"data": {"total_credits": 10}}}
    (seen,) = g.fakes["openrouter"].received
    assert seen.headers["authorization"] == f"Bearer {OWN}"
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["status"]) == (
        "openrouter",
        None,
        None,
        200,
    )
    assert record["input_tokens"] is None
    # A virtual key there is refused: Tollgate's real key never goes outside the model API.
    assert g.run(CREDITS.format(key=ALICE)) == {"status": 401, "error": "unauthenticated"}
    assert len(g.fakes["openrouter"].received) == 1
    refused = g.last_audit()
    assert (refused["endpoint"], refused["decision"]) == (None, "deny")


def test_a_vendor_added_by_a_reload_is_governed_at_once(g):
    def with_beta(urls: dict[str, str]) -> dict:
        data = config(urls)
        beta = {
            "kind": "openai_compatible",
            "hosts": ["llm.beta.example"],
            "upstream": urls["acme"],
            "keys": ["sk-beta"],
        }
        data["providers"]["beta"] = beta
        return data

    g.reconfigure(with_beta)
    assert g.run(chat("https://llm.beta.example/v1", "b-1")) == {"text": "Hi there.", "tokens": 28}
    (seen,) = g.fakes["acme"].received
    assert (seen.path, seen.headers["authorization"]) == ("/v1/chat/completions", "Bearer sk-beta")
    record = g.last_audit()
    assert (record["provider"], record["host"], record["client"]) == ("beta", "llm.beta.example", "alice")
    g.reconfigure(config)


def test_no_vendor_key_reaches_the_console_or_the_audit(g):
    """Runs last in this module: every call above has been made through this gateway."""
    console, audit = g.proxy.console(), g.audit_path.read_text()
    assert "llm_call" in audit
    for secret in (*REAL.values(), ALICE, OWN):
        assert secret not in console and secret not in audit, secret
