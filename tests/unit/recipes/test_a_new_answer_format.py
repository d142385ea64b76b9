"""An answer format added to the answer guardrails as the recipe in docs/architecture.md says: its
readers (what its module would hold, here in the test: a streamed answer's guard, a whole answer's
reader, the event a denied stream ends with) and its line in `ANSWER_FORMATS`; and, as its answers
come from an endpoint whose provider names no chat format for it, its line in `ANSWER_ENDPOINTS`
(both patched in). OpenAI's legacy Completions (`/v1/completions`, each choice's `text`) is the
format, its real readers (`completions_answer.py`) taken out first and a throw-away put in their
place: through the real pipeline, its answer comes to the client with the value redacted, streamed
and whole, and the audit counts it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from tests.support.pipeline import VIRTUAL_KEY, configured_gateway, one_call, sse

from tollgate.formats import OPENAI_COMPLETIONS
from tollgate.formats.framing.sse import SSEFramer
from tollgate.governance.guardrails import answer_formats
from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner
from tollgate.governance.guardrails.answer_formats import AnswerFormat

from .conftest import chat_flow, openai_config, records

COMPLETIONS = OPENAI_COMPLETIONS  # its name (formats/__init__.py)
VALUE = "jane.doe@acme-corp.io"
KIND = "pii.email"

# --- the format's readers (its module: governance/guardrails/<format>_answer.py) ------------------


def denied_event(kind: str) -> bytes:
    error = {"message": f"The answer was stopped ({kind}).", "type": "permission_error", "code": "content_denied"}
    return sse({"error": error})


class CompletionsGuard:
    """A streamed Completions answer: each choice's `text` one channel, each event written anew with
    what its scanner lets go; what is held goes at the end in an event of its own."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        self._compiled = compiled
        self._framer = SSEFramer()
        self._scanners: dict[int, AnswerScanner] = {}
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for scanner in self._scanners.values():
            total.update(scanner.counts)
        return dict(total)

    def feed(self, chunk: bytes) -> bytes:
        out = b""
        for block in self._framer.feed(chunk):
            if self.denied is not None:
                break
            out += self._event(block)
        return out

    def _event(self, block: bytes) -> bytes:
        data = block.removeprefix(b"data: ").strip()
        if data == b"[DONE]":
            return self._rest() + b"data: [DONE]\n\n"
        event = json.loads(data)
        for choice in event.get("choices", []):
            scanner = self._scanners.setdefault(choice["index"], self._compiled.scanner())
            released = scanner.feed(choice.get("text", "").encode())
            choice["text"] = released.text.decode()
            if released.denied is not None:
                self.denied = released.denied
                return sse(event) + denied_event(released.denied)
        return sse(event)

    def _rest(self) -> bytes:
        choices = []
        for index, scanner in self._scanners.items():
            released = scanner.flush()
            if released.text:
                choices.append({"index": index, "text": released.text.decode(), "finish_reason": None})
        return sse({"object": "text_completion", "choices": choices}) if choices else b""

    def flush(self) -> bytes:
        return b"" if self.denied is not None else self._rest()


def guard_completions_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    answer = json.loads(body)
    counts: Counter[str] = Counter()
    for choice in answer.get("choices", []):
        scanner = compiled.scanner()
        first = scanner.feed(choice.get("text", "").encode())
        rest = scanner.flush() if first.denied is None else first
        counts.update(scanner.counts)
        if first.denied or rest.denied:
            return body, first.denied or rest.denied, dict(counts)
        choice["text"] = (first.text + (rest.text if rest is not first else b"")).decode()
    return json.dumps(answer).encode(), None, dict(counts)


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The format as it was before Tollgate read it: its lines taken out of the registry."""
    monkeypatch.delitem(answer_formats.ANSWER_FORMATS, OPENAI_COMPLETIONS)
    monkeypatch.delitem(answer_formats.ANSWER_MODELS, "completions")


@pytest.fixture
def registered(unregistered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its line in `ANSWER_FORMATS`, and its endpoint's in `ANSWER_ENDPOINTS`."""
    monkeypatch.setitem(
        answer_formats.ANSWER_FORMATS,
        COMPLETIONS,
        AnswerFormat(CompletionsGuard, guard_completions_json, denied_event),
    )
    monkeypatch.setitem(answer_formats.ANSWER_ENDPOINTS, "completions", COMPLETIONS)


