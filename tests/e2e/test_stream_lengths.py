"""A streamed answer that comes with a `Content-Length` (a stand-in, an OpenAI-compatible server, a
buffering proxy): where Tollgate changes its bytes (the usage it asked for removed, a value
redacted, in Claude's own stream routed to Vertex AI too) the client gets it without that length,
and so gets all of it rather than wait for bytes that will not come; where Tollgate passes it
unchanged, the length stays. Driven with the official openai and anthropic SDKs (a timeout of 30 s,
not their 600: a client left waiting fails soon), a raw HTTP/1.1 client and an HTTP/2 one, through
mitmdump against a fake upstream."""

from __future__ import annotations

import json

import pytest
from tests.e2e.test_google_backends import ALICE, CLAUDE_ROUTES, start
from tests.support import streams
from tests.support.answers import AWS, REDACTED_TEXT, TEXT, pieces
from tests.support.fake_upstream import Received, Reply
from tests.support.h2 import H2Request, h2_calls

SSE = {"content-type": "text/event-stream"}
KIND = "secrets.aws_access_key_id"


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {name: {"upstream": url} for name, url in urls.items()},
            "guardrails": [
                # A rule on requests too: without one the guardrails are not loaded at all.
                {"detect": ["secrets.stripe_key"], "action": "audit"},
                # Claude's answers are read (and redacted); OpenAI's are not, so that a chat stream's
                # only change is the usage Tollgate asked for.
                {"match": {"model": "claude-*"}, "on": ["answer"], "detect": [KIND], "action": "redact"},
            ],
        }
    )


def whole(events: list[bytes]) -> Reply:
    """The stream in one body with its `Content-Length` (the fake sends one for every body)."""
    return Reply(200, body=b"".join(events), headers=SSE)


def anthropic_events(text: str) -> list[bytes]:
    """Claude's stream of `text`, in deltas of 7 characters (the key split across two)."""
    first, *rest = streams.anthropic()
    middle = [
        streams.sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        *(
            streams.sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                "content_block_delta",
            )
            for p in pieces(text, 7)
        ),
    ]
    at = next(i for i, e in enumerate(rest) if b"content_block_stop" in e)
    return [first, *middle, *rest[at:]]


def test_the_openai_sdk_gets_a_stream_whose_asked_usage_was_removed_whole(gw):
    """Read as a tool that relays the stream reads it, to the body's end (the SDK's own chunks stop
    at `[DONE]`): every line, at once, and then the same chunks parsed."""
    gw.reset()
    gw.fakes["openai"].handler = lambda r: whole(streams.openai_chat_as_asked(r.json()))
    result = gw.run("""
import json
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk
client = OpenAI(api_key="sk-own", max_retries=0, timeout=30)
with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "hi"}]) as answer:
    lines = [line for line in answer.iter_lines() if line]
chunks = [ChatCompletionChunk.model_validate_json(line[6:]) for line in lines[:-1]]
report(last=lines[-1], usage=[c.usage for c in chunks if c.usage], empty=[c.id for c in chunks if not c.choices],
    text="".join(c.choices[0].delta.content or "" for c in chunks), n=len(chunks))
""")
    assert result == {"last": "data: [DONE]", "usage": [], "empty": [], "text": "Hello", "n": 4}
    assert gw.fakes["openai"].received[-1].json()["stream_options"] == {"include_usage": True}
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["status"]) == (
        19,
        5,
        24,
        200,
    )
    assert (record["error"], record["finish_reason"]) == (None, "stop")


def test_the_anthropic_sdk_gets_a_redacted_stream_whole(gw):
    gw.reset()
    gw.fakes["anthropic"].handler = lambda r: whole(anthropic_events(TEXT))
    result = gw.run("""
import anthropic
client = anthropic.Anthropic(api_key="sk-ant-own", max_retries=0, timeout=30)
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
        messages=[{"role": "user", "content": "hi"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
report(text=text, usage=[final.usage.input_tokens, final.usage.output_tokens])
""")
    assert result == {"text": REDACTED_TEXT, "usage": [30, 9]}
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["status"], record["error"]) == (80, 9, 200, None)
    assert AWS not in json.dumps(record)


