"""Every token a provider bills is counted, whatever the shape its answer reports it in: the
official SDKs through a real mitmdump to fake upstreams that answer as the providers do, each
call's audit record and what its client got asserted exactly, and a limit that holds by what was
billed.

- Gemini (the Gemini API and Vertex AI, whole and streamed): the tools' own prompts
  (`toolUsePromptTokenCount`, a search's results fed back) are input.
- Gemini's OpenAI-compatible endpoint: the thoughts, reported beside `completion_tokens` (in
  `total_tokens`), are output, whole and streamed.
- Groq: a stream not asked for its usage (`audit.stream_usage: passive` here) reports it in its
  last chunk's `x_groq.usage`; one asked reports it there and in `usage`, counted once.
- xAI: its reasoning tokens, reported beside `completion_tokens`, are output, in the audit and in
  the usage a caller whose call was translated gets (the Anthropic and google-genai SDKs), and in
  what a conversation's roll-up summarized by xAI cost.
- Mistral: an OpenAI call routed to it as it came (`api: openai_compatible`, or a fallback) gets
  its output bound as `max_tokens`, which Mistral takes, and no `stream_options`, which it refuses;
  the ledger bounds it by the client's `max_completion_tokens` as before.
"""

from __future__ import annotations

import json

import pytest
from tests.support import streams
from tests.support.canned import OPENAI_CHAT
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

REAL = {
    "gemini": "AIza-real-gemini-billed-01",
    "vertex": "AQ.real-vertex-express-billed-02",
    "groq": "gsk_real-groq-billed-03",
    "xai": "xai-real-billed-04",
    "anthropic": "sk-ant-real-billed-05",
    "mistral": "real-mistral-billed-06",
    "openai": "sk-real-openai-billed-07",
}
ALICE = "tg-alice-billed-0123456789"
SEARCHER = "tg-searcher-billed-0123456789"


def config(urls: dict[str, str]) -> dict:
    providers: dict[str, dict] = {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()}
    providers["openai"]["retry"] = {"attempts": 1}  # a failed call goes to its fallback at once
    return {
        "providers": providers,
        "clients": [{"name": "alice", "keys": [ALICE]}, {"name": "searcher", "keys": [SEARCHER]}],
        "limits": [{"name": "searches", "match": {"client": "searcher"}, "tokens_per_day": 380}],
        "overrides": [
            {"match": {"provider": "anthropic", "model": "grok-*"}, "provider": "xai"},
            {"match": {"provider": "gemini", "model": "grok-*"}, "provider": "xai"},
            {"match": {"provider": "openai", "model": "mistral-*"}, "provider": "mistral", "api": "openai_compatible"},
            {
                "match": {"provider": "openai", "model": "flaky-*"},
                "fallbacks": [{"provider": "mistral", "model": "mistral-small-latest"}],
            },
        ],
        "rollup": [
            {
                "match": {"provider": "anthropic", "model": "claude-*"},
                "above_messages": 10,
                "keep_last": 4,
                "summarizer": {"provider": "xai", "model": "grok-4"},
            }
        ],
        # Streams go as their clients asked: Groq's usage is read where it reports it unasked.
        "audit": {"stream_usage": "passive"},
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config, providers=tuple(REAL))


def record_usage(record: dict) -> tuple:
    keys = ("input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cost_usd")
    return tuple(record[k] for k in keys)


# --- Gemini: the tools' own prompts -------------------------------------------------------------

# A grounded answer: 12 tokens of prompt, 340 of search results fed back, 3 of answer, 5 of thought.
GROUNDED_USAGE = {
    "promptTokenCount": 12,
    "toolUsePromptTokenCount": 340,
    "candidatesTokenCount": 3,
    "thoughtsTokenCount": 5,
    "totalTokenCount": 360,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
    "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 340}],
}


def grounded(text: str, finish: bool, usage: dict) -> dict:
    candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}


