"""A stage that fails refuses the call: mitmproxy would skip the later stages and forward it."""

from __future__ import annotations

from mitmproxy.test import tflow

from tollgate.call import Call
from tollgate.stages.shared import CALL, CallStage


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
