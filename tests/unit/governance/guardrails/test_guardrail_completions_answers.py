"""OpenAI's legacy Completions answers read by the answer guardrails
(`governance/guardrails/completions_answer.py`): a streamed answer split anywhere gives the client,
reassembled, each choice's text with its values replaced and clean events byte for byte; a value to
deny ends the stream with an `error` event and no `[DONE]`; a whole answer is served redacted or
refused."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.answer_guards import (
    READS,
    VALUES,
    WITH_OWN_KEYS,
    WORDS,
    a_value_split,
    clean_text,
    comes_through_clean,
    compiled,
    cut_places,
    drawn,
    go_on_as_they_came,
    openai_denied,
    stopped_before,
    strings,
)
from support.guard_reads import fed_in_reads
from support.guardrail_samples import AWS_KEY_ID, EMAIL, crc_token
from tollgate.calls.call import Call, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats import ANTHROPIC_MESSAGES, OPENAI_API, OPENAI_COMPLETIONS
from tollgate.formats.openai_api.completions_guard import CompletionsAnswerGuard, guard_completions_json
from tollgate.formats.request_facts import Classification
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, answer_format_of, detected
from tollgate.proxy.stages.upstream.stream_tap import answer_reading

TOKEN = crc_token("gh" + "p_")


def chunk(choice: int, text: str, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct", "choices": [
        {"text": text, "index": choice, "logprobs": logprobs, "finish_reason": finish}
    ]}  # fmt: skip


def stream(events: list[dict[str, Any]], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def cut_at(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def answer_events(texts: list[str], pieces: list[list[int]] | None = None) -> list[dict[str, Any]]:
    """Each choice's text in events of its own pieces (cut at `pieces[i]`, else 5 characters),
    the choices' events interleaved, each choice finished, then a usage event."""
    cut = [cut_at(t, pieces[i] if pieces else list(range(0, len(t), 5))) for i, t in enumerate(texts)]
    events = [
        chunk(i, piece) for row in itertools.zip_longest(*cut) for i, piece in enumerate(row) if piece is not None
    ]
    events += [chunk(i, "", "stop") for i in range(len(texts))]
    usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    return [*events, {"id": "cmpl-1", "object": "text_completion", "choices": [], "usage": usage}]


def guarded(found: AnswerDetectors, data: bytes, read: int) -> tuple[bytes, CompletionsAnswerGuard]:
    guard = CompletionsAnswerGuard(found)
    return fed_in_reads(guard, data, read), guard


def parsed(data: bytes) -> list[Any]:
    events = []
    for block in data.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: "), block
            payload = block[6:].decode()
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def reassembled(events: list[Any]) -> dict[int, str]:
    """Each choice's text as the openai SDK's caller joins it."""
    text: dict[int, str] = {}
    for event in events:
        for choice in event.get("choices", ()) if isinstance(event, dict) else ():
            text[choice["index"]] = text.get(choice["index"], "") + choice["text"]
    return text


@pytest.mark.parametrize("read", [1, 5, 64, 1 << 20])
def test_a_streamed_answer_is_redacted_in_its_own_events_however_read(read: int) -> None:
    text = f"Mail {EMAIL} with the token {TOKEN}, then stop."
    data = stream(answer_events([text, text.upper()]))
    out, guard = guarded(compiled("redact"), data, read)
    events = parsed(out)
    assert reassembled(events) == {
        0: "Mail [REDACTED:pii.email] with the token [REDACTED:secrets.github_token], then stop.",
        1: text.upper().replace(EMAIL.upper(), "[REDACTED:pii.email]"),
    }
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    assert guard.counts == {"pii.email": 2, "secrets.github_token": 1}
    assert EMAIL.encode() not in out and TOKEN.encode() not in out


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_every_kind_split_at_every_offset_never_reaches_the_client(kind: str) -> None:
    """Each detector's example in a choice's text, cut into two events at each character (read in
    pieces of 61 bytes, and of 1 at a few cuts): no event carries the value, and the text is the
    whole text redacted."""
    value, context = VALUES[kind]
    text = "Here it is: " + context.format(value) + " and that is all."
    expected = None
    step = 1 if len(text) < 200 else 11
    for cut in range(0, len(text) + 1, step):
        data = stream(answer_events([text], [[cut]]))
        for read in (61, 1) if cut % 23 == 12 else (61,):
            events = parsed(guarded(compiled("redact"), data, read)[0])
            assert not any(value in s for e in events for s in strings(e)), (kind, cut, read)
            said = reassembled(events)[0]
            expected = expected or said
            assert said == expected
    assert expected is not None and f"[REDACTED:{kind}]" in expected


