"""The addon mitmproxy sees and what its stages share: a failing stage refuses the call (mitmproxy
would skip the later stages and forward it), hooks run in stage order."""

from __future__ import annotations

import logging

import pytest
from mitmproxy.test import tflow

from tollgate.call import Call
from tollgate.stages import Gateway, chain
from tollgate.stages.shared import CALL, CallStage, Shared
from tollgate.stages.stream_tap import MITMPROXY_CONNECTION_LOGGER, StreamTap


class Broken(CallStage):
    def handle(self, flow, call):
        raise RuntimeError("boom")


def test_a_failing_stage_refuses_the_call_in_the_providers_shape():
    flow = tflow.tflow()
    call = Call(provider="anthropic", host="api.anthropic.com", method="POST", path="/v1/messages")
    flow.metadata[CALL] = call
    Broken().request(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert flow.response.headers["x-tollgate-error"] == "internal_error"
    assert b'"type": "error"' in flow.response.content and b"did not forward it" in flow.response.content
    assert call.error == "internal error in Broken" and call.answered_by_tollgate


# ---- the one addon mitmproxy sees


class Recorder:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def request(self, flow) -> None:
        self.seen.append(f"{self.name}.request")

    def done(self) -> None:
        self.seen.append(f"{self.name}.done")


class OnlyResponse:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def response(self, flow) -> None:
        self.seen.append("only.response")


def test_gateway_runs_each_hook_through_the_stages_defining_it_in_order():
    seen: list[str] = []
    gateway = Gateway([Recorder("a", seen), OnlyResponse(seen), Recorder("b", seen)])
    flow = tflow.tflow()
    gateway.request(flow)
    gateway.response(flow)
    gateway.done()
    assert seen == ["a.request", "b.request", "only.response", "a.done", "b.done"]
    # mitmproxy looks hooks up by name: one no stage defines is not there to be called
    assert not hasattr(gateway, "error") and not hasattr(gateway, "addons")


def test_gateway_stops_a_hook_at_a_failing_stage_as_mitmproxy_does_for_a_scripts_addons():
    seen: list[str] = []

    class Raises:
        def request(self, flow) -> None:
            raise RuntimeError("boom")

    gateway = Gateway([Recorder("a", seen), Raises(), Recorder("b", seen)])
    with pytest.raises(RuntimeError):
        gateway.request(tflow.tflow())
    assert seen == ["a.request"]


def test_tollgates_chain_is_one_addon_holding_every_stage_in_order():
    gateway = chain()
    assert [type(s).__name__ for s in gateway.stages] == [
        "Settings", "Classify", "Identify", "Override", "Route", "Decide", "Credential",
        "UpstreamWatch", "StreamTap", "Redact", "Audit",
    ]
    for hook in ("load", "configure", "running", "done", "requestheaders", "request", "responseheaders",
                 "response", "error", "http_connect", "server_connect", "server_disconnected"):
        assert callable(getattr(gateway, hook)), hook


# ---- mitmproxy's per-response streaming notice


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord(MITMPROXY_CONNECTION_LOGGER, logging.INFO, __file__, 1, message, None, None)


def test_stream_tap_drops_only_mitmproxys_streaming_notice_while_loaded():
    logger = logging.getLogger(MITMPROXY_CONNECTION_LOGGER)
    tap = StreamTap(Shared())
    tap.load(None)
    try:
        assert not logger.filter(_record("Streaming response from api.openai.com."))
        assert logger.filter(_record("server connect api.openai.com:443"))
        assert logger.filter(_record("Streaming request to api.openai.com."))  # a large upload: worth saying
    finally:
        tap.done()
    assert logger.filter(_record("Streaming response from api.openai.com."))
