"""OpenAI's Realtime API over WebSocket, governed as every call: the model read from the query and
decided on, the caller identified by its virtual key (header or browser subprotocol) which never
goes upstream, usage added up from the server's events into one audit record when the WebSocket
ends, and no message, key or prompt on the console or in saved flows, while the peers get every
message as it was sent."""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time

import pytest
from tests.support import guardrail_samples as samples
from tests.support.audit_fields import assert_fields
from tests.support.clients import run_client
from tests.support.fake_realtime import HANG_UP, answering, usage
from tests.support.leaks import assert_no_secret, saved_flows, stopped_outputs
from tests.support.proxy import ROOT
from tests.support.socket_sessions import telling_gateway

from tollgate.proxy.stages.transport.websocket import MAX_MESSAGE

REAL = "sk-REAL-openai-realtime-5ecret-a1"
ALICE = "tg-VIRTUAL-alice-realtime-5ecret-b2"
SAM = "tg-VIRTUAL-sam-realtime-5ecret-c3"
PROMPT = "PROMPT-TEXT-spoken-to-realtime-d4"
SYSTEM = "SYSTEM-INSTRUCTIONS-for-realtime-e5"
ANSWERS = ["COMPLETION-TEXT-first-answer-f6", "COMPLETION-TEXT-second-answer-g7"]
USAGES = [usage(100, 20, 40), usage(150, 30, 64)]
SECRETS = [REAL, ALICE, SAM, PROMPT, SYSTEM, *ANSWERS]
MODEL = "gpt-4o-realtime-preview"  # allowed for alice's group (research: gpt-4o*), not for sam's
BROWSER_SUBPROTOCOLS = ["realtime", f"openai-insecure-api-key.{ALICE}", "openai-beta.realtime-v1"]


@pytest.fixture(scope="module")
def gw(start_gateway, realtime_fake):
    allowlist = ROOT / "docs" / "examples" / "policies" / "model_allowlist.rego"
    return telling_gateway(
        start_gateway,
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [ALICE], "groups": ["research"]},
                        {"name": "sam", "keys": [SAM], "groups": ["support"]}],
            "policy": {"rego": [str(allowlist)]},
        },
    )  # fmt: skip


@pytest.fixture
def g(gw, realtime_fake):
    realtime_fake.answer_with(answering(ANSWERS, USAGES))
    return gw


# The async clients throughout: websockets' sync client reads and writes one TLS socket from two
# threads, and with TLS 1.3 (a session ticket arriving as it sends its upgrade) about one connection
# in a hundred then never sends the upgrade, through any TLS-intercepting proxy (bare mitmdump too).
SDK_SESSION = f"""
    import asyncio
    from openai import AsyncOpenAI

    async def session():
        client = AsyncOpenAI(api_key="{ALICE}", max_retries=0)
        texts = []
        async with client.realtime.connect(model="{MODEL}") as conn:
            await conn.session.update(session={{"type": "realtime", "instructions": "{SYSTEM}"}})
            await conn.conversation.item.create(item={{"type": "message", "role": "user",
                                                      "content": [{{"type": "input_text", "text": "{PROMPT}"}}]}})
            for _ in range(2):
                await conn.response.create()
                text = ""
                async for event in conn:
                    if event.type == "response.output_text.delta":
                        text += event.delta
                    elif event.type == "response.done":
                        break
                texts.append(text)
        return texts

    report(texts=asyncio.run(session()))
"""


