"""The console's line per call: mitmdump's own line left out for a call at its default detail, kept
for a flow that is no call and with more detail asked (`patches.console`)."""

from __future__ import annotations

import io

import pytest
from mitmproxy.addons.dumper import Dumper
from mitmproxy.test import taddons, tflow

from tollgate.proxy import patches
from tollgate.proxy.flows import CALL
from tollgate.records.audit.summary import latency_text


@pytest.mark.parametrize(("detail", "call_shown"), [(1, False), (2, True), (4, True)])
def test_mitmdump_leaves_a_calls_flow_to_tollgates_line(detail: int, call_shown: bool) -> None:
    patches.leave_calls_to_their_line(lambda flow: CALL in flow.metadata)
    out = io.StringIO()
    dumper = Dumper(out)
    with taddons.context(dumper) as tctx:
        tctx.configure(dumper, flow_detail=detail)
        call, other = tflow.tflow(resp=True), tflow.tflow(resp=True)
        call.metadata[CALL] = object()
        dumper.response(call)
        assert bool(out.getvalue()) is call_shown
        dumper.response(other)
        assert out.getvalue().count("GET http://address:22/path") == 1 + call_shown


def test_latency_in_milliseconds_then_seconds() -> None:
    assert [latency_text(ms) for ms in (0.4, 412.5, 9999.4, 12_345.0)] == ["0 ms", "412 ms", "9999 ms", "12.3 s"]


@pytest.mark.parametrize(("detail", "shown"), [(0, False), (1, True), (3, True)])
def test_tollgates_line_shows_where_mitmdump_would_show_a_flow(detail: int, shown: bool) -> None:
    dumper = Dumper(io.StringIO())
    with taddons.context(dumper) as tctx:
        tctx.configure(dumper, flow_detail=detail)
        assert patches.calls_shown() is shown
