"""The addon mitmproxy sees and what its stages share: a failing stage refuses the call (mitmproxy
would skip the later stages and forward it), hooks run in stage order."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.test import tflow

from tollgate import pipeline
from tollgate.call import Call, Usage, fingerprint
from tollgate.config import Config
from tollgate.raw_headers import header_index
from tollgate.stages.credential import Credential
from tollgate.stages.route import Route
from tollgate.stages.shared import CALL, Loaded, Shared, write_body
from tollgate.stages.stream_tap import MITMPROXY_CONNECTION_LOGGER, StreamTap, UsageTap, record_usage
from tollgate.steps import CallSteps, Gateway
from tollgate.usage_readers import UsageReader


class Broken:
    def handle(self, flow, call):
        raise RuntimeError("boom")


def test_a_failing_call_step_refuses_the_call_in_the_providers_shape():
    flow = tflow.tflow()
    call = Call(provider="anthropic", host="api.anthropic.com", method="POST", path="/v1/messages")
    flow.metadata[CALL] = call
    CallSteps(Broken().handle).at_request(flow)
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

    def requestheaders(self, flow) -> None:
        self.seen.append(f"{self.name}.requestheaders")

    def response(self, flow) -> None:
        self.seen.append(f"{self.name}.response")

    def done(self) -> None:
        self.seen.append(f"{self.name}.done")


def test_gateway_runs_each_hook_through_its_steps_in_order():
    seen: list[str] = []
    a, b, only = Recorder("a", seen), Recorder("b", seen), Recorder("only", seen)
    gateway = Gateway(request=[a.request, b.request], response=[only.response], done=[a.done, b.done])
    flow = tflow.tflow()
    gateway.request(flow)
    gateway.response(flow)
    gateway.done()
    assert seen == ["a.request", "b.request", "only.response", "a.done", "b.done"]
    # mitmproxy looks hooks up by name: one with no steps is not there to be called
    assert not hasattr(gateway, "error") and not hasattr(gateway, "addons")


def test_gateway_refuses_a_hook_mitmproxy_does_not_have():
    with pytest.raises(ValueError, match="not mitmproxy hooks: requets"):
        Gateway(requets=[Recorder("a", []).request])


def test_gateway_stops_a_hook_at_a_failing_step_as_mitmproxy_does_for_a_scripts_addons():
    seen: list[str] = []

    def raises(flow) -> None:
        raise RuntimeError("boom")

    gateway = Gateway(request=[Recorder("a", seen).request, raises, Recorder("b", seen).request])
    with pytest.raises(RuntimeError):
        gateway.request(tflow.tflow())
    assert seen == ["a.request"]


class Handles:
    def __init__(self, name: str, seen: list[str], refuses: bool = False) -> None:
        self.name, self.seen, self.refuses = name, seen, refuses

    def handle(self, flow, call) -> None:
        self.seen.append(f"{self.name}.handle")
        if self.refuses:
            flow.response = tflow.tresp()


def _call_flow(streamed_upload: bool = False):
    flow = tflow.tflow()
    flow.metadata[CALL] = Call(provider="openai", host="api.openai.com", method="POST", path="/v1/chat/completions")
    flow.metadata[CALL].streamed_upload = streamed_upload
    return flow


def _gateway(call_steps: CallSteps, plain: Recorder) -> Gateway:
    return Gateway(
        requestheaders=[call_steps.at_headers, plain.requestheaders], request=[call_steps.at_request, plain.request]
    )


def test_call_steps_run_in_order_at_the_hook_their_call_takes():
    seen: list[str] = []
    gateway = _gateway(CallSteps(*(Handles(n, seen).handle for n in "abc")), Recorder("plain", seen))
    gateway.requestheaders(_call_flow())
    assert seen == ["plain.requestheaders"]
    seen.clear()
    gateway.request(_call_flow())
    assert seen == ["a.handle", "b.handle", "c.handle", "plain.request"]
    seen.clear()
    flow = _call_flow(streamed_upload=True)
    gateway.requestheaders(flow)
    gateway.request(flow)
    assert seen == ["a.handle", "b.handle", "c.handle", "plain.requestheaders", "plain.request"]
    seen.clear()
    gateway.request(tflow.tflow())  # no call: not Tollgate's
    assert seen == ["plain.request"]


def test_no_call_step_runs_after_one_answered_the_call():
    seen: list[str] = []
    steps = CallSteps(Handles("a", seen, refuses=True).handle, Handles("b", seen).handle, Handles("c", seen).handle)
    _gateway(steps, Recorder("plain", seen)).request(_call_flow())
    assert seen == ["a.handle", "plain.request"]


class Awaits:
    """A call step whose work ends in an awaitable, as the decide stage's does when its decision
    comes from the policy's worker process."""

    def __init__(self, name: str, seen: list[str], outcome: str = "allow") -> None:
        self.name, self.seen, self.outcome = name, seen, outcome

    def handle(self, flow, call):
        self.seen.append(f"{self.name}.handle")
        return self._finish(flow)

    async def _finish(self, flow) -> None:
        await asyncio.sleep(0)
        self.seen.append(f"{self.name}.awaited")
        if self.outcome == "raise":
            raise RuntimeError("boom")
        if self.outcome == "refuse":
            flow.response = tflow.tresp()


