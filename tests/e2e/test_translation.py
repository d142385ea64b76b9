"""Routes across wire formats, end to end: each official SDK calls its own provider's host, a rule
sends the call to a provider that speaks another format, and the SDK gets back what it expects —
plain answers, streams, a tool-call round trip, JSON output and errors as its own exception classes
— while the target's fake upstream sees a call in its own format and the audit counts its tokens.

One client run per route makes seven calls in this order; each test reads its part."""

from __future__ import annotations

import json
import time

import pytest
from tests.support import chat_fakes
from tests.support.audit_fields import assert_fields
from tests.support.aws import botocore_accepts
from tests.support.configs import every_provider

KEYS = {"openai": "sk-real-o", "gemini": "AIza-real-g", "anthropic": "sk-ant-real-a"}
AWS = ("AKIDTOLLGATEREAL", "real-aws-secret-key")
VIRTUAL = "tg-translate-1"
CLAUDE_ON_BEDROCK = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
STEPS = ("text", "stream", "tool", "after_tool", "stream_tool", "json", "error")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": every_provider(urls, KEYS, AWS),
        "clients": [{"name": "translator", "keys": [VIRTUAL]}],
        "overrides": [
            {
                "match": {"provider": "anthropic", "model": "claude-*"},
                "provider": "bedrock",
                "model": CLAUDE_ON_BEDROCK,
            },
            {"match": {"provider": "anthropic", "model": "nova-*"}, "provider": "bedrock", "model": NOVA},
            {"match": {"provider": "anthropic", "model": "gemini-*"}, "provider": "gemini"},
            {"match": {"provider": "gemini", "model": "gpt-*"}, "provider": "openai"},
            {"match": {"provider": "gemini", "model": "claude-*"}, "provider": "anthropic"},
            {"match": {"provider": "openai", "model": "gemini-*"}, "provider": "gemini", "api": "native"},
            {"match": {"provider": "openai", "model": "claude-*"}, "provider": "anthropic", "api": "native"},
            {"match": {"provider": "openai", "model": "nova-*"}, "provider": "bedrock", "model": NOVA, "api": "native"},
        ],
    }


PRELUDE = """
import json
import time
out = {}
def step(name, fn):
    try:
        out[name] = fn()
    except Exception as e:
        out[name] = {"error": [type(e).__name__, getattr(e, "status_code", None) or getattr(e, "code", None)], "message": str(e)[:300]}
"""

OPENAI = """
from openai import OpenAI
c = OpenAI(api_key=KEY, max_retries=0)
ask = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]
ask_tool = [{"role": "user", "content": "Weather in Paris?"}]
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": TOOL_SCHEMA}}]

def text():
    r = c.chat.completions.create(model=MODEL, messages=ask, max_tokens=100, temperature=0.2)
    u = r.usage
    return [r.choices[0].message.content, r.choices[0].finish_reason, u.prompt_tokens, u.completion_tokens, u.total_tokens, u.prompt_tokens_details.cached_tokens]

def stream():
    text, finish, usage = "", None, None
    for ch in c.chat.completions.create(model=MODEL, messages=ask, max_tokens=100, stream=True, stream_options={"include_usage": True}):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
        if ch.usage:
            usage = [ch.usage.prompt_tokens, ch.usage.completion_tokens]
    return [text, finish, usage]

first = {}
def tool():
    r = c.chat.completions.create(model=MODEL, messages=ask_tool, tools=tools, max_tokens=100)
    first["message"] = r.choices[0].message
    call = r.choices[0].message.tool_calls[0]
    return [call.function.name, json.loads(call.function.arguments), r.choices[0].finish_reason]

def after_tool():
    m = first["message"]
    history = ask_tool + [m.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "18C and sunny"}]
    r = c.chat.completions.create(model=MODEL, messages=history, tools=tools, max_tokens=100)
    return [r.choices[0].message.content, r.choices[0].finish_reason]

def stream_tool():
    with c.chat.completions.stream(model=MODEL, messages=ask_tool, tools=tools, max_tokens=100) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    return [call.function.name, json.loads(call.function.arguments), final.choices[0].finish_reason]

def json_out():
    r = c.chat.completions.create(model=MODEL, messages=ask, max_tokens=100,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}})
    return json.loads(r.choices[0].message.content)

def error():
    c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "please fail"}], max_tokens=10)
"""

