"""MCP at 2026-07-28 (`formats/mcp/revision.py`): a POST's headers checked against its body; the
retries that answer an `input_required` result tied to their first call."""

from __future__ import annotations

import json

import pytest

from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.formats.mcp.messages import VERSION_META, Posted, digest, read_post
from tollgate.formats.mcp.revision import (
    HEADER_MISMATCH,
    INVALID_REQUEST,
    MalformedPost,
    check,
    check_unrequested,
    decoded,
    encoded,
    recorded,
    stated_revision,
    underscored,
)
from tollgate.governance.mcp.mcp_rounds import McpRounds, Round

NOW = "2026-07-28"


def call(method: str = "tools/call", version: str | None = NOW, request_id: int | None = 1, **params: object) -> dict:
    if version is not None:
        params["_meta"] = {VERSION_META: version, "io.modelcontextprotocol/clientCapabilities": {}}
    message: dict = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


def post(value: object) -> Posted:
    return read_post(json.dumps(value).encode())


def headers(method: str = "tools/call", name: str | None = "add", version: str | None = NOW) -> list[tuple[str, str]]:
    fields = [("Content-Type", "application/json")]
    if version is not None:
        fields.append(("MCP-Protocol-Version", version))
    fields.append(("Mcp-Method", method))
    if name is not None:
        fields.append(("Mcp-Name", name))
    return fields


def mismatch(message: str) -> MalformedPost:
    return MalformedPost(HEADER_MISMATCH, message)


def test_headers_that_say_what_the_body_does_pass() -> None:
    assert check(headers(), post(call(name="add", arguments={"a": 1}))) is None
    assert check(headers("tools/list", None), post(call("tools/list"))) is None
    uri = "notes://hello"
    assert check(headers("resources/read", uri), post(call("resources/read", uri=uri))) is None
    assert check(headers("prompts/get", "review"), post(call("prompts/get", name="review"))) is None
    assert check(headers("server/discover", None), post(call("server/discover"))) is None


def test_a_name_in_the_base64_form_is_decoded() -> None:
    name = "résumé tool"
    assert encoded(name) == "=?base64?csOpc3Vtw6kgdG9vbA==?="
    assert decoded(encoded(name)) == name
    assert check(headers(name=encoded(name)), post(call(name=name))) is None
    assert check(headers(name=encoded("add", as_base64=True)), post(call(name="add"))) is None
    # Not canonical base64 of UTF-8: it matches nothing.
    assert decoded("=?base64?YWRk=?=") is None and decoded("=?base64?/w==?=") is None
    assert check(headers(name="=?base64?YWRk=?="), post(call(name="add"))) == mismatch(
        "mcp-name header is not in the canonical =?base64?…?= form"
    )


NOT_CANONICAL = {
    "unpadded": "=?base64?YQ?=",
    "url-safe": "=?base64?-_8=?=",
    "a space": "=?base64?YW Rk?=",
    "upper case": "=?BASE64?YWRk?=",
    "mixed case": "=?Base64?YWRk?=",
    "non-zero trailing bits": "=?base64?YR==?=",
    "not UTF-8": "=?base64?/w==?=",
    "no end": "=?base64?YWRk",
    "space before": " =?base64?YWRk?=",
}


@pytest.mark.parametrize("value", NOT_CANONICAL.values(), ids=NOT_CANONICAL.keys())
@pytest.mark.parametrize("header", ["Mcp-Name", "Mcp-Param-To", "mcp-param-x"])
def test_a_header_in_the_base64_form_not_canonical_is_refused_at_any_revision(header: str, value: str) -> None:
    """A server, a load balancer may decode it otherwise than Tollgate, or take it as plain text."""
    error = mismatch(f"{header.lower()} header is not in the canonical =?base64?…?= form")
    fields = [*headers(name="add"), (header, value)] if header != "Mcp-Name" else headers(name=value)
    assert check(fields, post(call(name="add"))) == error
    legacy = [("MCP-Protocol-Version", "2025-11-25"), (header, value)]
    assert check(legacy, post(call(name="add", version=None))) == error
    assert check_unrequested([(header, value)]) == error


def test_a_canonical_param_header_and_plain_ones_pass() -> None:
    fields = [*headers(name="add"), ("Mcp-Param-To", encoded("jane doe ", as_base64=True)), ("Mcp-Param-N", "42")]
    assert check(fields, post(call(name="add"))) is None
    assert check([*headers(name="add"), ("Mcp-Param-Note", "base64 =?x?=")], post(call(name="add"))) is None


@pytest.mark.parametrize("name", ["Mcp_Method", "Mcp_Name", "Mcp_Param_To", "MCP_Protocol_Version", "mcp_session_id",
                                  "Mcp-Param_To"])  # fmt: skip
def test_an_mcp_header_written_with_underscores_is_found(name: str) -> None:
    assert underscored([("Content-Type", "application/json"), (name, "add")]) == name


def test_headers_with_underscores_that_are_no_mcp_headers_pass() -> None:
    assert underscored([("X_Trace_Id", "1"), ("Mcp-Name", "add"), ("my_mcp-name", "x")]) is None