RAW = """
import http.client, json, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, timeout=30,
    context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("api.openai.com", 443)
conn.request("POST", "/v1/chat/completions", body=json.dumps(%r),
    headers={"authorization": "Bearer sk-own", "content-type": "application/json"})
answer = conn.getresponse()
report(headers={k.lower(): v for k, v in answer.getheaders()}, body=answer.read().decode())
"""
CHAT = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def test_a_changed_stream_goes_chunked_over_http1(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: whole(streams.openai_chat_as_asked(r.json()))
    result = gw.run(RAW % (CHAT,))
    assert result["body"].encode() == b"".join(streams.openai_chat_as_asked(CHAT))
    assert "content-length" not in result["headers"]
    assert result["headers"]["transfer-encoding"] == "chunked"
    assert gw.last_audit()["total_tokens"] == 24


def test_an_unchanged_stream_keeps_its_length(gw):
    """The client asked for usage itself: Tollgate passes the bytes as they came, length and all."""
    gw.reset()
    asked = {**CHAT, "stream_options": {"include_usage": True}}
    body = b"".join(streams.openai_chat_as_asked(asked))
    gw.fakes["openai"].handler = lambda r: whole(streams.openai_chat_as_asked(r.json()))
    result = gw.run(RAW % (asked,))
    assert result["body"].encode() == body
    assert result["headers"]["content-length"] == str(len(body))
    assert "transfer-encoding" not in result["headers"]
    assert gw.last_audit()["total_tokens"] == 24


def test_a_changed_stream_goes_without_its_length_over_http2(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: whole(streams.openai_chat_as_asked(r.json()))
    headers = {"authorization": "Bearer sk-own", "content-type": "application/json"}
    request = H2Request("/v1/chat/completions", json.dumps(CHAT).encode(), headers)
    (answer,) = h2_calls(gw.proxy.port, gw.bundle, "api.openai.com", [request], timeout=30)
    assert (answer.status, answer.reset) == (200, None)
    assert answer.body == b"".join(streams.openai_chat_as_asked(CHAT))
    assert "content-length" not in answer.headers
    assert gw.last_audit()["total_tokens"] == 24


@pytest.fixture(scope="module")
def routed(start_gateway, tmp_path_factory, upstream_ca_pem):
    """Anthropic's calls routed to Claude on Vertex AI (its stream goes on as Claude gave it), read
    by an answer guardrail."""
    settings = {"credentials": "service-account", "location": "us-east5"}
    guardrails = [
        {"detect": ["secrets.stripe_key"], "action": "audit"},
        {"on": ["answer"], "detect": [KIND], "action": "redact"},
    ]
    more = {**CLAUDE_ROUTES, "guardrails": guardrails}
    gw = start(start_gateway, tmp_path_factory, upstream_ca_pem, settings, more=more)
    vertex = gw.vertex

    def answer(r: Received) -> Reply:
        if r.path.split("?", 1)[0].endswith(":streamRawPredict"):
            return whole(anthropic_events(TEXT))
        return vertex(r)

    gw.fakes["vertex"].handler = answer
    return gw


def test_a_redacted_stream_routed_to_claude_on_vertex_goes_without_its_length(routed):
    result = routed.run(f"""
import anthropic
client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0, timeout=30)
with client.messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=100,
        messages=[{{"role": "user", "content": "hi"}}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
report(text=text, usage=[final.usage.input_tokens, final.usage.output_tokens])
""")
    assert result == {"text": REDACTED_TEXT, "usage": [30, 9]}
    record = routed.last_audit()
    assert (record["provider"], record["status"], record["error"]) == ("vertex", 200, None)
    assert (record["input_tokens"], record["output_tokens"]) == (80, 9)
