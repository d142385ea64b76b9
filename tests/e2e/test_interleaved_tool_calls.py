"""Parallel tool calls that interleave, on a route across formats, end to end: the official anthropic
SDK calls Messages through mitmdump, a rule sends the call to OpenAI's chat API, and the fake
upstream streams three tool calls whose argument deltas interleave (index 0, 1, 0, 2, 1, 0, 2), as
OpenAI's format allows. The SDK gets one content block open at a time, indexes consecutive, each
call whole in its own block with its id and name, and the usage; under an answer rule (`redact`) the
stream is read, not stopped as unread, and values split across the interleaved deltas come
redacted. The same stream to boto3's `converse_stream` (Bedrock Converse's blocks) and to
google-genai's `generate_content_stream` (Gemini's whole function calls)."""

from __future__ import annotations

import json

import pytest
from tests.support.answers import AWS, CARD, KINDS, answered_by
from tests.support.canned import provider_answers
from tests.support.configs import every_provider
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

VIRTUAL = "tg-interleave-0001"
REDACTED_AWS = "[REDACTED:secrets.aws_access_key_id]"
REDACTED_CARD = "[REDACTED:pii.payment_card]"


def config(urls: dict[str, str]) -> dict:
    keys = {"openai": "sk-real-interleave-0001", "anthropic": "sk-ant-real-interleave-0001"}
    keys["gemini"] = "AIza-real-interleave-0001"
    return {
        "providers": every_provider(urls, keys, ("AKIDINTERLEAVE000001", "real-aws-secret-0001")),
        "clients": [{"name": "agent", "keys": [VIRTUAL]}],
        "overrides": [
            {"match": {"provider": "anthropic", "model": "gpt-*"}, "provider": "openai"},
            {"match": {"provider": "bedrock", "model": "amazon.nova*"}, "provider": "openai", "model": "gpt-4o"},
            {"match": {"provider": "gemini", "model": "gpt-*"}, "provider": "openai"},
        ],
        "guardrails": [{"match": {"model": "gpt-guarded"}, "on": ["answer"], "detect": KINDS, "action": "redact"}],
    }


# Each call's id, name and arguments, cut where the stream cuts them.
PLAIN = [
    ("call_w", "get_weather", ['{"ci', 'ty": "Par', 'is", "unit": "c"}']),
    ("call_t", "get_time", ['{"zo', 'ne": "Europe/Paris"}']),
    ("call_s", "search", ['{"query"', ': "weather {and} \\"time\\""}']),
]
# The same, an AWS key and a card number each split across deltas other calls' come between.
GUARDED = [
    ("call_w", "run", ['{"cmd": "curl -u ' + AWS[:9], AWS[9:14], AWS[14:] + ' https://x"}']),
    ("call_t", "pay", ['{"card": "' + CARD[:6], CARD[6:] + '"}']),
    ("call_s", "search", ['{"query"', ': "weather"}']),
]
ORDER = [0, 1, 0, 2, 1, 0, 2]  # the call each delta is of, as they come


def chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    head = {"id": "chatcmpl-i", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**head, "choices": [choice]})


