"""Streams stay streams: every piece reaches the client before the upstream sends the next, the
bytes arrive unchanged, and the audit has the exact usage the stream reported."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame
from tests.support import streams
from tests.support.fake_upstream import Reply
from tests.support.h2 import H2Request, h2_calls, h2_tunnel
from tests.support.raw import send

EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(lambda urls: {"providers": {name: {"upstream": url} for name, url in urls.items()}})


class Lockstep:
    """The fake upstream sends piece i only once the client has acknowledged piece i - 1 (a file
    it creates); a proxy that buffered would leave the upstream waiting, which is recorded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.waited_in_vain: list[int] = []

    def gate(self, i: int) -> None:
        deadline = time.monotonic() + 5
        while not (self.directory / str(i - 1)).exists():
            if time.monotonic() > deadline:
                self.waited_in_vain.append(i)
                return
            time.sleep(0.002)

    def reply(self, pieces: list[bytes], **headers: str) -> Reply:
        return Reply(200, chunks=pieces, gate=self.gate, headers=headers)


ACK = """
import os
class Ack:
    def __init__(self):
        self.n = 0
    def __call__(self):
        open(os.path.join(%r, str(self.n)), "w").close()
        self.n += 1
ack = Ack()
"""


@pytest.fixture
def lockstep(gw, tmp_path):
    gw.reset()
    return Lockstep(tmp_path)


def run(gw, lockstep, code: str, env: dict | None = None) -> dict:
    return gw.run(ACK % str(lockstep.directory) + code, env=env)


def run_stream(gw, lockstep, provider: str, pieces: list[bytes], code: str) -> dict:
    """Run the client code against `provider`'s upstream streaming `pieces` in lockstep with it."""
    gw.fakes[provider].handler = lambda r: lockstep.reply(pieces)
    return run(gw, lockstep, code)


@pytest.mark.parametrize("usage_with_choices", [False, True])
def test_openai_chat_stream(gw, lockstep, usage_with_choices):
    pieces = streams.openai_chat(usage_with_choices)
    result = run_stream(
        gw,
        lockstep,
        "openai",
        pieces,
        """
from openai import OpenAI
text = ""
stream = OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    stream_options={"include_usage": True}, messages=[{"role": "user", "content": "hi"}])
for chunk in stream:
    ack()
    text += "".join(c.delta.content or "" for c in chunk.choices)
report(text=text, events=ack.n)
""",
    )
    assert result == {"text": "Hello", "events": len(pieces) - 1}
    assert lockstep.waited_in_vain == []
    record = gw.last_audit()
    assert (record["stream"], record["status"], record["error"]) == (True, 200, None)
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (19, 5, 24)
    assert (record["cached_tokens"], record["reasoning_tokens"], record["finish_reason"]) == (3, 1, "stop")
    # gpt-4o-mini ($ per Mtok): 16 x 0.15 + 3 cache reads x 0.075 + 5 x 0.60
    assert (record["cache_write_tokens"], record["cost_usd"]) == (None, 0.000005625)
    assert record["ttfb_ms"] is not None and record["latency_ms"] > record["ttfb_ms"]