def test_gateway_returns_an_awaitable_only_when_a_step_did_and_runs_the_later_steps_after_it():
    seen: list[str] = []
    sync = _gateway(CallSteps(Handles("a", seen).handle, Handles("b", seen).handle), Recorder("plain", seen))
    assert sync.request(_call_flow()) is None and seen == ["a.handle", "b.handle", "plain.request"]
    seen.clear()
    steps = CallSteps(Handles("a", seen).handle, Awaits("b", seen).handle, Handles("c", seen).handle)
    gateway = _gateway(steps, Recorder("plain", seen))
    pending = gateway.request(_call_flow())
    assert pending is not None and seen == ["a.handle", "b.handle"]  # nothing after b has run yet
    asyncio.run(pending)
    assert seen == ["a.handle", "b.handle", "b.awaited", "c.handle", "plain.request"]


def test_no_call_step_runs_after_an_awaited_one_that_answered_the_call():
    seen: list[str] = []
    steps = CallSteps(Awaits("a", seen, "refuse").handle, Handles("b", seen).handle)
    flow = _call_flow()
    asyncio.run(_gateway(steps, Recorder("plain", seen)).request(flow))
    # Plain steps (redaction, audit) still see the refused call, as on the synchronous path.
    assert seen == ["a.handle", "a.awaited", "plain.request"]
    assert flow.response is not None and flow.response.status_code == 200


def test_an_awaited_call_step_that_fails_refuses_the_call_in_the_providers_shape():
    seen: list[str] = []
    steps = CallSteps(Awaits("a", seen, "raise").handle, Handles("b", seen).handle)
    flow = _call_flow()
    asyncio.run(_gateway(steps, Recorder("plain", seen)).request(flow))
    assert seen == ["a.handle", "a.awaited", "plain.request"]
    assert flow.response is not None and flow.response.status_code == 500
    assert flow.response.headers["x-tollgate-error"] == "internal_error"
    assert flow.metadata[CALL].error == "internal error in Awaits"


def test_tollgates_pipeline_is_one_addon_with_its_call_steps_in_order():
    gateway = pipeline.gateway()
    call_steps = gateway.steps["request"][2].__self__
    assert [type(step.__self__).__name__ for step in call_steps.steps] == [
        "AuditGate",
        "Identify",
        "Override",
        "Route",
        "Decide",
        "AskForUsage",
        "Credential",
        "UpstreamWatch",
    ]
    assert gateway.steps["requestheaders"][3].__self__ is call_steps
    for hook in (
        "load",
        "configure",
        "running",
        "done",
        "requestheaders",
        "request",
        "responseheaders",
        "response",
        "error",
        "http_connect",
        "server_connect",
        "server_disconnected",
        "websocket_message",
        "websocket_end",
    ):
        assert callable(getattr(gateway, hook)), hook


