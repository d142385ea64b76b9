"""An attempt of a call as its audit record lists it, for the tests of retries and fallbacks."""

from __future__ import annotations

from tollgate.common.fingerprint import fingerprint


def attempt(provider: str, model: str, status: int, key: str, recorded: dict) -> dict:
    """The attempt at `provider`'s `model` with the upstream key `key`, answered `status` (an error
    unless 200); its latency is `recorded`'s own, the one value a test cannot know."""
    return {
        "provider": provider,
        "model": model,
        "status": status,
        "upstream_key": fingerprint(key),
        "error": None if status == 200 else f"upstream answered {status}",
        "latency_ms": recorded["latency_ms"],
    }