# --- a Completions call through the real pipeline, under an answer rule ---------------------------

RULE = {"detect": [KIND], "action": "redact", "on": ["answer"]}
ASKED = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say my address.", "max_tokens": 20}


def completions_flow(stream: bool) -> http.HTTPFlow:
    flow = chat_flow({**ASKED, "stream": stream}, VIRTUAL_KEY)
    flow.request.path = "/v1/completions"
    return flow


def pieces(text: str) -> list[bytes]:
    """A streamed Completions answer saying `text` in pieces of 7 characters, with its usage."""
    head = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct"}
    events = [
        sse({**head, "choices": [{"index": 0, "text": text[i : i + 7], "finish_reason": None}]})
        for i in range(0, len(text), 7)
    ]
    usage = {"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16}
    return [*events, sse({**head, "choices": [], "usage": usage}), sse("[DONE]")]


def text_of(received: bytes) -> str:
    said = ""
    for block in received.split(b"\n\n"):
        data = block.removeprefix(b"data: ")
        if data and data != b"[DONE]":
            said += "".join(c.get("text", "") for c in json.loads(data).get("choices", []))
    return said


def streamed(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    with configured_gateway(openai_config(tmp_path, guardrails=[RULE])) as addon:
        _, received = asyncio.run(one_call(addon, completions_flow(True), pieces(f"Your address is {VALUE}.")))
    [record] = records(tmp_path / "audit.jsonl")
    return text_of(received), record


def test_a_streamed_answer_in_the_new_format_comes_redacted(registered: None, tmp_path: Path) -> None:
    said, record = streamed(tmp_path)
    assert said == f"Your address is [REDACTED:{KIND}]."
    assert record["answer_findings"] == {KIND: 1}
    assert (record["input_tokens"], record["output_tokens"]) == (4, 12)  # its usage read as before


def test_before_it_is_registered_a_call_in_it_is_refused_unread(unregistered: None, tmp_path: Path) -> None:
    """Its endpoint is one whose answers carry what a model wrote (`unread_answers.MODEL_TEXT`):
    with no format to read them, an answer rule refuses the call before it goes upstream."""
    with configured_gateway(openai_config(tmp_path, guardrails=[RULE])) as addon:
        flow = completions_flow(True)
        asyncio.run(one_call(addon, flow, pieces(f"Your address is {VALUE}.")))
    assert flow.response is not None and flow.response.status_code == 403
    assert json.loads(flow.response.content or b"")["error"]["code"] == "content_denied"
    [record] = records(tmp_path / "audit.jsonl")
    assert record["deny_reasons"] == ["an answer guardrail applies and Tollgate cannot read legacy Completions"]
    assert record["answer_findings"] is None


def test_tollgates_own_readers_read_it_alike(tmp_path: Path) -> None:
    said, record = streamed(tmp_path)
    assert said == f"Your address is [REDACTED:{KIND}]."
    assert record["answer_findings"] == {KIND: 1}


def test_a_whole_answer_in_the_new_format_comes_redacted(registered: None, tmp_path: Path) -> None:
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"index": 0, "text": f"Your address is {VALUE}.", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16},
    }
    with configured_gateway(openai_config(tmp_path, guardrails=[RULE])) as addon:
        _, received = asyncio.run(
            one_call(addon, completions_flow(False), [json.dumps(answer).encode()], b"application/json")
        )
    assert json.loads(received)["choices"][0]["text"] == f"Your address is [REDACTED:{KIND}]."
    [record] = records(tmp_path / "audit.jsonl")
    assert record["answer_findings"] == {KIND: 1}