def test_an_sdk_session_goes_with_the_real_key_and_is_audited_once_with_its_summed_usage(g, realtime_fake):
    assert g.run(SDK_SESSION) == {"texts": ANSWERS}
    (session,) = realtime_fake.sessions
    assert session.target == f"/v1/realtime?model={MODEL}"
    assert session.headers["authorization"] == f"Bearer {REAL}"
    assert not any(ALICE in value for value in session.headers.values())
    # The peer got every message as the client sent it.
    sent = [json.loads(m) for m in session.received]
    assert [e["type"] for e in sent] == [
        "session.update",
        "conversation.item.create",
        "response.create",
        "response.create",
    ]
    assert sent[0]["session"]["instructions"] == SYSTEM
    assert sent[1]["item"]["content"][0]["text"] == PROMPT
    (record,) = g.new_audit(1)
    assert_fields(record, client="alice", auth="virtual_key", provider="openai", endpoint="realtime")
    assert_fields(record, method="GET", path="/v1/realtime", requested_model=MODEL, model=MODEL)
    assert_fields(record, decision="allow", status=101, error=None, transport="websocket")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (250, 50, 300)
    assert (record["cached_tokens"], record["reasoning_tokens"], record["finish_reason"]) == (104, None, "completed")
    # Priced as each response's usage tells its text from its audio (all text here): 146 uncached
    # input tokens at $5 a million, 104 cached at $2.50, 50 output at $20.
    assert record["cache_write_tokens"] is None
    assert record["cost_usd"] == pytest.approx((146 * 5 + 104 * 2.5 + 50 * 20) / 1e6)
    assert record["upstream"] == realtime_fake.url and record["upstream_key"].startswith("sha256:")
    # Written when the WebSocket ended: the whole session, not its handshake.
    assert record["ttfb_ms"] is not None and record["latency_ms"] > record["ttfb_ms"]


def test_a_denied_model_fails_the_upgrade_with_403_and_reaches_no_upstream(g, realtime_fake):
    before = realtime_fake.connections
    result = g.run(f"""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            async with AsyncOpenAI(api_key="{SAM}", max_retries=0).realtime.connect(model="{MODEL}") as conn:
                await conn.response.create()

        try:
            asyncio.run(session())
            report(error=None)
        except Exception as e:
            body = json.loads(e.response.body)
            report(error=type(e).__name__, module=type(e).__module__, status=e.response.status_code,
                   tollgate=e.response.headers.get("x-tollgate-error"), code=body["error"]["code"])
    """)
    assert result == {
        "error": "InvalidStatus",
        "module": "websockets.exceptions",
        "status": 403,
        "tollgate": "policy_denied",
        "code": "policy_denied",
    }
    assert realtime_fake.connections == before and realtime_fake.sessions == []
    (record,) = g.new_audit(1)
    assert (record["client"], record["endpoint"], record["model"]) == ("sam", "realtime", MODEL)
    assert (record["decision"], record["status"]) == ("deny", 403)
    assert MODEL in record["deny_reasons"][0]


BROWSER_SESSION = f"""
    import asyncio, json
    from websockets.asyncio.client import connect

    async def session():
        async with connect("wss://api.openai.com/v1/realtime?model={MODEL}",
                           subprotocols={BROWSER_SUBPROTOCOLS!r}) as ws:
            chosen, extensions = ws.subprotocol, [e.name for e in ws.protocol.extensions]
            await ws.send(json.dumps({{"type": "response.create"}}))
            text = ""
            for _ in range(10):
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if event["type"] == "response.output_text.delta":
                    text += event["delta"]
                if event["type"] == "response.done":
                    break
        return dict(subprotocol=chosen, extensions=extensions, text=text)

    report(**asyncio.run(session()))
"""


def test_a_browsers_key_among_the_subprotocols_identifies_it_and_never_goes_upstream(g, realtime_fake):
    # The client offers permessage-deflate (websockets does); Tollgate takes the offer out, so that
    # no message is compressed (mitmproxy would inflate each one whole, without bound).
    assert g.run(BROWSER_SESSION) == {"subprotocol": "realtime", "extensions": [], "text": ANSWERS[0]}
    (session,) = realtime_fake.sessions
    assert "sec-websocket-extensions" not in session.headers
    assert session.headers["authorization"] == f"Bearer {REAL}"
    assert session.subprotocols == ["realtime", "openai-beta.realtime-v1"]
    assert not any(ALICE in value for value in session.headers.values())
    (record,) = g.new_audit(1)
    assert (record["client"], record["auth"], record["model"], record["status"]) == ("alice", "virtual_key", MODEL, 101)
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (100, 20, 40)


