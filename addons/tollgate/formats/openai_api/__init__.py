"""OpenAI's API as every OpenAI-compatible API speaks it (`formats.OPENAI_API`): a request body read
by its endpoint (`request`), the usage of its answers (`answers`); its endpoints' own formats are
`openai_chat`, `openai_responses` and `openai_realtime`, its errors OpenAI's (`openai_chat.errors`)."""

from tollgate.formats.openai_api.answers import stream_reader, usage_of
from tollgate.formats.openai_api.request import classify_body

__all__ = ["classify_body", "stream_reader", "usage_of"]
