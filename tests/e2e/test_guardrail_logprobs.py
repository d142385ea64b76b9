"""Log probabilities in guarded answers, through mitmdump against a fake upstream that sends them:
the openai SDK asking `logprobs=True` (streamed and not) and google-genai asking
`response_logprobs` get no token of a redacted or denied value. An event (or a whole answer's
choice or candidate) written anew has no log probabilities; one that goes on as it came keeps its
own, which are its text."""

from __future__ import annotations

import json

import pytest
from tests.support.answer_gateways import answer_fixtures, guarded_config
from tests.support.answers import AWS, REDACTED_TEXT, TEXT, AnswerUpstream, pieces
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

VIRTUAL = "tg-logprobs-alice-0001"
GEMINI_SSE = {"content-type": "text/event-stream"}


def config(urls: dict[str, str]) -> dict:
    keys = {"openai": "sk-real-logprobs-0001", "gemini": "AIza-real-logprobs-0001"}
    return guarded_config(urls, keys, VIRTUAL, "*-deny")


def tokens_of(text: str) -> list[str]:
    """The text cut into tokens of up to three characters."""
    return pieces(text, 3)


def chat_logprobs(text: str) -> dict:
    entries = [
        {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode())}
        ]}
        for t in tokens_of(text)
    ]  # fmt: skip
    return {"content": entries, "refusal": None}


def chat_chunk(text: str, finish: str | None = None, spelled: str | None = None) -> bytes:
    """An event of `text`, its tokens those of `spelled` (its text unless told)."""
    delta = {"content": text} if text else {}
    spelled = text if spelled is None else spelled
    logprobs = chat_logprobs(spelled) if spelled else None
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    event = {"id": "chatcmpl-l", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**event, "choices": [choice]})


def chat_answer() -> dict:
    message = {"role": "assistant", "content": TEXT}
    return {
        "id": "chatcmpl-l",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "logprobs": chat_logprobs(TEXT), "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def gemini_item(text: str, finish: str | None = None, spelled: str | None = None) -> dict:
    tokens = tokens_of(text if spelled is None else spelled)
    candidate: dict = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
        "avgLogprobs": -0.5,
        "logprobsResult": {
            "chosenCandidates": [{"token": t, "tokenId": 7, "logProbability": -0.5} for t in tokens],
            "topCandidates": [{"candidates": [{"token": t, "tokenId": 7, "logProbability": -0.5}]} for t in tokens],
        },
    }
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}


def early(text: str) -> list[tuple[str, str]]:
    """The text in 5-character events, each with the text its tokens spell: the event before the
    key's first also spells that piece (a token sent in another event than its text)."""
    cut = pieces(text, 5)
    first = next(i for i, p in enumerate(cut) if AWS[:2] in p)
    return [(p, p + cut[i + 1] if i == first - 1 else p) for i, p in enumerate(cut)]


class Upstream(AnswerUpstream):
    """OpenAI chat and Gemini answers whose text carries the key split across events (5 characters
    each), each with its log probabilities."""

    def __call__(self, received: Received) -> Reply:
        path = received.path
        if path.endswith("/chat/completions"):
            if not received.json().get("stream"):
                return Reply(200, chat_answer())
            if received.json().get("model") == "gpt-4o-early":
                events = [chat_chunk(p, spelled=spelled) for p, spelled in early(TEXT)]
            else:
                events = [chat_chunk(p) for p in pieces(TEXT, 5)]
            return Reply(200, chunks=[*events, chat_chunk("", "stop"), sse("[DONE]")])
        if ":generateContent" in path:
            return Reply(200, gemini_item(TEXT, "STOP"))
        if ":streamGenerateContent" in path:
            if "-early:" in path:
                items = [gemini_item(p, spelled=spelled) for p, spelled in early(TEXT)]
            else:
                items = [gemini_item(p) for p in pieces(TEXT, 5)]
            items[-1]["candidates"][0]["finishReason"] = "STOP"
            return Reply(
                200, headers=GEMINI_SSE, chunks=[b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in items]
            )
        return provider_answers(received)