def test_a_session_the_server_drops_is_audited_with_the_usage_read_and_the_close(g, realtime_fake):
    result = g.run(f"""
        import asyncio, json
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def session():
            async with connect("wss://api.openai.com/v1/realtime?model={MODEL}",
                               additional_headers={{"Authorization": "Bearer {ALICE}"}}) as ws:
                await ws.send(json.dumps({{"type": "response.create"}}))
                for _ in range(10):
                    if json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "response.done":
                        break
                await ws.send(json.dumps({{"type": "{HANG_UP}"}}))
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                    return False
                except ConnectionClosed:
                    return True

        report(closed=asyncio.run(session()))
    """)
    assert result == {"closed": True}
    (record,) = g.new_audit(1)
    assert (record["client"], record["status"], record["total_tokens"]) == ("alice", 101, 120)
    assert record["error"] == "the server closed the WebSocket with code 1006"


def test_a_client_secret_for_a_denied_model_is_not_minted(g, realtime_fake):
    # Whoever holds a client secret calls OpenAI directly: the session's model is decided here.
    before = realtime_fake.connections
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{SAM}", max_retries=0)
        client.realtime.client_secrets.create(session={{"type": "realtime", "model": "gpt-realtime"}})
        report(minted=True)
    """)
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403)
    assert realtime_fake.connections == before
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["model"], record["decision"]) == (
        "realtime.client_secrets",
        "gpt-realtime",
        "deny",
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?model=gpt-4o-realtime-preview&model=gpt-4o-mini-realtime-preview",
        "?model=",
        "?Model=gpt-4o-realtime-preview",
    ],
)
def test_a_session_naming_no_one_model_is_refused_400_and_reaches_no_upstream(g, realtime_fake, query):
    before = realtime_fake.connections
    result = g.run(f"""
        import asyncio, json
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        async def session():
            async with connect("wss://api.openai.com/v1/realtime{query}", subprotocols={BROWSER_SUBPROTOCOLS!r}):
                pass

        try:
            asyncio.run(session())
            report(status=101)
        except InvalidStatus as e:
            report(status=e.response.status_code, tollgate=e.response.headers.get("x-tollgate-error"),
                   code=json.loads(e.response.body)["error"]["code"])
    """)
    assert result == {"status": 400, "tollgate": "bad_request", "code": "bad_request"}
    assert realtime_fake.connections == before
    (record,) = g.new_audit(1)
    assert (record["endpoint"], record["status"], record["model"]) == ("realtime", 400, None)
    assert record["error"].startswith("bad request: ")


TOO_BIG = MAX_MESSAGE + 1024


def test_a_client_message_past_the_bound_closes_the_websocket_with_1009_and_never_goes_upstream(g, realtime_fake):
    result = g.run(f"""
        import asyncio, json
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedError

        async def session():
            async with connect("wss://api.openai.com/v1/realtime?model={MODEL}",
                               additional_headers={{"Authorization": "Bearer {ALICE}"}}) as ws:
                await ws.send(json.dumps({{"type": "session.update", "session": {{"type": "realtime"}}}}))
                await ws.send(json.dumps({{"type": "input_audio_buffer.append", "audio": "A" * {TOO_BIG}}}))
                try:
                    for _ in range(10):
                        await asyncio.wait_for(ws.recv(), 30)
                except ConnectionClosedError as e:
                    return e.rcvd.code if e.rcvd else None

        report(code=asyncio.run(session()))
    """)
    assert result == {"code": 1009}
    (session,) = realtime_fake.sessions
    assert session.closed.wait(10)
    assert [json.loads(m)["type"] for m in session.received] == ["session.update"]  # not the large one
    assert session.close_code == 1009
    (record,) = g.new_audit(1)
    assert (record["client"], record["status"], record["decision"]) == ("alice", 101, "allow")
    assert record["error"] == "the client sent a WebSocket message larger than 32 MiB (closed with code 1009)"
    # The proxy goes on serving.
    assert g.run(BROWSER_SESSION)["text"] == ANSWERS[0]
    g.new_audit(1)


def test_a_server_message_past_the_bound_closes_the_websocket_with_1009_on_both_sides(g, realtime_fake):
    realtime_fake.script = lambda event: [{"type": "response.output_audio.delta", "delta": "A" * TOO_BIG}]
    result = g.run(f"""
        import asyncio, json
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedError

        async def session():
            async with connect("wss://api.openai.com/v1/realtime?model={MODEL}", max_size=None,
                               additional_headers={{"Authorization": "Bearer {ALICE}"}}) as ws:
                await ws.send(json.dumps({{"type": "response.create"}}))
                types = []
                try:
                    for _ in range(10):
                        types.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
                except ConnectionClosedError as e:
                    return types, e.rcvd.code if e.rcvd else None

        types, code = asyncio.run(session())
        report(types=types, code=code)
    """)
    assert result == {"types": ["session.created"], "code": 1009}
    (record,) = g.new_audit(1)
    assert (record["client"], record["status"]) == ("alice", 101)
    assert record["error"] == "the server sent a WebSocket message larger than 32 MiB (closed with code 1009)"


def test_no_message_key_or_prompt_reaches_the_console_or_saved_flows(g, realtime_fake):
    # The sessions above ran on this proxy too: a session, a refusal, a browser's, bad queries.
    assert g.run(SDK_SESSION) == {"texts": ANSWERS}
    g.new_audit(1)
    outputs = stopped_outputs(g)
    assert_no_secret(outputs, SECRETS)
    # The console did show the messages' passing (flow_detail 4), as stand-ins.
    assert b"WebSocket text message" in outputs["console"] and b"[redacted by Tollgate: " in outputs["console"]

    flows = [flow for flow in saved_flows(g.saved) if flow.websocket is not None]
    assert len(flows) >= 3
    for flow in flows:
        assert flow.metadata["tollgate"]["endpoint"] == "realtime"
        assert flow.request.headers["authorization"] == "[redacted by Tollgate]"
        messages = flow.websocket.messages
        assert messages and all(m.content.startswith(b"[redacted by Tollgate: ") for m in messages)
    last = flows[-1]
    # session.created and .updated; the client's 4 events; per response: created, 2 deltas, done.
    assert len(last.websocket.messages) == 2 + 4 + 2 * 4
    assert last.metadata["tollgate"]["total_tokens"] == 300


# ---- each response under limits: reserved and settled as a call

LIMITED = "gpt-realtime"  # a context window of 32 000 tokens, 4 096 out; $4 / $16 a million for text
METERED = "tg-VIRTUAL-metered-realtime-5ecret-h8"
LISTENER = "tg-VIRTUAL-listener-realtime-5ecret-i9"
BIG = usage(1_000, 5_000, 0)


@pytest.fixture(scope="module")
def limited(start_gateway, realtime_fake):
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "metered", "keys": [METERED]}, {"name": "listener", "keys": [LISTENER]}],
            "limits": [{"name": "metered", "match": {"client": "metered"}, "tokens_per_day": 60_000},
                       {"name": "listener", "match": {"client": "listener"}, "tokens_per_day": 40_000}],
        }
    )  # fmt: skip


def test_each_response_on_a_session_reserves_its_bound_and_settles_to_its_priced_usage(limited, realtime_fake):
    realtime_fake.answer_with(answering(["Hello."] * 10, [BIG] * 10))
    result = limited.run(f"""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            client = AsyncOpenAI(api_key="{METERED}", max_retries=0)
            outcomes = []
            async with client.realtime.connect(model="{LIMITED}") as conn:
                for _ in range(10):
                    await conn.response.create(response={{"max_output_tokens": 5000}})
                    async for event in conn:
                        if event.type == "response.done":
                            outcomes.append(event.response.usage.total_tokens)
                            break
                        if event.type == "error":
                            outcomes.append([event.error.code, event.error.message])
                            break
            return outcomes

        report(outcomes=asyncio.run(session()))
    """)
    outcomes = result["outcomes"]
    # Each reserves 32 000 (the window: the conversation is the input, its message among it) and
    # 5 000: after four responses of 6 000 (24 000), a fifth no longer fits 60 000.
    assert outcomes[:4] == [6_000] * 4
    assert len(outcomes) == 10
    for code, message in outcomes[4:]:
        assert code == "insufficient_quota"
        found = re.search(r"is 60000 for metered; (\d+) used, this call needs up to (\d+)\.", message)
        assert found is not None, message
        assert (int(found[1]), int(found[2])) == (24_000, 37_000)
    (session,) = realtime_fake.sessions
    assert [json.loads(m)["type"] for m in session.received] == ["response.create"] * 4
    records = limited.new_audit(7)
    refused, (whole,) = records[:6], records[6:]
    for record in refused:
        assert (record["client"], record["endpoint"], record["transport"]) == ("metered", "realtime", "websocket")
        assert (record["status"], record["decision"]) == (429, "deny")
        assert record["deny_reasons"] == ["limit 'metered': tokens_per_day 60000 reached for metered"]
    assert (whole["status"], whole["decision"], whole["total_tokens"]) == (101, "allow", 24_000)
    assert whole["cost_usd"] == pytest.approx(4 * (1_000 * 4 + 5_000 * 16) / 1e6)


def test_a_response_the_server_begins_without_room_is_cancelled_and_charged(limited, realtime_fake):
    realtime_fake.sessions.clear()
    begun = iter(range(10))

    def voice_activity(event):
        # The server's voice activity detection begins a response when the input is committed.
        if event.get("type") != "input_audio_buffer.commit":
            return []
        rid = f"resp_vad_{next(begun)}"
        return [
            {"type": "input_audio_buffer.committed", "event_id": f"ev_{rid}_c", "item_id": f"item_{rid}"},
            {"type": "response.created", "event_id": f"ev_{rid}_a",
             "response": {"id": rid, "object": "realtime.response", "status": "in_progress"}},
            {"type": "response.done", "event_id": f"ev_{rid}_z",
             "response": {"id": rid, "object": "realtime.response", "status": "completed", "output": [],
                          "usage": BIG}},
        ]  # fmt: skip

    realtime_fake.script = voice_activity
    result = limited.run(f"""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            client = AsyncOpenAI(api_key="{LISTENER}", max_retries=0)
            done, errors = [], []
            async with client.realtime.connect(model="{LIMITED}") as conn:
                await conn.input_audio_buffer.commit()
                async for event in conn:
                    if event.type == "response.done":
                        done.append(event.response.usage.total_tokens)
                        break
                await conn.input_audio_buffer.commit()
                async for event in conn:
                    if event.type == "error":
                        errors.append(event.error.code)
                    elif event.type == "response.done":
                        done.append(event.response.usage.total_tokens)
                    if len(done) == 2 and errors:
                        break
                await conn.response.create()
                async for event in conn:
                    if event.type == "error":
                        errors.append(event.error.message)
                        break
            return done, errors

        done, errors = asyncio.run(session())
        report(done=done, errors=errors)
    """)
    # The first fits 40 000 (32 000 + 4 096); the second, begun with 6 000 used, does not: it is
    # cancelled, and what it used counts all the same.
    assert result["done"] == [6_000, 6_000]
    refused, last = result["errors"]
    assert refused == "insufficient_quota"
    assert "12000 used, this call needs up to 36096." in last
    (session,) = realtime_fake.sessions
    sent = [json.loads(m) for m in session.received]
    assert [e["type"] for e in sent] == ["input_audio_buffer.commit"] * 2 + ["response.cancel"]
    assert sent[2]["response_id"] == "resp_vad_1"
    cancelled, asked, whole = limited.new_audit(3)
    assert (cancelled["status"], cancelled["decision"]) == (429, "deny")
    assert (asked["status"], asked["decision"]) == (429, "deny")
    assert (whole["decision"], whole["total_tokens"]) == ("allow", 12_000)


# ---- guardrails: each event a model reads, read as a call's body

GUARDED_KEY = "tg-VIRTUAL-guarded-realtime-5ecret-j1"


@pytest.fixture(scope="module")
def guarded(start_gateway, realtime_fake):
    return telling_gateway(
        start_gateway,
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [GUARDED_KEY]}],
            "guardrails": [{"detect": ["pii.email"], "action": "redact"},
                           {"detect": ["secrets"], "action": "deny"}],
        },
    )  # fmt: skip


# Steps that ask for a response and append its events' types to `events` until it is done.
A_RESPONSE = """
await conn.response.create()
async for event in conn:
    events.append(event.type)
    if event.type == "response.done":
        break
