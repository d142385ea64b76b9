"""Guardrails on answers in OpenAI's Responses API, with the official openai SDK through mitmdump: a
streamed response whose text carries an AWS key split across events and whose function call carries
a card number split across its argument deltas comes with each value replaced, in the deltas and in
every event that repeats the text whole (`redact`); or it stops before the value with an error the
SDK raises on while iterating, the upstream's connection closed (`deny`); a JSON response is served
redacted or refused 403. The plans' formats too: Codex signed in with ChatGPT (its Responses over
server-sent events, and over the Responses WebSocket, where a denied answer gets an `error` event
and the WebSocket closes; the Codex CLI itself too), and Copilot's OpenAI chat."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.answer_gateways import cut_at_the_key, refused_for_the_key, stopped_before_the_keys_tokens
from tests.support.answers import (
    ARGS,
    AWS,
    CARD,
    FILLERS,
    KINDS,
    REDACTED_TEXT,
    TEXT,
    AnswerUpstream,
    answered_by,
    pieces,
)
from tests.support.canned import provider_answers
from tests.support.codex import clean_env, installed_codex, run_in_session
from tests.support.fake_realtime import FakeRealtime, HttpRequest, not_found, responding, responses_usage
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

VIRTUAL = "tg-responses-alice-0001"
REDACTED_ARGS = ARGS.replace(CARD, "[REDACTED:pii.payment_card]")
WORKSPACE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
COPILOT_TOKEN = (
    "tid=0f1e2d3c4b5a69788796a5b4c3d2e1f0;exp=4102444800;sku=copilot_for_business_seat;"
    "proxy-ep=proxy.business.githubcopilot.com;st=dotcom;chat=1;8kp=1:5ecret-copilot-mac-q7"
)


def usage() -> dict[str, Any]:
    return {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}


def response_events(
    text: str, arguments: str | None, fillers: int = 0, deltas: list[str] | None = None
) -> list[dict[str, Any]]:
    """A response as OpenAI streams it: the text in 5-character deltas (the key across four), a
    function call's arguments in 4-character ones (the card across five), each then whole."""
    response = {"id": "resp_g", "object": "response", "status": "in_progress", "model": "gpt-5", "output": []}
    part = {"type": "output_text", "text": text, "annotations": []}
    message = {"id": "msg_g", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}},
    ]
    where = {"item_id": "msg_g", "output_index": 0, "content_index": 0}
    events.append({"type": "response.content_part.added", **where, "part": {**part, "text": ""}})
    deltas = (deltas or pieces(text, 5)) + [" more"] * fillers
    events += [{"type": "response.output_text.delta", **where, "delta": p, "logprobs": []} for p in deltas]
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
    ]
    output = [message]
    if arguments is not None:
        call = {"id": "fc_g", "type": "function_call", "call_id": "call_1", "name": "pay", "arguments": arguments}
        output.append(call)
        events.append({"type": "response.output_item.added", "output_index": 1, "item": {**call, "arguments": ""}})
        where = {"item_id": "fc_g", "output_index": 1}
        events += [
            {"type": "response.function_call_arguments.delta", **where, "delta": p} for p in pieces(arguments, 4)
        ]
        events.append({"type": "response.function_call_arguments.done", **where, "arguments": arguments})
        events.append({"type": "response.output_item.done", "output_index": 1, "item": call})
    done = {**response, "status": "completed", "output": output, "usage": usage()}
    events.append({"type": "response.completed", "response": done})
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def sse_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [sse(e, e["type"]) for e in events]


CLEAN = "Nothing to hide here, all is well and fine."
CLEAN_WORDS = ["Nothing ", "to hide ", "here, ", "all is well ", "and fine."]


def gated_events() -> list[dict[str, Any]]:
    """A clean answer whose every event ends where no value may begin: none is held."""
    return response_events(CLEAN, None, deltas=CLEAN_WORDS)


def logprobs_of(tokens: list[str]) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in tokens]


def early_tokens() -> list[dict[str, Any]]:
    """The text's deltas each with its log probabilities; the delta before the key's first piece
    carries that piece's tokens too (a token sent in another event than its text)."""
    events = response_events(TEXT, None)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    first = next(i for i, e in enumerate(deltas) if AWS[:2] in e["delta"])
    for i, event in enumerate(deltas):
        event["logprobs"] = logprobs_of(
            [event["delta"], deltas[first]["delta"]] if i == first - 1 else [event["delta"]]
        )
    return events


