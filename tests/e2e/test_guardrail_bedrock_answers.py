"""Guardrails on Bedrock's answers, with boto3 through mitmdump and virtual AWS credentials:
ConverseStream frames that stream an AWS key split across text deltas and a card number split
across a tool use's input deltas come to boto3 with each value replaced (`redact`), or stop before
the value with an exception boto3 raises while iterating, the upstream's connection closed
(`deny`); Converse's JSON answer is served redacted (its tool use's input object too) or refused
403; InvokeModel for Llama, streamed and JSON, alike; a clean stream comes through byte for byte."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.answer_gateways import (
    answer_fixtures,
    answer_rules,
    counted_fixture,
    cut_at_the_key,
    refused_for_the_key,
)
from tests.support.answers import ARGS, AWS, CARD, FILLERS, REDACTED_TEXT, TEXT, AnswerUpstream, pieces
from tests.support.aws import botocore_accepts
from tests.support.eventstream import event, invoke_chunk
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

VIRTUAL = ("TGALICE0000000000000", "alice-virtual-SECRET-0000")
REAL = ("AKIAREAL000000000000", "real-aws-SECRET-key-0000")
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}
DENIED = "The answer was stopped: it carries what a guardrail denies (secrets.aws_access_key_id)."
REDACTED_ARGS = {"card": "[REDACTED:pii.payment_card]", "note": "pay it"}


def config(urls: dict[str, str], limits: list[dict] | None = None) -> dict:
    return {
        "limits": limits or [],
        "providers": {
            "bedrock": {
                "upstream": urls["bedrock"],
                "credentials": {"access_key_id": REAL[0], "secret_access_key": REAL[1]},
            },
            "openai": {"upstream": urls["openai"], "keys": ["sk-real-bedrock-answers-0001"]},
        },
        # A Converse call to GPT goes in OpenAI's chat format; its answer comes back in Converse's.
        "overrides": [{"match": {"provider": "bedrock", "model": "gpt-*"}, "provider": "openai", "api": "native"}],
        "clients": [
            {"name": "alice", "aws_credentials": [{"access_key_id": VIRTUAL[0], "secret_access_key": VIRTUAL[1]}]}
        ],
        "guardrails": answer_rules("amazon.nova-deny*", "meta.llama3-deny*"),
    }


def delta(block: int, body: dict) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": block, "delta": body, "p": "abcdef"})


def converse_stream(text: list[str], args: list[str] = (), tail: list[bytes] = ()) -> list[bytes]:  # type: ignore[assignment]
    """The text in deltas, then a tool use whose input comes in deltas, each frame its own write."""
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [delta(0, {"text": p}) for p in text]
    frames += list(tail)
    frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    if args:
        use = {"toolUse": {"toolUseId": "t1", "name": "pay"}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": 1, "start": use}))
        frames += [delta(1, {"toolUse": {"input": p}}) for p in args]
        frames.append(event("contentBlockStop", {"contentBlockIndex": 1}))
    frames.append(event("messageStop", {"stopReason": "tool_use" if args else "end_turn"}))
    usage = {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
    return [*frames, event("metadata", {"usage": usage, "metrics": {"latencyMs": 9}})]


def clean_stream() -> list[bytes]:
    """Deltas that end where a value may begin (`4`, inside a word) and where none may."""
    return converse_stream(["It is ", "the first test", "s of 2026: 4", "2 cats. ", "All is well."])


def flowing_stream() -> list[bytes]:
    """Deltas that each end where no value may begin: none is held."""
    return converse_stream(["Nothing ", "to hide ", "here, ", "all is well ", "and fine."])


def converse_json() -> dict:
    content = [{"text": TEXT}, {"toolUse": {"toolUseId": "t1", "name": "pay", "input": json.loads(ARGS)}}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
        "metrics": {"latencyMs": 9},
    }


def llama_stream(text: list[str], tail: list[str] = ()) -> list[bytes]:  # type: ignore[assignment]
    chunks = [invoke_chunk({"generation": p, "prompt_token_count": None, "stop_reason": None}) for p in text]
    chunks += [invoke_chunk({"generation": p, "stop_reason": None}) for p in tail]
    metrics = {"inputTokenCount": 5, "outputTokenCount": 7, "invocationLatency": 9, "firstByteLatency": 2}
    last = {"generation": "", "stop_reason": "stop", "amazon-bedrock-invocationMetrics": metrics}
    return [*chunks, invoke_chunk(last)]


def openai_stream() -> Reply:
    """GPT's answer in OpenAI's chat chunks, the key across four of them."""
    head = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    events = [sse({**head, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
              for p in pieces(TEXT, 5)]  # fmt: skip
    events.append(sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    events += [sse({**head, "choices": [], "usage": usage}), sse("[DONE]")]
    return Reply(200, chunks=events, headers={"content-type": "text/event-stream"})


# An application inference profile's ARN: it does not say which model it runs (Claude, here).
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
CLAUDE = {"id": "msg_p", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}


def citation(text: str) -> dict:
    """A citation of a document the caller gave, as Claude's answer carries one."""
    return {"type": "char_location", "cited_text": text, "document_index": 0, "document_title": "notes",
            "start_char_index": 0, "end_char_index": len(text)}  # fmt: skip


