"""Guardrails on OpenAI's legacy Completions answers (`/v1/completions`), with the official openai SDK
(`client.completions.create`) through mitmdump: an answer that streams an AWS key split across
events, in two choices, comes to the SDK with the key replaced (`redact`), or stops before it with
an error the SDK raises on while iterating (`deny`); a JSON answer is served redacted or refused
403; the audit counts what was found (`answer_findings`). An answer no format reads (a
transcription, a file's content) is refused before it goes upstream where an answer rule applies."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from tests.support import guardrail_samples as samples
from tests.support.answer_gateways import refused_for_the_key, stopped_before_the_keys_tokens
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.raw import send
from tests.support.streams import sse

VIRTUAL = "tg-completions-alice-0001"
BOB = "tg-completions-bob-0001"
AWS = samples.AWS_KEY_ID
TEXT = f"Here is the key from the file: {AWS} and nothing else."
REDACTED = TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
KINDS = ["secrets.aws_access_key_id", "pii.payment_card"]
USAGE = {"prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29}
HEAD = {"id": "cmpl-g", "object": "text_completion", "created": 1700000000, "model": "gpt-3.5-turbo-instruct"}


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-completions-0001"]}},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}, {"name": "bob", "keys": [BOB]}],
        "guardrails": [
            {"match": {"client": "bob"}, "on": ["answer"], "detect": KINDS, "action": "redact"},
            {"match": {"model": "instruct-redact"}, "on": ["answer"], "detect": KINDS, "action": "redact"},
            {"match": {"model": "instruct-deny"}, "on": ["answer"], "detect": KINDS, "action": "deny"},
            {"match": {"model": "shape-*"}, "on": ["answer"], "detect": KINDS, "action": "redact"},
        ],
    }


def choice(index: int, text: str, finish: str | None = None) -> dict:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


def streamed() -> list[bytes]:
    """Two choices (`n=2`), each the text in 5-character events (the key across four), interleaved;
    their ends, then the usage."""
    pieces = [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]
    events = [sse({**HEAD, "choices": [choice(i, p)]}) for p in pieces for i in (0, 1)]
    events += [sse({**HEAD, "choices": [choice(i, "", "stop")]}) for i in (0, 1)]
    return [*events, sse({**HEAD, "choices": [], "usage": USAGE}), sse("[DONE]")]


def whole() -> dict:
    return {**HEAD, "choices": [choice(0, TEXT, "stop"), choice(1, "fine", "stop")], "usage": USAGE}


def stored() -> dict:
    """A stored chat completion, read back whole (`GET /v1/chat/completions/{id}`)."""
    message = {"role": "assistant", "content": TEXT}
    return {"id": "chatcmpl-s", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": USAGE}  # fmt: skip


def stored_response() -> dict:
    """A stored (or background) response, read back (`GET /v1/responses/{id}`)."""
    text = {"type": "output_text", "text": TEXT, "annotations": []}
    message = {"type": "message", "id": "msg_s", "status": "completed", "role": "assistant", "content": [text]}
    return {"id": "resp_s", "object": "response", "created_at": 1700000000, "status": "completed",
            "model": "gpt-4o", "output": [message], "usage": None}  # fmt: skip


def stored_response_events() -> list[bytes]:
    """A stored (or background) response streamed again (`GET /v1/responses/{id}?stream=true`): its
    text in 5-character deltas (the key across four), then the whole response."""
    where = {"item_id": "msg_s", "output_index": 0, "content_index": 0}
    events = [
        sse({"type": "response.output_text.delta", **where, "delta": TEXT[i : i + 5], "sequence_number": i},
            "response.output_text.delta")
        for i in range(0, len(TEXT), 5)
    ]  # fmt: skip
    done = {"type": "response.completed", "response": stored_response(), "sequence_number": 999}
    return [*events, sse(done, "response.completed")]


# Answers whose text sits where Completions' is not read, carrying the key: a raw client would read it.
OTHER_SHAPES = {
    "shape-text-list": {**HEAD, "choices": [{"index": 0, "text": [TEXT], "finish_reason": None}]},
    "shape-text-object": {**HEAD, "choices": [{"index": 0, "text": {"value": TEXT}, "finish_reason": None}]},
    "shape-choice-string": {**HEAD, "choices": [TEXT]},
    "shape-choices-object": {**HEAD, "choices": {"0": {"index": 0, "text": TEXT}}},
}


def other_shape_stream(shape: dict) -> list[bytes]:
    """A clean event, the event of another shape, then text after it and the end."""
    return [sse({**HEAD, "choices": [choice(0, "Nothing to hide ")]}), sse(shape),
            sse({**HEAD, "choices": [choice(0, " after", "stop")]}), sse("[DONE]")]  # fmt: skip


def early_tokens() -> list[bytes]:
    """The text in 5-character events, each with its log probabilities; the event before the key's
    first piece carries that piece's tokens too (a token sent in another event than its text)."""
    cut = [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]
    first = next(i for i, p in enumerate(cut) if AWS[:2] in p)
    events = []
    for i, text in enumerate(cut):
        tokens = [text, cut[i + 1]] if i == first - 1 else [text]
        logprobs = {"tokens": tokens, "token_logprobs": [-0.5] * len(tokens), "top_logprobs": None}
        events.append(sse({**HEAD, "choices": [{**choice(0, text), "logprobs": logprobs}]}))
    return [*events, sse({**HEAD, "choices": [choice(0, "", "stop")]}), sse("[DONE]")]