def grounded_answers(r: Received) -> Reply:
    """Gemini's answers to a call grounded in Google Search, whole or streamed (alt=sse)."""
    if ":streamGenerateContent" in r.path:
        running = {"promptTokenCount": 12, "totalTokenCount": 12}
        events = [grounded("Par", False, running), grounded("is.", True, GROUNDED_USAGE)]
        chunks = [f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events]
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=chunks)
    return Reply(200, grounded("Paris.", True, GROUNDED_USAGE))


def genai_calls(client: str) -> str:
    """google-genai's whole and streamed call, each grounded in Google Search; what it got."""
    return f"""
        from google.genai import types
        client = {client}
        config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
        r = client.models.generate_content(model="gemini-2.5-flash", contents="capital of France?", config=config)
        whole = [r.text, r.usage_metadata.prompt_token_count, r.usage_metadata.tool_use_prompt_token_count,
                 r.usage_metadata.total_token_count]
        text, last = "", None
        for chunk in client.models.generate_content_stream(
                model="gemini-2.5-flash", contents="capital of France?", config=config):
            text += chunk.text or ""
            last = chunk.usage_metadata
        report(whole=whole, streamed=[text, last.prompt_token_count, last.tool_use_prompt_token_count,
                                      last.total_token_count])
    """


GEMINI_API = f'__import__("google.genai").genai.Client(api_key="{ALICE}")'
VERTEX_EXPRESS = f'__import__("google.genai").genai.Client(vertexai=True, api_key="{ALICE}")'


@pytest.mark.parametrize(
    ("provider", "client"), [("gemini", GEMINI_API), ("vertex", VERTEX_EXPRESS)], ids=["gemini-api", "vertex-ai"]
)
def test_geminis_tool_use_prompt_is_counted_as_input(g, provider: str, client: str):
    g.fakes[provider].handler = grounded_answers
    result = g.run(genai_calls(client))
    # The client gets Gemini's own usage, unchanged.
    assert result == {"whole": ["Paris.", 12, 340, 360], "streamed": ["Paris.", 12, 340, 360]}
    whole, streamed = g.new_audit(2)
    assert (whole["provider"], whole["stream"], streamed["provider"], streamed["stream"]) == (
        provider, False, provider, True,
    )  # fmt: skip
    assert whole["has_tools"] is True
    # gemini-2.5-flash ($ per Mtok): 352 in x 0.30 + 8 out x 2.50
    for record in (whole, streamed):
        assert record_usage(record) == (352, 8, 360, 5, 0.0001256)
        assert record["finish_reason"] == "STOP"


def test_a_limit_counts_the_search_results_a_call_was_billed_for(g):
    """380 tokens a day: a grounded call billed 360 leaves too little for another's reservation
    (its prompt and its 20 tokens of answer)."""
    g.fakes["gemini"].handler = grounded_answers
    result = g.run(f"""
        from google import genai
        from google.genai import errors, types
        client = genai.Client(api_key="{SEARCHER}")
        config = types.GenerateContentConfig(max_output_tokens=20,
                                             tools=[types.Tool(google_search=types.GoogleSearch())])
        out = []
        for _ in range(2):
            try:
                r = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
                out.append(r.usage_metadata.total_token_count)
            except errors.ClientError as e:
                out.append([e.code, e.status])
        report(out=out)
    """)
    assert result == {"out": [360, [429, "RESOURCE_EXHAUSTED"]]}
    assert len(g.fakes["gemini"].received) == 1
    billed, refused = g.new_audit(2)
    assert (billed["input_tokens"], billed["output_tokens"]) == (352, 8)
    assert (refused["status"], refused["decision"], refused["input_tokens"]) == (429, "deny", None)


# --- Gemini's OpenAI-compatible endpoint: thoughts beside completion_tokens ----------------------

GEMINI_OPENAI = "https://generativelanguage.googleapis.com/v1beta/openai/"
# 12 tokens of prompt, 4 of answer and 31 of thought, which completion_tokens leaves out (its total
# holds them), as Google's OpenAI-compatible endpoint reports a thinking model's usage.
GEMINI_OPENAI_USAGE = {"completion_tokens": 4, "prompt_tokens": 12, "total_tokens": 47,
                       "completion_tokens_details": {"reasoning_tokens": 31}}  # fmt: skip


