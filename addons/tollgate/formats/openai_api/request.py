"""An OpenAI-format request body read exactly, as the endpoint it goes to reads it: the facts every
body says alike (`openai_chat.body_facts`), then its endpoint's (Chat Completions', the Responses
API's, legacy completions', an image generation's, a Realtime client secret's session)."""

from __future__ import annotations

from typing import Any

from tollgate.formats import OPENAI_API, openai_chat, openai_responses
from tollgate.formats.bodies.exact import request_count, request_int, request_model
from tollgate.formats.openai_chat import body_facts
from tollgate.formats.openai_realtime import read_settings
from tollgate.formats.request_facts import Classification


def classify_body(endpoint: str | None, method: str, data: dict[str, Any] | None) -> Classification:
    """Model and request facts from an OpenAI-format request body (its JSON object), read as its
    endpoint's format reads them."""
    if data is None or method != "POST":
        return Classification(endpoint=endpoint, wire_format=OPENAI_API)
    facts = body_facts(data)
    if endpoint == "chat.completions":
        openai_chat.read_facts(data, facts)
    elif endpoint == "responses":
        openai_responses.read_facts(data, facts)
    elif endpoint == "completions":
        facts.max_tokens = request_int(data.get("max_tokens"), "max_tokens")
        # OpenAI generates (and bills) best_of completions and returns n of them (n <= best_of), for
        # each prompt; a server that read them otherwise could make n of best_of each: their product
        # bounds both.
        each = request_count(data.get("n"), "n") * request_count(data.get("best_of"), "best_of")
        facts.answers = prompt_count(data.get("prompt")) * each
    elif endpoint == "images.generations":
        facts.answers = request_count(data.get("n"), "n")
    named = read_settings(data, facts) if endpoint is not None and endpoint.startswith("realtime.") else data
    return Classification(endpoint, request_model(named), facts, OPENAI_API)


def prompt_count(prompt: Any) -> int:
    """How many prompts a legacy completions call's `prompt` holds, each answered on its own: a
    string or one array of tokens is one; a list of strings or of token arrays is each of them. A
    list that mixes them is counted element by element, the most a server could read it as."""
    if not isinstance(prompt, list) or not prompt:
        return 1
    if all(type(token) is int for token in prompt):
        return 1  # one prompt as tokens
    return len(prompt)