"""


def guarded_session(steps: str, before: str = "", answered: bool = False) -> str:
    """Client code: a realtime session of the guarded client's, `steps` run on its connection
    `conn` (then `A_RESPONSE` when `answered`), and what they append to `events` reported;
    `before`: lines run first."""
    steps = textwrap.dedent(steps) + (A_RESPONSE if answered else "")
    return f"""
import asyncio
from openai import AsyncOpenAI
{textwrap.dedent(before)}
async def session():
    client = AsyncOpenAI(api_key="{GUARDED_KEY}", max_retries=0)
    events = []
    async with client.realtime.connect(model="{MODEL}") as conn:
{textwrap.indent(steps, " " * 8)}
    return events

report(events=asyncio.run(session()))
"""


def test_an_event_not_in_utf8_does_not_go_and_the_session_goes_on(guarded, realtime_fake):
    # UTF-16 of ASCII text is valid UTF-8 (NULs between the letters), so a text frame carries it;
    # the guardrails, reading UTF-8, would find nothing in it.
    realtime_fake.answer_with(answering(ANSWERS[:1], USAGES[:1]))
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": samples.AWS_SECRET}]}
    utf16 = json.dumps({"type": "conversation.item.create", "item": item}).encode("utf-16-le").decode()
    result = guarded.run(
        guarded_session(
            f"""
                await conn.send_raw({utf16!r})
                async for event in conn:
                    if event.type == "error":
                        events.append([event.error.message, event.error.headers])
                        break
        """,
            answered=True,
        )
    )
    refused, *rest = result["events"]
    assert "the body is UTF-16" in refused[0] and refused[1]["x-tollgate-error"] == "bad_request"
    assert rest[-1] == "response.done"  # the session went on
    (session,) = realtime_fake.sessions
    assert [json.loads(m)["type"] for m in session.received] == ["response.create"]
    unread, whole = guarded.new_audit(2)
    assert (unread["status"], unread["decision"]) == (400, "deny")
    assert unread["error"].startswith("bad request: the body is UTF-16")
    assert (whole["status"], whole["decision"]) == (101, "allow")


def test_guardrails_redact_and_deny_realtime_events_and_the_session_goes_on(guarded, realtime_fake):
    realtime_fake.answer_with(answering(ANSWERS[:1], USAGES[:1]))
    env_file = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": env_file}]}
    result = guarded.run(
        guarded_session(
            f"""
                await conn.session.update(session={{"type": "realtime",
                                                    "instructions": "Write to {samples.EMAIL} at once"}})
                await conn.conversation.item.create(item={item!r}, event_id="ev_env")
                async for event in conn:
                    events.append(event.type)
                    if event.type == "error":
                        events.append([event.error.event_id, event.error.message, event.error.headers])
                        break
                # A message the guardrails cannot read exactly (a key twice) does not go either.
                await conn.send_raw('{{"type": "conversation.item.create", "type": "session.update"}}')
                async for event in conn:
                    if event.type == "error":
                        events.append(["unread", event.error.message, event.error.headers])
                        break
        """,
            answered=True,
        )
    )
    events = result["events"]
    error = events[events.index("error") + 1]
    assert error[0] == "ev_env"
    assert "secrets.aws_access_key_id (1)" in error[1] and "secrets.aws_secret_access_key (1)" in error[1]
    assert error[2]["x-tollgate-error"] == "content_denied"
    assert events[-1] == "response.done"  # the session went on
    unread = next(e for e in events if isinstance(e, list) and e[0] == "unread")
    assert "repeats a key" in unread[1] and unread[2]["x-tollgate-error"] == "bad_request"
    (session,) = realtime_fake.sessions
    sent = [json.loads(m) for m in session.received]
    # The email redacted; the denied item never went.
    assert [e["type"] for e in sent] == ["session.update", "response.create"]
    assert sent[0]["session"]["instructions"] == "Write to [REDACTED:pii.email] at once"
    denied, unread_record, whole = guarded.new_audit(3)
    assert (unread_record["status"], unread_record["decision"]) == (400, "deny")
    assert (denied["status"], denied["decision"], denied["deny_reasons"]) == (403, "deny", ["content_denied"])
    assert denied["findings"]["secrets.aws_access_key_id"] == 1 and denied["redacted"] is None
    assert (whole["status"], whole["findings"], whole["redacted"]) == (101, {"pii.email": 1}, 1)
    outputs = stopped_outputs(guarded)
    for value in (samples.EMAIL, samples.AWS_KEY_ID, samples.AWS_SECRET):
        for where, content in outputs.items():
            assert value.encode() not in content, f"a planted value in the {where}"


def test_large_realtime_events_are_read_in_a_worker_thread_each_in_its_turn(start_gateway, realtime_fake):
    # Events of 64 KiB and more are read by the guardrails in a worker thread: the session's later
    # events wait their turn behind them, and each goes, redacted, or is refused, as a small one.
    gateway = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [GUARDED_KEY]}],
            "guardrails": [{"detect": ["pii.email"], "action": "redact"}, {"detect": ["secrets"], "action": "deny"}],
        },
        providers=("openai",),
    )
    realtime_fake.answer_with(answering(ANSWERS[:1], USAGES[:1]))
    padding = " pad" * 20_000
    env_file = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"
    result = gateway.run(
        guarded_session(
            f"""
                await conn.session.update(session={{"type": "realtime",
                                                    "instructions": "Write to {samples.EMAIL} at once" + padding}})
                await conn.conversation.item.create(item=item, event_id="ev_env")
                await conn.response.create()
                async for event in conn:
                    events.append(event.type if event.type != "error" else ["error", event.error.event_id])
                    if event.type == "response.done":
                        break
        """,
            f"""
        padding = {padding[:4]!r} * 20_000
        item = {{"type": "message", "role": "user",
                 "content": [{{"type": "input_text", "text": {env_file!r} + padding}}]}}
        """,
        )
    )
    assert ["error", "ev_env"] in result["events"] and result["events"][-1] == "response.done"
    (session,) = realtime_fake.sessions
    sent = [json.loads(m) for m in session.received]
    # In the order they were sent: the large session.update redacted, the denied item never.
    assert [e["type"] for e in sent] == ["session.update", "response.create"]
    assert sent[0]["session"]["instructions"] == "Write to [REDACTED:pii.email] at once" + padding
    denied, whole = gateway.new_audit(2)
    assert (denied["status"], denied["deny_reasons"]) == (403, ["content_denied"])
    assert (whole["status"], whole["findings"], whole["redacted"]) == (101, {"pii.email": 1}, 1)


def test_a_call_is_answered_while_a_large_realtime_event_is_read(start_gateway, realtime_fake, tmp_path):
    # The event's scan is held until the test lets it go (tests/support/held_scan.py): meanwhile
    # the proxy answers another call (refused 401: Tollgate's own answer, made on its event loop).
    scanning, release = tmp_path / "scanning", tmp_path / "release"
    gateway = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": realtime_fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [GUARDED_KEY]}],
            "guardrails": [{"detect": ["pii.email"], "action": "redact"}],
        },
        "-s",
        str(ROOT / "tests" / "support" / "held_scan.py"),
        env={"TOLLGATE_TEST_SCANNING": str(scanning), "TOLLGATE_TEST_RELEASE": str(release)},
        providers=("openai",),
    )
    realtime_fake.answer_with(answering(ANSWERS[:1], USAGES[:1]))
    reported: dict = {}
    code = guarded_session(
        """
                await conn.session.update(session={"type": "realtime",
                                                    "instructions": "HOLD-SCAN" + " pad" * 20_000})
                await conn.response.create()
                async for event in conn:
                    events.append(event.type)
                    if event.type == "response.done":
                        break
        """,
    )
    thread = threading.Thread(
        target=lambda: reported.update(run_client(code, gateway.proxy.proxy_url, gateway.bundle, timeout=60)),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not scanning.exists():
            assert time.monotonic() < deadline, "no scan under way within 20 s"
            time.sleep(0.02)
        refused = gateway.run("""
            import openai
            try:
                openai.OpenAI(api_key="tg-not-a-key-of-tollgates", max_retries=0, timeout=20).models.list()
                report(status=200)
            except openai.APIStatusError as e:
                report(status=e.status_code)
            except openai.APITimeoutError:
                report(status="timed out")
        """)
        assert refused == {"status": 401}
        (session,) = realtime_fake.sessions
        assert session.received == []  # the held event, and the response.create behind it, not sent yet
    finally:
        release.touch()
    thread.join(60)
    assert reported["events"][-1] == "response.done"
    assert [json.loads(m)["type"] for m in session.received] == ["session.update", "response.create"]
