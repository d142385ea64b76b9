"""Every string of an answer is read, with the official SDKs through mitmdump: an OpenAI chat answer
whose key sits in members no text field holds (reasoning as OpenRouter streams it, in `reasoning`
and again in `reasoning_details[].text`; a citation's title and URL; a tool call's name) comes to
the openai SDK redacted in each of them, or stops with the error the SDK raises on, no copy of the
key in any event it got; a Claude answer with the key in a tool's name and in a member of its
message Tollgate does not know, or in its message's and a tool use's ids, the same with the
anthropic SDK; a Responses answer with the key in its ids and a member's `type`, and a chat audio
answer with the key in its transcript and a later chunk's id, with the openai SDK. The audit counts what was found
(`answer_findings`) and says what was done."""

from __future__ import annotations

import json

from tests.support.answer_gateways import answer_fixtures, chat_completion, guarded_config
from tests.support.answers import AWS, AnswerUpstream, pieces
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

VIRTUAL = "tg-members-alice-0001"
KIND = "secrets.aws_access_key_id"
REDACTED = f"[REDACTED:{KIND}]"
THOUGHT = f"The vault holds {AWS}; I will not say it."


def config(urls: dict[str, str]) -> dict:
    keys = {"openai": "sk-real-members-0001", "anthropic": "sk-ant-real-members-0001"}
    return guarded_config(urls, keys, VIRTUAL, "*deny*")


def chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    event = {"id": "chatcmpl-m", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**event, "choices": [choice]})


def reasoning_stream() -> list[bytes]:
    """Reasoning in 6-character deltas, each in `reasoning` and in `reasoning_details[].text` (the
    key across four events), then the answer's text."""
    events = [chunk({"role": "assistant", "content": ""})]
    for piece in pieces(THOUGHT, 6):
        detail = {"type": "reasoning.text", "text": piece, "format": "anthropic-claude-v1", "index": 0}
        events.append(chunk({"reasoning": piece, "reasoning_details": [detail]}))
    events += [chunk({"content": "Done."}), chunk({}, "stop"), sse("[DONE]")]
    return events


def named_stream() -> list[bytes]:
    """A tool call whose name is the key, its arguments after it."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": AWS, "arguments": ""}}
    events = [chunk({"role": "assistant", "content": "Calling. "}), chunk({"tool_calls": [call]})]
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in ('{"a"', ": 1}")]
    return [*events, chunk({}, "tool_calls"), sse("[DONE]")]


def cited_answer() -> dict:
    """A whole answer whose citation's title and URL hold the key."""
    citation = {"title": f"Keys: {AWS}", "url": f"https://docs.example/?k={AWS}", "start_index": 0, "end_index": 4}
    message = {"role": "assistant", "content": "See the docs.", "annotations": [
        {"type": "url_citation", "url_citation": citation}
    ]}  # fmt: skip
    return chat_completion("chatcmpl-c", message, "stop")


def claude_stream() -> list[bytes]:
    """Claude's answer: a member of its message Tollgate does not know and a tool's name hold the key."""
    start = {"id": "msg_m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
             "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}, "vendor_note": f"k {AWS}"}  # fmt: skip
    tool = {"type": "tool_use", "id": "toolu_1", "name": AWS, "input": {}}
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": tool}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [sse(body, name) for name, body in events]


def claude_ids_stream() -> list[bytes]:
    """Claude's answer whose message id, a tool use's id and a member of its block hold the key."""
    events = [json.loads(e.split(b"data: ", 1)[1]) for e in claude_stream()]
    events[0]["message"]["id"] = f"msg_{AWS}"
    del events[0]["message"]["vendor_note"]
    events[1]["content_block"] |= {"id": f"toolu_{AWS}", "name": "lookup", "x": {"type": AWS}}
    return [sse(e, e["type"]) for e in events]


def responses_stream() -> list[bytes]:
    """A Responses answer whose response id, message item id and a member's `type` hold the key."""
    response = {"id": f"resp_{AWS}", "object": "response", "created_at": 1700000000, "status": "in_progress",
                "model": "gpt-5", "output": []}  # fmt: skip
    part = {"type": "output_text", "text": "Hello there.", "annotations": []}
    item = {"id": f"msg_{AWS}", "type": "message", "status": "completed", "role": "assistant", "content": [part],
            "x": {"type": AWS}}  # fmt: skip
    where = {"item_id": f"msg_{AWS}", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **where, "delta": "Hello "},
        {"type": "response.output_text.delta", **where, "delta": "there."},
        {"type": "response.output_text.done", **where, "text": "Hello there."},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": {**response, "status": "completed", "output": [item]}},
    ]
    return [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]


def audio_stream() -> list[bytes]:
    """An audio answer: its transcript in pieces (the key across two), the sound beside each, and a
    later chunk of another id."""
    sound = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="
    first = chunk({"role": "assistant", "audio": {"id": "audio_1", "data": sound, "expires_at": 1, "transcript": ""}})
    pieces = ("The key is ", AWS[:9], AWS[9:], ".")
    events = [first, *(chunk({"audio": {"transcript": piece, "data": sound}}) for piece in pieces)]
    last = json.loads(chunk({}, "stop").split(b"data: ", 1)[1])
    return [*events, sse({**last, "id": f"chatcmpl-{AWS}"}), sse("[DONE]")]


