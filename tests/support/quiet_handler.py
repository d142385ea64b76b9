"""A request handler for the tests' own HTTP servers."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A `BaseHTTPRequestHandler` that writes no line per request to standard error."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