ANTHROPIC = """
import anthropic
c = anthropic.Anthropic(api_key=KEY, max_retries=0)
ask = [{"role": "user", "content": "Capital of France?"}]
ask_tool = [{"role": "user", "content": "Weather in Paris?"}]
tools = [{"name": "get_weather", "description": "The weather in a city", "input_schema": TOOL_SCHEMA}]

def text():
    r = c.messages.create(model=MODEL, max_tokens=100, system="Answer briefly.", messages=ask, stop_sequences=["END"])
    u = r.usage
    return [r.content[0].text, r.stop_reason, u.input_tokens, u.output_tokens, u.input_tokens + u.output_tokens + (u.cache_read_input_tokens or 0), u.cache_read_input_tokens]

def stream():
    with c.messages.stream(model=MODEL, max_tokens=100, system="Answer briefly.", messages=ask) as s:
        text = "".join(s.text_stream)
        m = s.get_final_message()
    return [text, m.stop_reason, [m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0), m.usage.output_tokens]]

first = {}
def tool():
    r = c.messages.create(model=MODEL, max_tokens=100, messages=ask_tool, tools=tools)
    first["content"] = r.content
    use = next(b for b in r.content if b.type == "tool_use")
    return [use.name, use.input, r.stop_reason]

def after_tool():
    content = first["content"]
    use = next(b for b in content if b.type == "tool_use")
    history = ask_tool + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}]},
    ]
    r = c.messages.create(model=MODEL, max_tokens=100, messages=history, tools=tools)
    return [r.content[0].text, r.stop_reason]

def stream_tool():
    with c.messages.stream(model=MODEL, max_tokens=100, messages=ask_tool, tools=tools) as s:
        m = s.get_final_message()
    use = next(b for b in m.content if b.type == "tool_use")
    return [use.name, use.input, m.stop_reason]

def json_out():
    r = c.messages.create(model=MODEL, max_tokens=100, messages=ask, output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    return json.loads(r.content[0].text)

def error():
    c.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "please fail"}])
"""

GEMINI = """
from google import genai
from google.genai import types
c = genai.Client(api_key=KEY)
brief = dict(system_instruction="Answer briefly.", max_output_tokens=100, temperature=0.2)
tool_config = types.GenerateContentConfig(max_output_tokens=100, tools=[types.Tool(function_declarations=[
    types.FunctionDeclaration(name="get_weather", description="The weather in a city", parameters_json_schema=TOOL_SCHEMA)])])

def text():
    r = c.models.generate_content(model=MODEL, contents="Capital of France?", config=types.GenerateContentConfig(**brief))
    u = r.usage_metadata
    return [r.text, r.candidates[0].finish_reason.name, u.prompt_token_count, (u.candidates_token_count or 0) + (u.thoughts_token_count or 0), u.total_token_count, u.cached_content_token_count]

def stream():
    text, finish, usage = "", None, None
    for ch in c.models.generate_content_stream(model=MODEL, contents="Capital of France?", config=types.GenerateContentConfig(**brief)):
        text += ch.text or ""
        if ch.candidates and ch.candidates[0].finish_reason:
            finish = ch.candidates[0].finish_reason.name
        if ch.usage_metadata and ch.usage_metadata.prompt_token_count:
            u = ch.usage_metadata
            usage = [u.prompt_token_count, (u.candidates_token_count or 0) + (u.thoughts_token_count or 0)]
    return [text, finish, usage]

first = {}
def tool():
    r = c.models.generate_content(model=MODEL, contents="Weather in Paris?", config=tool_config)
    first["content"] = r.candidates[0].content
    call = r.function_calls[0]
    return [call.name, call.args, r.candidates[0].finish_reason.name]

def after_tool():
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        first["content"],
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "18C and sunny"})]),
    ]
    r = c.models.generate_content(model=MODEL, contents=history, config=tool_config)
    return [r.text, r.candidates[0].finish_reason.name]

def stream_tool():
    calls, finish = [], None
    for ch in c.models.generate_content_stream(model=MODEL, contents="Weather in Paris?", config=tool_config):
        calls += ch.function_calls or []
        if ch.candidates and ch.candidates[0].finish_reason:
            finish = ch.candidates[0].finish_reason.name
    return [calls[0].name, calls[0].args, finish]

def json_out():
    r = c.models.generate_content(model=MODEL, contents="Capital of France?",
        config=types.GenerateContentConfig(max_output_tokens=100, response_mime_type="application/json", response_json_schema=SCHEMA))
    return json.loads(r.text)

def error():
    c.models.generate_content(model=MODEL, contents="please fail")
"""

EPILOGUE = """
for name, fn in [("text", text), ("stream", stream), ("tool", tool), ("after_tool", after_tool),
                 ("stream_tool", stream_tool), ("json", json_out), ("error", error)]:
    step(name, fn)
report(**out)
"""

SDKS = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI}

