"""The console's line per call.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`): `mitmproxy.addons.dumper.Dumper.match`,
wrapped; without it, mitmdump prints its own line for every flow at `flow_detail` 1.

 Tollgate logs one line as each call ends (`records.summary.
console_line`: client, provider and model, decision, tokens, cost, latency); at mitmdump's default
detail (`flow_detail` 1) it replaces mitmdump's own line for the flow, which says only the URL and
"(content missing)" of a streamed body. So does the line of a connection egress refuses (a CONNECT,
a plain HTTP request: `connection_record.connection_line`). With more detail asked (`flow_detail` 2
to 4) mitmdump's dump follows as before, and a flow that is neither keeps mitmdump's line. At
`flow_detail` 0 neither is printed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addons.dumper import Dumper

from tollgate.governance.egress.egress import EGRESS_DENIED

DENIED_HEADER = "X-Tollgate-Error"  # as egress answers a connection it refuses


def calls_shown() -> bool:
    """Whether the console shows a line per call: not at `flow_detail` 0, where mitmdump shows no
    flow either (then the line would be all that is printed per call, and cost it the logging)."""
    options = getattr(ctx, "options", None)
    return options is None or getattr(options, "flow_detail", 1) >= 1


def leave_calls_to_their_line(is_call: Callable[[Any], bool]) -> None:
    """mitmdump's dumper passes over the flows `is_call` says are calls, at `flow_detail` 1."""
    if getattr(Dumper, "_tollgate_leaves_calls", False):
        return
    Dumper._tollgate_leaves_calls = True  # type: ignore[attr-defined]
    shown = Dumper.match

    def match(self: Dumper, f: Any) -> bool:
        if ctx.options.flow_detail == 1 and is_call(f):
            return False
        return shown(self, f)

    Dumper.match = match  # type: ignore[method-assign]


def refused_connection(flow: http.HTTPFlow) -> bool:
    """Whether the flow is a connection egress refused (a CONNECT, a plain HTTP request), whose
    line on the console is Tollgate's."""
    response = flow.response
    return response is not None and response.status_code == 403 and response.headers.get(DENIED_HEADER) == EGRESS_DENIED