# ---- mitmproxy's per-response streaming notice


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_stream_tap_drops_only_mitmproxys_streaming_notice_while_loaded():
    logger = logging.getLogger(MITMPROXY_CONNECTION_LOGGER)
    lines, level = _Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    tap, other = StreamTap(Shared()), StreamTap(Shared())
    try:
        tap.load(None)
        other.load(None)  # a second Tollgate in the same process neither wraps nor unwraps twice
        other.done()
        client = {"extra": {"client": ("127.0.0.1", 5000)}}
        logger.log(logging.INFO, "Streaming response from api.openai.com.", **client)
        logger.log(logging.INFO, "server connect %s", "api.openai.com:443", **client)
        logger.log(logging.INFO, "Streaming request to api.openai.com.")  # a large upload: worth saying
        logger.log(logging.DEBUG, ["Streaming response from", "not a string"])
        assert lines.lines == [
            "server connect api.openai.com:443",
            "Streaming request to api.openai.com.",
            "['Streaming response from', 'not a string']",
        ]
        tap.done()
        logger.log(logging.INFO, "Streaming response from api.openai.com.")
        assert lines.lines[-1] == "Streaming response from api.openai.com."
        assert "log" not in vars(logger)
    finally:
        tap.done()
        logger.removeHandler(lines)
        logger.setLevel(level)


# ---- request rewriting in one pass over the header fields


def configured(config: Config | None = None) -> Shared:
    """What Settings makes of a configuration, without an audit log."""
    shared = Shared()
    shared.apply(Loaded.build(config or Config()), None)
    return shared


def _openai_flow(*fields: tuple[str, str], shared: Shared | None = None) -> tuple[object, Call]:
    flow = tflow.tflow()
    flow.request.host, flow.request.port, flow.request.path = "api.openai.com", 443, "/v1/chat/completions"
    flow.request.headers.fields = tuple((k.encode(), v.encode()) for k, v in fields)
    call = Call(
        provider="openai",
        host="api.openai.com",
        method="POST",
        path="/v1/chat/completions",
        headers=header_index(flow.request.headers.fields),
        loaded=(shared or configured()).loaded,
    )  # as Classify reads them
    call.auth, call.client = "virtual_key", "alice"
    flow.metadata[CALL] = call
    return flow, call


def test_credential_swaps_every_credential_and_side_header_for_the_pooled_key():
    shared = configured(Config(providers={"openai": {"keys": ["sk-real"]}}))
    flow, call = _openai_flow(
        ("Host", "api.openai.com"),
        ("AUTHORIZATION", "Bearer tg-virtual"),
        ("X-Gemini-Key", "AIza-wrong-provider"),
        ("Content-Type", "application/json"),
        ("authorization", "Bearer second"),
        shared=shared,
    )
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.response is None
    assert flow.request.headers.fields == (
        (b"Host", b"api.openai.com"),
        (b"Content-Type", b"application/json"),
        (b"authorization", b"Bearer sk-real"),
    )
    assert call.upstream_key == fingerprint("sk-real")


def test_credential_prefers_the_callers_side_header_and_removes_it():
    shared = configured(Config(providers={"openai": {"keys": ["sk-pooled"]}}))
    flow, call = _openai_flow(("authorization", "Bearer tg-virtual"), ("x-openai-key", "  sk-own  "), shared=shared)
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.request.headers.fields == ((b"authorization", b"Bearer sk-own"),)
    assert call.upstream_key == fingerprint("sk-own")


