"""Path classification never misreads: a path a lenient server would serve as a canonical endpoint
(slashes doubled, dot segments, a trailing slash, another letter case, percent-encoding, `;`
parameters) is either classified as that endpoint, with that model, or refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats.bodies.exact import Unreadable
from tollgate.providers import PROVIDERS, anthropic, bedrock, gemini, openai

# Letter case changes the meaning of an id (a file id, a Bedrock model name), not of a fixed word.
WORDS = {"openai": openai.WORDS, "gemini": gemini.WORDS, "anthropic": anthropic.WORDS, "bedrock": bedrock.WORDS}

CANONICAL = {
    "openai": [
        "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions", "/v1/moderations",
        "/v1/images/generations", "/v1/audio/speech", "/v1/models/gpt-4o", "/v1/files/file-AbC1/content",
        "/v1/batches/batch_1/cancel",
    ],
    "gemini": [
        "/v1beta/models/gemini-2.0-flash:generateContent", "/v1/models/gemini-2.5-pro:streamGenerateContent",
        "/v1alpha/models/gemini-2.0-flash:countTokens", "/v1beta/models/text-embedding-004:embedContent",
        "/v1beta/tunedModels/my-model-1:generateContent", "/v1beta/models/gemini-2.0-flash",
        "/v1beta/openai/chat/completions", "/v1beta/cachedContents",
    ],
    "anthropic": ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches", "/v1/complete",
                  "/v1/chat/completions", "/v1/models/claude-sonnet-4-5"],
    "bedrock": [
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "/model/us.anthropic.claude-sonnet-4-5-v1%3A0/invoke-with-response-stream",
        "/model/amazon.nova-lite-v1%3A0/converse", "/model/amazon.nova-lite-v1:0/converse-stream",
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x-v1%3A0/count-tokens",
        "/guardrail/g1/version/1/apply", "/openai/v1/chat/completions",
    ],
}  # fmt: skip


def _reading(provider: str, path: str) -> tuple[str | None, str | None] | None:
    """(endpoint, model) as Tollgate reads the path, or None when it refuses it."""
    try:
        c = PROVIDERS[provider].classify("GET", path, None)
    except Unreadable:
        return None
    return c.endpoint, c.model


def _mutate(path: str, kind: str, where: int, words: dict[str, str]) -> str:
    """The path changed as a lenient server would still serve it as the same endpoint."""
    segments = path.split("/")  # "" first: the path starts with "/"
    i = 1 + where % (len(segments) - 1)
    if kind in ("upper case", "title case"):
        fixed = [j for j, s in enumerate(segments) if s.lower() in words] or [i]
        i = fixed[where % len(fixed)]
    if kind == "double slash":
        segments.insert(i, "")
    elif kind == "dot":
        segments.insert(i, ".")
    elif kind == "dot dot":
        segments[i:i] = ["x", ".."]
    elif kind == "trailing slash":
        segments.append("")
    elif kind == "upper case":
        segments[i] = segments[i].upper()
    elif kind == "title case":
        segments[i] = segments[i].title()
    elif kind == "percent-encoded":  # a character (not a '%': servers decode once) as %XX
        places = [(k, j) for k, segment in enumerate(segments) for j, c in enumerate(segment) if c != "%"]
        if places:
            k, j = places[where % len(places)]
            segment = segments[k]
            segments[k] = f"{segment[:j]}%{ord(segment[j]):02X}{segment[j + 1 :]}"
    elif kind == "parameter":
        segments[i] += ";x=1"
    return "/".join(segments)


KINDS = ["double slash", "dot", "dot dot", "trailing slash", "upper case", "title case", "percent-encoded", "parameter"]


@pytest.mark.parametrize("provider", list(CANONICAL))
def test_every_canonical_path_is_read(provider: str) -> None:
    for path in CANONICAL[provider]:
        assert _reading(provider, path) is not None, path


@pytest.mark.parametrize("provider", list(CANONICAL))
def test_each_single_change_is_read_as_its_endpoint_or_refused(provider: str) -> None:
    # Every change of every kind at every place `_mutate` picks (`where` up to 50, as drawn below).
    for path in CANONICAL[provider]:
        meant = _reading(provider, path)
        for kind in KINDS:
            for where in range(51):
                changed = _mutate(path, kind, where, WORDS[provider])
                read = _reading(provider, changed)
                assert read is None or read == meant, (changed, read, meant)


# Chains of changes, drawn: the single ones are all tried above, so fewer draws find what 400 did.
@pytest.mark.parametrize("provider", list(CANONICAL))
@settings(max_examples=examples(150), deadline=None)
@given(data=st.data(), kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3))
@pytest.mark.slow
def test_a_changed_path_is_read_as_its_endpoint_or_refused(
    provider: str, data: st.DataObject, kinds: list[str]
) -> None:
    path = data.draw(st.sampled_from(CANONICAL[provider]))
    meant = _reading(provider, path)
    changed = path
    for kind in kinds:
        changed = _mutate(changed, kind, data.draw(st.integers(0, 50)), WORDS[provider])
    read = _reading(provider, changed)
    assert read is None or read == meant, (changed, read, meant)