def test_openai_responses_stream(gw, lockstep):
    result = run_stream(
        gw,
        lockstep,
        "openai",
        streams.openai_responses(),
        """
from openai import OpenAI
kinds = []
for event in OpenAI(api_key="sk-own", max_retries=0).responses.create(model="gpt-4.1", input="hi", stream=True):
    ack()
    kinds.append(event.type)
report(kinds=kinds)
""",
    )
    assert result["kinds"][-1] == "response.completed"
    assert lockstep.waited_in_vain == []
    record = gw.last_audit()
    assert (record["endpoint"], record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (
        "responses",
        11,
        4,
        15,
    )
    assert (record["cached_tokens"], record["finish_reason"]) == (2, "completed")


def test_anthropic_stream(gw, lockstep):
    result = run_stream(
        gw,
        lockstep,
        "anthropic",
        streams.anthropic(),
        """
import anthropic
text = ""
stream = anthropic.Anthropic(api_key="sk-ant-own", max_retries=0).messages.create(model="claude-sonnet-4-5",
    max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}])
for event in stream:
    ack()
    if event.type == "content_block_delta":
        text += event.delta.text
report(text=text)
""",
    )
    assert result == {"text": "Hello"}
    assert lockstep.waited_in_vain == []
    record = gw.last_audit()
    # message_start: 30 fresh + 50 cache reads; message_delta: 9 output tokens in all.
    assert (record["input_tokens"], record["cached_tokens"], record["output_tokens"], record["total_tokens"]) == (
        80,
        50,
        9,
        89,
    )
    assert (record["finish_reason"], record["stream"]) == ("end_turn", True)


def test_gemini_sse_stream(gw, lockstep):
    result = run_stream(
        gw,
        lockstep,
        "gemini",
        streams.gemini_sse(),
        """
from google import genai
client = genai.Client(api_key="AIza-own")
text = ""
for chunk in client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"):
    ack()
    text += chunk.text
report(text=text)
""",
    )
    assert result == {"text": 'He said "[{\\"l]}lo'}
    assert lockstep.waited_in_vain == []
    assert "alt=sse" in gw.fakes["gemini"].received[-1].path
    record = gw.last_audit()
    assert (record["endpoint"], record["stream"]) == ("streamGenerateContent", True)
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["finish_reason"]) == (
        8,
        6,
        14,
        "STOP",
    )


def test_gemini_json_array_stream_arrives_byte_for_byte(gw, lockstep):
    pieces = streams.gemini_array()
    gw.fakes["gemini"].handler = lambda r: lockstep.reply(pieces, **{"content-type": "application/json; charset=UTF-8"})
    result = run(
        gw,
        lockstep,
        f"""
import http.client, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("generativelanguage.googleapis.com", 443)
conn.request("POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", body=b'{{"contents": []}}',
             headers={{"x-goog-api-key": "AIza-own", "content-type": "application/json"}})
response = conn.getresponse()
sizes = {[len(p) for p in pieces]!r}
received = b""
for i in range(len(sizes)):
    while len(received) < sum(sizes[: i + 1]):
        received += response.read1(65536)
    ack()
report(body=received.decode())
""",
    )
    assert result["body"].encode() == b"".join(pieces)
    assert lockstep.waited_in_vain == []
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["finish_reason"]) == (8, 6, "STOP")


@pytest.mark.parametrize("invoke", [False, True])
def test_bedrock_streams(gw, lockstep, invoke):
    pieces = streams.bedrock_invoke() if invoke else streams.bedrock_converse()
    gw.fakes["bedrock"].handler = lambda r: lockstep.reply(pieces, **EVENTSTREAM)
    call = (
        'r = client.invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=b"{}")\n'
        'events = r["body"]'
        if invoke
        else 'r = client.converse_stream(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])\n'
        'events = r["stream"]'
    )
    result = run(
        gw,
        lockstep,
        f"""
import boto3
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s")
{call}
kinds = []
for event in events:
    ack()
    kinds.extend(event)
report(kinds=kinds)
""",
    )
    assert result["kinds"] == (
        ["chunk"] * 4
        if invoke
        else ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    )
    assert lockstep.waited_in_vain == []
    record = gw.last_audit()
    expected = (14, 9, 23) if invoke else (14, 7, 21)
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == expected
    assert (record["finish_reason"], record["stream"], record["error"]) == ("end_turn", True, None)
    assert record["endpoint"] == ("invoke-with-response-stream" if invoke else "converse-stream")


def test_client_that_leaves_mid_stream_is_audited_with_usage_so_far(gw, lockstep):
    pieces = streams.anthropic()
    gw.fakes["anthropic"].handler = lambda r: lockstep.reply(pieces)
    count = len(gw.audit())
    result = run(
        gw,
        lockstep,
        """
import anthropic
stream = anthropic.Anthropic(api_key="sk-ant-own", max_retries=0).messages.create(model="claude-sonnet-4-5",
    max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}])
for event in stream:
    break
stream.close()
report(first=event.type)
""",
    )
    assert result == {"first": "message_start"}
    record = gw.wait_audit(count + 1)[-1]
    assert (record["status"], record["error"]) == (200, "client disconnected")
    assert (record["input_tokens"], record["output_tokens"]) == (80, 1)  # what message_start said
    assert len(gw.wait_audit(count + 1)) == count + 1