upstream, gw = answer_fixtures(Upstream, config, ("openai", "gemini"))


OPENAI_STREAM = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
events, error = [], None
try:
    for event in client.chat.completions.create(
        model=MODEL, messages=[{{"role": "user", "content": "key"}}], stream=True, logprobs=True, top_logprobs=1
    ):
        for choice in event.choices:
            lp = choice.logprobs
            tokens = None if lp is None or lp.content is None else [
                [t.token, bytes(t.bytes).decode(), [top.token for top in t.top_logprobs]] for t in lp.content
            ]
            events.append([choice.delta.content or "", tokens])
except Exception as e:
    error = [type(e).__module__.split(".")[0], type(e).__name__]
report(events=events, error=error)
"""
OPENAI_JSON = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
r = client.chat.completions.create(
    model="gpt-4o", messages=[{{"role": "user", "content": "key"}}], logprobs=True, top_logprobs=1
)
report(text=r.choices[0].message.content, logprobs=r.choices[0].logprobs and r.choices[0].logprobs.model_dump())
"""


def check_openai_events(events: list) -> str:
    """Each event's tokens, where it has any, are its text: their text joined."""
    joined = ""
    for text, tokens in events:
        if tokens is None:
            continue
        assert "".join(t for t, _, _ in tokens) == text
        assert all(b == t and tops == [t] for t, b, tops in tokens)
        joined += text
    return joined


def test_openai_a_streamed_answer_redacted_gives_no_token_of_the_value(gw):
    result = gw.run("MODEL = 'gpt-4o'\n" + OPENAI_STREAM)
    assert result["error"] is None
    assert "".join(text for text, _ in result["events"]) == REDACTED_TEXT
    joined = check_openai_events(result["events"])
    assert AWS[:4] not in joined and AWS[-4:] not in joined
    assert result["events"][0] == ["Here ", [["Her", "Her", ["Her"]], ["e ", "e ", ["e "]]]]  # as it came
    assert [tokens for text, tokens in result["events"] if "[REDACTED:" in text] == [None]
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}


def test_openai_a_denied_stream_gives_no_token_of_the_value(gw):
    result = gw.run("MODEL = 'gpt-4o-deny'\n" + OPENAI_STREAM)
    assert result["error"] == ["openai", "APIError"]
    assert "".join(text for text, _ in result["events"]) == TEXT[: TEXT.index(AWS)]
    joined = check_openai_events(result["events"])
    assert AWS[:4] not in joined and AWS[:4] not in json.dumps(result)


def test_openai_a_json_answer_redacted_has_no_logprobs(gw):
    result = gw.run(OPENAI_JSON)
    assert result == {"text": REDACTED_TEXT, "logprobs": None}


GEMINI = f"""
from google import genai
from google.genai import types
client = genai.Client(api_key="{VIRTUAL}")
config = types.GenerateContentConfig(response_logprobs=True, logprobs=1)
"""
GEMINI_STREAM = """
items = []
for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="key", config=config):
    c = chunk.candidates[0]
    lp = c.logprobs_result
    items.append([chunk.text or "", None if lp is None else [t.token for t in lp.chosen_candidates]])
report(items=items)
"""
GEMINI_JSON = """
r = client.models.generate_content(model="gemini-2.5-flash", contents="key", config=config)
report(text=r.text, logprobs=r.candidates[0].logprobs_result is not None, avg=r.candidates[0].avg_logprobs)
"""


def test_gemini_a_streamed_answer_redacted_gives_no_token_of_the_value(gw):
    result = gw.run(GEMINI + GEMINI_STREAM)
    assert "".join(text for text, _ in result["items"]) == REDACTED_TEXT
    joined = ""
    for text, tokens in result["items"]:
        if tokens is not None:
            assert "".join(tokens) == text
            joined += text
    assert AWS[:4] not in joined and AWS[-4:] not in joined
    assert result["items"][0] == ["Here ", ["Her", "e "]]  # as it came
    assert [tokens for text, tokens in result["items"] if "[REDACTED:" in text] == [None]


