"""The OpenAI wire format's name, as `Classification.wire_format` holds it: the format of OpenAI's
API and of every provider's OpenAI-compatible endpoints. The format itself lives in
`translate/openai_chat/` (Chat Completions: requests, answers, usage, streams) and
`translate/openai_responses/` (the Responses API)."""

from __future__ import annotations

OPENAI_FORMAT = "openai"