_CLEAN = clean_text(tuple(w for w in (*WORDS, "é", "☃") if w != "cats"))


@drawn(200)
@given(
    text=_CLEAN,
    cuts=cut_places(12),
    read=READS,
)
def test_a_clean_stream_split_anywhere_comes_through_byte_for_byte(text: str, cuts: list[int], read: int) -> None:
    data = stream(answer_events([text, text.upper()], [cuts, cuts]))
    comes_through_clean(guarded, WITH_OWN_KEYS, data, read)


@drawn(100)
@given(**a_value_split(_CLEAN))
def test_a_value_to_deny_split_anywhere_never_goes_on(kind: str, before: str, cuts: list[int], read: int) -> None:
    """Under `deny`, the text before the value goes on, nothing of it or after it; the stream ends
    with the error, without `[DONE]`."""
    value, context = VALUES[kind]
    text = before + " " + context.format(value) + " end"
    out, guard = guarded(compiled("deny"), stream(answer_events([text], [cuts])), read)
    events = parsed(out)
    assert guard.denied is not None
    stopped_before(value, text, reassembled(events).get(0, ""), events)
    assert "[DONE]" not in events


def test_a_value_to_deny_ends_the_stream_with_an_error_and_no_done() -> None:
    text = f"Sure, the key is {TOKEN} and more."
    data = stream(answer_events([text, "fine"]))
    for read in (1, 11, len(data)):
        out, guard = guarded(compiled("deny"), data, read)
        events = parsed(out)
        assert guard.denied == "secrets.github_token"
        assert reassembled(events)[0] == "Sure, the key is "
        assert TOKEN[:3].encode() not in out
        assert events[-1] == openai_denied("secrets.github_token")
        assert guard.feed(b"data: [DONE]\n\n") == b""


def test_an_event_written_anew_loses_its_logprobs() -> None:
    """Log probabilities' tokens are the text as it came: an event whose text is replaced carries
    none; one that goes on as it came keeps them."""
    logprobs = {"tokens": ["Mail", " ", EMAIL, " "], "token_logprobs": [-0.1, -0.2, -0.3, -0.1], "top_logprobs": None}
    clean = {"tokens": ["Hello", ". "], "token_logprobs": [-0.1, -0.2], "top_logprobs": None}
    data = stream(
        [chunk(0, "Hello. ", logprobs=clean), chunk(0, f"Mail {EMAIL} ", logprobs=logprobs), chunk(0, "", "stop")]
    )
    out, _ = guarded(compiled("redact"), data, len(data))
    events = parsed(out)
    assert events[0] == chunk(0, "Hello. ", logprobs=clean)
    assert events[1]["choices"][0] == {"text": "Mail [REDACTED:pii.email] ", "index": 0, "logprobs": None,
                                       "finish_reason": None}  # fmt: skip
    assert EMAIL.encode() not in out


def test_text_held_at_the_end_goes_on_in_an_event_of_its_own() -> None:
    """A stream that ends without a finishing event: what is held goes on before `[DONE]`."""
    data = stream([chunk(0, "It ends with sk")])
    out, _ = guarded(WITH_OWN_KEYS, data, len(data))
    events = parsed(out)
    assert reassembled(events) == {0: "It ends with sk"}
    assert events[-1] == "[DONE]"