def interleaved(calls: list[tuple[str, str, list[str]]]) -> list[bytes]:
    """OpenAI's chat stream of `calls`, their deltas in ORDER (a call's first with its id and name),
    then the finish and the usage (21 prompt tokens, 5 of them cached; 7 completion tokens)."""
    events = [chunk({"role": "assistant", "content": None})]
    taken = [0, 0, 0]
    for number in ORDER:
        call_id, name, pieces = calls[number]
        entry: dict = {"index": number, "function": {"arguments": pieces[taken[number]]}}
        if taken[number] == 0:
            entry.update(id=call_id, type="function")
            entry["function"]["name"] = name
        taken[number] += 1
        events.append(chunk({"tool_calls": [entry]}))
    usage = {
        "prompt_tokens": 21,
        "completion_tokens": 7,
        "total_tokens": 28,
        "prompt_tokens_details": {"cached_tokens": 5},
    }
    tail = {"id": "chatcmpl-i", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return [*events, chunk({}, "tool_calls"), sse({**tail, "choices": [], "usage": usage}), sse("[DONE]")]


def upstream(received: Received) -> Reply:
    if not received.path.endswith("/chat/completions"):
        return provider_answers(received)
    guarded = received.json()["model"] == "gpt-guarded"
    return Reply(200, chunks=interleaved(GUARDED if guarded else PLAIN))


@pytest.fixture(scope="module")
def gw(start_gateway):
    return answered_by(start_gateway(config, providers=("openai", "anthropic", "gemini", "bedrock")), upstream)


READ = """
import anthropic
client = anthropic.Anthropic(api_key={key!r}, max_retries=0)
ask = dict(model={model!r}, max_tokens=100, messages=[{{"role": "user", "content": "weather, time, search"}}],
           tools=[{{"name": n, "input_schema": {{"type": "object"}}}} for n in ("get_weather", "get_time", "search", "run", "pay")])
raw = []
for event in client.messages.create(stream=True, **ask):
    raw.append([event.type, getattr(event, "index", None),
                event.content_block.type if event.type == "content_block_start" else
                event.delta.type if event.type == "content_block_delta" else None])
with client.messages.stream(**ask) as s:
    final = s.get_final_message()
report(raw=raw, content=[b.model_dump(include={{"type", "id", "name", "input"}}) for b in final.content],
       stop=final.stop_reason, usage=final.usage.model_dump(include={{"input_tokens", "output_tokens",
       "cache_read_input_tokens", "cache_creation_input_tokens"}}))
"""


def expected_raw(calls: list[tuple[str, str, list[str]]]) -> list[list]:
    """One block open at a time: each call's start, all its deltas, its stop; then the next."""
    raw: list[list] = [["message_start", None, None]]
    for index, (_, _, pieces) in enumerate(calls):
        raw.append(["content_block_start", index, "tool_use"])
        raw += [["content_block_delta", index, "input_json_delta"]] * len(pieces)
        raw.append(["content_block_stop", index, None])
    return [*raw, ["message_delta", None, None], ["message_stop", None, None]]


def test_interleaved_calls_come_each_whole_in_its_own_block(gw):
    result = gw.run(READ.format(key=VIRTUAL, model="gpt-4o"))
    assert result["raw"] == expected_raw(PLAIN)
    assert result["content"] == [
        {"type": "tool_use", "id": "call_w", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "call_t", "name": "get_time", "input": {"zone": "Europe/Paris"}},
        {"type": "tool_use", "id": "call_s", "name": "search", "input": {"query": 'weather {and} "time"'}},
    ]
    assert result["stop"] == "tool_use"
    usage = {"input_tokens": 16, "output_tokens": 7, "cache_read_input_tokens": 5, "cache_creation_input_tokens": None}
    assert result["usage"] == usage
    record = gw.last_audit()
    assert (record["provider"], record["endpoint"], record["upstream_endpoint"]) == (
        "openai",
        "messages",
        "chat.completions",
    )
    assert (record["status"], record["error"], record["input_tokens"], record["output_tokens"]) == (200, None, 21, 7)


def test_under_an_answer_rule_values_split_across_interleaved_calls_come_redacted(gw):
    result = gw.run(READ.format(key=VIRTUAL, model="gpt-guarded"))
    assert result["content"] == [
        {"type": "tool_use", "id": "call_w", "name": "run", "input": {"cmd": f"curl -u {REDACTED_AWS} https://x"}},
        {"type": "tool_use", "id": "call_t", "name": "pay", "input": {"card": REDACTED_CARD}},
        {"type": "tool_use", "id": "call_s", "name": "search", "input": {"query": "weather"}},
    ]
    # Every block's deltas came in it (a redacted one may be written in fewer pieces), none after its stop.
    raw = result["raw"]
    assert [e for e in raw if e[0] != "content_block_delta"] == [
        e for e in expected_raw(GUARDED) if e[0] != "content_block_delta"
    ]
    opened = None
    for kind, index, _ in raw:
        opened = index if kind == "content_block_start" else None if kind == "content_block_stop" else opened
        assert kind != "content_block_delta" or index == opened
    assert result["stop"] == "tool_use" and result["usage"]["output_tokens"] == 7
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, None, None)
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert json.dumps(result).find(AWS[9:]) == -1 and json.dumps(result).find(CARD[6:]) == -1


