"""Audit and AuditGate on mitmproxy's test flows and a real audit log on a temporary file: one record
per call, written however the call ends (answer, error, WebSocket closed, shutdown), the flow left
with its summary, its marker and the plain record; no call served while the audit cannot be written."""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import ANY

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from tollgate.calls.call import Call, Failure, Route, Target
from tollgate.configuration.fleet import instance_name
from tollgate.formats.usage import Usage
from tollgate.proxy.flows import CALL, refuse
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.records.audit import Audit, AuditGate
from tollgate.proxy.state import Shared
from tollgate.records.audit.auditlog import AuditLog, started_record
from tollgate.records.audit.summary import FAILED_MARKER, REFUSED_MARKER

from ..conftest import (
    HOSTS,
    PROVIDERS,
    VALID,
    all_audit_lines,
    api_flow,
    assert_refused,
    audit_lines,
    classified,
    configured,
    wait_for,
)


def openai_call(shared: Shared) -> tuple[http.HTTPFlow, Call]:
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o", "messages": [], "max_tokens": 9})
    call = classified(shared, flow)
    call.caller.client, call.caller.auth, call.caller.groups = "alice", "virtual_key", ("research",)
    return flow, call


def audited_call(audit_log: AuditLog) -> tuple[Audit, http.HTTPFlow, Call]:
    """An Audit writing to `audit_log`, and one OpenAI call classified for it."""
    shared = configured(audit=audit_log)
    return Audit(shared), *openai_call(shared)


def answer(flow: http.HTTPFlow, status: int = 200, *fields: tuple[bytes, bytes]) -> None:
    flow.response = tutils.tresp(status_code=status, content=b"")
    flow.response.headers.fields = ((b"content-type", b"application/json"), *fields)


def as_written(record: dict) -> dict:
    """A call's record as the audit file has it: the process's instance after its event, its
    place in the chain last."""
    return {"event": record["event"], "instance": instance_name(), **record, "seq": ANY, "chain": ANY}


def written(log: AuditLog, path: Path) -> list[dict]:
    log.close()  # writes what it holds
    return audit_lines(path)


# ---- the record, when the call ends


def test_an_answered_call_gets_its_request_id_header_and_one_record_at_response(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    audit.request(flow)
    answer(flow, 200, (b"X-Tollgate-Request-Id", b"forged-upstream"), (b"x-request-id", b"req_1"))
    audit.responseheaders(flow)
    assert flow.response.headers.fields == (
        (b"content-type", b"application/json"),
        (b"X-Tollgate-Request-Id", call.request_id.encode()),
        (b"x-request-id", b"req_1"),
    )
    assert call.answer.status == 200
    assert audit_lines(audit_path) == []  # not before the answer has ended
    call.answer.usage = Usage(input_tokens=12, output_tokens=5, total_tokens=17, finish_reason="stop")
    audit.response(flow)

    [record] = written(audit_log, audit_path)
    assert {k: record[k] for k in ("request_id", "client", "auth", "groups", "provider", "endpoint")} == {
        "request_id": call.request_id,
        "client": "alice",
        "auth": "virtual_key",
        "groups": ["research"],
        "provider": "openai",
        "endpoint": "chat.completions",
    }
    assert (record["model"], record["max_tokens"], record["status"], record["decision"], record["error"]) == (
        "gpt-4o",
        9,
        200,
        "allow",
        None,
    )
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["finish_reason"]) == (
        12,
        5,
        17,
        "stop",
    )
    assert record["cost_usd"] == 0.00008  # gpt-4o: 12 x $2.50 + 5 x $10 per Mtok
    assert (
        call.answer.ended is not None and record["latency_ms"] == round((call.answer.ended - call.started) * 10000) / 10
    )
    # The flow keeps the plain record (what a saved flow can hold), its summary and no marker.
    assert as_written(flow.metadata[CALL]) == record and type(flow.metadata[CALL]) is dict
    assert flow.comment == "alice · 12→5 $0.00008 · openai/gpt-4o"
    assert flow.marked == ""


