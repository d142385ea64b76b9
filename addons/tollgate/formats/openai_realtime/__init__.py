"""OpenAI's Realtime API over a WebSocket (GET /v1/realtime?model=…, upgraded): the model a session
asks for, the API keys a browser offers among its subprotocols, a client secret's session settings
(`session`), and the usage its server events report (`events`). Its messages are relayed as they
come: only `response.done` is read."""

from __future__ import annotations

from tollgate.formats.openai_realtime.events import response_done_usage, summed
from tollgate.formats.openai_realtime.session import (
    INSECURE_KEY_PREFIX,
    REALTIME,
    insecure_keys,
    read_settings,
    realtime_model,
)

__all__ = [
    "INSECURE_KEY_PREFIX",
    "REALTIME",
    "insecure_keys",
    "read_settings",
    "realtime_model",
    "response_done_usage",
    "summed",
]