def chat_stream(chunks: list[dict]) -> Reply:
    """A Chat Completions stream of `chunks`, each an event, then `[DONE]`."""
    return Reply(200, headers={"content-type": "text/event-stream"}, chunks=[*map(sse, chunks), sse("[DONE]")])


def gemini_openai_answers(r: Received) -> Reply:
    base = {"id": "g-o", "created": 1761231344, "model": "gemini-2.5-flash"}
    if not r.json().get("stream"):
        message = {"role": "assistant", "content": "Bonjour."}
        return Reply(200, {**base, "object": "chat.completion", "usage": GEMINI_OPENAI_USAGE,
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip
    base["object"] = "chat.completion.chunk"
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Bonjour."}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": GEMINI_OPENAI_USAGE},
    ]
    return chat_stream(chunks)


def test_geminis_openai_compatible_thoughts_are_counted_as_output(g):
    g.fakes["gemini"].handler = gemini_openai_answers
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(base_url="{GEMINI_OPENAI}", api_key="{ALICE}", max_retries=0)
        hi = [{{"role": "user", "content": "Say hi in French"}}]
        r = client.chat.completions.create(model="gemini-2.5-flash", messages=hi)
        chunks = list(client.chat.completions.create(model="gemini-2.5-flash", messages=hi, stream=True))
        last = [c.usage for c in chunks if c.usage][-1]
        report(whole=[r.choices[0].message.content, r.usage.completion_tokens, r.usage.total_tokens],
               streamed=["".join(c.delta.content or "" for ch in chunks for c in ch.choices),
                         last.completion_tokens, last.total_tokens])
    """)
    # The client gets Google's usage, unchanged.
    assert result == {"whole": ["Bonjour.", 4, 47], "streamed": ["Bonjour.", 4, 47]}
    assert [r.path for r in g.fakes["gemini"].received] == ["/v1beta/openai/chat/completions"] * 2
    records = g.new_audit(2)
    assert [(r["provider"], r["stream"], r["finish_reason"]) for r in records] == [
        ("gemini", False, "stop"), ("gemini", True, "stop"),
    ]  # fmt: skip
    for record in records:
        # Output: the 4 of the answer and the 31 of thought. gemini-2.5-flash ($ per Mtok):
        # 12 in x 0.30 + 35 out x 2.50
        assert record_usage(record) == (12, 35, 47, 31, 0.0000911)


# --- Groq: a stream's usage in x_groq ------------------------------------------------------------

GROQ = "https://api.groq.com/openai/v1"
GROQ_USAGE = {"queue_time": 0.0391495, "prompt_tokens": 45, "prompt_time": 0.002, "completion_tokens": 12,
              "completion_time": 0.01, "total_tokens": 57, "total_time": 0.012}  # fmt: skip


def groq_stream(r: Received) -> Reply:
    """Groq's stream (its shape as recorded from its API): `x_groq.usage` on the last choice's
    chunk always; `usage` there and in a last chunk of its own only when the request asked."""
    asked = (r.json().get("stream_options") or {}).get("include_usage") is True
    base = {"id": "chatcmpl-g", "object": "chat.completion.chunk", "created": 1761231344,
            "model": "llama-3.3-70b-versatile", "system_fingerprint": "fp_5fe129dff6"}  # fmt: skip

    def choice(delta: dict, finish: str | None = None) -> list[dict]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    chunks = [
        {**base, "choices": choice({"role": "assistant", "content": ""}), "x_groq": {"id": "req_01"}},
        {**base, "choices": choice({"content": "Olá!"})},
        {**base, "choices": choice({}, "stop"), "x_groq": {"id": "req_01", "usage": GROQ_USAGE}},
    ]
    if asked:
        chunks[-1]["usage"] = GROQ_USAGE
        chunks.append({**base, "choices": [], "usage": GROQ_USAGE, "service_tier": "on_demand"})
    return chat_stream(chunks)


def test_a_groq_streams_usage_is_counted_whether_asked_for_or_not(g):
    g.fakes["groq"].handler = groq_stream
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(base_url="{GROQ}", api_key="{ALICE}", max_retries=0)
        out = []
        for options in (None, {{"include_usage": True}}):
            chunks = list(client.chat.completions.create(model="llama-3.3-70b-versatile", stream=True,
                stream_options=options, messages=[{{"role": "user", "content": "Say hi in Portuguese"}}]))
            out.append(["".join(c.delta.content or "" for chunk in chunks for c in chunk.choices),
                        [chunk.usage.total_tokens for chunk in chunks if chunk.usage],
                        [chunk.model_extra["x_groq"]["usage"]["total_tokens"] for chunk in chunks
                         if "usage" in (chunk.model_extra or {{}}).get("x_groq", {{}})]])
        report(out=out)
    """)
    # What the client got is Groq's stream as it came: x_groq's usage, and `usage` where asked.
    assert result == {"out": [["Olá!", [], [57]], ["Olá!", [57, 57], [57]]]}
    unasked, asked = g.fakes["groq"].received
    assert unasked.json().get("stream_options") is None
    assert asked.json()["stream_options"] == {"include_usage": True}
    for record in g.new_audit(2):
        assert (record["provider"], record["stream"], record["finish_reason"]) == ("groq", True, "stop")
        # genai-prices' Groq table: 45 in x $0.59 + 12 out x $0.79 per million tokens
        assert record_usage(record) == (45, 12, 57, None, 0.00003603)