def answer(received: Received) -> Reply:
    if received.method == "GET" and "/v1/responses/resp_s" in received.path:
        if "stream=true" in received.path:
            return Reply(200, chunks=stored_response_events())
        return Reply(200, stored_response())
    if received.method == "GET" and "/chat/completions" in received.path:
        listed = {"object": "list", "data": [{"id": "m1", "role": "assistant", "content": TEXT}], "has_more": False}
        return Reply(200, stored() if received.path.endswith("/chatcmpl-s") else listed)
    if not received.path.endswith("/v1/completions"):
        return provider_answers(received)
    if received.json().get("model") == "shape-early":
        return Reply(200, chunks=early_tokens())
    shape = OTHER_SHAPES.get(received.json().get("model"))
    if shape is not None:
        return Reply(200, chunks=other_shape_stream(shape)) if received.json().get("stream") else Reply(200, shape)
    if received.json().get("stream"):
        return Reply(200, chunks=streamed())
    return Reply(200, whole())


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(config, providers=("openai",))
    gateway.fakes["openai"].handler = answer
    return gateway


READ_STREAM = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
texts, error = {{}}, None
try:
    for event in client.completions.create(
        model=MODEL, prompt="Read me the file.", max_tokens=40, n=2, stream=True,
        stream_options={{"include_usage": True}},
    ):
        for c in event.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(texts=[texts.get(0), texts.get(1)], error=error)
"""

READ_JSON = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    r = client.completions.create(model=MODEL, prompt="Read me the file.", max_tokens=40, n=2)
    report(texts=[c.text for c in r.choices], tokens=r.usage.total_tokens)
except Exception as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=getattr(e, "status_code", None),
           tollgate=e.response.headers.get("x-tollgate-error"))
"""


def test_a_streamed_completion_comes_redacted_in_every_choice(gw):
    result = gw.run("MODEL = 'instruct-redact'\n" + READ_STREAM)
    assert result == {"texts": [REDACTED, REDACTED], "error": None}
    record = gw.last_audit()
    assert record["endpoint"] == "completions"
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 2}
    assert (record["status"], record["error"], record["total_tokens"]) == (200, None, 29)


def test_a_denied_streamed_completion_raises_in_the_sdk_before_the_value(gw):
    result = gw.run("MODEL = 'instruct-deny'\n" + READ_STREAM)
    module, name, message = result["error"]
    assert (module, name) == ("openai", "APIError")
    assert "secrets.aws_access_key_id" in message
    before = TEXT[: TEXT.index(AWS)]
    assert result["texts"][0] == before
    assert before.startswith(result["texts"][1] or "")
    assert AWS[:4] not in json.dumps(result)
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}


def test_a_json_completion_is_served_redacted(gw):
    result = gw.run("MODEL = 'instruct-redact'\n" + READ_JSON)
    assert result == {"texts": [REDACTED, "fine"], "tokens": 29}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1}
    assert (record["status"], record["decision"]) == (200, "allow")


def test_a_json_completion_with_a_denied_value_is_refused_403(gw):
    result = gw.run("MODEL = 'instruct-deny'\n" + READ_JSON)
    assert result == {"error": ["openai", "PermissionDeniedError"], "status": 403, "tollgate": "content_denied"}
    refused_for_the_key(gw, result)


# --- what no answer format reads: refused before it goes upstream where an answer rule applies ---

UNREAD = """
from openai import OpenAI
client = OpenAI(api_key=KEY, max_retries=0)
try:
    if WHAT == "transcription":
        r = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF" + b"\\0" * 64))
        report(text=r.text)
    else:
        report(text=client.files.content("file-batch-out").text)
except Exception as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=getattr(e, "status_code", None),
           tollgate=e.response.headers.get("x-tollgate-error"), message=str(e))
"""


@pytest.mark.parametrize(
    ("what", "path", "carried"),
    [
        ("transcription", "/v1/audio/transcriptions", "a transcription's text"),
        ("file", "/v1/files/file-batch-out/content", "a file's content (a batch's results)"),
    ],
)
def test_an_answer_no_format_reads_is_refused_where_an_answer_rule_applies(gw, what, path, carried):
    seen = len(gw.fakes["openai"].received)
    result = gw.run(f"KEY, WHAT = {BOB!r}, {what!r}\n" + UNREAD)
    assert result["error"] == ["openai", "PermissionDeniedError"]
    assert (result["status"], result["tollgate"]) == (403, "content_denied")
    assert carried in result["message"]
    assert len(gw.fakes["openai"].received) == seen  # nothing went upstream
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")
    assert record["deny_reasons"] == [f"an answer guardrail applies and Tollgate cannot read {carried}"]
    assert (record["path"], record["answer_findings"]) == (path, None)


