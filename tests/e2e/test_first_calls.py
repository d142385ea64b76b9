"""A fresh proxy's first calls do on the event loop no work that start-up could have done, which
would hold every stream in flight meanwhile: the garbage collector's first full collection walked
every object of start-up (some 145 000: 100 ms and more), and the first upstream connection made
mitmproxy's TLS context (certifi's CAs loaded: 25-50 ms). Counted, not timed
(tests/support/start_up_watch.py): a loaded machine would make noise of the times."""

from __future__ import annotations

import json

from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Reply
from tests.support.proxy import ROOT

WATCH = ROOT / "tests" / "support" / "start_up_watch.py"
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


def test_the_first_calls_do_nothing_start_up_could_have_done(start_gateway, tmp_path):
    watch, policy = tmp_path / "start-up.jsonl", tmp_path / "policy.rego"
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
        str(WATCH),
        env={"TOLLGATE_START_UP_WATCH": str(watch)},
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
    # The upstream TLS context the calls used was made before the proxy listened.
    assert listening["tls_contexts"] == seen[-1]["tls_contexts"] == 1, seen
