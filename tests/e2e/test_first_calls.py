"""A fresh proxy's first calls: what loading left behind is not walked by the garbage collector
while they run. Its first full collection used to walk every object of start-up (some 150 000)
on the event loop, holding every stream in flight for about 100 ms. The count of objects a full
collection walks stands for its time, which a loaded machine would make noise of."""

from __future__ import annotations

import json

from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Reply
from tests.support.proxy import ROOT

GC_WATCH = ROOT / "tests" / "support" / "gc_watch.py"
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def answers(received):
    path = received.path.split("?")[0]
    if path.endswith("/chat/completions") and received.json().get("stream"):
        return Reply(200, chunks=streams.openai_chat_as_asked(received.json()))
    if path == "/v1/messages":
        return Reply(200, chunks=streams.anthropic(), headers={"content-type": "text/event-stream"})
    if path.endswith(":streamGenerateContent"):
        return Reply(200, chunks=streams.gemini_sse(), headers={"content-type": "text/event-stream"})
    if path.endswith("/converse-stream"):
        return Reply(200, chunks=streams.bedrock_converse(), headers=EVENTSTREAM)
    return provider_answers(received)


FIRST_CALLS = """
import boto3, json
from anthropic import Anthropic
from google import genai
from openai import OpenAI
openai = OpenAI(api_key="tg-first-1", max_retries=0)
chat = list(openai.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hi"}]))
response = openai.responses.create(model="gpt-4.1", input="Hi")
with Anthropic(api_key="tg-first-1", max_retries=0).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as stream:
    message = stream.get_final_message()
google = genai.Client(api_key="tg-first-1")
gemini = list(google.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
converse = bedrock.converse_stream(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "Hi"}]}])
events = [next(iter(e)) for e in converse["stream"]]
report(chat=len(chat), response=response.status, anthropic=message.stop_reason, gemini=len(gemini), bedrock=events[-1])
"""


POLICY = """package tollgate

import rego.v1

deny contains "no tools" if input.request.has_tools
"""


def test_the_first_calls_leave_the_heap_of_start_up_alone(start_gateway, tmp_path):
    watch, policy = tmp_path / "gc.jsonl", tmp_path / "policy.rego"
    policy.write_text(POLICY)
    gw = start_gateway(
        lambda urls: {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": ["sk-real"]},
                "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real"]},
                "gemini": {"upstream": urls["gemini"], "keys": ["AIza-real"]},
                "bedrock": {"upstream": urls["bedrock"], "bearer_token": "ABSK-real"},
            },
            "clients": [{"name": "first", "keys": ["tg-first-1"], "groups": ["research"]}],
            "policy": {"rego": [str(policy)]},
            "limits": [{"name": "per client", "per": "client", "requests_per_minute": 1000}],
        },
        "-s",
        str(GC_WATCH),
        env={"TOLLGATE_GC_WATCH": str(watch)},
    )
    for fake in gw.fakes.values():
        fake.handler = answers
    result = gw.run(FIRST_CALLS, env={"AWS_BEARER_TOKEN_BEDROCK": "tg-first-1"})
    assert result == {"chat": 4, "response": "completed", "anthropic": "end_turn", "gemini": 3, "bedrock": "metadata"}
    records = gw.new_audit(5)
    assert [(r["provider"], r["status"], r["decision"]) for r in records] == [
        ("openai", 200, "allow"),
        ("openai", 200, "allow"),
        ("anthropic", 200, "allow"),
        ("gemini", 200, "allow"),
        ("bedrock", 200, "allow"),
    ]
    gw.proxy.stop()  # its `done`: what a full collection would walk after the calls
    seen = [json.loads(line) for line in watch.read_text().splitlines()]
    listening = seen[0]
    assert listening["event"] == "listening" and seen[-1]["event"] == "done"
    heap = listening["frozen"] + listening["walked"]  # every object the collector tracked at start-up
    assert heap > 50_000, seen
    # The start-up heap is out of every full collection: each walks what the calls made, a fraction.
    assert [s for s in seen if s["walked"] * 10 > heap] == [], seen
