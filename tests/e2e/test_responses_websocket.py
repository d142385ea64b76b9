"""The Responses API's WebSocket mode (`wss://api.openai.com/v1/responses`), with the openai SDK's
`responses.connect()`: the connection identified by its virtual key and given the real one; each
`response.create` on it decided, reserved and audited as a call of its own, with the usage its
answer reports; a refused one answered with an `error` event in OpenAI's shape, never sent
upstream, the connection going on."""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime

import pytest
from tests.support.audit_fields import assert_fields
from tests.support.fake_realtime import responding, responses_usage
from tests.support.leaks import assert_no_secret, saved_flows, stopped_outputs
from tests.support.proxy import ROOT
from tests.support.redis import redis_server
from tests.support.socket_sessions import assert_served_then_refused_its_key, responses_in_turn, telling_gateway

REAL = "sk-REAL-openai-responses-ws-5ecret-a1"
ALICE = "tg-VIRTUAL-alice-responses-ws-5ecret-b2"
SAM = "tg-VIRTUAL-sam-responses-ws-5ecret-c3"
BOUNDED = "tg-VIRTUAL-bounded-responses-ws-5ecret-d4"
PROMPT = "PROMPT-TEXT-sent-over-the-socket-e5"
ANSWERS = ["COMPLETION-TEXT-first-answer-f6", "COMPLETION-TEXT-second-answer-g7", "COMPLETION-TEXT-third-h8"]
USAGES = [responses_usage(100, 20, cached=40), responses_usage(150, 30, reasoning=12), responses_usage(60, 9)]
SECRETS = [REAL, ALICE, SAM, BOUNDED, PROMPT, *ANSWERS]
MODEL = "gpt-4o"  # allowed for alice's group (research: gpt-4o*), not for sam's (support: gpt-4o-mini)
ENDS = ("response.completed", "response.incomplete", "response.failed", "error")


def gateway_config(upstream: str, *more_clients: dict) -> dict:
    allowlist = ROOT / "docs" / "examples" / "policies" / "model_allowlist.rego"
    return {
        "providers": {"openai": {"upstream": upstream, "keys": [REAL]}},
        "clients": [
            {"name": "alice", "keys": [ALICE], "groups": ["research"]},
            {"name": "sam", "keys": [SAM], "groups": ["support"]},
            {"name": "bounded", "keys": [BOUNDED], "groups": ["research"]},
            *more_clients,
        ],
        "policy": {"rego": [str(allowlist)]},
        # A dollar per thousand tokens in, two out: the costs below are exact at a glance.
        "prices": [{"match": {"provider": "openai", "model": "gpt-4o*"},
                    "input_per_mtok": 1000, "cached_input_per_mtok": 500, "output_per_mtok": 2000}],
        "limits": [{"name": "tokens", "match": {"client": "bounded"}, "tokens_per_day": 1000}],
        "guardrails": [{"detect": ["secrets.github_token"], "action": "redact"}],
        "overrides": [{"match": {"model": "gpt-4o-alias"}, "model": "gpt-4o-mini"},
                      {"match": {"model": "gpt-4o-elsewhere"}, "upstream": "https://127.0.0.1:9"}],
    }  # fmt: skip


@pytest.fixture(scope="module")
def gw(start_gateway, realtime_fake):
    return telling_gateway(start_gateway, lambda urls: gateway_config(realtime_fake.url))


@pytest.fixture
def g(gw, realtime_fake):
    realtime_fake.answer_with(responding(ANSWERS, USAGES))
    return gw


def session(key: str, creates: list[dict], after: str = "") -> str:
    """Client code: one connection; each response.create sent once the one before has ended; what
    the client got for each (the text, or the error event), reported."""
    return f"""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            client = AsyncOpenAI(api_key="{key}", max_retries=0)
            got = []
            async with client.responses.connect() as conn:
                for create in {creates!r}:
                    await conn.response.create(**create)
                    text = ""
                    while True:
                        event = await asyncio.wait_for(conn.recv(), 20)
                        if event.type == "response.output_text.delta":
                            text += event.delta
                        if event.type == "error":
                            got.append(dict(error=event.model_dump(exclude_none=True)))
                            break
                        if event.type in {ENDS!r}:
                            got.append(dict(type=event.type, id=event.response.id, text=text))
                            break
                {after}
            return got

        report(got=asyncio.run(session()))
    """


def user_input(text: str) -> list[dict]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]


