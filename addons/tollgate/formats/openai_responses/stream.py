"""A Responses API stream's usage tail: its last event (`response.completed`, `incomplete` or
`failed`) holds the response with its usage."""

from __future__ import annotations

import re

from tollgate.formats.openai_responses.answer import response_usage
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import SSEReader

_RESPONSE_DONE = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')


class ResponsesStreamReader(SSEReader):
    """Responses API: the final response.completed / incomplete / failed event has the usage."""

    wanted = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')

    def __init__(self) -> None:
        super().__init__()
        self._done: bytes | None = None

    def keep(self, block: bytes) -> None:
        if _RESPONSE_DONE.search(block):
            self._done = block

    def has_all(self) -> bool:
        return self._done is not None

    def read(self) -> Usage:
        event = self.data(self._done) or {}
        response = event.get("response")
        return response_usage(response if isinstance(response, dict) else {})