@pytest.mark.parametrize(
    ("upstream", "host_header"),
    [
        ("https://127.0.0.1:8443", "127.0.0.1:8443"),
        ("https://llm-gateway.internal", "llm-gateway.internal"),
        ("http://10.0.0.7:8080", "10.0.0.7:8080"),
    ],
)
def test_route_retargets_host_port_scheme_and_the_host_header(upstream, host_header):
    shared = configured()
    flow, call = _openai_flow(("Host", "api.openai.com"), ("content-type", "application/json"), shared=shared)
    call.upstream = upstream
    CallSteps(Route(shared).handle).at_request(flow)
    scheme, _, _rest = upstream.partition("://")
    assert (flow.request.scheme, flow.request.host_header, call.upstream) == (scheme, host_header, upstream)
    assert flow.request.url == f"{upstream}/v1/chat/completions"
    assert flow.request.headers.fields[1] == (b"content-type", b"application/json")


@pytest.mark.parametrize(
    ("scheme", "port", "upstream"),
    [
        ("https", 443, "https://api.openai.com"),
        ("https", 8443, "https://api.openai.com:8443"),
        ("http", 80, "http://api.openai.com"),
        ("http", 443, "http://api.openai.com:443"),  # not the scheme's port: it must be named
    ],
)
def test_route_without_an_upstream_records_the_host_and_port_the_client_asked_for(scheme, port, upstream):
    flow, call = _openai_flow(("Host", "api.openai.com"))
    flow.request.scheme, flow.request.port = scheme, port
    CallSteps(Route(Shared()).handle).at_request(flow)
    assert call.upstream == upstream
    assert (flow.request.scheme, flow.request.host, flow.request.port) == (scheme, "api.openai.com", port)


def test_route_retargets_an_http2_requests_authority_and_adds_no_host_header():
    flow, call = _openai_flow(("content-type", "application/json"))
    flow.request.http_version, flow.request.authority = "HTTP/2.0", "api.openai.com"
    call.upstream = "https://127.0.0.1:8443"
    CallSteps(Route(configured()).handle).at_request(flow)
    assert (flow.request.authority, flow.request.host, flow.request.port) == ("127.0.0.1:8443", "127.0.0.1", 8443)
    assert flow.request.headers.fields == ((b"content-type", b"application/json"),)


def test_a_rewritten_body_keeps_what_the_client_sent_but_the_change():
    """Lone surrogates once failed the rewrite (the call was refused); integers beyond 64 bits and
    NaN must not be rounded or nulled on the way."""
    from tollgate.json_codec import read_request_json

    flow, call = _openai_flow(("Content-Type", "application/json"))
    sent = b'{"model":"gpt-4o","seed":123456789012345678901234567890,"temperature":NaN,"user":"\\ud800"}'
    call.body = read_request_json(sent)
    call.body["model"] = "gpt-4o-mini"
    write_body(flow.request, call)
    assert flow.request.raw_content == sent.replace(b'"gpt-4o"', b'"gpt-4o-mini"')
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))


@pytest.mark.parametrize(
    ("fields", "length"),
    [
        ((("Content-Type", "application/json"), ("Content-Length", "999"), ("content-length", "999")), True),
        ((("Content-Type", "application/json"),), True),
        ((("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")), False),
        ((("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", "5")), True),
    ],
)
def test_a_rewritten_body_goes_encoded_as_the_client_sent_it_and_with_its_length(fields, length):
    import gzip
    import json

    flow, call = _openai_flow(*fields)
    call.body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "grüß dich"}]}
    write_body(flow.request, call)
    sent = flow.request.raw_content
    encoded = flow.request.headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(sent) if encoded else sent) == call.body
    assert flow.request.headers.get_all("content-length") == ([str(len(sent))] if length else [])
    assert flow.request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("identified", [True, False])
