"""Guardrails on Anthropic Messages answers, with the official anthropic SDK (and boto3) through
mitmdump: Claude's answer streams an AWS key split across text deltas and a card number split
across a tool use's input deltas; the SDK gets each value replaced (`redact`), or the stream stops
before the value with an `error` event the SDK raises on, the upstream closed (`deny`); a value in
signed thinking is denied under `redact` too; a JSON answer is served redacted or refused 403. The
same on Anthropic's API, Copilot's Messages, Claude on Vertex AI (rawPredict) and on Bedrock
(InvokeModel, its stream in AWS event stream frames, denied with an exception frame)."""

from __future__ import annotations

import json
import textwrap
import time
from urllib.parse import unquote

import pytest
from tests.support.answer_gateways import answer_fixtures, answer_rules, cut_at_the_key, refused_for_the_key
from tests.support.answers import AWS, CARD, FILLERS, REDACTED_TEXT, TEXT, AnswerUpstream, pieces
from tests.support.canned import provider_answers
from tests.support.clients import ANTHROPIC_CLIENTS
from tests.support.eventstream import invoke_chunk
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

INPUT = {"card": CARD, "note": "pay it"}
ARGS = json.dumps(INPUT)
THOUGHT = f"The file holds {AWS}; I should not repeat it."
REDACTED_INPUT = {"card": "[REDACTED:pii.payment_card]", "note": "pay it"}
DENIED = "The answer was stopped: it carries what a guardrail denies (secrets.aws_access_key_id)."
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url} for name, url in urls.items()},
        "subscriptions": {"copilot": {"plans": ["business"]}},
        "guardrails": [
            # A rule on requests too: with no rule on them and no key of Tollgate's to look for,
            # the guardrails are not loaded at all (answers included).
            {"detect": ["secrets.stripe_key"], "action": "audit"},
            *answer_rules("*deny*"),
        ],
    }


def event(kind: str, **fields: object) -> dict:
    return {"type": kind, **fields}


def delta(index: int, kind: str, **fields: object) -> dict:
    return event("content_block_delta", index=index, delta={"type": kind, **fields})


SIGNATURE = "EqQBCkgIARABGAIiQ" + "s" * 40
# The whole message as the client gets it: its text and tool input redacted, its signed thinking as it came.
REDACTED_CONTENT = [
    {"type": "thinking", "thinking": "Let me read the file.", "signature": SIGNATURE},
    {"type": "text", "text": REDACTED_TEXT},
    {"type": "tool_use", "input": REDACTED_INPUT},
]


def thinking_events(thought: str) -> list[dict]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return [
        event("content_block_start", index=0, content_block=block),
        *(delta(0, "thinking_delta", thinking=p) for p in pieces(thought, 6)),
        delta(0, "signature_delta", signature=SIGNATURE),
        event("content_block_stop", index=0),
    ]


def text_events(index: int, text: str, size: int = 5) -> list[dict]:
    return [
        event("content_block_start", index=index, content_block={"type": "text", "text": ""}),
        *(delta(index, "text_delta", text=p) for p in pieces(text, size)),
        event("content_block_stop", index=index),
    ]