def test_an_answer_no_format_reads_goes_on_where_no_answer_rule_applies(gw):
    result = gw.run(f"KEY, WHAT = {VIRTUAL!r}, 'transcription'\n" + UNREAD)
    assert result["text"].endswith("bytes heard")
    assert gw.last_audit()["answer_findings"] is None


STORED = f"""
from openai import OpenAI
client = OpenAI(api_key={BOB!r}, max_retries=0)
try:
    if WHAT == "retrieve":
        report(text=client.chat.completions.retrieve("chatcmpl-s").choices[0].message.content)
    elif WHAT == "response":
        report(text=client.responses.retrieve("resp_s").output_text)
    elif WHAT == "response stream":
        text = ""
        for event in client.responses.retrieve("resp_s", stream=True):
            text += getattr(event, "delta", "") if event.type == "response.output_text.delta" else ""
        report(text=text)
    elif WHAT == "messages":
        report(text=[m.content for m in client.chat.completions.messages.list("chatcmpl-s")])
    else:
        report(text=[c.id for c in client.chat.completions.list()])
except Exception as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=getattr(e, "status_code", None),
           tollgate=e.response.headers.get("x-tollgate-error"), message=str(e))
"""


@pytest.mark.parametrize("what", ["retrieve", "response", "response stream"])
def test_a_stored_answer_read_back_comes_redacted(gw, what):
    """A stored chat completion, and a stored (or background) response, read back by GET, whole or
    streamed again."""
    result = gw.run(f"WHAT = {what!r}\n" + STORED)
    assert result == {"text": REDACTED}
    record = gw.last_audit()
    assert (record["method"], record["answer_findings"]) == ("GET", {"secrets.aws_access_key_id": 1})


@pytest.mark.parametrize(
    ("what", "carried"),
    [("messages", "a stored chat completion's messages"), ("list", "stored chat completions")],
)
def test_stored_chat_completions_read_back_in_another_shape_are_refused(gw, what, carried):
    seen = len(gw.fakes["openai"].received)
    result = gw.run(f"WHAT = {what!r}\n" + STORED)
    assert (result["error"], result["status"], result["tollgate"]) == (
        ["openai", "PermissionDeniedError"],
        403,
        "content_denied",
    )
    assert carried in result["message"] and AWS not in result["message"]
    assert len(gw.fakes["openai"].received) == seen
    assert gw.last_audit()["deny_reasons"] == [f"an answer guardrail applies and Tollgate cannot read {carried}"]


def raw_completion(gw, model: str, stream: bool):
    """A raw client's call, and its record."""
    body = {"model": model, "prompt": "Read me the file.", "max_tokens": 40, "stream": stream}
    headers = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    started = time.time()
    answer = send(gw.proxy.port, gw.bundle, "api.openai.com", "/v1/completions", headers=headers,
                  body=json.dumps(body).encode())  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [r for r in gw.audit() if datetime.fromisoformat(r["ts"]).timestamp() >= started - 0.01]
        if records:
            return answer, records[-1]
        time.sleep(0.05)
    raise AssertionError("no record of the call")


@pytest.mark.parametrize("model", sorted(OTHER_SHAPES))
def test_a_streamed_event_of_another_shape_never_reaches_a_raw_client(gw, model):
    """A raw client reads what an SDK would not: the answer stops before the event of another
    shape, with the denied end, and the record says it was cut."""
    answer, record = raw_completion(gw, model, stream=True)
    assert answer.status == 200
    assert AWS[:4].encode() not in answer.body and b"after" not in answer.body and b"[DONE]" not in answer.body
    events = [json.loads(line[6:]) for line in answer.body.split(b"\n\n") if line.startswith(b"data: ")]
    assert "".join(c["text"] for e in events[:-1] for c in e["choices"]) == "Nothing to hide "
    assert events[-1] == {"error": {
        "message": "The answer was stopped: it carries what a guardrail denies (unread).",
        "type": "permission_error", "code": "content_denied"}}  # fmt: skip
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


@pytest.mark.parametrize("model", sorted(OTHER_SHAPES))
def test_a_json_answer_of_another_shape_is_refused_403(gw, model):
    answer, record = raw_completion(gw, model, stream=False)
    assert answer.status == 403
    assert AWS[:4].encode() not in answer.body
    assert json.loads(answer.body)["error"]["code"] == "content_denied"
    assert (record["status"], record["refusal"]) == (403, "content_denied")


READ_LOGPROBS = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, error = [], None
try:
    for event in client.completions.create(
        model="shape-early", prompt="Read me the file.", max_tokens=40, stream=True, logprobs=1
    ):
        for c in event.choices:
            events.append([c.text, c.logprobs and c.logprobs.tokens])
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__]
report(events=events, error=error)
"""


def test_tokens_ahead_of_their_text_stop_the_answer(gw):
    """The event before the key's first piece carries that piece's tokens: it stops the answer as
    unreadable; the SDK raises, having had the text before it (each event's tokens its text), and
    no token of the key."""
    result = gw.run(READ_LOGPROBS)
    stopped_before_the_keys_tokens(gw, result, [[text, tokens] for text, tokens in result["events"] if text])