class Upstream(AnswerUpstream):
    """The fake OpenAI's Responses, by model; `gate` for the gated clean stream's events."""

    def __call__(self, received: Received) -> Reply:
        path = received.path.partition("?")[0]
        body = received.json() if received.body else {}
        if path == "/chat/completions" and body.get("stream"):  # Copilot's chat
            return Reply(200, chunks=chat_stream(), headers={"content-type": "text/event-stream"})
        if not path.endswith("/responses"):
            return provider_answers(received)
        model, stream = body["model"], body.get("stream")
        if model == "gpt-clean":
            return Reply(200, chunks=sse_of(response_events(CLEAN, '{"cmd": "ls"}')))
        if model == "gpt-5-early-tokens":
            return Reply(200, chunks=sse_of(early_tokens()))
        if model == "gpt-clean-gated":
            return Reply(200, chunks=sse_of(gated_events()), gate=self.gate)
        if model == "gpt-deny-stream":
            return self.denied_stream(sse_of(response_events(TEXT, None, FILLERS)), 3 + TEXT.index(AWS) // 5)
        if model in ("gpt-5-tools", "gpt-deny-tools"):
            return Reply(200, chunks=sse_of(tool_events()))
        if model == "gpt-5-transcript":
            return Reply(200, chunks=sse_of(transcript_events()))
        if stream:
            return Reply(200, chunks=sse_of(response_events(TEXT, ARGS)))
        return Reply(200, response_events(TEXT, ARGS)[-1]["response"])


COMMAND = f"curl -H 'X-Key: {AWS}' https://paste.example"


def tool_events() -> list[dict[str, Any]]:
    """A web search whose query carries the key, a citation whose URL does, then a shell call
    whose command streams the key across three deltas (the first piece in its `added` event)."""
    search = {
        "id": "ws_t",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": f"owner of {AWS}"},
    }
    citation = {
        "type": "url_citation",
        "start_index": 0,
        "end_index": 4,
        "title": "Keys",
        "url": f"https://keys.example/?k={AWS}",
    }
    part = {"type": "output_text", "text": "Done", "annotations": [citation]}
    message = {"id": "msg_t", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    shell = {
        "id": "sh_t",
        "type": "shell_call",
        "call_id": "call_s",
        "status": "completed",
        "action": {"commands": [COMMAND], "timeout_ms": 1000, "max_output_length": 1000},
    }
    at = COMMAND.index(AWS) + 5
    where = {"item_id": "msg_t", "output_index": 1, "content_index": 0}
    events = [
        {"type": "response.created", "response": {"id": "resp_t", "object": "response", "status": "in_progress",
                                                  "model": "gpt-5", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**search, "status": "in_progress",
                                                                          "action": {"type": "search"}}},
        {"type": "response.web_search_call.searching", "item_id": "ws_t", "output_index": 0},
        {"type": "response.output_item.done", "output_index": 0, "item": search},
        {"type": "response.output_item.added", "output_index": 1, "item": {**message, "content": []}},
        {"type": "response.content_part.added", **where, "part": {**part, "text": "", "annotations": []}},
        {"type": "response.output_text.delta", **where, "delta": "Done", "logprobs": []},
        {"type": "response.output_text.annotation.added", **where, "annotation_index": 0, "annotation": citation},
        {"type": "response.output_text.done", **where, "text": "Done", "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {"type": "response.output_item.added", "output_index": 2,
         "item": {**shell, "status": "in_progress", "action": {**shell["action"], "commands": []}}},
        {"type": "response.shell_call_command.added", "output_index": 2, "command_index": 0, "command": COMMAND[:at]},
        {"type": "response.shell_call_command.delta", "output_index": 2, "command_index": 0,
         "delta": COMMAND[at : at + 6]},
        {"type": "response.shell_call_command.delta", "output_index": 2, "command_index": 0,
         "delta": COMMAND[at + 6 :]},
        {"type": "response.shell_call_command.done", "output_index": 2, "command_index": 0, "command": COMMAND},
        {"type": "response.output_item.done", "output_index": 2, "item": shell},
        {"type": "response.completed", "response": {"id": "resp_t", "object": "response", "status": "completed",
                                                    "model": "gpt-5", "output": [search, message, shell],
                                                    "usage": usage()}},
    ]  # fmt: skip
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def transcript_events() -> list[dict[str, Any]]:
    """An answer read aloud: its transcript in deltas no channel reads."""
    created = {"id": "resp_a", "object": "response", "status": "in_progress", "model": "gpt-5", "output": []}
    events = [
        {"type": "response.created", "response": created},
        {"type": "response.audio.transcript.delta", "delta": TEXT[: TEXT.index(AWS) + 4]},
        {"type": "response.audio.transcript.delta", "delta": TEXT[TEXT.index(AWS) + 4 :]},
        {"type": "response.completed", "response": {**created, "status": "completed", "usage": usage()}},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def chat_stream() -> list[bytes]:
    """Copilot's OpenAI chat: the text in 5-character deltas."""
    base = {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces(TEXT, 5)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [*(sse(c) for c in chunks), sse("[DONE]")]


def segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


ACCESS = (
    f"{segment({'alg': 'none', 'typ': 'JWT'})}."
    + segment({"https://api.openai.com/auth": {"chatgpt_account_id": WORKSPACE, "chatgpt_plan_type": "team"},
               "https://api.openai.com/profile": {"email": "alice@corp.example"}, "exp": 4102444800})
    + ".5ecret-signature"
)  # fmt: skip


def codex_http(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
    """chatgpt.com: Codex's responses over server-sent events."""
    body = json.loads(request.body)
    events = response_events(TEXT if body["model"] != "gpt-clean" else CLEAN, ARGS)
    return 200, {"content-type": "text/event-stream"}, sse_of(events)


LARGE = "the quick brown fox jumps over the lazy dog. " * 1500  # 67 KB a delta: read in a worker thread
LARGE_TEXT = f"{LARGE}{AWS} {LARGE}"


UNASKED_TEXT = "UNASKED-TEXT-no-message-asked-for-it-j0"
UNREAD_MODEL = "o4-mini"
UNREAD_FROM = 1000  # its events' sequence numbers, after the read response's


def codex_socket(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Over the Responses WebSocket: each response.create answered with the same events (the
    large ones' text in two deltas, the key across them)."""
    if event.get("type") != "response.create":
        return []
    if event["model"] == "gpt-5-unasked":
        # The response asked for, then one no message asked for.
        unasked = response_events(UNASKED_TEXT, None)
        for e in unasked:
            if "response" in e:
                e["response"] = {**e["response"], "id": "resp_u", "model": "gpt-5-unasked"}
        return [*response_events(TEXT, None), *unasked]
    if event["model"] == UNREAD_MODEL:  # read by no answer rule: its events go on as they come
        return [
            {**e, "sequence_number": e["sequence_number"] + UNREAD_FROM}
            | ({"response": {**e["response"], "id": "resp_o", "model": UNREAD_MODEL}} if "response" in e else {})
            for e in response_events(CLEAN, None)
        ]
    if event["model"].endswith("-large"):
        deltas = [LARGE + AWS[:9], AWS[9:] + " " + LARGE]
        return response_events(LARGE_TEXT, ARGS, deltas=deltas)
    return response_events(TEXT, ARGS, FILLERS if event["model"].startswith("gpt-deny") else 0)


def config(openai: str, chatgpt: str, copilot: str) -> dict:
    redacting = {"on": ["answer"], "detect": KINDS, "action": "redact"}
    return {
        "providers": {
            "openai": {"upstream": openai, "keys": ["sk-real-responses-0001"]},
            "chatgpt": {"upstream": chatgpt},
            "copilot": {"upstream": copilot},
        },
        "clients": [{"name": "alice", "keys": [VIRTUAL], "accounts": ["alice@corp.example"]}],
        "allow_anonymous": True,  # Copilot's token names no one: its call is anonymous
        "subscriptions": {"allow": True, "chatgpt": {"workspaces": [WORKSPACE]}, "copilot": {"plans": ["business"]}},
        # A limit counts these: a response's last event waits for its settlement to be written.
        "limits": [{"name": "counted", "match": {"model": "gpt-5-counted"}, "tokens_per_day": 10_000_000}],
        "guardrails": [
            {**redacting, "match": {"model": "gpt-5*"}},
            {**redacting, "match": {"model": "gpt-4o"}},
            {**redacting, "match": {"model": "gpt-clean*"}},
            {"match": {"model": "gpt-deny*"}, "on": ["answer"], "detect": KINDS, "action": "deny"},
        ],
    }


@pytest.fixture(scope="module")
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture(scope="module")
def chatgpt(upstream_ca):
    server = FakeRealtime(upstream_ca, codex_socket)
    server.http = codex_http
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(start_gateway, upstream, chatgpt):
    gateway = start_gateway(
        lambda urls: config(urls["openai"], chatgpt.url, urls["copilot"]), providers=("openai", "copilot")
    )
    return answered_by(gateway, upstream)


READ_STREAM = f"""
import openai
client = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0)
text, args, done, error = "", "", {{}}, None
try:
    for event in client.responses.create(model=MODEL, input="pay", stream=True):
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.function_call_arguments.delta":
            args += event.delta
        elif event.type == "response.output_text.done":
            done["text"] = event.text
        elif event.type == "response.function_call_arguments.done":
            done["args"] = event.arguments
        elif event.type == "response.completed":
            done["completed"] = event.response.output_text
            done["completed_args"] = event.response.output[1].arguments
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(text=text, args=args, done=done, error=error)
"""


def test_a_streamed_response_comes_redacted_in_its_deltas_and_whole_texts(gw):
    result = gw.run("MODEL = 'gpt-5'\n" + READ_STREAM)
    assert result["error"] is None
    assert (result["text"], result["args"]) == (REDACTED_TEXT, REDACTED_ARGS)
    assert json.loads(result["args"]) == {"card": "[REDACTED:pii.payment_card]", "note": "pay it"}
    assert result["done"] == {
        "text": REDACTED_TEXT,
        "args": REDACTED_ARGS,
        "completed": REDACTED_TEXT,
        "completed_args": REDACTED_ARGS,
    }
    record = gw.last_audit()
    assert (record["endpoint"], record["status"], record["error"]) == ("responses", 200, None)
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert record["total_tokens"] == 39


def test_a_denied_stream_raises_in_the_sdk_and_the_upstream_is_closed(gw, upstream):
    started = time.monotonic()
    result = gw.run("MODEL = 'gpt-deny-stream'\n" + READ_STREAM)
    module, name, message = result["error"]
    assert (module, name) == ("openai", "APIError")
    assert "secrets.aws_access_key_id" in message
    assert result["done"] == {}
    cut_at_the_key(gw, result["text"])
    upstream.stopped_soon(started, 4 + 5)


def test_a_clean_stream_comes_byte_for_byte(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
        with client.responses.with_streaming_response.create(model="gpt-clean", input="hi", stream=True) as r:
            raw = b"".join(r.iter_bytes())
        report(raw=raw.decode())
        """
    )
    assert result["raw"].encode() == b"".join(sse_of(response_events(CLEAN, '{"cmd": "ls"}')))
    assert gw.last_audit()["answer_findings"] == {}


def test_a_clean_streams_events_are_not_held_back(gw, upstream, tmp_path):
    """The upstream sends each event only once the client has the one before: a guarded Responses
    stream whose text holds no candidate passes each event on as it comes."""
    result, waited = upstream.paced_run(
        gw,
        tmp_path / "events",
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
        text = ""
        for event in client.responses.create(model="gpt-clean-gated", input="hi", stream=True):
            text += event.delta if event.type == "response.output_text.delta" else ""
            counted()
        report(text=text)
        """,
    )
    assert result == {"text": CLEAN}
    assert waited == [True] * (len(gated_events()) - 1)
    assert gw.last_audit()["answer_findings"] == {}


READ_JSON = f"""
import openai
client = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    r = client.responses.create(model=MODEL, input="pay")
    report(text=r.output_text, args=r.output[1].arguments)
except openai.APIStatusError as e:
    report(error=type(e).__name__, status=e.status_code, tollgate=e.response.headers.get("x-tollgate-error"),
           body=e.body)
"""


def test_a_json_response_is_served_redacted_or_refused_403(gw):
    assert gw.run("MODEL = 'gpt-5'\n" + READ_JSON) == {"text": REDACTED_TEXT, "args": REDACTED_ARGS}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    refused = gw.run("MODEL = 'gpt-deny-json'\n" + READ_JSON)
    assert (refused["error"], refused["status"], refused["tollgate"]) == (
        "PermissionDeniedError",
        403,
        "content_denied",
    )
    refused_for_the_key(gw, refused)


READ_EVENTS = f"""
import openai
client = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, error = [], None
try:
    for event in client.responses.create(model=MODEL, input="look it up", stream=True):
        events.append(event.to_dict())
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, error=error)
"""
REDACTED_AWS = "[REDACTED:secrets.aws_access_key_id]"


def test_a_search_query_a_citation_and_a_shell_command_come_redacted(gw):
    """A web search's query and a citation's URL, read whole, and a shell call's command, streamed
    in `response.shell_call_command.*` events with the key across them: each comes redacted, the
    same in every event that repeats it; under `deny` the SDK raises before the first of them."""
    result = gw.run("MODEL = 'gpt-5-tools'\n" + READ_EVENTS)
    assert result["error"] is None and AWS not in json.dumps(result)
    events = {e["type"]: e for e in result["events"]}
    command = COMMAND.replace(AWS, REDACTED_AWS)
    streamed = events["response.shell_call_command.added"]["command"] + "".join(
        e["delta"] for e in result["events"] if e["type"] == "response.shell_call_command.delta"
    )
    assert (streamed, events["response.shell_call_command.done"]["command"]) == (command, command)
    search, message, shell = events["response.completed"]["response"]["output"]
    assert search["action"]["query"] == f"owner of {REDACTED_AWS}"
    url = f"https://keys.example/?k={REDACTED_AWS}"
    assert events["response.output_text.annotation.added"]["annotation"]["url"] == url
    assert message["content"][0]["annotations"][0]["url"] == url
    assert shell["action"]["commands"] == [command]
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 3}
    denied = gw.run("MODEL = 'gpt-deny-tools'\n" + READ_EVENTS)
    assert denied["error"][:2] == ["openai", "APIError"] and "secrets.aws_access_key_id" in denied["error"][2]
    assert AWS not in json.dumps(denied)
    assert [e["type"] for e in denied["events"]] == ["response.created", "response.output_item.added",
                                                     "response.web_search_call.searching"]  # fmt: skip


def test_an_answers_transcript_in_deltas_stops_it_as_unread(gw):
    """Text in deltas that no channel reads (an audio answer's transcript) is not let through
    unread: the SDK raises before it."""
    result = gw.run("MODEL = 'gpt-5-transcript'\n" + READ_EVENTS)
    assert result["error"][:2] == ["openai", "APIError"] and "(unread)" in result["error"][2]
    assert [e["type"] for e in result["events"]] == ["response.created"] and AWS not in json.dumps(result)
    record = gw.last_audit()
    assert (record["status"], record["error"]) == (200, "content_denied")


CODEX_SSE = f"""
import openai
client = openai.OpenAI(api_key="{ACCESS}", base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
                       default_headers={{"ChatGPT-Account-ID": "{WORKSPACE}"}})
text, args = "", ""
for event in client.responses.create(model="gpt-5", input="pay", instructions="be brief", stream=True):
    if event.type == "response.output_text.delta":
        text += event.delta
    elif event.type == "response.function_call_arguments.delta":
        args += event.delta
report(text=text, args=args)
"""


def test_codex_with_chatgpt_over_sse_is_redacted(gw):
    assert gw.run(CODEX_SSE) == {"text": REDACTED_TEXT, "args": REDACTED_ARGS}
    record = gw.last_audit()
    assert (record["provider"], record["endpoint"], record["auth"]) == ("chatgpt", "responses", "subscription")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}


SOCKET = f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ACCESS}", base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
                         default_headers={{"ChatGPT-Account-ID": "{WORKSPACE}"}})
    text, args, done, error, closed = "", "", None, None, None
    async with client.responses.connect() as conn:
        await conn.response.create(model=MODEL, input="pay")
        try:
            while True:
                event = await asyncio.wait_for(conn.recv(), 20)
                if event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type == "response.function_call_arguments.delta":
                    args += event.delta
                elif event.type == "error":
                    error = event.model_dump(exclude_none=True)
                    event = await asyncio.wait_for(conn.recv(), 20)  # the close
                elif event.type == "response.completed":
                    done = [event.response.output_text, event.response.output[1].arguments]
                    break
        except Exception as e:
            closed = [type(e).__name__, getattr(getattr(e, "rcvd", None), "code", None)]
    return dict(text=text, args=args, done=done, error=error, closed=closed)

report(**asyncio.run(session()))
"""


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-counted"])
def test_codex_over_the_responses_websocket_is_redacted(gw, model):
    result = gw.run(f"MODEL = {model!r}\n" + SOCKET)
    assert result == {
        "text": REDACTED_TEXT,
        "args": REDACTED_ARGS,
        "done": [REDACTED_TEXT, REDACTED_ARGS],
        "error": None,
        "closed": None,
    }
    record = next(r for r in reversed(gw.new_audit(1)) if r["endpoint"] == "responses")
    assert (record["model"], record["transport"], record["total_tokens"]) == (model, "websocket", 39)
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert record["answer_redacted"] == 2


def test_large_events_on_the_websocket_come_redacted_exactly(gw):
    """Events of 64 KB and more, read in a worker thread: the client gets the text as it came, the
    key across two of them replaced."""
    result = gw.run("MODEL = 'gpt-5-large'\n" + SOCKET)
    text = LARGE_TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
    assert result == {"text": text, "args": REDACTED_ARGS, "done": [text, REDACTED_ARGS], "error": None, "closed": None}
    record = next(r for r in reversed(gw.new_audit(1)) if r["endpoint"] == "responses")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}


def test_a_denied_answer_on_the_websocket_gets_an_error_event_and_the_socket_closes(gw, chatgpt):
    result = gw.run("MODEL = 'gpt-deny-socket'\n" + SOCKET)
    assert result["text"] == TEXT[: TEXT.index(AWS)]
    assert result["done"] is None and result["args"] == ""
    assert result["error"]["error"]["code"] == "content_denied"
    assert (result["error"]["type"], result["error"]["status"]) == ("error", 403)
    assert result["closed"] == ["ConnectionClosedError", 1008]
    # The upstream's WebSocket closed by Tollgate (its generation stops), with the same code.
    session = chatgpt.sessions[-1]
    assert session.closed.wait(5)
    assert session.close_code == 1008
    record = next(r for r in reversed(gw.new_audit(1)) if r["endpoint"] == "responses")
    assert (record["status"], record["error"], record["answer_findings"]) == (
        200,
        "content_denied",
        {"secrets.aws_access_key_id": 1},
    )


ORDER_ROUNDS = 12

ORDER_SOCKET = f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ACCESS}", base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
                         default_headers={{"ChatGPT-Account-ID": "{WORKSPACE}"}})
    async with client.responses.connect() as conn:
        await conn.response.create(model="gpt-5", input="pay")
        await conn.response.create(model="{UNREAD_MODEL}", input="pay")
        numbers, texts, completed = [], {{}}, 0
        while completed < 2:
            event = await asyncio.wait_for(conn.recv(), 20)
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                read = event.sequence_number < {UNREAD_FROM}
                texts[read] = texts.get(read, "") + event.delta
            completed += event.type == "response.completed"
    return dict(numbers=numbers, read=texts.get(True), unread=texts.get(False))

async def rounds():
    return [await session() for _ in range({ORDER_ROUNDS})]

report(rounds=asyncio.run(rounds()))
"""


def test_events_on_the_websocket_reach_the_client_in_the_upstreams_order(gw, chatgpt):
    """The read response's events are sent anew by Tollgate (its key's deltas held, then written
    redacted); the next response's, read by no rule, go on as they came, right behind them on the
    same socket. None overtakes another: the client gets every event in the order the upstream
    sent it, each text whole. Several sessions, each a chance for one to overtake."""
    read = [e["sequence_number"] for e in response_events(TEXT, ARGS)]
    unread = [e["sequence_number"] + UNREAD_FROM for e in response_events(CLEAN, None)]
    result = gw.run(ORDER_SOCKET, timeout=120)
    for session in result["rounds"]:
        assert session == {"numbers": read + unread, "read": REDACTED_TEXT, "unread": CLEAN}


UNASKED_SOCKET = f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ACCESS}", base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
                         default_headers={{"ChatGPT-Account-ID": "{WORKSPACE}"}})
    text, completed, error, closed = "", 0, None, None
    async with client.responses.connect() as conn:
        await conn.response.create(model="gpt-5-unasked", input="pay")
        try:
            for _ in range(200):
                event = await asyncio.wait_for(conn.recv(), 20)
                if event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type == "response.completed":
                    completed += 1
                elif event.type == "error":
                    error = event.model_dump(exclude_none=True)
        except Exception as e:
            closed = [type(e).__name__, getattr(getattr(e, "rcvd", None), "code", None)]
    return dict(text=text, completed=completed, error=error, closed=closed)

report(**asyncio.run(session()))
"""


def test_a_response_no_message_asked_for_stops_unread_and_the_socket_closes(gw, chatgpt):
    """Under an answer rule, a response the upstream begins on its own would go on unread: it stops
    at its `response.created` as an event that cannot be read does (an `error` event, the socket
    closed 1008), audited; the response asked for before it came redacted."""
    result = gw.run(UNASKED_SOCKET)
    assert (result["text"], result["completed"]) == (REDACTED_TEXT, 1)
    assert result["error"]["error"]["code"] == "content_denied" and "(unread)" in result["error"]["error"]["message"]
    assert (result["error"]["type"], result["error"]["status"]) == ("error", 403)
    assert result["closed"] == ["ConnectionClosedError", 1008]
    assert UNASKED_TEXT[:8] not in json.dumps(result)
    session = chatgpt.sessions[-1]
    assert session.closed.wait(5)
    assert session.close_code == 1008
    records = [r for r in gw.new_audit(2) if r["transport"] == "websocket"]
    asked, unasked = records[-2:]
    assert (asked["status"], asked["error"], asked["answer_findings"]) == (200, None, {"secrets.aws_access_key_id": 1})
    assert (unasked["model"], unasked["status"], unasked["error"], unasked["answer_findings"]) == (
        "gpt-5-unasked",
        200,
        "content_denied",
        {},
    )


def test_copilots_responses_answer_is_redacted(gw):
    result = gw.run(
        f"""
        import openai
        client = openai.OpenAI(api_key="{COPILOT_TOKEN}", base_url="https://api.business.githubcopilot.com",
                               max_retries=0, default_headers={{"Copilot-Integration-Id": "vscode-chat"}})
        text, args = "", ""
        for event in client.responses.create(model="gpt-5", input="pay", stream=True):
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.function_call_arguments.delta":
                args += event.delta
        report(text=text, args=args)
        """
    )
    assert result == {"text": REDACTED_TEXT, "args": REDACTED_ARGS}
    record = gw.last_audit()
    assert (record["provider"], record["endpoint"], record["auth"]) == ("copilot", "responses", "subscription")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}


def test_copilots_chat_answer_is_read_by_the_chat_guard(gw):
    result = gw.run(
        f"""
        import openai
        client = openai.OpenAI(api_key="{COPILOT_TOKEN}", base_url="https://api.business.githubcopilot.com",
                               max_retries=0, default_headers={{"Copilot-Integration-Id": "vscode-chat"}})
        text = ""
        for event in client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}],
                                                    stream=True):
            text += "".join(c.delta.content or "" for c in event.choices)
        report(text=text)
        """
    )
    assert result == {"text": REDACTED_TEXT}
    record = gw.last_audit()
    assert (record["provider"], record["endpoint"], record["auth"]) == ("copilot", "chat.completions", "subscription")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


# ---- OpenAI's Codex CLI (`codex exec`), signed in with ChatGPT, unchanged


def codex_web(fake: FakeRealtime):
    """chatgpt.com over HTTP as Codex needs it: the workspace's routing, then its responses as
    server-sent events (when its WebSocket is off); everything else not found."""

    def answer(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        path = request.target.partition("?")[0]
        if path == "/backend-api/wham/accounts/check":
            account = {"id": WORKSPACE, "workspace_backend_origin": "https://chatgpt.com",
                       "account_routing_override": "NO_CONSTRAINT"}  # fmt: skip
            return 200, {"content-type": "application/json"}, json.dumps({"accounts": [account]}).encode()
        if request.method == "POST" and path == "/backend-api/codex/responses":
            events = fake.script({**json.loads(request.body), "type": "response.create"})
            return 200, {"content-type": "text/event-stream"}, sse_of(list(events))
        return not_found(request)

    return answer


@pytest.fixture(scope="module")
def codex_fake(realtime_fake: FakeRealtime) -> FakeRealtime:
    realtime_fake.http = codex_web(realtime_fake)
    return realtime_fake


@pytest.fixture(scope="module")
def codex_gw(start_gateway, codex_fake):
    return start_gateway(
        {
            "providers": {"chatgpt": {"upstream": codex_fake.url}},
            "clients": [{"name": "alice", "keys": [VIRTUAL], "accounts": ["alice@corp.example"]}],
            "allow_anonymous": False,
            "subscriptions": {"allow": True, "chatgpt": {"workspaces": [WORKSPACE]}},
            "guardrails": [{"on": ["answer"], "detect": KINDS, "action": "redact"}],
        },
        providers=(),
    )


def run_codex(gw, home: Path, *options: str):
    """`codex exec` through Tollgate, signed in with ChatGPT (`~/.codex/auth.json` as `codex login`
    writes it), its own home."""
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    tokens = {"id_token": ACCESS, "access_token": ACCESS, "refresh_token": "rt-5ecret", "account_id": WORKSPACE}
    auth = {"auth_mode": "chatgpt", "OPENAI_API_KEY": None, "tokens": tokens,
            "last_refresh": datetime.now(UTC).isoformat().replace("+00:00", "Z")}  # fmt: skip
    (home / ".codex" / "auth.json").write_text(json.dumps(auth))
    env = clean_env(HOME=str(home), CODEX_HOME=str(home / ".codex"), HTTPS_PROXY=gw.proxy.proxy_url,
                    SSL_CERT_FILE=str(gw.bundle), NO_PROXY="")  # fmt: skip
    command = [str(installed_codex()), "exec", "--skip-git-repo-check", *options, "Show the key"]
    return run_in_session(command, home, env)


OVER_HTTP = (
    "model_providers.chatgpt_http={name='ChatGPT over HTTP', base_url='https://chatgpt.com/backend-api/codex',"
    " wire_api='responses', requires_openai_auth=true, supports_websockets=false}"
)


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_codex_signed_in_with_chatgpt_gets_the_answer_redacted(codex_gw, codex_fake, tmp_path, transport):
    """Its answer's text splits the key across two deltas; Codex prints it with the key replaced."""
    codex_fake.script = responding([TEXT, TEXT], [responses_usage(30, 9)] * 2)
    # A call begun before this one (the other transport's, recorded when its socket closes) is not
    # among this one's records.
    started = time.time() - 0.01
    options = ("-c", "model_provider=chatgpt_http", "-c", OVER_HTTP) if transport == "http" else ()
    done = run_codex(codex_gw, tmp_path, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    assert REDACTED_TEXT in done.stdout
    assert AWS not in done.stdout + done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [
            r
            for r in codex_gw.audit()
            if r["endpoint"] == "responses" and datetime.fromisoformat(r["ts"]).timestamp() >= started
        ]
        if records and records[-1]["answer_findings"] is not None:
            break
        time.sleep(0.05)
    assert {(r["transport"], r["auth"]) for r in records} == {(transport, "subscription")}
    assert records[-1]["answer_findings"] == {"secrets.aws_access_key_id": 1}


READ_LOGPROBS = f"""
import openai
client = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0)
deltas, error = [], None
try:
    for event in client.responses.create(
        model="gpt-5-early-tokens", input="key", stream=True, include=["message.output_text.logprobs"]
    ):
        if event.type == "response.output_text.delta":
            deltas.append([event.delta, [t.token for t in event.logprobs or ()]])
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__]
report(deltas=deltas, error=error)
"""


def test_tokens_ahead_of_their_text_stop_the_answer(gw):
    """The delta before the key's first piece carries that piece's tokens: it stops the answer as
    unreadable; the SDK raises, having had the text before it (each delta's tokens its text), and
    no token of the key."""
    result = gw.run(READ_LOGPROBS)
    stopped_before_the_keys_tokens(gw, result, result["deltas"])