class Upstream(AnswerUpstream):
    def __call__(self, received: Received) -> Reply:
        if received.path.endswith("/v1/messages"):
            if received.json()["model"].startswith("claude-ids"):
                return Reply(200, chunks=claude_ids_stream())
            return Reply(200, chunks=claude_stream())
        if received.path.endswith("/responses"):
            return Reply(200, chunks=responses_stream())
        if not received.path.endswith("/chat/completions"):
            return provider_answers(received)
        model = received.json()["model"]
        if model.startswith("gpt-audio"):
            return Reply(200, chunks=audio_stream())
        if model.startswith("gpt-reasoning"):
            return Reply(200, chunks=reasoning_stream())
        if model.startswith("gpt-named"):
            return Reply(200, chunks=named_stream())
        return Reply(200, cited_answer())


upstream, gw = answer_fixtures(Upstream, config, ("openai", "anthropic"))


READ_STREAM = f"""
import json
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, reasoning, details, text, names, error = [], "", "", "", [], None
try:
    for event in client.chat.completions.create(
        model=MODEL, messages=[{{"role": "user", "content": "think"}}], stream=True
    ):
        events.append(event.model_dump_json())
        for choice in event.choices:
            extra = choice.delta.model_extra or {{}}
            reasoning += extra.get("reasoning") or ""
            details += "".join(d.get("text", "") for d in extra.get("reasoning_details") or ())
            text += choice.delta.content or ""
            names += [c.function.name for c in choice.delta.tool_calls or () if c.function and c.function.name]
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, reasoning=reasoning, details=details, text=text, names=names, error=error)
"""

READ_JSON = f"""
from openai import OpenAI
import openai
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    r = client.chat.completions.create(model=MODEL, messages=[{{"role": "user", "content": "cite"}}])
    report(raw=r.model_dump_json(), annotations=[a.url_citation.model_dump() for a in r.choices[0].message.annotations])
except openai.APIStatusError as e:
    report(error=[type(e).__module__.split(".")[0], type(e).__name__], status=e.status_code,
           tollgate=e.response.headers.get("x-tollgate-error"))
"""


def test_reasoning_details_are_redacted_as_its_reasoning_is(gw):
    result = gw.run("MODEL = 'gpt-reasoning'\n" + READ_STREAM)
    assert result["error"] is None
    assert result["reasoning"] == result["details"] == THOUGHT.replace(AWS, REDACTED)
    assert result["text"] == "Done."
    assert not any(AWS[:8] in e for e in result["events"])
    record = gw.last_audit()
    # The key once in each channel: `reasoning` and `reasoning_details[0].text`.
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 2})


def test_under_deny_no_event_keeps_the_key_in_its_reasoning_details(gw):
    result = gw.run("MODEL = 'gpt-reasoning-deny'\n" + READ_STREAM)
    assert result["error"][:2] == ["openai", "APIError"]
    assert KIND in result["error"][2]
    before = THOUGHT[: THOUGHT.index(AWS)]
    assert result["reasoning"] == result["details"] == before
    assert result["text"] == ""
    assert not any(AWS[:4] in e for e in result["events"])
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")
    assert record["answer_findings"] == {KIND: 1}


def test_a_tool_calls_name_is_redacted_or_denied(gw):
    redacted = gw.run("MODEL = 'gpt-named'\n" + READ_STREAM)
    assert (redacted["error"], redacted["names"], redacted["text"]) == (None, [REDACTED], "Calling. ")
    assert not any(AWS in e for e in redacted["events"])
    assert gw.last_audit()["answer_findings"] == {KIND: 1}
    denied = gw.run("MODEL = 'gpt-named-deny'\n" + READ_STREAM)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert (denied["names"], denied["text"]) == ([], "Calling. ")
    assert not any(AWS[:4] in e for e in denied["events"])
    record = gw.last_audit()
    assert (record["error"], record["answer_findings"]) == ("content_denied", {KIND: 1})


def test_a_citations_title_and_url_are_redacted_or_the_answer_refused(gw):
    redacted = gw.run("MODEL = 'gpt-cited'\n" + READ_JSON)
    citation = redacted["annotations"][0]
    assert (citation["title"], citation["url"]) == (f"Keys: {REDACTED}", f"https://docs.example/?k={REDACTED}")
    assert AWS not in redacted["raw"]
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 2})
    refused = gw.run("MODEL = 'gpt-cited-deny'\n" + READ_JSON)
    assert (refused["error"], refused["status"], refused["tollgate"]) == (
        ["openai", "PermissionDeniedError"],
        403,
        "content_denied",
    )
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")
    assert record["answer_findings"] == {KIND: 1}