# --- xAI: reasoning beside completion_tokens ---------------------------------------------------

# 21 tokens of prompt, 7 of answer and 30 of reasoning, which completion_tokens leaves out.
XAI_USAGE = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 58,
             "prompt_tokens_details": {"text_tokens": 21, "cached_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 30}}  # fmt: skip


def xai_answers(r: Received) -> Reply:
    base = {"id": "c-x", "object": "chat.completion", "created": 1761231344, "model": "grok-4-0709"}
    if not r.json().get("stream"):
        message = {"role": "assistant", "content": "Bonjour."}
        return Reply(200, {**base, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                           "usage": XAI_USAGE})  # fmt: skip
    base["object"] = "chat.completion.chunk"
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Bonjour."}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": XAI_USAGE},
    ]
    return chat_stream(chunks)


def test_a_translated_caller_gets_xais_reasoning_as_output(g):
    g.fakes["xai"].handler = xai_answers
    result = g.run(f"""
        import anthropic
        from google import genai
        claude = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
        hi = [{{"role": "user", "content": "Say hi in French"}}]
        whole = claude.messages.create(model="grok-4", max_tokens=100, messages=hi)
        with claude.messages.stream(model="grok-4", max_tokens=100, messages=hi) as s:
            text = "".join(s.text_stream)
            streamed = s.get_final_message()
        gemini = genai.Client(api_key="{ALICE}")
        r = gemini.models.generate_content(model="grok-4", contents="Say hi in French")
        u = r.usage_metadata
        report(anthropic=[whole.content[0].text, whole.usage.input_tokens, whole.usage.output_tokens],
               streamed=[text, streamed.usage.input_tokens, streamed.usage.output_tokens],
               gemini=[r.text, u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count,
                       u.total_token_count])
    """)
    # Output: the 7 of the answer and the 30 of reasoning, as xAI bills them.
    assert result == {
        "anthropic": ["Bonjour.", 21, 37],
        "streamed": ["Bonjour.", 21, 37],
        "gemini": ["Bonjour.", 21, 7, 30, 58],
    }
    assert [r.path for r in g.fakes["xai"].received] == ["/v1/chat/completions"] * 3
    records = g.new_audit(3)
    assert [(r["requested_provider"], r["provider"], r["stream"]) for r in records] == [
        ("anthropic", "xai", False), ("anthropic", "xai", True), ("gemini", "xai", False),
    ]  # fmt: skip
    for record in records:
        # genai-prices' x-ai table, grok-4: 21 in x $3 + 37 out x $15 per million tokens
        assert record_usage(record) == (21, 37, 58, 30, 0.000618)