def test_upstream_reset_mid_stream_is_audited(gw):
    gw.reset()
    pieces = streams.openai_chat()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=pieces, reset_after=3)
    count = len(gw.audit())
    result = gw.run("""
import openai
received = 0
try:
    for chunk in openai.OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}]):
        received += 1
    report(received=received, error=None)
except Exception as e:
    report(received=received, error=type(e).__name__)
""")
    assert result["received"] == 3 and result["error"] is not None
    record = gw.wait_audit(count + 1)[-1]
    assert record["status"] == 200 and record["error"].startswith("upstream broke off the response")
    assert record["input_tokens"] is None  # the usage chunk never came
    assert len(gw.audit()) == count + 1


PATH = "/v1/chat/completions"
SDK_STREAM = """
from openai import OpenAI
stream = OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    stream_options={"include_usage": True}, messages=[{"role": "user", "content": "hi"}])
report(text="".join(c.delta.content or "" for chunk in stream for c in chunk.choices))
"""


def test_trailer_fields_after_an_http1_stream_are_dropped_and_the_call_goes_on(gw):
    # mitmproxy's HTTP/1 layer raised on them: the client got no end, the call no audit record.
    gw.reset()
    pieces = streams.openai_chat()
    trailers = [("X-Upstream-Note", "the end"), ("Server-Timing", "total;dur=12")]
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=pieces, trailers=trailers)
    assert gw.run(SDK_STREAM) == {"text": "Hello"}
    record = gw.last_audit()
    assert (record["status"], record["error"], record["finish_reason"]) == (200, None, "stop")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (19, 5, 24)
    # Over HTTP/1 the client's chunked body has ended before them: they are not sent on.
    body = json.dumps(CHAT | {"stream_options": {"include_usage": True}}).encode()
    headers = {"Authorization": "Bearer sk-own", "Content-Type": "application/json"}
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", PATH, headers=headers, body=body)
    assert (answer.status, answer.body, answer.trailers) == (200, b"".join(pieces), [])
    # To a client over HTTP/2 they go on, as HTTP/2 sends them.
    headers = {"authorization": "Bearer sk-own", "content-type": "application/json"}
    (h2_answer,) = h2_calls(gw.proxy.port, gw.bundle, "api.openai.com", [H2Request(PATH, body, headers)], timeout=20)
    assert (h2_answer.status, h2_answer.body) == (200, b"".join(pieces))
    assert h2_answer.trailers == {"x-upstream-note": "the end", "server-timing": "total;dur=12"}
    for record in gw.new_audit(3)[1:]:
        assert (record["status"], record["error"], record["total_tokens"]) == (200, None, 24)


RAW_CHAT = """
import http.client, json, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("api.openai.com", 443)
conn.request("POST", "/v1/chat/completions", body=json.dumps(%r),
    headers={"authorization": "Bearer sk-own", "content-type": "application/json"})
report(body=conn.getresponse().read().decode())
"""
CHAT = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def test_a_stream_without_include_usage_is_counted_by_default(gw):
    """As curl or Node's openai SDK send it: no stream_options. The default asks the upstream for usage
    and removes the usage chunk from what the client gets, which is exactly the stream it asked for."""
    gw.reset()
    pieces = streams.openai_chat()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=pieces)
    result = gw.run(RAW_CHAT % (CHAT,))
    assert result["body"].encode() == b"".join(pieces).replace(pieces[-2], b"")
    assert gw.fakes["openai"].received[-1].json()["stream_options"] == {"include_usage": True}
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["finish_reason"]) == (
        19,
        5,
        24,
        "stop",
    )
    assert (record["cached_tokens"], record["reasoning_tokens"]) == (3, 1)
    assert (record["cache_write_tokens"], record["cost_usd"]) == (None, 0.000005625)