READ_CLAUDE = """
import anthropic, json
client = anthropic.Anthropic(api_key="tg-members-alice-0001", max_retries=0)
events, names, error = [], [], None
try:
    for event in client.messages.create(model=MODEL, max_tokens=100, stream=True,
                                        messages=[{"role": "user", "content": "run"}]):
        events.append(event.model_dump_json())
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            names.append(event.content_block.name)
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, names=names, error=error)
"""


def test_a_claude_stream_is_read_in_its_tools_name_and_a_member_not_known(gw):
    redacted = gw.run("MODEL = 'claude-sonnet-4-5'\n" + READ_CLAUDE)
    assert (redacted["error"], redacted["names"]) == (None, [REDACTED])
    assert not any(AWS in e for e in redacted["events"])
    assert json.loads(redacted["events"][0])["message"]["vendor_note"] == f"k {REDACTED}"
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 2})
    denied = gw.run("MODEL = 'claude-deny'\n" + READ_CLAUDE)
    assert denied["error"][:2] == ["anthropic", "APIStatusError"]
    assert (denied["events"], denied["names"]) == ([], [])
    record = gw.last_audit()
    assert (record["error"], record["refusal"], record["answer_findings"]) == (
        "content_denied",
        "content_denied",
        {KIND: 1},
    )


READ_RESPONSES = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, text, ids, error = [], "", [], None
try:
    for event in client.responses.create(model=MODEL, input="hi", stream=True):
        events.append(event.model_dump_json())
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            ids = [event.response.id, *(item.id for item in event.response.output)]
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, text=text, ids=ids, error=error)
"""


def test_a_responses_answers_ids_and_types_are_read(gw):
    """The key in the response's id, an item's id and a member's `type`: redacted in each, the
    text as it came; under deny the openai SDK raises and no event it got holds the key."""
    redacted = gw.run("MODEL = 'gpt-5'\n" + READ_RESPONSES)
    assert (redacted["error"], redacted["text"]) == (None, "Hello there.")
    assert redacted["ids"] == [f"resp_{REDACTED}", f"msg_{REDACTED}"]
    assert not any(AWS in e for e in redacted["events"])
    record = gw.last_audit()
    assert (record["status"], record["decision"]) == (200, "allow")
    assert set(record["answer_findings"]) == {KIND}
    denied = gw.run("MODEL = 'gpt-5-deny'\n" + READ_RESPONSES)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert KIND in denied["error"][2]
    assert not any(AWS[:4] in e for e in denied["events"])
    record = gw.last_audit()
    assert (record["error"], record["refusal"]) == ("content_denied", "content_denied")


READ_CLAUDE_IDS = """
import anthropic
client = anthropic.Anthropic(api_key="tg-members-alice-0001", max_retries=0)
events, ids, error = [], [], None
try:
    for event in client.messages.create(model=MODEL, max_tokens=100, stream=True,
                                        messages=[{"role": "user", "content": "run"}]):
        events.append(event.model_dump_json())
        if event.type == "message_start":
            ids.append(event.message.id)
        if event.type == "content_block_start":
            ids.append(event.content_block.id)
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, ids=ids, error=error)
"""


def test_a_claude_streams_message_and_tool_use_ids_are_read(gw):
    redacted = gw.run("MODEL = 'claude-ids'\n" + READ_CLAUDE_IDS)
    assert (redacted["error"], redacted["ids"]) == (None, [f"msg_{REDACTED}", f"toolu_{REDACTED}"])
    assert not any(AWS in e for e in redacted["events"])
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 3})
    denied = gw.run("MODEL = 'claude-ids-deny'\n" + READ_CLAUDE_IDS)
    assert denied["error"][:2] == ["anthropic", "APIStatusError"]
    assert (denied["events"], denied["ids"]) == ([], [])
    record = gw.last_audit()
    assert (record["error"], record["refusal"]) == ("content_denied", "content_denied")


READ_AUDIO = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, transcript, ids, error = [], "", [], None
try:
    for event in client.chat.completions.create(
        model=MODEL, messages=[{{"role": "user", "content": "say"}}], stream=True
    ):
        events.append(event.model_dump_json())
        ids.append(event.id)
        for choice in event.choices:
            audio = choice.delta.audio
            transcript += (audio.transcript or "") if audio is not None else ""
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__, str(e)]
report(events=events, transcript=transcript, ids=ids, error=error)
"""


def test_an_audio_transcript_and_a_later_chunks_id_are_read(gw):
    redacted = gw.run("MODEL = 'gpt-audio'\n" + READ_AUDIO)
    assert redacted["error"] is None
    assert redacted["transcript"] == f"The key is {REDACTED}."
    assert redacted["ids"][-1] == f"chatcmpl-{REDACTED}"
    assert not any(AWS in e for e in redacted["events"])
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (200, "allow", {KIND: 2})
    denied = gw.run("MODEL = 'gpt-audio-deny'\n" + READ_AUDIO)
    assert denied["error"][:2] == ["openai", "APIError"]
    assert denied["transcript"] == "The key is "
    assert not any(AWS[:4] in e for e in denied["events"])
    assert gw.last_audit()["error"] == "content_denied"