def test_a_saved_flow_shows_where_the_credentials_were_whether_or_not_identify_looked(identified):
    from tollgate.providers.base import REDACTED
    from tollgate.stages.classify import Classify
    from tollgate.stages.identify import Identify
    from tollgate.stages.redact import Redact

    # Without a configuration Classify refuses before Identify looks.
    shared = configured() if identified else Shared()
    flow = tflow.tflow()
    flow.request.scheme, flow.request.host, flow.request.port = "https", "generativelanguage.googleapis.com", 443
    flow.request.path, flow.request.content = "/v1beta/m", b""
    flow.request.query = [("key", "AIza-secret"), ("alt", "sse")]
    flow.request.headers.fields = ((b"x-goog-api-key", b"AIza-other"), (b"accept", b"*/*"))
    Classify(shared).request(flow)
    if identified:
        CallSteps(Identify(shared).handle).at_request(flow)
    call = flow.metadata[CALL]
    assert call.credential_positions == (("x-goog-api-key", "query:key") if identified else None)
    flow.response = flow.response or tflow.tresp()
    Redact(shared).responseheaders(flow)
    assert flow.request.headers.fields == ((b"accept", b"*/*"), (b"x-goog-api-key", REDACTED.encode()))
    assert dict(flow.request.query) == {"key": REDACTED, "alt": "sse"}


def _refused_flow(*fields: tuple[bytes, bytes], path: str = "/v1/chat/completions"):
    """An OpenAI call as the client sent it, refused by Identify (no such client)."""
    from tollgate.stages.classify import Classify
    from tollgate.stages.identify import Identify

    shared = configured(
        Config(clients=[{"name": "alice", "keys": ["tg-alice-1"]}], providers={"openai": {"keys": ["sk-real"]}})
    )
    flow = tflow.tflow()
    flow.request.scheme, flow.request.host, flow.request.port = "https", "api.openai.com", 443
    flow.request.path, flow.request.content = path, b""
    flow.request.headers.fields = fields
    Classify(shared).request(flow)
    CallSteps(Identify(shared).handle).at_request(flow)
    return shared, flow


def test_a_refused_call_shows_where_every_credential_was_whichever_provider_it_is_for():
    from tollgate.providers.base import REDACTED
    from tollgate.stages.redact import Redact

    sent = (
        (b"Authorization", b"Bearer tg-unknown"),
        (b"X-OpenAI-Key", b"sk-side"),
        (b"X-AWS-Secret-Key", b"aws-secret"),
        (b"x-api-key", b"tg-alice-1"),
        (b"X-Goog-Api-Key", b"tg-alice-1"),
        (b"x-amz-security-token", b"token"),
        (b"Cookie", b"session=1"),
        (b"Proxy-Authorization", b"Basic Y2Fyb2w6cHc="),
        (b"accept", b"*/*"),
        (b"Sec-WebSocket-Protocol", b"realtime, openai-insecure-api-key.sk-ws, openai-beta.realtime-v1"),
    )
    shared, flow = _refused_flow(*sent, path="/v1/chat/completions?key=tg-alice-1&x=1")
    assert flow.response.status_code == 401
    Redact(shared).responseheaders(flow)
    fields = flow.request.headers.fields
    assert (b"accept", b"*/*") in fields
    protocols = b"realtime, openai-insecure-api-key.[redacted by Tollgate], openai-beta.realtime-v1"
    assert (b"Sec-WebSocket-Protocol", protocols) in fields
    redacted = [name for name, value in fields if value == REDACTED.encode()]
    assert redacted == [
        b"authorization",
        b"x-openai-key",
        b"x-aws-secret-key",
        b"x-api-key",
        b"x-goog-api-key",
        b"x-amz-security-token",
        b"cookie",
        b"proxy-authorization",
    ]
    assert dict(flow.request.query) == {"key": REDACTED, "x": "1"}
    assert flow.request.raw_content is None


def test_a_sent_call_shows_where_the_client_put_its_credentials_not_tollgates_key():
    from tollgate.providers.base import REDACTED
    from tollgate.stages.credential import Credential
    from tollgate.stages.redact import Redact

    shared, flow = _refused_flow((b"x-api-key", b"tg-other"), (b"X-Anthropic-Key", b"sk-side"))
    flow.response = None
    call = flow.metadata[CALL]
    call.client, call.auth = "alice", "virtual_key"
    CallSteps(Credential(shared).handle).at_request(flow)
    assert flow.request.headers["authorization"] == "Bearer sk-real"
    redact = Redact(shared)
    redact.request(flow)
    flow.response = tflow.tresp()
    redact.responseheaders(flow)
    assert [(n, v) for n, v in flow.request.headers.fields if v == REDACTED.encode()] == [
        (b"x-api-key", REDACTED.encode()),
        (b"x-anthropic-key", REDACTED.encode()),
    ]
    assert "authorization" not in flow.request.headers


