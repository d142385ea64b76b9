"""Configurations the end-to-end tests start a gateway with, built from the fake upstreams' URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.proxy import START_UP_S


def openai_with_clients(real_key: str, clients: dict[str, str], **more: Any) -> Callable[[dict[str, str]], dict]:
    """OpenAI on its fake upstream with Tollgate's key `real_key`; a client for each name and key of
    `clients`; and the settings `more`."""
    return lambda urls: {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [real_key]}},
        "clients": [{"name": name, "keys": [key]} for name, key in clients.items()],
        **more,
    }


def every_provider(urls: dict[str, str], keys: dict[str, str], aws: tuple[str, str]) -> dict[str, Any]:
    """The providers' settings: each of `keys`' providers on its fake upstream with its key, and
    Bedrock on its own, signed for with the AWS credentials `aws` (access key id, secret key)."""
    providers: dict[str, Any] = {name: {"upstream": urls[name], "keys": [key]} for name, key in keys.items()}
    providers["bedrock"] = {
        "upstream": urls["bedrock"],
        "credentials": {"access_key_id": aws[0], "secret_access_key": aws[1]},
    }
    return providers


def with_policy(gateway: Any, config: Any, policy: str) -> Any:
    """`gateway`, whose configuration names a `policy.rego` beside it, configured again with
    `config` once that file holds `policy`: part of its start-up, waited for as long."""
    assert gateway.config_path is not None
    (gateway.config_path.parent / "policy.rego").write_text(policy)
    gateway.reconfigure(config, timeout=START_UP_S)
    return gateway