def claude_stream() -> list[bytes]:
    """Claude's answer on InvokeModelWithResponseStream: its text (the key across four chunks),
    then a citation whose quoted text holds the key again."""
    start = {**CLAUDE, "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": []}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
          for p in pieces(TEXT, 5)),
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "citations_delta", "citation": citation(f"the file says {AWS}")}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return [invoke_chunk(e) for e in events]


def claude_json() -> dict:
    block = {"type": "text", "text": TEXT, "citations": [citation(f"the file says {AWS}")]}
    usage = {"input_tokens": 5, "output_tokens": 7}
    return {**CLAUDE, "content": [block], "stop_reason": "end_turn", "usage": usage}


class Upstream(AnswerUpstream):
    """The fake Bedrock's answers, by path; it checks the signature Tollgate made with botocore."""

    def _denied(self, frames: list[bytes], first: int) -> Reply:
        return self.denied_stream(frames, first, EVENTSTREAM)

    def __call__(self, received: Received) -> Reply:
        if received.path.endswith("/chat/completions"):
            return openai_stream()
        if not botocore_accepts(received, *REAL):
            return Reply(403, {"message": "bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"})
        path = received.path
        if path.endswith("/converse-stream"):
            if "nova-deny" in path:
                fillers = [delta(0, {"text": " more"}) for _ in range(FILLERS)]
                return self._denied(converse_stream(pieces(TEXT, 5), tail=fillers), 1 + TEXT.index(AWS) // 5)
            if "nova-unread" in path:  # an event newer than the reader, with text, after the key
                newer = event("outputNote", {"note": "an event no reader knows", "p": "abcdef"})
                return Reply(200, chunks=converse_stream(pieces(TEXT, 5), tail=[newer]), headers=EVENTSTREAM)
            if "nova-clean" in path:
                return Reply(200, chunks=clean_stream(), headers=EVENTSTREAM)
            if "nova-flow" in path:
                return Reply(200, chunks=flowing_stream(), headers=EVENTSTREAM, gate=self.gate)
            return Reply(200, chunks=converse_stream(pieces(TEXT, 5), pieces(ARGS, 4)), headers=EVENTSTREAM)
        if path.endswith("/converse"):
            return Reply(200, converse_json())
        if path.endswith("/invoke-with-response-stream"):
            if "application-inference-profile" in path:
                return Reply(200, chunks=claude_stream(), headers=EVENTSTREAM)
            if "llama3-deny" in path:
                return self._denied(llama_stream(pieces(TEXT, 5), [" more"] * FILLERS), TEXT.index(AWS) // 5)
            return Reply(200, chunks=llama_stream(pieces(TEXT, 5)), headers=EVENTSTREAM)
        if path.endswith("/invoke"):
            if "application-inference-profile" in path:
                return Reply(200, claude_json())
            body = {"generation": TEXT, "prompt_token_count": 5, "generation_token_count": 7, "stop_reason": "stop"}
            return Reply(200, body, {"x-amzn-bedrock-input-token-count": "5", "x-amzn-bedrock-output-token-count": "7"})
        return Reply(404, {"message": "no such path"})


upstream, gw = answer_fixtures(Upstream, config, ("bedrock", "openai"))
# The same, every call counted by a limit: its answer's end waits for its settlement.
counted = counted_fixture(config, ("bedrock", "openai"))


CLIENT = f"""
import json
import boto3
from botocore.config import Config
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{VIRTUAL[0]}",
    aws_secret_access_key="{VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
MESSAGES = [{{"role": "user", "content": [{{"text": "pay"}}]}}]
"""

CONVERSE_STREAM = (
    CLIENT
    + """
text, args, error = "", "", None
try:
    for e in client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]:
        d = e.get("contentBlockDelta", {}).get("delta", {})
        text += d.get("text", "")
        args += d.get("toolUse", {}).get("input", "")
except Exception as e:
    error = [type(e).__module__, type(e).__name__, str(e)]
report(text=text, args=args, error=error)
"""
)

INVOKE_STREAM = (
    CLIENT
    + """
text, error = "", None
try:
    r = client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps({"prompt": "pay"}))
    for e in r["body"]:
        text += json.loads(e["chunk"]["bytes"])["generation"]
except Exception as e:
    error = [type(e).__module__, type(e).__name__, str(e)]
report(text=text, error=error)
"""
)


def test_a_converse_stream_comes_redacted_in_its_text_and_tool_use_input(gw):
    result = gw.run("MODEL = 'amazon.nova-lite-v1:0'\n" + CONVERSE_STREAM)
    assert result["error"] is None
    assert result["text"] == REDACTED_TEXT
    assert result["args"] == ARGS.replace(CARD, "[REDACTED:pii.payment_card]")
    assert json.loads(result["args"]) == REDACTED_ARGS
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["error"], record["refusal"]) == (200, None, None)
    assert record["total_tokens"] == 12


@pytest.mark.parametrize(
    ("model", "client", "operation"),
    [
        ("amazon.nova-deny-v1:0", CONVERSE_STREAM, "ConverseStream"),
        ("meta.llama3-deny-v1:0", INVOKE_STREAM, "InvokeModelWithResponseStream"),
    ],
    ids=["converse", "invoke-model"],
)
def test_a_denied_stream_raises_in_boto3_and_the_upstream_is_closed(gw, upstream, model, client, operation):
    started = time.monotonic()
    result = gw.run(f"MODEL = {model!r}\n" + client)
    assert result["error"] == [
        "botocore.exceptions",
        "EventStreamError",
        f"An error occurred (validationException) when calling the {operation} operation: {DENIED}",
    ]
    cut_at_the_key(gw, result["text"])
    upstream.stopped_soon(started, 4 + 5)


def test_an_event_not_read_stops_the_converse_stream_unread_in_boto3(gw):
    """An event newer than the reader that carries text cannot be read: the stream stops cleanly
    before it (nothing after it goes on), with the exception frame boto3 raises on while iterating;
    no failure is logged, and the record says what was found until then."""
    failed = "reading an answer for its guardrails failed"
    logged = gw.proxy.console().count(failed)
    result = gw.run("MODEL = 'amazon.nova-unread-v1:0'\n" + CONVERSE_STREAM)
    unread = DENIED.replace("secrets.aws_access_key_id", "unread")
    assert result["error"] == [
        "botocore.exceptions",
        "EventStreamError",
        f"An error occurred (validationException) when calling the ConverseStream operation: {unread}",
    ]
    assert result["text"] == REDACTED_TEXT
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
    assert gw.proxy.console().count(failed) == logged


def test_a_clean_converse_stream_comes_byte_for_byte(gw):
    result = gw.run(
        CLIENT
        + """
import botocore.eventstream
raw = []
r = client.converse_stream(modelId="amazon.nova-clean-v1:0", messages=MESSAGES)
stream = r["stream"]
for piece in stream._raw_stream.stream():
    raw.append(piece)
report(raw=b"".join(raw).hex())
"""
    )
    assert bytes.fromhex(result["raw"]) == b"".join(clean_stream())
    assert gw.last_audit()["answer_findings"] == {}


def test_a_clean_converse_streams_frames_are_not_held_back(gw, upstream, tmp_path):
    """The upstream sends each frame only once boto3 has the one before: a guarded stream whose
    text holds no candidate passes each frame on as it comes (one ending in a digit would wait
    for the next, which may make it a card number)."""
    result, waited = upstream.paced_run(
        gw,
        tmp_path / "events",
        CLIENT
        + """
text = ""
for e in client.converse_stream(modelId="amazon.nova-flow-v1:0", messages=MESSAGES)["stream"]:
    text += e.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
    counted()
report(text=text)
""",
    )
    assert result == {"text": "Nothing to hide here, all is well and fine."}
    assert waited == [True] * (len(flowing_stream()) - 1)


CONVERSE = (
    CLIENT
    + """
try:
    r = client.converse(modelId=MODEL, messages=MESSAGES)
    content = r["output"]["message"]["content"]
    report(text=content[0]["text"], args=content[1]["toolUse"]["input"], tokens=r["usage"]["totalTokens"])
except Exception as e:
    report(error=[type(e).__module__, type(e).__name__], code=e.response["Error"]["Code"],
           status=e.response["ResponseMetadata"]["HTTPStatusCode"], body=str(e),
           tollgate=e.response["ResponseMetadata"]["HTTPHeaders"].get("x-tollgate-error"))
"""
)


def test_a_converse_answer_is_served_redacted_its_tool_use_input_too(gw):
    result = gw.run("MODEL = 'amazon.nova-lite-v1:0'\n" + CONVERSE)
    assert result == {"text": REDACTED_TEXT, "args": REDACTED_ARGS, "tokens": 12}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["decision"], record["error"]) == (200, "allow", None)