def test_a_call_ends_once_whatever_hook_comes_after(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    audit.request(flow)
    answer(flow)
    audit.responseheaders(flow)
    audit.response(flow)
    flow.error = tflow.terr("connection closed")
    audit.error(flow)
    audit.done()
    assert [r["request_id"] for r in audit_lines(audit_path)] == [call.request_id]


def test_an_answer_an_addon_set_without_responseheaders_still_gets_the_request_id(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    audit.request(flow)
    answer(flow, 204)
    audit.response(flow)
    assert flow.response.headers["x-tollgate-request-id"] == call.request_id
    [record] = written(audit_log, audit_path)
    assert record["status"] == 204


def test_a_call_tollgate_refused_is_recorded_and_marked_refused(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    call.caller.client, call.verdict.decision, call.verdict.deny_reasons = None, "deny", ("unknown or missing API key",)
    refuse(flow, call, "unauthenticated", "unknown key")
    audit.request(flow)
    audit.responseheaders(flow)
    audit.response(flow)
    [record] = written(audit_log, audit_path)
    assert (record["status"], record["decision"], record["deny_reasons"]) == (
        401,
        "deny",
        ["unknown or missing API key"],
    )
    assert flow.marked == REFUSED_MARKER
    assert flow.comment == "(anonymous) · ⛔ unauthenticated · openai/gpt-4o · unknown or missing API key"
    assert flow.response.headers.get_all("x-tollgate-request-id") == [call.request_id]


def test_an_upstream_server_error_is_marked_failed(audit_log, audit_path) -> None:
    audit, flow, _call = audited_call(audit_log)
    audit.request(flow)
    answer(flow, 503)
    audit.responseheaders(flow)
    audit.response(flow)
    assert flow.marked == FAILED_MARKER
    assert written(audit_log, audit_path)[0]["status"] == 503


def test_a_marker_the_user_set_stays_on_a_call_that_went_well(audit_log) -> None:
    audit, flow, _call = audited_call(audit_log)
    audit.request(flow)
    flow.marked = ":star:"
    answer(flow)
    audit.responseheaders(flow)
    audit.response(flow)
    assert flow.marked == ":star:"


def test_a_call_that_failed_is_recorded_at_error_with_why(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    audit.request(flow)
    flow.error = tflow.terr("connection refused")
    call.answer.error, call.answer.failure = "upstream unreachable: connection refused", Failure.UPSTREAM_UNREACHABLE
    audit.error(flow)
    [record] = written(audit_log, audit_path)
    assert (record["status"], record["error"]) == (None, "upstream unreachable: connection refused")
    assert flow.marked == FAILED_MARKER
    assert flow.comment == ("alice · ⚠ upstream_unreachable · openai/gpt-4o · upstream unreachable: connection refused")
    assert as_written(flow.metadata[CALL]) == record


def test_a_failure_answered_at_error_is_recorded_with_that_answer(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    audit.request(flow)
    flow.error = tflow.terr("timed out")
    refuse(flow, call, "upstream_timeout", "no answer")  # as UpstreamWatch answers at `error`
    call.answer.error, call.answer.failure = "upstream timeout: no response within 1 s", Failure.UPSTREAM_TIMEOUT
    audit.error(flow)
    [record] = written(audit_log, audit_path)
    assert (record["status"], record["error"]) == (504, "upstream timeout: no response within 1 s")
    assert flow.response.headers.get_all("x-tollgate-request-id") == [call.request_id]
    assert flow.marked == FAILED_MARKER


def test_a_websocket_call_is_recorded_when_the_websocket_ends_not_at_its_upgrade(audit_log, audit_path) -> None:
    shared = configured(audit=audit_log)
    audit = Audit(shared)
    flow = tflow.twebsocketflow()
    call = Call(Route.as_called("openai"), HOSTS["openai"], "GET", "/v1/realtime", loaded=shared.loaded)
    call.answer.usage = Usage(input_tokens=40, output_tokens=8)
    flow.metadata[CALL] = call
    audit.request(flow)
    audit.responseheaders(flow)
    audit.response(flow)  # the 101 upgrade: the session has only begun
    assert flow.metadata[CALL] is call
    audit.websocket_end(flow)
    [record] = written(audit_log, audit_path)
    assert (record["status"], record["path"], record["input_tokens"], record["output_tokens"]) == (
        101,
        "/v1/realtime",
        40,
        8,
    )
    assert as_written(flow.metadata[CALL]) == record


def test_calls_still_open_at_shutdown_are_recorded_and_the_audit_log_closed(audit_log, audit_path) -> None:
    audit_log.begin(started_record(["127.0.0.1:8080"], None))  # as at start-up, once listening
    shared = configured(audit=audit_log)
    audit = Audit(shared)
    ended, ended_call = openai_call(shared)
    open_one, open_call = openai_call(shared)
    failed, failed_call = openai_call(shared)
    for flow in (ended, open_one, failed):
        audit.request(flow)
    answer(ended)
    audit.responseheaders(ended)
    audit.response(ended)
    failed_call.answer.error = "upstream broke off"
    audit.done()
    records = {r["request_id"]: r for r in audit_lines(audit_path)}
    assert len(audit_lines(audit_path)) == 3
    assert records[ended_call.request_id]["error"] is None
    assert records[open_call.request_id]["error"] == "proxy shut down during the call"
    assert records[failed_call.request_id]["error"] == "upstream broke off"
    assert as_written(open_one.metadata[CALL]) == records[open_call.request_id]
    assert shared.audit is None and audit_log._closed.is_set()
    # Then the process's own last records: how many calls it recorded, and the last checkpoint.
    stopped, checkpoint = all_audit_lines(audit_path)[-2:]
    assert checkpoint["event"] == "audit_checkpoint"
    assert (stopped["event"], stopped["calls"], stopped["pid"]) == ("tollgate_stopped", 3, os.getpid())


def test_a_flow_without_a_call_is_not_recorded(audit_log, audit_path) -> None:
    shared = configured(audit=audit_log)
    audit = Audit(shared)
    flow = tflow.tflow(resp=True)
    audit.request(flow)
    audit.responseheaders(flow)
    audit.response(flow)
    audit.done()
    assert audit_lines(audit_path) == []
    assert CALL not in flow.metadata and "x-tollgate-request-id" not in flow.response.headers
    assert (flow.comment, flow.marked) == ("", "")


def test_text_no_flow_file_can_hold_is_escaped_on_the_flow_and_kept_in_the_audit(audit_log, audit_path) -> None:
    audit, flow, call = audited_call(audit_log)
    call.route.target = Target(call.route.target.provider, "gpt-4o\ud800")  # a lone surrogate, as JSON allows
    audit.request(flow)
    answer(flow)
    audit.response(flow)
    [record] = written(audit_log, audit_path)
    assert record["model"] == "gpt-4o\ud800"
    assert flow.metadata[CALL]["model"] == "gpt-4o\\ud800"
    assert flow.comment == "alice · no tokens · openai/gpt-4o\\ud800"


# ---- no call served while the audit cannot be written


class Later:
    """A call step after the gate: it runs only for a call the gate let through."""

    def __init__(self) -> None:
        self.ran = 0

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        self.ran += 1


def test_the_gate_lets_calls_through_while_the_audit_is_written(audit_log) -> None:
    shared = configured(audit=audit_log)
    flow, call = openai_call(shared)
    later = Later()
    CallSteps(AuditGate(shared).handle, later.handle).at_request(flow)
    assert (flow.response, later.ran, call.answer.error) == (None, 1, None)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_while_the_audit_is_failing_calls_are_refused_503_audit_unavailable(failing_audit_log, provider) -> None:
    shared = configured(audit=failing_audit_log)
    flow = api_flow(HOSTS[provider], *VALID[provider])
    call = classified(shared, flow)
    later = Later()
    CallSteps(AuditGate(shared).handle, later.handle).at_request(flow)
    assert_refused(
        flow,
        provider,
        "audit_unavailable",
        "Tollgate cannot write its audit, so it serves no calls; retry later.",
    )
    assert (call.answer.error, later.ran) == ("audit unavailable", 0)


def test_without_an_audit_log_calls_are_refused() -> None:
    shared = configured()  # no audit log, e.g. once it has been closed at shutdown
    flow, call = openai_call(shared)
    CallSteps(AuditGate(shared).handle).at_request(flow)
    assert flow.response.status_code == 503 and call.answer.error == "audit unavailable"


def test_calls_are_served_again_once_the_audit_can_be_written(failing_audit_log, tmp_path) -> None:
    shared = configured(audit=failing_audit_log)
    gate = AuditGate(shared)
    refused, _ = openai_call(shared)
    CallSteps(gate.handle).at_request(refused)
    assert refused.response.status_code == 503
    (tmp_path / "full.jsonl").unlink()  # no longer the full device: the writer creates the file
    assert wait_for(lambda: not failing_audit_log.failing)
    served, call = openai_call(shared)
    CallSteps(gate.handle).at_request(served)
    assert (served.response, call.answer.error) == (None, None)


def test_those_who_follow_the_calls_ends_get_the_record_as_bounded_as_the_audit(audit_log, audit_path) -> None:
    """A caller's 2 MB model name reaches neither the metrics' labels, the traces, the exports nor
    a saved flow whole: they get the record the audit writes."""
    shared = configured(audit=audit_log)
    told: list[dict] = []
    audit = Audit(shared, recorded=[lambda call, record: told.append(record)])
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "m" * 2_000_000, "messages": []})
    classified(shared, flow)
    audit.request(flow)
    answer(flow, 401)
    audit.response(flow)
    [record] = written(audit_log, audit_path)
    assert len(record["model"]) == 256 and record["model"].endswith("…")
    assert [r["model"] for r in told] == [record["model"]]
    assert flow.metadata[CALL]["model"] == record["model"]