def test_a_roll_up_summarized_by_xai_counts_its_reasoning_as_output(g):
    g.fakes["xai"].handler = xai_answers
    result = g.run(f"""
        import anthropic
        turns = [{{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {{i}}"}} for i in range(13)]
        r = anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=turns)
        report(text=r.content[0].text)
    """)
    assert result == {"text": "Hello!"}
    (summarized,) = g.fakes["xai"].received
    assert summarized.json()["model"] == "grok-4"
    record = g.last_audit()
    assert (record["provider"], record["rolled_up_messages"]) == ("anthropic", 8)
    # grok-4: 21 in x $3 + 37 out x $15 per million tokens
    assert record["rollup"] == {
        "summarizer": "xai/grok-4", "cached": False, "input_tokens": 21, "output_tokens": 37, "cost_usd": 0.000618,
    }  # fmt: skip


# --- Mistral: max_tokens for max_completion_tokens ----------------------------------------------


def mistral_answers(r: Received) -> Reply:
    """Mistral's API: a field it does not know is refused (422), as Mistral does."""
    body = r.json()
    unknown = [k for k in ("max_completion_tokens", "stream_options") if k in body]
    if unknown:
        detail = [{"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"}
                  for k in unknown]  # fmt: skip
        return Reply(422, {"object": "error", "message": {"detail": detail}, "type": "invalid_request_message_error",
                           "param": None, "code": None})  # fmt: skip
    if body.get("stream"):
        pieces = streams.openai_chat(usage_with_choices=True)  # its last chunk has the usage, unasked
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=pieces)
    return Reply(200, {**OPENAI_CHAT, "model": body["model"]})


def test_an_openai_call_routed_to_mistral_as_it_came_bounds_its_output_with_max_tokens(g):
    g.fakes["mistral"].handler = mistral_answers
    g.fakes["openai"].handler = lambda r: Reply(503, {"error": {"message": "overloaded", "type": "server_error"}})
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0)
        hi = [{{"role": "user", "content": "hi"}}]
        whole = client.chat.completions.create(model="mistral-small-latest", max_completion_tokens=40, messages=hi)
        chunks = list(client.chat.completions.create(model="mistral-small-latest", max_completion_tokens=40,
            messages=hi, stream=True, stream_options={{"include_usage": True}}))
        fallback = client.chat.completions.create(model="flaky-1", max_completion_tokens=40, messages=hi)
        report(whole=[whole.choices[0].message.content, whole.usage.total_tokens],
               streamed=["".join(c.delta.content or "" for chunk in chunks for c in chunk.choices),
                         [chunk.usage.total_tokens for chunk in chunks if chunk.usage]],
               fallback=[fallback.choices[0].message.content, fallback.usage.total_tokens])
    """)
    assert result == {"whole": ["Hi there.", 28], "streamed": ["Hello", [24]], "fallback": ["Hi there.", 28]}
    sent = [r.json() for r in g.fakes["mistral"].received]
    assert [r.path for r in g.fakes["mistral"].received] == ["/v1/chat/completions"] * 3
    assert [(b["model"], b["max_tokens"]) for b in sent] == [("mistral-small-latest", 40)] * 3
    assert not any("max_completion_tokens" in b or "stream_options" in b for b in sent)
    records = g.new_audit(3)
    assert [(r["requested_model"], r["provider"], r["status"], r["stream"]) for r in records] == [
        ("mistral-small-latest", "mistral", 200, False),
        ("mistral-small-latest", "mistral", 200, True),
        ("flaky-1", "mistral", 200, False),
    ]
    # The client's bound, as the ledger reserved by it.
    assert [r["max_tokens"] for r in records] == [40, 40, 40]
    assert [(r["input_tokens"], r["output_tokens"]) for r in records] == [(21, 7), (19, 5), (21, 7)]
