"""OpenAI's usage objects, as its Chat Completions and Responses APIs write them: the same
members, named for a prompt and completion in the one and an input and output in the other."""

from __future__ import annotations

from typing import Any


def chat_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """A Chat Completions `usage`."""
    return _usage(("prompt", prompt), ("completion", completion), cached, reasoning)


def responses_usage(input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """A Responses `usage`."""
    return _usage(("input", input_tokens), ("output", output_tokens), cached, reasoning)


def _usage(taken: tuple[str, int], given: tuple[str, int], cached: int, reasoning: int) -> dict[str, Any]:
    """The tokens taken in (`cached` of them read from the cache) and given out (`reasoning` of
    them spent thinking), each under its API's name, and their total."""
    (into, read), (out, written) = taken, given
    return {
        f"{into}_tokens": read,
        f"{out}_tokens": written,
        "total_tokens": read + written,
        f"{into}_tokens_details": {"cached_tokens": cached},
        f"{out}_tokens_details": {"reasoning_tokens": reasoning},
    }
