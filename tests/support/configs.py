"""Configurations the end-to-end tests start a gateway with, built from the fake upstreams' URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def openai_with_clients(real_key: str, clients: dict[str, str], **more: Any) -> Callable[[dict[str, str]], dict]:
    """OpenAI on its fake upstream with Tollgate's key `real_key`; a client for each name and key of
    `clients`; and the settings `more`."""
    return lambda urls: {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [real_key]}},
        "clients": [{"name": name, "keys": [key]} for name, key in clients.items()],
        **more,
    }