def test_inject_asks_for_usage_and_hides_it_from_the_client(gw):
    gw.reset()
    pieces = streams.openai_chat()
    # Pieces cut across event boundaries, CRLF split in two: the client must still get exact bytes.
    wire = b"".join(pieces).replace(b"\n", b"\r\n")
    cuts = [wire[i : i + 37] for i in range(0, len(wire), 37)]
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=cuts)
    result = gw.run(RAW_CHAT % ({**CHAT, "stream_options": {"foo": 1}},))
    usage_event = pieces[-2].replace(b"\n", b"\r\n")
    assert result["body"].encode() == wire.replace(usage_event, b"")
    sent = gw.fakes["openai"].received[-1].json()
    assert sent["stream_options"] == {"foo": 1, "include_usage": True}
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["finish_reason"]) == (
        19,
        5,
        24,
        "stop",
    )


def test_inject_with_the_openai_sdk(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat())
    result = gw.run("""
from openai import OpenAI
chunks = list(OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    messages=[{"role": "user", "content": "hi"}]))
report(n=len(chunks), usage=[c.usage for c in chunks if c.usage], empty=[c.id for c in chunks if not c.choices])
""")
    assert result == {"n": 4, "usage": [], "empty": []}
    assert gw.fakes["openai"].received[-1].json()["stream_options"] == {"include_usage": True}
    assert gw.last_audit()["total_tokens"] == 24


@pytest.fixture(scope="module")
def gw_passive(start_gateway):
    return start_gateway(
        lambda urls: {"providers": {"openai": {"upstream": urls["openai"]}}, "audit": {"stream_usage": "passive"}}
    )


def test_passive_forwards_the_request_and_the_stream_unchanged(gw_passive):
    gw_passive.reset()
    pieces = [*streams.openai_chat()[:-2], streams.sse("[DONE]")]  # no usage: it was not asked for
    gw_passive.fakes["openai"].handler = lambda r: Reply(200, chunks=pieces)
    result = gw_passive.run(RAW_CHAT % (CHAT,))
    assert result["body"].encode() == b"".join(pieces)
    assert gw_passive.fakes["openai"].received[-1].body == json.dumps(CHAT).encode()
    record = gw_passive.last_audit()
    assert (record["status"], record["finish_reason"], record["input_tokens"], record["total_tokens"]) == (
        200,
        "stop",
        None,
        None,
    )


def test_inject_leaves_a_client_that_asked_for_usage_alone(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat())
    result = gw.run("""
from openai import OpenAI
chunks = list(OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    stream_options={"include_usage": True}, messages=[{"role": "user", "content": "hi"}]))
report(usage=[c.usage.total_tokens for c in chunks if c.usage])
""")
    assert result == {"usage": [24]}


def test_a_client_that_says_goaway_with_its_request_still_gets_the_answer(gw):
    """A graceful GOAWAY names the streams the server opened: the client's own go on (the AWS SDK
    for JavaScript sends one once an answer's headers have come, on a connection it used once)."""
    gw.reset()
    before = len(gw.audit())
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    request = H2Request(
        "/v1/chat/completions", body, {"authorization": "Bearer sk-own", "content-type": "application/json"}
    )
    (answer,) = h2_calls(gw.proxy.port, gw.bundle, "api.openai.com", [request], timeout=20, goaway=True)
    assert (answer.status, answer.reset, answer.json()["usage"]["total_tokens"]) == (200, None, 28)
    (record,) = gw.wait_audit(before + 1)[before:]
    assert (record["status"], record["total_tokens"], record["error"]) == (200, 28, None)


def test_a_client_that_says_goaway_after_its_answer_came_closes_the_connection_itself(gw):
    """The AWS SDK for JavaScript says GOAWAY once an answer's headers have come; when the whole
    answer was sent before, the connection still stays open until the client closes it: Node
    destroys a stream it has not read yet when its socket closes ("Premature close")."""
    gw.reset()
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "api.openai.com"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-own"),
        ("content-type", "application/json"),
    ]
    events: list[h2.events.Event] = []
    said_goaway = False
    before = len(gw.audit())
    with h2_tunnel(gw.proxy.port, gw.bundle, "api.openai.com", timeout=20) as tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, headers)
        conn.send_data(1, body, end_stream=True)
        tls.sendall(conn.data_to_send())
        for _ in range(1000):  # each read brings at least one frame; the socket's timeout bounds a wait
            if any(isinstance(e, h2.events.PingAckReceived) for e in events):
                break
            data = tls.recv(65535)
            if not data:
                break
            events += conn.receive_data(data)
            if not said_goaway and any(isinstance(e, h2.events.StreamEnded) for e in events):
                # The answer has all come: now the client's GOAWAY, then a PING the proxy answers
                # if, and only if, it kept the connection open.
                tls.sendall(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
                conn.ping(b"tollgate")
                said_goaway = True
            tls.sendall(conn.data_to_send())
    assert [type(e).__name__ for e in events if isinstance(e, (h2.events.StreamEnded, h2.events.PingAckReceived))] == [
        "StreamEnded",
        "PingAckReceived",
    ]
    (record,) = gw.wait_audit(before + 1)[before:]
    assert (record["status"], record["total_tokens"], record["error"]) == (200, 28, None)


ANTHROPIC_STREAM = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
).encode()
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-own", "anthropic-version": "2023-06-01", "content-type": "application/json"}


