"""The OpenAI wire format, which OpenAI's API and every provider's OpenAI-compatible endpoints speak:
its name, as `Classification.wire_format` holds it, and what a call in it is changed to ask for."""

from __future__ import annotations

from typing import Any

from ..call import Classification

OPENAI_FORMAT = "openai"


def ask_for_usage(classification: Classification, body: dict[str, Any] | None) -> bool:
    """`audit.stream_usage: inject`: ask a chat stream for the usage the client did not ask for
    (`stream_options.include_usage`; StreamTap hides the usage chunk from the client). Returns
    whether `body` was changed."""
    if classification.endpoint != "chat.completions" or not classification.facts.stream or body is None:
        return False
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return False
    if (options or {}).get("include_usage") is True:
        return False
    body["stream_options"] = {**(options or {}), "include_usage": True}
    return True
