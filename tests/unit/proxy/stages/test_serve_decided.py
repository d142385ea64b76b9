"""An answer whose tool calls `agents` decided: served as it came where it came as it is served."""

from __future__ import annotations

from typing import Any, cast

from mitmproxy.test import tflow

from tollgate.proxy.stages.upstream.stream_tap import _serve_decided

ANSWER = b'{"choices":[{"message":{"tool_calls":[]}}]}'
NO_CALL: Any = cast(Any, None)  # read only where the answer is refused


def _flow(body: bytes, *headers: tuple[bytes, bytes]) -> Any:
    flow = tflow.tflow(resp=True)
    flow.response.headers.fields = ((b"content-type", b"application/json"), *headers)
    flow.response.raw_content = body
    return flow


def test_an_answer_every_call_of_which_went_through_goes_as_it_came() -> None:
    flow = _flow(ANSWER, (b"transfer-encoding", b"chunked"))
    fields = flow.response.headers.fields
    _serve_decided(flow, NO_CALL, bytes(ANSWER))
    assert flow.response.headers.fields == fields and flow.response.raw_content == ANSWER


def test_an_answer_changed_is_served_with_its_length() -> None:
    flow = _flow(ANSWER, (b"transfer-encoding", b"chunked"))
    _serve_decided(flow, NO_CALL, b'{"choices":[]}')
    assert flow.response.raw_content == b'{"choices":[]}'
    assert flow.response.headers.get("content-length") == "14" and "transfer-encoding" not in flow.response.headers


def test_an_encoded_answer_is_served_decoded_though_its_bytes_were_the_same() -> None:
    flow = _flow(ANSWER, (b"content-encoding", b"gzip"))
    _serve_decided(flow, NO_CALL, ANSWER)
    assert "content-encoding" not in flow.response.headers and flow.response.raw_content == ANSWER