def test_two_responses_on_one_connection_go_with_the_real_key_and_get_a_record_each(g, realtime_fake):
    creates = [
        {"model": MODEL, "input": user_input(PROMPT), "max_output_tokens": 300},
        {"model": MODEL, "input": user_input("and then?"), "previous_response_id": "resp_ws_0",
         "tools": [{"type": "function", "name": "f", "parameters": {}}]},
    ]  # fmt: skip
    assert g.run(session(ALICE, creates)) == {
        "got": [
            {"type": "response.completed", "id": "resp_ws_0", "text": ANSWERS[0]},
            {"type": "response.completed", "id": "resp_ws_1", "text": ANSWERS[1]},
        ]
    }
    (upstream,) = realtime_fake.sessions
    assert upstream.target == "/v1/responses"
    assert upstream.headers["authorization"] == f"Bearer {REAL}"
    assert "sec-websocket-extensions" not in upstream.headers  # no compression: messages are read whole
    assert not any(ALICE in value for value in upstream.headers.values())
    sent = [json.loads(m) for m in upstream.received]
    assert [(m["type"], m["model"], m["input"]) for m in sent] == [
        ("response.create", MODEL, creates[0]["input"]),
        ("response.create", MODEL, creates[1]["input"]),
    ]
    first, second = g.new_audit(2)
    for record in (first, second):
        assert_fields(record, client="alice", auth="virtual_key", provider="openai", endpoint="responses")
        assert_fields(record, method="POST", path="/v1/responses", transport="websocket", model=MODEL)
        assert (record["decision"], record["status"], record["error"], record["stream"]) == ("allow", 200, None, True)
        assert record["upstream"] == realtime_fake.url and record["upstream_key"].startswith("sha256:")
    assert first["request_id"] != second["request_id"]
    assert (first["max_tokens"], first["has_tools"], second["has_tools"]) == (300, False, True)
    assert (first["input_tokens"], first["output_tokens"], first["cached_tokens"]) == (100, 20, 40)
    assert (second["input_tokens"], second["output_tokens"], second["reasoning_tokens"]) == (150, 30, 12)
    assert (first["finish_reason"], second["finish_reason"]) == ("completed", "completed")
    # 60 uncached and 40 cached input tokens, 20 output: $0.06 + $0.02 + $0.04.
    assert (first["cost_usd"], second["cost_usd"]) == (0.12, 0.21)


def test_a_denied_response_create_is_an_error_event_the_connection_goes_on(g, realtime_fake):
    creates = [{"model": MODEL, "input": user_input(PROMPT)}, {"model": "gpt-4o-mini", "input": "hi"}]
    (denied, served) = g.run(session(SAM, creates))["got"]
    assert denied["error"]["status"] == 403
    error = denied["error"]["error"]
    assert (error["type"], error["code"], error.get("param")) == ("permission_denied", "policy_denied", None)
    assert error["message"] == ('Tollgate policy denied this call: model gpt-4o is not allowed for groups ["support"]')
    assert error["headers"]["x-tollgate-error"] == "policy_denied"
    assert served == {"type": "response.completed", "id": "resp_ws_0", "text": ANSWERS[0]}
    (upstream,) = realtime_fake.sessions
    assert [json.loads(m)["model"] for m in upstream.received] == ["gpt-4o-mini"]  # the denied one never went
    refused, allowed = g.new_audit(2)
    assert error["headers"]["x-tollgate-request-id"] == refused["request_id"]
    assert (refused["client"], refused["model"], refused["decision"], refused["status"]) == ("sam", MODEL, "deny", 403)
    assert refused["deny_reasons"] == ['model gpt-4o is not allowed for groups ["support"]']
    assert (refused["input_tokens"], refused["transport"]) == (None, "websocket")
    assert (allowed["model"], allowed["decision"], allowed["status"], allowed["total_tokens"]) == (
        "gpt-4o-mini",
        "allow",
        200,
        120,
    )