def test_a_whole_answer_is_served_redacted_or_refused() -> None:
    logprobs = {"tokens": ["mail ", EMAIL], "token_logprobs": [-0.1, -0.1], "top_logprobs": None, "text_offset": [0, 5]}
    body = json.dumps({"id": "cmpl-1", "object": "text_completion", "choices": [
        {"text": f"mail {EMAIL}", "index": 0, "logprobs": logprobs, "finish_reason": "stop"},
        {"text": f"token {TOKEN}", "index": 1, "logprobs": None, "finish_reason": "stop"},
    ]}).encode()  # fmt: skip
    redacted, denied, counts = guard_completions_json(compiled("redact"), body)
    assert denied is None and counts == {"pii.email": 1, "secrets.github_token": 1}
    choices = json.loads(redacted)["choices"]
    assert [c["text"] for c in choices] == ["mail [REDACTED:pii.email]", "token [REDACTED:secrets.github_token]"]
    assert choices[0]["logprobs"] is None
    assert EMAIL.encode() not in redacted
    assert guard_completions_json(compiled("deny"), body)[1] == "pii.email"
    clean = json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": "fine"}]}).encode()
    assert guard_completions_json(compiled("redact"), clean) == (clean, None, {})


def test_a_saved_answer_is_told_from_a_chat_answer() -> None:
    assert detected(stream([chunk(0, "hi")])) == [OPENAI_COMPLETIONS]
    assert detected(json.dumps({"choices": [{"index": 0, "text": "hi"}]}).encode()) == [OPENAI_COMPLETIONS]
    chat = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    assert detected(stream([chat])) == ["openai-chat"]


def test_the_endpoint_is_read_in_openai_format_only() -> None:
    """`completions` is OpenAI's legacy Completions in OpenAI's format (OpenAI, Azure, the
    OpenAI-compatible APIs); Anthropic's legacy `/v1/complete`, named alike, is another format."""
    assert answer_format_of(Classification("completions", "m", wire_format=OPENAI_API), "m") == OPENAI_COMPLETIONS
    assert answer_format_of(Classification("completions", "m", wire_format=ANTHROPIC_MESSAGES), "m") is None


@pytest.mark.parametrize(
    ("provider", "host", "path"),
    [
        ("openai", "api.openai.com", "/v1/completions"),
        ("azure", "res.openai.azure.com", "/openai/deployments/instruct/completions"),
        ("together", "api.together.xyz", "/v1/completions"),
    ],
)
def test_a_completions_call_is_read_as_completions(provider: str, host: str, path: str) -> None:
    rules = {"guardrails": [{"on": ["answer"], "detect": ["pii.email"], "action": "redact"}]}
    loaded = Loaded.build(parse_config(rules))
    call = Call(Route.as_called(provider), host, "POST", path, loaded=loaded)
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5}
    call.classified(loaded.registry[provider].classify("POST", path, body))
    reading = answer_reading(call)
    assert reading is not None and reading.format is ANSWER_FORMATS[OPENAI_COMPLETIONS]