def test_a_converse_answer_with_a_denied_value_is_refused_403_in_awss_shape(gw):
    result = gw.run("MODEL = 'amazon.nova-deny-v1:0'\n" + CONVERSE)
    assert result["error"] == ["botocore.errorfactory", "AccessDeniedException"]
    assert (result["code"], result["status"], result["tollgate"]) == ("AccessDeniedException", 403, "content_denied")
    refused_for_the_key(gw, result)


def test_an_invoke_model_stream_comes_redacted_in_the_familys_chunks(gw):
    result = gw.run("MODEL = 'meta.llama3-70b-instruct-v1:0'\n" + INVOKE_STREAM)
    assert result == {"text": REDACTED_TEXT, "error": None}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
    assert (record["status"], record["error"], record["total_tokens"]) == (200, None, 12)


INVOKE = (
    CLIENT
    + """
try:
    r = client.invoke_model(modelId=MODEL, body=json.dumps({"prompt": "pay"}))
    report(answer=json.loads(r["body"].read()))
except Exception as e:
    report(error=[type(e).__module__, type(e).__name__], code=e.response["Error"]["Code"],
           status=e.response["ResponseMetadata"]["HTTPStatusCode"], body=str(e))
"""
)


def test_an_invoke_model_answer_is_served_redacted_or_refused(gw):
    result = gw.run("MODEL = 'meta.llama3-70b-instruct-v1:0'\n" + INVOKE)
    assert result["answer"] == {
        "generation": REDACTED_TEXT,
        "prompt_token_count": 5,
        "generation_token_count": 7,
        "stop_reason": "stop",
    }
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}
    refused = gw.run("MODEL = 'meta.llama3-deny-v1:0'\n" + INVOKE)
    assert refused["error"] == ["botocore.errorfactory", "AccessDeniedException"]
    assert (refused["code"], refused["status"]) == ("AccessDeniedException", 403)
    assert AWS not in refused["body"]
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")