def tool_events(index: int, arguments: str) -> list[dict]:
    block = {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": {}}
    return [
        event("content_block_start", index=index, content_block=block),
        *(delta(index, "input_json_delta", partial_json=p) for p in pieces(arguments, 4)),
        event("content_block_stop", index=index),
    ]


def message_events(model: str) -> list[dict]:
    """Claude's stream: thinking (a value in it for `*thinking*`), then the text and a tool use
    (clean for `*clean*`)."""
    usage = {"input_tokens": 30, "output_tokens": 1}
    start = {"id": "msg_g", "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
    if "prose" in model:  # every delta ends where no value may be going on: none is held
        block = {"type": "text", "text": ""}
        words = ("Nothing ", "to hide ", "here, ", "all is well ", "and fine.")
        blocks = [event("content_block_start", index=0, content_block=block),
                  *(delta(0, "text_delta", text=w) for w in words), event("content_block_stop", index=0)]  # fmt: skip
    elif "clean" in model:
        blocks = [*thinking_events("Nothing to hide, its tests pass."), *text_events(1, "All is well, 42 cats."),
                  *tool_events(2, json.dumps({"note": "its fine"}))]  # fmt: skip
    elif "thinking" in model:
        blocks = [*thinking_events(THOUGHT), *text_events(1, "Done.")]
    elif "future" in model:  # a delta newer than the reader, its text in pieces, the key split
        block = {"type": "text", "text": ""}
        blocks = [event("content_block_start", index=0, content_block=block),
                  *(delta(0, "prose_delta", prose=p) for p in pieces(TEXT, 5)), event("content_block_stop", index=0)]  # fmt: skip
    else:
        blocks = [*thinking_events("Let me read the file."), *text_events(1, TEXT), *tool_events(2, ARGS)]
    end = [
        event("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 9}),
        event("message_stop"),
    ]
    return [event("message_start", message=start), *blocks, *end]


def message_body(model: str) -> dict:
    if "legacy" in model:  # Claude's Text Completions
        return {"type": "completion", "completion": TEXT, "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}
    thought = THOUGHT if "thinking" in model else "Let me read the file."
    content = [
        {"type": "thinking", "thinking": thought, "signature": SIGNATURE},
        {"type": "text", "text": TEXT},
        {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": INPUT},
    ]
    return {"id": "msg_j", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 7}}  # fmt: skip


def as_sse(events: list[dict]) -> list[bytes]:
    return [sse(e, e["type"]) for e in events]


class Upstream(AnswerUpstream):
    """Claude's answers wherever Claude answers, by model; `gate` for the prose stream's events."""

    def __call__(self, received: Received) -> Reply:
        path = unquote(received.path.partition("?")[0])
        if path.endswith("/v1/messages"):  # Anthropic's, Copilot's
            body = received.json()
            return self.reply(body["model"], bool(body.get("stream")))
        if path.startswith("/model/"):  # Bedrock's InvokeModel
            model = path.split("/")[2]
            if path.endswith("/invoke-with-response-stream"):
                chunks = [invoke_chunk(e) for e in message_events(model)]
                return Reply(200, headers=EVENTSTREAM, chunks=chunks, gate=self.gate if "prose" in model else None)
            return Reply(200, message_body(model))
        if ":rawPredict" in path or ":streamRawPredict" in path:  # Vertex AI's
            model = path.rpartition("/models/")[2].partition(":")[0]
            return self.reply(model, path.endswith(":streamRawPredict"))
        return provider_answers(received)

    def reply(self, model: str, stream: bool) -> Reply:
        if not stream:
            return Reply(200, message_body(model))
        events = as_sse(message_events(model))
        if model != "claude-deny-stream":
            return Reply(200, chunks=events, gate=self.gate if "prose" in model else None)
        # The text up to and with the key, then fillers the upstream sends slowly.
        head = events[:8]  # message_start, the thinking block, the text block's start
        text = as_sse(text_events(1, TEXT)[1:-1])
        first = len(head) + TEXT.index(AWS) // 5
        fillers = [sse(delta(1, "text_delta", text=" more"), "content_block_delta")] * FILLERS
        return self.denied_stream([*head, *text, *fillers], first)


upstream, gw = answer_fixtures(Upstream, config, ("anthropic", "bedrock", "vertex", "copilot"))


MODELS = {"anthropic": "claude-{}", "copilot": "claude-{}", "vertex": "claude-{}@2025", "bedrock": "anthropic.claude-{}-v1:0"}  # fmt: skip

READ_STREAM = """
import anthropic
client = {client}
text, args, thinking, error = "", "", "", None
try:
    for event in client.messages.create(model={model!r}, max_tokens=100, stream=True,
                                        messages=[{{"role": "user", "content": "pay"}}]):
        if event.type == "content_block_delta":
            d = event.delta
            text += d.text if d.type == "text_delta" else ""
            args += d.partial_json if d.type == "input_json_delta" else ""
            thinking += d.thinking if d.type == "thinking_delta" else ""
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(text=text, args=args, thinking=thinking, error=error)
"""

READ_WITH_STREAM = """
import anthropic
client = {client}
with client.messages.stream(model={model!r}, max_tokens=100, messages=[{{"role": "user", "content": "pay"}}]) as s:
    final = s.get_final_message()
report(content=[b.model_dump(include={{"type", "text", "input", "thinking", "signature"}}) for b in final.content])
"""

READ_JSON = """
import anthropic
client = {client}
try:
    r = client.messages.create(model={model!r}, max_tokens=100, messages=[{{"role": "user", "content": "pay"}}])
    report(content=[b.model_dump(include={{"type", "text", "input", "thinking", "signature"}}) for b in r.content])
except anthropic.APIStatusError as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=e.status_code, body=e.body,
           tollgate=e.response.headers.get("x-tollgate-error"))
"""


def call(gw, code: str, where: str, model: str) -> dict:
    return gw.run(code.format(client=ANTHROPIC_CLIENTS[where], model=MODELS[where].format(model)))


@pytest.mark.parametrize("where", ["anthropic", "copilot", "vertex", "bedrock"])
def test_a_streamed_answer_comes_redacted_in_its_text_and_tool_input(gw, where):
    result = call(gw, READ_STREAM, where, "sonnet")
    assert result["error"] is None
    assert result["text"] == REDACTED_TEXT
    assert json.loads(result["args"]) == REDACTED_INPUT and result["args"] == ARGS.replace(CARD, REDACTED_INPUT["card"])
    assert result["thinking"] == "Let me read the file."
    record = gw.last_audit()
    assert record["provider"] == where
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["error"], record["refusal"]) == (200, None, None)


@pytest.mark.parametrize("where", ["anthropic", "vertex"])
def test_messages_stream_gives_the_redacted_message_with_its_signed_thinking_as_it_came(gw, where):
    result = call(gw, READ_WITH_STREAM, where, "sonnet")
    assert result["content"] == REDACTED_CONTENT


@pytest.mark.parametrize("where", ["anthropic", "copilot", "vertex", "bedrock"])
def test_a_json_answer_is_served_redacted(gw, where):
    result = call(gw, READ_JSON, where, "sonnet")
    assert result["content"] == REDACTED_CONTENT
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["decision"], record["error"]) == (200, "allow", None)


@pytest.mark.parametrize("where", ["anthropic", "copilot", "vertex", "bedrock"])
def test_a_json_answer_with_a_denied_value_is_refused_403(gw, where):
    result = call(gw, READ_JSON, where, "deny-json")
    assert result["error"] == ["anthropic", "PermissionDeniedError"]
    assert (result["status"], result["tollgate"]) == (403, "content_denied")
    if where in ("anthropic", "copilot"):  # Anthropic's shape; Vertex AI's and Bedrock's own elsewhere
        assert result["body"]["type"] == "error" and result["body"]["error"]["type"] == "permission_error"
    refused_for_the_key(gw, result)


def test_a_denied_stream_raises_in_the_sdk_and_the_upstream_is_closed(gw, upstream):
    started = time.monotonic()
    result = call(gw, READ_STREAM, "anthropic", "deny-stream")
    assert result["error"] == ["anthropic", "APIStatusError", str({"type": "error", "error": {"type": "permission_error", "message": DENIED}})]  # fmt: skip
    cut_at_the_key(gw, result["text"])
    upstream.stopped_soon(started, 4 + 5)


@pytest.mark.parametrize("where", ["anthropic", "copilot", "vertex", "bedrock"])
def test_a_denied_stream_stops_before_the_value_wherever_claude_answers(gw, where):
    result = call(gw, READ_STREAM, where, "deny")
    module, name, message = result["error"]
    assert (module, name) == ("anthropic", "APIStatusError")
    assert (DENIED if where != "bedrock" else "validationException") in message
    assert result["text"] == TEXT[: TEXT.index(AWS)] and result["args"] == ""
    record = gw.last_audit()
    assert (record["status"], record["error"], record["answer_findings"]) == (
        200,
        "content_denied",
        {"secrets.aws_access_key_id": 1},
    )


@pytest.mark.parametrize("where", ["anthropic", "vertex", "bedrock"])
def test_a_value_in_thinking_is_denied_under_redact(gw, where):
    result = call(gw, READ_STREAM, where, "thinking")
    assert result["error"][:2] == ["anthropic", "APIStatusError"]
    assert result["thinking"] == THOUGHT[: THOUGHT.index(AWS)] and result["text"] == ""
    record = gw.last_audit()
    assert (record["error"], record["answer_findings"]) == ("content_denied", {"secrets.aws_access_key_id": 1})
    whole = call(gw, READ_JSON, where, "thinking")
    assert (whole["error"], whole["status"]) == (["anthropic", "PermissionDeniedError"], 403)


def test_a_clean_stream_comes_byte_for_byte(gw):
    result = gw.run(
        """
        import anthropic
        client = anthropic.Anthropic(api_key="sk-ant-own-0001", max_retries=0)
        with client.messages.with_streaming_response.create(
            model="claude-clean", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]
        ) as r:
            raw = b"".join(r.iter_bytes())
        report(raw=raw.decode())
        """
    )
    assert result["raw"].encode() == b"".join(as_sse(message_events("claude-clean")))
    assert gw.last_audit()["answer_findings"] == {}


BOTO3 = """
import boto3, botocore, json
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                      aws_secret_access_key="s")
body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "pay"}]})
"""


def test_boto3_reads_claude_on_bedrock_redacted_and_denied(gw):
    result = gw.run(
        BOTO3
        + textwrap.dedent(
            """
        def streamed(model):
            events, error = [], None
            try:
                r = client.invoke_model_with_response_stream(modelId=model, body=body)
                for event in r["body"]:
                    events.append(json.loads(event["chunk"]["bytes"]))
            except botocore.exceptions.EventStreamError as e:
                error = [type(e).__name__, e.response["Error"]["Code"], e.response["Error"]["Message"]]
            text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
            args = "".join(e["delta"].get("partial_json", "") for e in events if e["type"] == "content_block_delta")
            return {"text": text, "args": args, "error": error, "last": events[-1]["type"]}

        def whole(model):
            try:
                r = client.invoke_model(modelId=model, body=body)
                return {"content": json.loads(r["body"].read())["content"]}
            except botocore.exceptions.ClientError as e:
                return {"error": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}

        report(redacted=streamed("anthropic.claude-sonnet-v1:0"), denied=streamed("anthropic.claude-deny-v1:0"),
               clean=streamed("anthropic.claude-clean-v1:0"), json=whole("anthropic.claude-sonnet-v1:0"),
               json_denied=whole("anthropic.claude-deny-v1:0"))
        """
        )
    )
    assert result["redacted"] == {"text": REDACTED_TEXT, "args": ARGS.replace(CARD, REDACTED_INPUT["card"]),
                                  "error": None, "last": "message_stop"}  # fmt: skip
    assert result["denied"] == {
        "text": TEXT[: TEXT.index(AWS)],
        "args": "",
        "error": ["EventStreamError", "validationException", DENIED],
        "last": "content_block_delta",
    }
    assert result["clean"]["error"] is None and result["clean"]["text"] == "All is well, 42 cats."
    assert result["json"]["content"][1:] == [
        {"type": "text", "text": REDACTED_TEXT},
        {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": REDACTED_INPUT},
    ]
    assert result["json_denied"] == {"error": "AccessDeniedException", "status": 403}


def test_a_clean_bedrock_stream_comes_frame_for_frame(gw):
    result = gw.run(
        BOTO3
        + textwrap.dedent(
            """
        r = client.invoke_model_with_response_stream(modelId="anthropic.claude-clean-v1:0", body=body)
        raw = r["body"]._raw_stream.read()
        report(raw=raw.hex())
        """
        )
    )
    assert bytes.fromhex(result["raw"]) == b"".join(
        invoke_chunk(e) for e in message_events("anthropic.claude-clean-v1:0")
    )


@pytest.mark.parametrize("where", ["anthropic", "bedrock"])
def test_a_clean_streams_events_are_not_held_back(gw, upstream, tmp_path, where):
    """The upstream sends each event only once the client has the one before: a guarded stream
    whose text holds no candidate passes each event on as it comes."""
    count = tmp_path / "events"
    if where == "anthropic":
        code = textwrap.dedent(
            """
            import anthropic
            client = anthropic.Anthropic(api_key="sk-ant-own-0001", max_retries=0)
            text = ""
            for event in client.messages.create(model="claude-prose", max_tokens=100, stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
                text += event.delta.text if event.type == "content_block_delta" else ""
                counted()
            report(text=text)
            """
        )
    else:
        code = textwrap.dedent(BOTO3) + textwrap.dedent(
            """
            text = ""
            r = client.invoke_model_with_response_stream(modelId="anthropic.claude-prose-v1:0", body=body)
            for event in r["body"]:
                e = json.loads(event["chunk"]["bytes"])
                text += e["delta"].get("text", "") if e["type"] == "content_block_delta" else ""
                counted()
            report(text=text)
            """
        )
    result, waited = upstream.paced_run(gw, count, code)
    assert result == {"text": "Nothing to hide here, all is well and fine."}
    assert waited == [True] * (len(message_events("claude-prose")) - 1)


READ_RAW_DELTAS = """
import anthropic
client = {client}
deltas, error = [], None
try:
    for event in client.messages.create(model={model!r}, max_tokens=100, stream=True,
                                        messages=[{{"role": "user", "content": "pay"}}]):
        if event.type == "content_block_delta":
            deltas.append(event.delta.model_dump())
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(deltas=deltas, error=error)
"""


@pytest.mark.parametrize("where", ["anthropic", "bedrock"])
def test_a_delta_newer_than_the_reader_that_carries_text_stops_the_stream(gw, where):
    """A delta type the reader does not know, its text in pieces (a key split across two): the
    stream stops before it, as one that cannot be read, and the SDK raises."""
    result = call(gw, READ_RAW_DELTAS, where, "future")
    assert AWS not in json.dumps(result) and AWS[:8] not in json.dumps(result)
    assert result["deltas"] == []
    module, name, message = result["error"]
    assert (module, name) == ("anthropic", "APIStatusError")
    assert ("(unread)" if where != "bedrock" else "validationException") in message
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


READ_LEGACY = """
import boto3, json
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                      aws_secret_access_key="s")
r = client.invoke_model(modelId={model!r}, body=json.dumps({{"prompt": "Human: pay", "max_tokens_to_sample": 50}}))
report(body=json.loads(r["body"].read()))
"""


def test_claudes_text_completions_on_bedrock_are_read(gw):
    """Claude's Text Completions on Bedrock answer in a body of their own (`completion`): it is read
    as every other field of a Claude answer is."""
    result = gw.run(READ_LEGACY.format(model="anthropic.claude-legacy-v2"))
    assert result["body"]["completion"] == REDACTED_TEXT
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}