def test_an_http2_client_that_cancels_its_stream_has_disconnected_as_over_http1(gw):
    # HTTP/2 clients (Codex, Node's fetch) stop reading a stream by resetting it (CANCEL): the
    # client's doing, not the upstream's, before the answer's headers as after them.
    gw.reset()
    pieces = streams.anthropic()
    gw.fakes["anthropic"].handler = lambda r: Reply(200, chunks=pieces, gate=lambda i: time.sleep(0.2))
    mid_stream = H2Request("/v1/messages", ANTHROPIC_STREAM, ANTHROPIC_HEADERS, cancel_after=len(pieces[0]))
    count = len(gw.audit())
    (answer,) = h2_calls(gw.proxy.port, gw.bundle, "api.anthropic.com", [mid_stream], timeout=20)
    assert (answer.status, answer.cancelled, answer.body) == (200, True, pieces[0])
    record = gw.wait_audit(count + 1)[-1]
    assert (record["status"], record["error"]) == (200, "client disconnected")
    assert (record["input_tokens"], record["output_tokens"]) == (80, 1)  # what message_start said
    gw.fakes["anthropic"].handler = lambda r: Reply(200, chunks=pieces, delay=1.0)
    waiting = H2Request("/v1/messages", ANTHROPIC_STREAM, ANTHROPIC_HEADERS, cancel_in=0.3)
    (answer,) = h2_calls(gw.proxy.port, gw.bundle, "api.anthropic.com", [waiting], timeout=20)
    assert (answer.status, answer.cancelled) == (None, True)
    record = gw.wait_audit(count + 2)[-1]
    assert (record["status"], record["error"], record["decision"]) == (None, "client disconnected", "allow")


@pytest.mark.parametrize("obfuscation", [None, "K3q9Zx"])
def test_inject_hides_the_usage_it_asked_for_byte_for_byte(gw, obfuscation):
    """Asked for usage, OpenAI adds `"usage":null` to every chunk and a chunk of usage: the client
    that did not ask gets, byte for byte, the stream OpenAI sends a request that did not ask."""
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat_as_asked(r.json(), obfuscation))
    result = gw.run(RAW_CHAT % (CHAT,))
    assert result["body"].encode() == b"".join(streams.openai_chat_as_asked(CHAT, obfuscation))
    sent = gw.fakes["openai"].received[-1]
    assert sent.json()["stream_options"] == {"include_usage": True}
    assert sent.headers["accept-encoding"] == "identity"  # an answer whose events can be found
    record = gw.last_audit()
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["status"]) == (
        19,
        5,
        24,
        200,
    )


def test_inject_gives_the_openai_sdk_the_chunks_it_would_have_had(gw):
    """What a client counts (litellm yields a chunk more for a stream whose chunks have `usage`)."""
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat_as_asked(r.json()))
    result = gw.run("""
from openai import OpenAI
chunks = list(OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    messages=[{"role": "user", "content": "hi"}]))
report(n=len(chunks), fields=sorted({k for c in chunks for k in c.model_dump(exclude_unset=True)}),
    text="".join(c.choices[0].delta.content or "" for c in chunks))
""")
    assert result == {"n": 4, "fields": ["choices", "created", "id", "model", "object"], "text": "Hello"}
    assert gw.fakes["openai"].received[-1].json()["stream_options"] == {"include_usage": True}
    assert gw.last_audit()["total_tokens"] == 24
