"""What the unit tests of the formats' answer guards share: the detectors compiled for answers
under one action for every kind (and with Tollgate's own keys), a value of each kind, every string of a JSON value, and the clean text hypothesis
draws (words that may begin a value, and the gaps between them)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import SAMPLES, pem
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import AnswerDetectors, compiled_for

# Text that may still become a value (held) but is none: words that begin Tollgate's own keys,
# AWS's key ids, GitHub's tokens, words ending in a word's character, digits, characters beyond ASCII.
WORDS = ("s", "sk", "sk-", "sk-own", "t", "ts", "is", "its", "cats", "test", "x1", "42", "2026", "a_b", "gh", "AKIA")
GAPS = (" ", "  ", ", ", ". ", "\n", "-", "_", "", ":", "/")
# A value of every kind, with the context it needs to be found; a private key whole, in a JSON object.
VALUES = {**SAMPLES, "secrets.private_key": (pem("ec").strip(), "{}")}
# One of Tollgate's own keys, and every detector redacting with Tollgate's own keys among them.
OWN_KEY = "sk-own-" + "Q" * 30
WITH_OWN_KEYS = compiled_for(
    {**dict.fromkeys(detectors.KINDS, "redact"), "tollgate_keys": "redact"}, detectors.own_keys([OWN_KEY], ())
)


@functools.cache
def compiled(action: str) -> AnswerDetectors:
    """Every built-in detector, each kind under `action`: compiled once a test run."""
    return compiled_for(dict.fromkeys(detectors.KINDS, action))


def strings(value: Any) -> list[str]:
    """Every string of a JSON value (its objects' values, not their keys), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def clean_text(words: tuple[str, ...] = (*WORDS, "é", "☃"), gaps: tuple[str, ...] = GAPS) -> st.SearchStrategy[str]:
    """Up to 30 words, each followed by a gap."""
    return st.lists(st.tuples(st.sampled_from(words), st.sampled_from(gaps)), max_size=30).map(
        lambda parts: "".join(w + g for w, g in parts)
    )


def drawn(n: int) -> settings:
    """A guard's property test: `n` examples (a fifth in a quick run), no deadline, slow draws let be."""
    return settings(max_examples=examples(n), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cut_places(most: int) -> st.SearchStrategy[list[int]]:
    """Up to `most` places to cut a text at (past its end for some)."""
    return st.lists(st.integers(min_value=0, max_value=400), max_size=most)


# How many bytes a read gives the guard; a kind whose value fits in one line of text.
READS = st.integers(min_value=1, max_value=300)
LINE_KINDS = st.sampled_from(sorted(k for k in VALUES if k != "secrets.private_key"))


def comes_through_clean(
    guarded: Callable[[AnswerDetectors, bytes, int], tuple[bytes, Any]], found: AnswerDetectors, data: bytes, read: int
) -> None:
    """`data` read `read` bytes at a time comes out byte for byte, nothing counted; data the guard
    finds a value in whole (digits that happen to make one) is not clean, and assumed away."""
    whole, _ = guarded(found, data, len(data))
    assume(b"[REDACTED" not in whole)
    out, guard = guarded(found, data, read)
    assert out == data
    assert guard.counts == {}


def a_value_split(clean: st.SearchStrategy[str]) -> dict[str, st.SearchStrategy[Any]]:
    """What a test of one value split anywhere draws: its kind, the clean text before it, up to 8
    places to cut at and how many bytes a read gives."""
    return {"kind": LINE_KINDS, "before": clean, "cuts": cut_places(8), "read": st.integers(min_value=1, max_value=200)}


def stopped_before(value: str, text: str, sent: str, events: list[Any]) -> None:
    """A denied stream: no event holds `value`; of `text` only a beginning before it went (the
    value and the space before it kept back), and the last event is the error."""
    assert not any(value in s for e in events for s in strings(e))
    assert text.startswith(sent) and len(sent) <= len(text) - len(value) - 4
    assert events[-1]["error"]["code"] == "content_denied"


def go_on_as_they_came(
    guarded: Callable[[AnswerDetectors, bytes, int], tuple[bytes, Any]], choices: list[bytes]
) -> None:
    """An OpenAI stream of usage alone, the events `choices`, an error object and `[DONE]`, read 7
    bytes at a time: it goes on as it came."""
    events = [
        b'{"id":"c","choices":[],"usage":{"prompt_tokens":1}}',
        *choices,
        b'{"error":{"message":"overloaded","type":"server_error"}}',
    ]
    data = b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out, guard = guarded(compiled("redact"), data, 7)
    assert (out, guard.denied) == (data, None)


def a_clean_answer(clean: st.SearchStrategy[str], **more: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    """What a test of a clean answer split anywhere draws: its text and a tool's arguments (from
    `clean`), up to 12 places to cut at and how many bytes a read gives; and `more`."""
    return {"text": clean, "arguments": clean, "cuts": cut_places(12), "read": READS, **more}


def openai_denied(kind: str) -> dict[str, Any]:
    """The error event an OpenAI stream (chat, completions, responses) ends with once `kind` is denied."""
    message = f"The answer was stopped: it carries what a guardrail denies ({kind})."
    return {"error": {"message": message, "type": "permission_error", "code": "content_denied"}}