@pytest.mark.parametrize("padding", ["", " pad" * 17_000], ids=["small", "68KB-read-in-a-worker-thread"])  # from 64 KiB
def test_guardrails_redact_a_response_create_and_refuse_one_with_tollgates_key_the_socket_going_on(
    g, realtime_fake, padding
):
    """Each in its turn, a large one (read in a worker thread) too."""
    from tests.support.guardrail_samples import SAMPLES

    token = SAMPLES["secrets.github_token"][0]
    creates = [
        {"model": MODEL, "input": user_input(f"my token is {token}{padding}")},
        {"model": MODEL, "input": user_input(f"and the key: {REAL}")},  # Tollgate's own: refused
        {"model": MODEL, "input": user_input("thanks")},
    ]
    redacted, denied, served = g.run(session(ALICE, creates))["got"]
    assert (redacted["text"], served["text"]) == (ANSWERS[0], ANSWERS[1])
    error = denied["error"]["error"]
    assert (denied["error"]["status"], error["headers"]["x-tollgate-error"]) == (403, "content_denied")
    assert error["message"] == "Tollgate refused this call: its content holds tollgate_keys (1)."
    (upstream,) = realtime_fake.sessions
    texts = [json.loads(m)["input"][0]["content"][0]["text"] for m in upstream.received]
    assert texts == [f"my token is [REDACTED:secrets.github_token]{padding}", "thanks"]  # the refused one never went
    first, refused, third = g.new_audit(3)
    assert (first["findings"], first["redacted"]) == ({"secrets.github_token": 1}, 1)
    assert (refused["decision"], refused["deny_reasons"], refused["findings"]) == (
        "deny",
        ["content_denied"],
        {"tollgate_keys": 1},
    )
    assert (third["findings"], third["redacted"]) == ({}, 0)
    assert token.encode() not in g.audit_path.read_bytes()


def test_a_limit_refuses_the_response_it_has_no_room_for_and_counts_what_the_others_used(g, realtime_fake):
    creates = [
        {"model": MODEL, "input": "one", "max_output_tokens": 200},
        {"model": MODEL, "input": "two", "max_output_tokens": 900},  # 120 used: no room for 900 more
        {"model": MODEL, "input": "three", "max_output_tokens": 100},
    ]
    first, refused, third = g.run(session(BOUNDED, creates))["got"]
    assert (first["text"], third["text"]) == (ANSWERS[0], ANSWERS[1])
    assert refused["error"]["status"] == 429
    error = refused["error"]["error"]
    assert (error["code"], error["type"], error["headers"]["x-tollgate-error"]) == (
        "insufficient_quota",
        "insufficient_quota",
        "budget_exceeded",
    )
    assert error["message"].startswith(
        "Tollgate limit 'tokens': tokens_per_day is 1000 for bounded; 120 used, this call needs up to 9"
    )
    assert int(error["headers"]["retry-after"]) > 0
    records = g.new_audit(3)
    assert [(r["status"], r["decision"], r["total_tokens"]) for r in records] == [
        (200, "allow", 120),
        (429, "deny", None),
        (200, "allow", 180),
    ]
    assert records[1]["deny_reasons"] == ["limit 'tokens': tokens_per_day 1000 reached for bounded"]


def test_a_response_that_continues_a_previous_one_reserves_its_models_context_window(g, realtime_fake):
    creates = [
        # Codex continues each turn from the last: OpenAI bills the whole conversation as input.
        {"model": MODEL, "input": "one", "max_output_tokens": 100, "previous_response_id": "resp_ws_before"},
        {"model": MODEL, "input": "two", "max_output_tokens": 100},
    ]
    refused, answered = g.run(session(BOUNDED, creates))["got"]
    assert refused["error"]["status"] == 429
    # gpt-4o's context window, 128 000 tokens, and the answer's 100.
    assert re.search(r"this call needs up to 128100\.", refused["error"]["error"]["message"])
    assert answered["text"] == ANSWERS[0]
    (session_,) = realtime_fake.sessions
    assert [json.loads(m).get("previous_response_id") for m in session_.received] == [None]
    refused_record, answered_record = g.new_audit(2)
    assert (refused_record["status"], refused_record["decision"]) == (429, "deny")
    assert (answered_record["status"], answered_record["total_tokens"]) == (200, 120)


def test_an_incomplete_responses_usage_and_reason_are_audited(g, realtime_fake):
    realtime_fake.script = responding(ANSWERS, USAGES, incomplete="max_output_tokens")
    creates = [{"model": MODEL, "input": "long", "max_output_tokens": 20}]
    assert g.run(session(ALICE, creates)) == {
        "got": [{"type": "response.incomplete", "id": "resp_ws_0", "text": ANSWERS[0]}]
    }
    (record,) = g.new_audit(1)
    assert (record["status"], record["error"], record["finish_reason"]) == (200, None, "max_output_tokens")
    assert (record["input_tokens"], record["output_tokens"], record["cost_usd"]) == (100, 20, 0.12)


def test_an_override_rewrites_the_messages_model_and_one_that_sends_it_elsewhere_refuses_it(g, realtime_fake):
    creates = [{"model": "gpt-4o-elsewhere", "input": "hi"}, {"model": "gpt-4o-alias", "input": "hi"}]
    refused, served = g.run(session(ALICE, creates))["got"]
    assert (refused["error"]["status"], refused["error"]["error"]["code"]) == (400, "bad_request")
    assert served["text"] == ANSWERS[0]
    (upstream,) = realtime_fake.sessions
    assert [json.loads(m)["model"] for m in upstream.received] == ["gpt-4o-mini"]
    elsewhere, alias = g.new_audit(2)
    assert (elsewhere["status"], elsewhere["error"]) == (400, "bad request: an override routes this response elsewhere")
    assert (alias["requested_model"], alias["model"], alias["status"]) == ("gpt-4o-alias", "gpt-4o-mini", 200)