def test_anthropics_legacy_complete_is_not_read_as_openais() -> None:
    rules = {"guardrails": [{"on": ["answer"], "detect": ["pii.email"], "action": "redact"}]}
    loaded = Loaded.build(parse_config(rules))
    call = Call(Route.as_called("anthropic"), "api.anthropic.com", "POST", "/v1/complete", loaded=loaded)
    body = {"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 5}
    call.classified(loaded.registry["anthropic"].classify("POST", "/v1/complete", body))
    assert answer_reading(call) is None


# Where a choice's text would sit, of another shape than read (a list, an object, a number, a
# choice that is no object, choices that are no list): a raw client would read what it carries.
_UNREAD_SHAPES = [
    b'"the vault says hunter2"',
    b'["the vault says hunter2"]',
    b'{"choices": "the vault says hunter2"}',
    b'{"choices": {"0": {"text": "the vault says hunter2"}}}',
    b'{"choices": ["the vault says hunter2"]}',
    b'{"choices": [{"index": 0, "text": ["the vault says hunter2"]}]}',
    b'{"choices": [{"index": 0, "text": {"value": "the vault says hunter2"}}]}',
    b'{"choices": [{"index": 0, "text": 4111111111111111}]}',
]


@pytest.mark.parametrize("unread", _UNREAD_SHAPES)
@pytest.mark.parametrize("read", [1, 7, 10_000])
def test_an_event_whose_text_sits_where_it_is_not_read_stops_the_answer(unread: bytes, read: int) -> None:
    """JSON of another shape than read stops the answer as an event that is not JSON does: what is
    known of the text before it goes on, then the denied end (`unread`), nothing of it or after it."""
    before = stream([chunk(0, "Hello.")], done=False)
    data = before + b"data: " + unread + b"\n\n" + stream([chunk(0, "after")])
    out, guard = guarded(compiled("redact"), data, read)
    assert guard.denied == "unread"
    assert b"hunter2" not in out and b"4111" not in out and b"after" not in out
    events = parsed(out)
    assert "Hello.".startswith(reassembled(events).get(0, ""))
    assert events[-1]["error"]["code"] == "content_denied"
    assert "[DONE]" not in events


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@drawn(200)
@given(value=_JSON, where=st.sampled_from(["text", "choice", "choices"]), read=st.integers(min_value=1, max_value=80))
def test_any_text_of_another_shape_is_never_passed_unread(value: Any, where: str, read: int) -> None:
    """Any JSON value but a string or null where a choice's text sits (or a choice that is no object,
    or choices that are no list) carrying a secret: the answer stops before it."""
    secret = [value, "the vault says hunter2"]
    event: Any = {
        "text": {"choices": [{"index": 0, "text": secret}]},
        "choice": {"choices": [secret]},
        "choices": {"choices": {"v": secret}},
    }[where]
    data = stream([chunk(0, "Hi. "), event, chunk(0, "after")])
    out, guard = guarded(compiled("redact"), data, read)
    assert (guard.denied, b"hunter2" in out, b"after" in out) == ("unread", False, False)


@pytest.mark.parametrize("unread", _UNREAD_SHAPES[2:])
def test_a_whole_answer_of_another_shape_is_refused(unread: bytes) -> None:
    assert guard_completions_json(compiled("redact"), unread) == (unread, "unread", {})


def test_choices_of_the_shapes_read_go_on_as_they_came() -> None:
    """Usage alone, an error, a choice without text or with null text, a finishing choice."""
    go_on_as_they_came(
        guarded,
        [
            b'{"id":"c","choices":[{"index":0,"logprobs":null,"finish_reason":null}]}',
            b'{"id":"c","choices":[{"index":0,"text":null,"finish_reason":"stop"}]}',
        ],
    )
    body = b'{"id":"c","choices":[{"index":0,"text":null,"finish_reason":"stop"}]}'
    assert guard_completions_json(compiled("redact"), body) == (body, None, {})


@pytest.mark.parametrize("where", ["top", "choice"])
def test_a_member_not_known_is_read_streamed_and_whole(where: str) -> None:
    """A string outside the choices' `text` (a member not known, at the top or in a choice) is
    read whole: redacted in place, or the answer stopped before its event."""
    event = chunk(0, "Hi. ")
    if where == "top":
        event["vendor"] = {"note": f"k {AWS_KEY_ID}"}
    else:
        event["choices"][0]["vendor"] = [f"k {AWS_KEY_ID}"]
    out, guard = guarded(compiled("redact"), stream([event, chunk(0, "", "stop")]), 7)
    assert AWS_KEY_ID.encode() not in out and b"[REDACTED:secrets.aws_access_key_id]" in out
    assert guard.counts == {"secrets.aws_access_key_id": 1}
    out, guard = guarded(compiled("deny"), stream([chunk(0, "Hi. "), event, chunk(0, "", "stop")]), 7)
    assert guard.denied == "secrets.aws_access_key_id"
    assert AWS_KEY_ID[:4].encode() not in out and parsed(out)[-1]["error"]["code"] == "content_denied"
    body = json.dumps({"object": "text_completion", **event}).encode()
    redacted, denied, counts = guard_completions_json(compiled("redact"), body)
    assert (denied, counts) == (None, {"secrets.aws_access_key_id": 1}) and AWS_KEY_ID.encode() not in redacted
    assert guard_completions_json(compiled("deny"), body)[1] == "secrets.aws_access_key_id"