# caller SDK, model asked for, target provider, model called, upstream endpoints (plain, streamed)
ROUTES = {
    "anthropic-to-claude-on-bedrock": (
        "anthropic",
        "claude-sonnet-4-5",
        "bedrock",
        CLAUDE_ON_BEDROCK,
        ("invoke", "invoke-with-response-stream"),
    ),
    "anthropic-to-bedrock-converse": ("anthropic", "nova-lite", "bedrock", NOVA, ("converse", "converse-stream")),
    "gemini-to-openai": ("gemini", "gpt-4o", "openai", "gpt-4o", ("chat.completions", "chat.completions")),
    "openai-to-gemini": (
        "openai",
        "gemini-2.5-flash",
        "gemini",
        "gemini-2.5-flash",
        ("generateContent", "streamGenerateContent"),
    ),
    "gemini-to-anthropic": ("gemini", "claude-haiku-4-5", "anthropic", "claude-haiku-4-5", ("messages", "messages")),
    "anthropic-to-gemini": (
        "anthropic",
        "gemini-2.5-flash",
        "gemini",
        "gemini-2.5-flash",
        ("generateContent", "streamGenerateContent"),
    ),
    "openai-to-anthropic": ("openai", "claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", ("messages", "messages")),
    "openai-to-bedrock-converse": ("openai", "nova-lite", "bedrock", NOVA, ("converse", "converse-stream")),
}
# What each caller's SDK reports for the fakes' answers (chat_fakes: 21 prompt tokens, 5 of them
# cached; 7 output tokens): its finish reasons, and where JSON output cannot be carried.
FINISH = {
    "openai": ("stop", "tool_calls"),
    "anthropic": ("end_turn", "tool_use"),
    "gemini": ("STOP", "STOP"),
}
RATE_LIMIT_ERROR = {
    "openai": ["RateLimitError", 429],
    "anthropic": ["RateLimitError", 429],
    "gemini": ["ClientError", 429],
}
BAD_REQUEST_ERROR = {
    "openai": ["BadRequestError", 400],
    "anthropic": ["BadRequestError", 400],
    "gemini": ["ClientError", 400],
}


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(config)
    for fake in gateway.fakes.values():
        fake.handler = chat_fakes.answer
    return gateway


@pytest.fixture(scope="module")
def routes(gw) -> dict[str, tuple[dict, list, dict[str, list]]]:
    """Each route's client run once: what the SDK reported, the audit records of its seven calls,
    and what each fake upstream received meanwhile."""
    done = {}
    for name, (sdk, model, _target, _, _) in ROUTES.items():
        for fake in gw.fakes.values():
            fake.received.clear()
        code = PRELUDE + f"KEY, MODEL, SCHEMA, TOOL_SCHEMA = {VIRTUAL!r}, {model!r}, {SCHEMA!r}, {TOOL_SCHEMA!r}\n"
        result = gw.run(code + SDKS[sdk] + EPILOGUE, timeout=90)
        try:
            audit = gw.new_audit(len(STEPS))
        except AssertionError:  # a step that failed before it called: the tests show which
            audit = gw.audit()[-len(STEPS) :]
        done[name] = (result, audit, {n: list(f.received) for n, f in gw.fakes.items()})
    return done


@pytest.mark.parametrize("route", ROUTES)
def test_a_plain_answer_comes_back_in_the_callers_format_with_exact_usage(routes, route):
    sdk, model, target, called, (endpoint, _) = ROUTES[route]
    result, audit, received = routes[route]
    text = result["text"]
    assert text[0] == "Paris is the capital.", result
    assert text[1] == FINISH[sdk][0]
    if sdk == "anthropic":  # Anthropic counts its input without cache reads
        assert text[2:] == [16, 7, 28, 5]
    else:
        assert text[2:] == [21, 7, 28, 5]
    record = audit[0]
    assert (record["requested_provider"], record["provider"]) == (sdk, target)
    assert (record["requested_model"], record["model"]) == (model, called)
    assert record["upstream_endpoint"] == endpoint
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"], record["status"]) == (
        21,
        7,
        5,
        200,
    )
    # Only the target was called, with its own credential and nothing of the caller's
    assert [n for n, r in received.items() if r] == [target]
    seen = received[target][0]
    assert VIRTUAL not in json.dumps(seen.headers)
    if target == "bedrock":
        assert botocore_accepts(seen, *AWS), "the translated call is signed anew with SigV4"
    else:
        assert KEYS[target] in json.dumps(seen.headers)