CREATE_HI = {"type": "response.create", "model": MODEL, "input": "hi"}


def each_answered(messages: list[str]) -> str:
    """Client code: each of `messages` sent as a text message on one socket, the next once the last
    was answered; how each ended (a status, or the end event's type)."""
    return f"""
        import asyncio, json
        from websockets.asyncio.client import connect

        async def session():
            async with connect("wss://api.openai.com/v1/responses",
                               additional_headers={{"Authorization": "Bearer {ALICE}"}}) as ws:
                got = []
                for message in {messages!r}:
                    await ws.send(message)
                    while True:
                        event = json.loads(await asyncio.wait_for(ws.recv(), 20))
                        if event["type"] in {ENDS!r}:
                            got.append(event.get("status") or event["type"])
                            break
            return got

        report(got=asyncio.run(session()))
    """


def test_a_message_that_could_start_an_undecided_response_is_refused_and_audited(g, realtime_fake):
    # response.steer queues input that OpenAI answers with responses no response.create asked for.
    steer = {"type": "response.steer", "previous_response_id": "resp_x", "input": "go on"}
    result = g.run(each_answered([json.dumps(steer), "not json", json.dumps(CREATE_HI)]))
    assert result == {"got": [400, 400, "response.completed"]}
    (upstream,) = realtime_fake.sessions
    assert [json.loads(m)["type"] for m in upstream.received] == ["response.create"]
    steer, text, served = g.new_audit(3)
    assert (steer["status"], steer["decision"], steer["endpoint"]) == (400, "deny", "responses")
    assert steer["error"] == (
        "bad request: Tollgate forwards only response.create messages (and acknowledgements) here"
    )
    assert (text["status"], text["error"]) == (400, "bad request: the body is not a JSON object")
    assert (served["status"], served["total_tokens"]) == (200, 120)


def test_a_message_not_in_utf8_is_refused_and_audited(g, realtime_fake):
    # A text frame's bytes are UTF-8, but UTF-16 of ASCII text is valid UTF-8 too (NULs between the
    # letters): the guardrails would read it without finding Tollgate's key in it.
    create = json.dumps({"type": "response.create", "model": MODEL, "input": f"the key: {REAL}"})
    utf16 = create.encode("utf-16-le").decode("utf-8")
    result = g.run(each_answered([utf16, "\ufeff" + create, json.dumps(CREATE_HI)]))
    assert result == {"got": [400, 400, "response.completed"]}
    (upstream,) = realtime_fake.sessions
    assert [json.loads(m)["input"] for m in upstream.received] == ["hi"]
    utf16_record, bom_record, served = g.new_audit(3)
    assert (utf16_record["status"], utf16_record["decision"]) == (400, "deny")
    assert utf16_record["error"].startswith("bad request: the body is UTF-16;")
    assert (bom_record["status"], bom_record["decision"]) == (400, "deny")
    assert bom_record["error"].startswith("bad request: the body begins with a byte order mark;")
    assert served["status"] == 200


def test_an_unknown_key_is_refused_at_the_upgrade_and_audited(g, realtime_fake):
    before = realtime_fake.connections
    result = g.run("""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            async with AsyncOpenAI(api_key="tg-unknown-key", max_retries=0).responses.connect() as conn:
                await conn.response.create(model="gpt-4o", input="hi")

        asyncio.run(session())
    """)
    assert (result["error"], result["message"].split(":")[0]) == (
        "InvalidStatus",
        "server rejected WebSocket connection",
    )
    assert "HTTP 401" in result["message"]
    assert realtime_fake.connections == before
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["method"], record["status"], record["decision"]) == (
        "responses",
        "GET",
        401,
        "deny",
    )