@pytest.mark.parametrize(
    ("fields", "body", "error"),
    [
        (headers(name="delete_everything"), call(name="add"), "mcp-name header does not match what the request body names"),
        (headers(name=None), call(name="add"), "mcp-name header does not match what the request body names"),
        ([*headers(), ("mcp-name", "add")], call(name="add"), "mcp-name header appears more than once"),
        (headers("tools/list"), call("tools/list"), "mcp-name header names something the request body does not"),
        (headers("tools/list"), call(name="add"), "mcp-method header does not match the request body's method"),
        ([f for f in headers() if f[0] != "Mcp-Method"], call(name="add"),
         "mcp-method header does not match the request body's method"),
        ([*headers(), ("MCP-METHOD", "tools/call")], call(name="add"), "mcp-method header appears more than once"),
        (headers(version=None), call(name="add"), "mcp-protocol-version header does not match the protocol version the body states"),
        (headers(version="2025-11-25"), call(name="add"),
         "mcp-protocol-version header does not match the protocol version the body states"),
        (headers(), call(name="add", version="2027-01-01"),
         "mcp-protocol-version header does not match the protocol version the body states"),
        (headers(), call(name="add", version=None), "mcp-protocol-version header does not match the protocol version the body states"),
        ([*headers(), ("mcp-protocol-version", NOW)], call(name="add"), "mcp-protocol-version header appears more than once"),
    ],
    ids=["other-tool", "no-name", "name-twice", "name-unasked", "other-method", "no-method", "method-twice",
         "no-version", "version-2025", "body-later", "body-none", "version-twice"],
)  # fmt: skip
def test_headers_that_disagree_with_the_body_are_a_mismatch(fields, body, error) -> None:
    assert check(fields, post(body)) == mismatch(error)


def test_a_batch_answers_or_a_session_at_2026_are_invalid_requests() -> None:
    one = call(name="add")
    assert check(headers(), post([one])) == MalformedPost(
        INVALID_REQUEST, "at 2026-07-28 a POST carries one JSON-RPC request or notification"
    )
    # A batch whose body alone states 2026-07-28 (no header) is refused the same.
    assert check([], post([one, call(name="add", request_id=2)])).code == INVALID_REQUEST  # type: ignore[union-attr]
    answer = {"jsonrpc": "2.0", "id": 9, "result": {}}
    assert check(headers(), post([one, answer])).code == INVALID_REQUEST  # type: ignore[union-attr]
    assert check([*headers(), ("Mcp-Session-Id", "abc")], post(one)) == MalformedPost(
        INVALID_REQUEST, "at 2026-07-28 there are no sessions: a request carries no Mcp-Session-Id"
    )


def test_earlier_revisions_are_not_checked_on_the_new_headers() -> None:
    legacy = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add"}}
    assert check([("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Session-Id", "s")], post(legacy)) is None
    assert check([], post([legacy, {**legacy, "id": 2}])) is None  # a batch before 2025-06-18
    assert check([("Mcp-Name", "other")], post(legacy)) is None
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    assert check([], post(initialize)) is None and stated_revision([], post(initialize)) is None
    # A body stating another revision than its header does, at an earlier revision too.
    assert check([("MCP-Protocol-Version", "2025-11-25")], post(call(version="2025-06-18", name="add"))) == mismatch(
        "mcp-protocol-version header does not match the protocol version the body states"
    )


def test_a_notification_at_2026_needs_only_its_revision() -> None:
    note = call("notifications/cancelled", version=None, request_id=None)
    assert check([("MCP-Protocol-Version", NOW)], post(note)) is None
    assert check([("MCP-Protocol-Version", NOW), ("Mcp-Method", "tools/call")], post(note)) == mismatch(
        "mcp-method header does not match the request body's method"
    )


def test_the_revision_recorded_is_a_date_or_other() -> None:
    assert stated_revision(headers(), post(call(name="add"))) == NOW
    assert stated_revision([], post(call(name="add"))) == NOW
    assert recorded(NOW) == NOW and recorded(None) is None
    assert recorded("tg-alice-secret") == "other"


def test_an_input_required_answer_and_its_retry_share_the_state_s_digest() -> None:
    relay = AnswerRelay(sse=False, expected=[1, 2])
    answer = [
        {"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "requestState": "opaque-1",
                                               "inputRequests": {}}},
        {"jsonrpc": "2.0", "id": 2, "result": {"resultType": "complete", "content": []}},
    ]  # fmt: skip
    relay(json.dumps(answer).encode())
    relay(b"")
    assert relay.input_required == {1: digest("opaque-1")} and relay.outcomes == {1: False, 2: False}
    (retry,) = post(call(name="approve", requestState="opaque-1", inputResponses={"why": {}})).requests
    assert retry.state == digest("opaque-1") and retry.target == digest("approve")
    (plain,) = post(call(name="approve")).requests
    assert plain.state is None


def test_the_rounds_are_kept_by_server_and_caller_and_bounded() -> None:
    rounds = McpRounds(limit=2)
    first = Round("r1", "tools/call", digest("approve"))
    rounds.asked("notes", "client:alice", "s1", first)
    assert rounds.answering("notes", "client:alice", "s1") == first
    assert rounds.answering("notes", "client:bob", "s1") is None
    assert rounds.answering("other", "client:alice", "s1") is None
    rounds.asked("notes", "client:alice", "s2", first)
    rounds.asked("notes", "client:alice", "s3", first)
    assert len(rounds) == 2 and rounds.answering("notes", "client:alice", "s1") is None


def test_a_get_or_delete_at_2026_names_no_session() -> None:
    assert check_unrequested([("MCP-Protocol-Version", NOW), ("Mcp-Session-Id", "s")]) == MalformedPost(
        INVALID_REQUEST, "at 2026-07-28 there are no sessions: a request carries no Mcp-Session-Id"
    )
    assert check_unrequested([("MCP-Protocol-Version", NOW)]) is None
    assert check_unrequested([("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Session-Id", "s")]) is None
