"""Invisible marks inside a value do not hide it from the guardrails, with the official openai SDK
through mitmdump: a key with a variation selector, a combining mark, the combining grapheme joiner
or U+0000 in it reaches the fake upstream redacted, and the same key streamed back in an answer,
split across its deltas, reaches the SDK redacted."""

from __future__ import annotations

import json

import pytest
from tests.support import streams
from tests.support.answers import AWS, pieces
from tests.support.fake_upstream import Reply

KIND = "secrets.aws_access_key_id"
PLACEHOLDER = f"[REDACTED:{KIND}]"
MARKS = ["\ufe0f", "\u0301", "\u034f", "\x00"]


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {name: {"upstream": url} for name, url in urls.items()},
            "guardrails": [{"on": ["request", "answer"], "detect": [KIND], "action": "redact"}],
        }
    )


def marked(mark: str) -> str:
    """The key with `mark` after its fourth and its tenth character."""
    return AWS[:4] + mark + AWS[4:10] + mark + AWS[10:]


def chat_stream(said: str) -> list[bytes]:
    """A chat stream of `said`, 5 characters a delta, with its usage (as asked for)."""
    first, *_ = streams.openai_chat()
    chunk = json.loads(first[6:])
    deltas = []
    for piece in pieces(said, 5):
        chunk["choices"][0]["delta"] = {"content": piece}
        deltas.append(streams.sse(chunk))
    return [first, *deltas, *streams.openai_chat()[-3:]]


CLIENT = """
from openai import OpenAI
chunks = OpenAI(api_key="sk-own", max_retries=0, timeout=10).chat.completions.create(model="gpt-4o-mini",
    stream=True, messages=[{"role": "user", "content": MESSAGE}])
report(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
"""


@pytest.mark.parametrize("mark", MARKS, ids=["fe0f", "0301", "034f", "0000"])
def test_a_key_with_invisible_marks_in_it_is_redacted_both_ways(gw, mark):
    gw.reset()
    said = f"the key is {marked(mark)} ok"
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=chat_stream(said))
    code = CLIENT.replace("MESSAGE", repr(f"use {marked(mark)} now"))
    result = gw.run(code)
    sent = gw.fakes["openai"].received[-1].json()["messages"][0]["content"]
    assert sent == f"use {PLACEHOLDER} now"
    assert result == {"text": f"the key is {PLACEHOLDER} ok"}
    record = gw.last_audit()
    assert AWS[10:] not in json.dumps(record)