def test_a_call_still_open_at_shutdown_is_redacted():
    from tollgate.stages.redact import Redact

    shared, flow = _refused_flow((b"authorization", b"Bearer tg-alice-1"))
    flow.response = None
    flow.request.headers["authorization"] = "Bearer sk-real"  # as Credential leaves it
    redact = Redact(shared)
    redact.request(flow)
    redact.done()
    assert flow.request.headers["authorization"] == "[redacted by Tollgate]"
    assert not redact._sent


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "openai-insecure-api-key.", "OpenAI-Insecure-API-Key."]),
            st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","), max_size=12),
        ),
        max_size=5,
    )
)
def test_a_websocket_subprotocol_keeps_its_entries_but_no_key(entries):
    from tollgate.stages.redact import redacted_protocols

    value = b", ".join((prefix + rest).encode() for prefix, rest in entries)
    out = redacted_protocols(value)
    if not any(prefix for prefix, _ in entries):
        assert out == value
        return
    kept = out.split(b", ")
    assert len(kept) == len(entries)
    for (prefix, rest), entry in zip(entries, kept, strict=False):
        assert entry == (prefix.encode() + b"[redacted by Tollgate]" if prefix else rest.encode())


def test_every_text_on_the_flow_is_encodable_and_the_record_unchanged():
    from mitmproxy.io import tnetstring

    from tollgate.stages.audit import encodable, storable

    record = {
        "model": "gpt-4o\ud800",
        "client": "jürgen",
        "deny_reasons": ["model gpt-4o\udcff"],
        "status": 403,
        "groups": ["a"],
    }
    fixed = storable(record)
    tnetstring.dumps(fixed)
    assert fixed == {
        "model": "gpt-4o\\ud800",
        "client": "jürgen",
        "deny_reasons": ["model gpt-4o\\udcff"],
        "status": 403,
        "groups": ["a"],
    }
    assert record["model"] == "gpt-4o\ud800" and record["deny_reasons"] == ["model gpt-4o\udcff"]
    plain = {"model": "gpt-4o", "client": "jürgen", "groups": ["a"]}
    assert storable(plain) is plain
    assert encodable("alice · openai/gpt-4o\ud800") == "alice · openai/gpt-4o\\ud800"


# ---- the stream callable


class CountingReader(UsageReader):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def result(self) -> Usage:
        return Usage(output_tokens=len(self.chunks))


def test_usage_tap_records_once_at_the_end_and_lets_go_of_the_reader_and_the_call():
    recorded: list[int | None] = []
    reader = CountingReader()
    tap = UsageTap(reader, None, lambda r: recorded.append(r.result().output_tokens))
    assert tap(b"a") == b"a" and tap(b"b") == b"b"
    assert tap(b"") == b""
    assert recorded == [2] and reader.chunks == [b"a", b"b"]
    # The flow outlives the call until the garbage collector frees it: the tap keeps nothing of the call.
    assert tap.reader is None and tap._on_end is None
    tap.end()  # a later error hook: nothing is recorded twice
    assert recorded == [2]


def test_a_stream_broken_off_records_what_was_read_when_it_ends_by_error():
    flow = _call_flow()
    call = flow.metadata[CALL]
    flow.response = tflow.tresp()
    reader = CountingReader()
    flow.response.stream = tap = UsageTap(reader, None, partial(record_usage, call))
    tap(b"data: {}\n\n")
    StreamTap(Shared()).error(flow)
    assert call.usage.output_tokens == 1 and tap.reader is None