def test_a_response_asked_for_once_the_sessions_key_has_expired_is_refused_the_socket_goes_on(g, realtime_fake):
    # Its key expires a few seconds ahead, while the socket is open: no reload, no new connection.
    key = "tg-VIRTUAL-fleeting-responses-ws-5ecret-i9"
    expires = int(time.time()) + 15
    when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    g.reconfigure(
        lambda urls: gateway_config(
            realtime_fake.url, {"name": "fleeting", "keys": [{"key": digest, "expires": when}], "groups": ["support"]}
        )
    )
    creates = [{"model": "gpt-4o-mini", "input": user_input(PROMPT)}, {"model": "gpt-4o-mini", "input": "and?"}]
    until_expired = f"""
        got.append(dict(waited_from=time.time()))
        await asyncio.sleep(max(0, {expires} - time.time()) + 0.5)
    """  # the first has ended: wait until the key has expired
    result = g.run(responses_in_turn(key, creates, until_expired, ENDS), timeout=90)
    served, waited, refused = result["got"]
    assert waited["waited_from"] < expires, "the first response ended after the key expired: nothing was shown"
    assert_served_then_refused_its_key(served, refused, realtime_fake)
    allowed, denied = g.new_audit(2)
    assert (allowed["client"], allowed["status"], allowed["transport"]) == ("fleeting", 200, "websocket")
    assert (denied["client"], denied["decision"], denied["status"], denied["deny_reasons"]) == (
        "fleeting",
        "deny",
        401,
        [f"virtual key of fleeting expired {when}"],
    )


def test_no_message_key_or_prompt_reaches_the_console_or_saved_flows(g, realtime_fake):
    creates = [{"model": MODEL, "input": user_input(PROMPT)}]
    assert g.run(session(ALICE, creates))["got"][0]["text"] == ANSWERS[0]
    g.new_audit(1)
    outputs = stopped_outputs(g)
    assert_no_secret(outputs, SECRETS)
    assert b"WebSocket text message" in outputs["console"] and b"[redacted by Tollgate: " in outputs["console"]

    flows = [flow for flow in saved_flows(g.saved) if flow.websocket is not None]
    assert flows
    for flow in flows:
        assert flow.request.headers["authorization"] == "[redacted by Tollgate]"
        assert all(m.content.startswith(b"[redacted by Tollgate: ") for m in flow.websocket.messages)
    last = flows[-1]
    assert last.metadata["tollgate"]["event"] == "responses_websocket"
    assert last.comment == "alice · openai · Responses WebSocket · 1 response · 100→20 tokens · $0.12"


WAITER = "tg-VIRTUAL-waiter-responses-ws-5ecret-i9"


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.resume()
    server.stop()


@pytest.fixture(scope="module")
def on_redis(start_gateway, realtime_fake, redis):
    """A gateway whose limits' counters are in Redis: a reservation is awaited over the network."""
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "waiter", "keys": [WAITER]}],
            "limits": [{"name": "requests", "match": {"client": "waiter"}, "requests_per_day": 100}],
            "ledger": {"store": redis.url, "on_store_error": "deny"},
        }
    )


def test_a_message_awaiting_its_reservation_holds_back_nothing_the_server_sends(on_redis, realtime_fake, redis):
    # The first response's events after response.created come 1 s later; meanwhile the second
    # response.create waits for a Redis that does not answer (2 s or more). Relayed as they come, the
    # first response's events reach the client long before the second's refusal.
    realtime_fake.answer_with(responding(ANSWERS, USAGES, hold=1.0))
    # Events are timed as their bytes arrive: the SDK's first parse of an event takes a while.
    result = on_redis.run(f"""
        import asyncio, json, os, signal, time
        from openai import AsyncOpenAI

        async def session():
            async with AsyncOpenAI(api_key="{WAITER}", max_retries=0).responses.connect() as conn:
                await conn.response.create(model="{MODEL}", input="first")
                assert json.loads(await asyncio.wait_for(conn.recv_bytes(), 20))["type"] == "response.created"
                os.kill({redis.process.pid}, signal.SIGSTOP)
                try:
                    sent, got = time.monotonic(), []
                    await conn.response.create(model="{MODEL}", input="second")
                    while not got or got[-1][0] != "error":
                        event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 20))
                        got.append((event["type"], round(time.monotonic() - sent, 2), event.get("status")))
                finally:
                    os.kill({redis.process.pid}, signal.SIGCONT)
            return got

        report(got=asyncio.run(session()))
    """)
    got = result["got"]
    print("GOT", got)
    assert [kind for kind, _, _ in got] == [
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
        "error",
    ]
    (_, completed, _), (_, refused, status) = got[-2:]
    assert status == 503
    assert refused - completed > 0.5, got  # not relayed only once the second message was decided
    first, second = on_redis.new_audit(2)
    assert (first["status"], first["total_tokens"], first["ledger_error"]) == (200, 120, None)
    assert (second["status"], second["error"]) == (503, "ledger unavailable")
    assert second["ledger_error"] is not None
    (upstream,) = realtime_fake.sessions
    assert len(upstream.received) == 1  # the second never went