def test_gemini_a_json_answer_redacted_has_no_logprobs(gw):
    result = gw.run(GEMINI + GEMINI_JSON)
    assert result == {"text": REDACTED_TEXT, "logprobs": False, "avg": -0.5}


# --- tokens sent in another event than the text they spell: the answer stops before them ---


def test_openai_tokens_ahead_of_their_text_stop_the_answer(gw):
    """The event before the key's first piece carries that piece's tokens too: it stops the answer
    as unreadable; the SDK raises, having had the text before it, and no token of the key."""
    result = gw.run("MODEL = 'gpt-4o-early'\n" + OPENAI_STREAM)
    assert result["error"] == ["openai", "APIError"]
    said = "".join(text for text, _ in result["events"])
    assert TEXT.startswith(said) and len(said) <= TEXT.index(AWS)
    assert AWS[:2] not in json.dumps(result)
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


GEMINI_EARLY = """
from google.genai import errors
items, error = [], None
try:
    for chunk in client.models.generate_content_stream(model="gemini-2.5-early", contents="key", config=config):
        c = chunk.candidates[0]
        lp = c.logprobs_result
        items.append([chunk.text or "", None if lp is None else [t.token for t in lp.chosen_candidates]])
except errors.APIError as e:
    error = [type(e).__name__, e.code, e.status]
report(items=items, error=error)
"""


def test_gemini_tokens_ahead_of_their_text_stop_the_answer(gw):
    result = gw.run(GEMINI + GEMINI_EARLY)
    assert result["error"] == ["ClientError", 403, "PERMISSION_DENIED"]
    said = "".join(text for text, _ in result["items"])
    assert TEXT.startswith(said) and len(said) <= TEXT.index(AWS)
    assert AWS[:2] not in json.dumps(result)
    record = gw.last_audit()
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


# --- alternatives to each token asked for: refused before the call goes upstream ---

OPENAI_ALTERNATIVES = f"""
import openai
client = openai.OpenAI(api_key="{VIRTUAL}", max_retries=0)
try:
    client.chat.completions.create(
        model="gpt-4o", messages=[{{"role": "user", "content": "key"}}], stream=True, logprobs=True, top_logprobs=2
    )
    report(error=None)
except openai.APIStatusError as e:
    report(error=[type(e).__name__, e.status_code, e.body])
"""
GEMINI_ALTERNATIVES = f"""
from google import genai
from google.genai import errors, types
client = genai.Client(api_key="{VIRTUAL}")
config = types.GenerateContentConfig(response_logprobs=True, logprobs=3)
try:
    client.models.generate_content(model="gemini-2.5-flash", contents="key", config=config)
    report(error=None)
except errors.APIError as e:
    report(error=[type(e).__name__, e.code, e.status])
"""


@pytest.mark.parametrize(
    ("provider", "script", "error", "field"),
    [
        ("openai", OPENAI_ALTERNATIVES, ["PermissionDeniedError", 403], "top_logprobs"),
        ("gemini", GEMINI_ALTERNATIVES, ["ClientError", 403, "PERMISSION_DENIED"], "generationConfig.logprobs"),
    ],
)
def test_alternatives_to_each_token_are_refused_before_the_call_goes_upstream(gw, provider, script, error, field):
    """Two or more alternatives at each position hold tokens the model did not write, which no
    answer guardrail reads: the call is refused 403 `content_denied`, the upstream never asked."""
    seen = len(gw.fakes[provider].received)
    result = gw.run(script)
    assert result["error"][: len(error)] == error
    assert len(gw.fakes[provider].received) == seen
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["answer_findings"]) == (403, "deny", None)
    assert record["deny_reasons"] == [
        f"an answer guardrail applies and Tollgate cannot read the alternatives to each token it asks for ({field})"
    ]