CLAUDE_STREAM = (
    CLIENT
    + """
text, cited = "", []
body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [{"role": "user", "content": "pay"}]}
r = client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
for e in r["body"]:
    delta = json.loads(e["chunk"]["bytes"]).get("delta", {})
    text += delta.get("text", "")
    cited += [delta["citation"]["cited_text"]] if "citation" in delta else []
whole = json.loads(client.invoke_model(modelId=MODEL, body=json.dumps(body))["body"].read())
report(text=text, cited=cited, whole=[whole["content"][0]["text"], whole["content"][0]["citations"][0]["cited_text"]])
"""
)


def test_claude_under_an_application_inference_profile_is_read_as_claudes(gw):
    """The profile's ARN does not name Claude: the answer does, and is read by Claude's reader,
    its citations' quoted text too."""
    result = gw.run(f"MODEL = {PROFILE!r}\n" + CLAUDE_STREAM)
    cited = "the file says [REDACTED:secrets.aws_access_key_id]"
    assert result == {"text": REDACTED_TEXT, "cited": [cited], "whole": [REDACTED_TEXT, cited]}
    streamed, whole = gw.new_audit(2)
    assert streamed["answer_findings"] == whole["answer_findings"] == {"secrets.aws_access_key_id": 2}
    assert (streamed["model"], streamed["endpoint"]) == (PROFILE, "invoke-with-response-stream")


def test_a_converse_stream_translated_from_another_provider_is_read_as_boto3_gets_it(gw):
    result = gw.run("MODEL = 'gpt-4o'\n" + CONVERSE_STREAM)
    assert result == {"text": REDACTED_TEXT, "args": "", "error": None}
    record = gw.last_audit()
    assert (record["provider"], record["answer_findings"]) == ("openai", {"secrets.aws_access_key_id": 1})


def test_a_counted_call_is_redacted_and_denied_as_any(counted):
    redacted = counted.run("MODEL = 'amazon.nova-lite-v1:0'\n" + CONVERSE_STREAM)
    assert (redacted["text"], redacted["error"]) == (REDACTED_TEXT, None)
    assert json.loads(redacted["args"]) == REDACTED_ARGS
    assert counted.last_audit()["total_tokens"] == 12
    denied = counted.run("MODEL = 'meta.llama3-deny-v1:0'\n" + INVOKE_STREAM)
    assert denied["error"][:2] == ["botocore.exceptions", "EventStreamError"]
    cut_at_the_key(counted, denied["text"])