@pytest.mark.parametrize("route", ROUTES)
def test_a_stream_is_translated_as_it_arrives(routes, route):
    sdk, _, _target, _, (_, streamed) = ROUTES[route]
    result, audit, _received = routes[route]
    text, finish, usage = result["stream"]
    assert (text, finish) == ("Paris is the capital.", FINISH[sdk][0]), result
    assert usage == [21, 7]
    record = audit[1]
    assert (record["upstream_endpoint"], record["stream"], record["input_tokens"], record["output_tokens"]) == (
        streamed,
        True,
        21,
        7,
    )


@pytest.mark.parametrize("route", ROUTES)
def test_a_tool_call_round_trip(routes, route):
    sdk, _, target, _, _ = ROUTES[route]
    result, audit, received = routes[route]
    assert result["tool"] == ["get_weather", {"city": "Paris"}, FINISH[sdk][1]], result
    assert result["stream_tool"] == ["get_weather", {"city": "Paris"}, FINISH[sdk][1]], result
    assert result["after_tool"] == ["Paris is the capital.", FINISH[sdk][0]], result
    # The tool's result reached the target in its own format, naming the call it answers
    answered = received[target][3].body.decode()
    assert "18C and sunny" in answered and "get_weather" in answered
    assert [r["status"] for r in audit[2:5]] == [200, 200, 200]


@pytest.mark.parametrize("route", ROUTES)
def test_json_output_follows_its_schema(routes, route):
    _sdk, _, target, _called, _ = ROUTES[route]
    result, _audit, received = routes[route]
    assert result["json"] == {"city": "Paris"}, result
    asked = json.dumps(received[target][5].json())
    assert "city" in asked and "additionalProperties" in asked  # the schema went along


@pytest.mark.parametrize("route", ROUTES)
def test_an_upstream_error_is_the_callers_own_exception(routes, route):
    sdk, _, _, _, _ = ROUTES[route]
    result, audit, _ = routes[route]
    assert result["error"]["error"] == RATE_LIMIT_ERROR[sdk], result
    assert audit[6]["status"] == 429


def test_a_call_in_the_targets_own_format_goes_untranslated(gw):
    """An OpenAI-format call to Gemini's OpenAI-compatible API, routed to OpenAI, which speaks that
    format: only its path changes, and no credential the client put where Gemini keeps one goes."""
    for fake in gw.fakes.values():
        fake.received.clear()
    result = gw.run(f"""
        from openai import OpenAI
        c = OpenAI(api_key={VIRTUAL!r}, base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
                   default_headers={{"x-goog-api-key": {VIRTUAL!r}}}, max_retries=0)
        r = c.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "Capital of France?"}}])
        report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
    """)
    assert result == {"text": "Paris is the capital.", "tokens": 28}
    (seen,) = gw.fakes["openai"].received
    assert (seen.path, seen.json()["model"], seen.headers["authorization"]) == (
        "/v1/chat/completions",
        "gpt-4o",
        f"Bearer {KEYS['openai']}",
    )
    assert VIRTUAL not in json.dumps(seen.headers) and "x-goog-api-key" not in seen.headers
    record = gw.last_audit()
    assert_fields(
        record,
        requested_provider="gemini",
        provider="openai",
        endpoint="chat.completions",
        upstream_endpoint="chat.completions",
    )
    assert (record["input_tokens"], record["output_tokens"]) == (21, 7)


def test_a_translated_stream_is_not_held_back(gw, tmp_path):
    """The Gemini upstream sends its second event only once the OpenAI client has the first one,
    translated: a proxy that held the stream back would leave the upstream waiting."""
    waited_in_vain = []

    def gate(i: int) -> None:
        deadline = time.monotonic() + 5
        while not (tmp_path / "first").exists():
            if time.monotonic() > deadline:
                waited_in_vain.append(i)
                return
            time.sleep(0.002)

    def answer(r):
        reply = chat_fakes.answer(r)
        reply.gate = gate
        return reply

    gw.fakes["gemini"].handler = answer
    try:
        result = gw.run(f"""
            from openai import OpenAI
            c = OpenAI(api_key={VIRTUAL!r}, max_retries=0)
            texts = []
            for chunk in c.chat.completions.create(model="gemini-2.5-flash", stream=True,
                    messages=[{{"role": "user", "content": "Capital of France?"}}]):
                if chunk.choices and chunk.choices[0].delta.content:
                    texts.append(chunk.choices[0].delta.content)
                    open({str(tmp_path / "first")!r}, "w").close()
            report(texts=texts)
        """)
    finally:
        gw.fakes["gemini"].handler = chat_fakes.answer
    assert result == {"texts": chat_fakes.ANSWER}
    assert waited_in_vain == []
