"""Client code for the OpenAI SDK's WebSocket sessions (`responses.connect()`, `realtime.connect()`),
and the gateway such sessions are tested through."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any


def telling_gateway(start_gateway: Callable[..., Any], config: Callable[[dict[str, str]], dict]) -> Any:
    """A gateway configured by `config` that logs at debug and saves its flows: what a test reads
    for the secrets no socket may leak."""
    return start_gateway(config, "--set", "termlog_verbosity=debug", save_flows=True)


def responses_in_turn(
    key: str,
    creates: list[dict],
    between: str,
    ends: tuple[str, ...],
    connect: str = "responses.connect()",
    before: str = "",
) -> str:
    """Client code: one session (`client.{connect}`) with the key `key`; a response asked for with
    each of `creates`, the one after the one before has ended, `between` run before each but the
    first. It reports `got`: what ended each, its last event's `type` (one of `ends`) or the `error`
    event. `before`: code run first."""
    return f"""
import asyncio, pathlib, time
from openai import AsyncOpenAI
{textwrap.dedent(before)}
async def session():
    client = AsyncOpenAI(api_key="{key}", max_retries=0)
    got = []
    async with client.{connect} as conn:
        for create in {creates!r}:
            if got:
{textwrap.indent(textwrap.dedent(between).strip(), " " * 16)}
            await conn.response.create(**create)
            while True:
                event = await asyncio.wait_for(conn.recv(), 20)
                if event.type == "error":
                    got.append(dict(error=event.model_dump(exclude_none=True)))
                    break
                if event.type in {ends!r}:
                    got.append(dict(type=event.type))
                    break
    return got

report(got=asyncio.run(session()))
"""


def assert_served_then_refused_its_key(served: dict, refused: dict, fake: Any) -> None:
    """What `responses_in_turn` got for two responses on `fake` (a `FakeRealtime`): the first
    completed, the second refused for its key (401, invalid_api_key) and never sent upstream."""
    assert served == {"type": "response.completed"}
    assert refused["error"]["status"] == 401
    error = refused["error"]["error"]
    assert (error["code"], error["headers"]["x-tollgate-error"]) == ("invalid_api_key", "unauthenticated")
    (upstream,) = fake.sessions
    assert len(upstream.received) == 1  # the refused one never went
