"""Tollgate's real pipeline, configured from a file as mitmdump configures it and driven in process
through each hook of one call as mitmproxy calls them: no proxy, no sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tutils

from tollgate.proxy.pipeline import gateway
from tollgate.proxy.runner import Gateway

UPSTREAM = "https://127.0.0.1:9"  # never connected to: the hooks are driven in process
UPSTREAM_KEY = "sk-upstream-0123456789"
VIRTUAL_KEY = "tg-alice-0123456789"


@contextmanager
def configured_gateway(config_path: Path, addon: Gateway | None = None) -> Iterator[Gateway]:
    """The pipeline as mitmdump loads and configures it."""
    addon = addon or gateway()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(addon, tollgate_config=str(config_path))
        yield addon


async def run_hook(addon: Gateway, hook: str, *args: object) -> None:
    pending = getattr(addon, hook)(*args)
    if pending is not None:
        await pending


async def one_call(
    addon: Gateway,
    flow: http.HTTPFlow,
    answer: list[bytes],
    content_type: bytes = b"text/event-stream",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[http.Request, bytes]:
    """The call through every hook: what went upstream, and what the client got (the answer, with
    `headers` besides its content type, streamed back where the call was not refused)."""
    await run_hook(addon, "requestheaders", flow)
    await run_hook(addon, "request", flow)
    sent = flow.request.copy()
    received = b""
    if flow.response is None:
        flow.response = tutils.tresp(status_code=200, content=b"")
        flow.response.headers.fields = ((b"content-type", content_type), *headers)
        await run_hook(addon, "responseheaders", flow)
        if callable(flow.response.stream):
            for part in [*answer, b""]:  # b"": the answer's end
                out = flow.response.stream(part)
                received += out if isinstance(out, bytes) else b"".join(out)
        else:  # read whole (a JSON answer an answer guardrail reads): served at `response`
            flow.response.content = b"".join(answer)
    else:
        await run_hook(addon, "responseheaders", flow)
    await run_hook(addon, "response", flow)
    if not received:
        received = flow.response.content or b""
    await run_hook(addon, "done")  # the audit log closed: every record written
    return sent, received


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event of `data` (JSON, or a string as it is)."""
    return b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"