CONVERSE = """
import boto3, json
from botocore.config import Config
client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
tools = {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in ("get_weather", "get_time", "search")]}
r = client.converse_stream(modelId="amazon.nova-lite-v1:0", toolConfig=tools,
                           messages=[{"role": "user", "content": [{"text": "weather, time, search"}]}])
raw, uses, args, stop, usage = [], {}, {}, None, None
for i, event in enumerate(r["stream"]):
    assert i < 100, "a stream without end"
    (kind, body), = event.items()
    index = body.get("contentBlockIndex")
    raw.append([kind, index])
    if kind == "contentBlockStart":
        uses[index] = body["start"]["toolUse"]
    elif kind == "contentBlockDelta":
        args[index] = args.get(index, "") + body["delta"]["toolUse"]["input"]
    elif kind == "messageStop":
        stop = body["stopReason"]
    elif kind == "metadata":
        usage = body["usage"]
report(raw=raw, calls=[{**uses[i], "input": json.loads(args[i])} for i in sorted(uses)], stop=stop, usage=usage)
"""


def test_boto3_converse_stream_gets_each_call_whole_in_its_own_block(gw):
    result = gw.run(CONVERSE, env={"AWS_BEARER_TOKEN_BEDROCK": VIRTUAL})
    raw: list[list] = [["messageStart", None]]
    for index, (_, _, pieces) in enumerate(PLAIN):
        raw += [
            ["contentBlockStart", index],
            *[["contentBlockDelta", index]] * len(pieces),
            ["contentBlockStop", index],
        ]
    assert result["raw"] == [*raw, ["messageStop", None], ["metadata", None]]
    assert result["calls"] == [
        {"toolUseId": "call_w", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        {"toolUseId": "call_t", "name": "get_time", "input": {"zone": "Europe/Paris"}},
        {"toolUseId": "call_s", "name": "search", "input": {"query": 'weather {and} "time"'}},
    ]
    assert result["stop"] == "tool_use"
    assert result["usage"] == {"inputTokens": 16, "outputTokens": 7, "totalTokens": 28, "cacheReadInputTokens": 5}
    record = gw.last_audit()
    assert (record["provider"], record["upstream_endpoint"], record["status"], record["error"]) == (
        "openai", "chat.completions", 200, None
    )  # fmt: skip


GENAI = """
from google import genai
from google.genai import types
client = genai.Client(api_key={key!r})
names = ("get_weather", "get_time", "search")
tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name=n) for n in names])]
calls, finish, usage = [], None, None
for i, chunk in enumerate(client.models.generate_content_stream(
        model="gpt-4o", contents="weather, time, search", config=types.GenerateContentConfig(tools=tools))):
    assert i < 100, "a stream without end"
    for part in chunk.candidates[0].content.parts or []:
        if part.function_call:
            calls.append({{"id": part.function_call.id, "name": part.function_call.name, "args": part.function_call.args}})
    finish = chunk.candidates[0].finish_reason or finish
    if chunk.usage_metadata and chunk.usage_metadata.prompt_token_count:
        u = chunk.usage_metadata
        usage = [u.prompt_token_count, u.candidates_token_count, u.cached_content_token_count, u.total_token_count]
report(calls=calls, finish=str(finish), usage=usage)
"""


def test_google_genai_stream_gets_each_function_call_whole(gw):
    result = gw.run(GENAI.format(key=VIRTUAL))
    assert result["calls"] == [
        {"id": "call_w", "name": "get_weather", "args": {"city": "Paris", "unit": "c"}},
        {"id": "call_t", "name": "get_time", "args": {"zone": "Europe/Paris"}},
        {"id": "call_s", "name": "search", "args": {"query": 'weather {and} "time"'}},
    ]
    assert result["finish"] == "FinishReason.STOP" and result["usage"] == [21, 7, 5, 28]
    record = gw.last_audit()
    assert (record["provider"], record["upstream_endpoint"], record["status"], record["error"]) == (
        "openai", "chat.completions", 200, None
    )  # fmt: skip
