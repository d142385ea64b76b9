"""A stage of the pipeline added as the recipe in docs/architecture.md says: its class (what
`proxy/stages/<concern>/<name>.py` would hold: the steps of one concern, given the pipeline's `Shared`) and,
in `gateway()`, each of its steps in its hook's list where its order puts it: a call step among
an HTTP call's `CallSteps`, after `Identify` (it reads the caller), and a hook step at `response`,
after `Audit`'s. The test makes the real pipeline and puts them there, as those lines would. The
call step refuses in the provider's shape through `refuse` and the call is audited as any refusal;
a call it lets through goes upstream as before. No other stage changes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mitmproxy import http
from tests.support.pipeline import UPSTREAM_KEY, configured_gateway, one_call

from tollgate.calls.call import Call
from tollgate.formats.refusals import BAD_REQUEST
from tollgate.proxy.flows import call_of, refuse
from tollgate.proxy.pipeline import gateway
from tollgate.proxy.runner import CallSteps, Gateway
from tollgate.proxy.stages.identity.identify import Identify
from tollgate.proxy.state import Shared

from .conftest import chat_chunks, chat_flow, openai_config, records

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hi."}], "stream": True}


class NamedAgents:
    """The throw-away stage: a call must name its agent (`User-Agent`); and each call's end is
    counted once its record is written."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.ended: list[str] = []

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        if not flow.request.headers.get("user-agent"):
            refuse(flow, call, BAD_REQUEST, "Tollgate: name your agent in User-Agent.")

    def response(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None:  # its record written (`Audit`): the call is no longer a `Call`
            self.ended.append(flow.metadata["tollgate"]["request_id"])


def with_stage(addon: Gateway) -> tuple[Gateway, NamedAgents]:
    """The pipeline with the stage's lines: made with the pipeline's `Shared`, its call step after
    `Identify.handle` among an HTTP call's steps, its hook step after `Audit.response`."""
    classify = addon.steps["request"][0]
    shared = classify.__self__.shared  # type: ignore[attr-defined]
    stage = NamedAgents(shared)
    [http_calls] = {
        step.__self__ for step in addon.steps["request"] if isinstance(getattr(step, "__self__", None), CallSteps)
    }
    identify = next(i for i, step in enumerate(http_calls.steps) if getattr(step, "__func__", None) is Identify.handle)
    http_calls.steps = (*http_calls.steps[: identify + 1], stage.handle, *http_calls.steps[identify + 1 :])
    steps = dict(addon.steps)
    audit = next(i for i, step in enumerate(steps["response"]) if type(step.__self__).__name__ == "Audit")  # type: ignore[attr-defined]
    steps["response"] = (*steps["response"][: audit + 1], stage.response, *steps["response"][audit + 1 :])
    return Gateway(kinds={**addon.kinds, "http": http_calls.steps}, **steps), stage


def test_a_call_the_new_stage_refuses_is_answered_in_the_providers_shape_and_audited(tmp_path: Path) -> None:
    addon, stage = with_stage(gateway())
    with configured_gateway(openai_config(tmp_path), addon):
        flow = chat_flow(BODY)
        sent, received = asyncio.run(one_call(addon, flow, []))

    assert flow.response is not None and flow.response.status_code == 400
    assert json.loads(received)["error"]["message"] == "Tollgate: name your agent in User-Agent."
    assert flow.response.headers["x-tollgate-error"] == BAD_REQUEST
    assert UPSTREAM_KEY not in (sent.headers.get("authorization") or "")  # the steps after it never ran
    [record] = records(tmp_path / "audit.jsonl")
    assert (record["client"], record["decision"], record["deny_reasons"], record["status"]) == (
        "alice",
        "deny",
        ["bad_request"],
        400,
    )
    assert stage.ended == [record["request_id"]]


def test_a_call_the_new_stage_lets_through_goes_upstream(tmp_path: Path) -> None:
    addon, stage = with_stage(gateway())
    with configured_gateway(openai_config(tmp_path), addon):
        flow = chat_flow(BODY)
        flow.request.headers["user-agent"] = "OpenAI/Python"
        sent, _ = asyncio.run(one_call(addon, flow, chat_chunks("Hi!")))

    assert sent.headers.get_all("authorization") == [f"Bearer {UPSTREAM_KEY}"]
    [record] = records(tmp_path / "audit.jsonl")
    assert (record["decision"], record["status"], stage.ended) == ("allow", 200, [record["request_id"]])
