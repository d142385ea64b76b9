"""Redaction: once sent or refused, a flow shows where the credentials were, never what they were."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.test import tflow
from tests.support.examples import examples

from tollgate.configuration.config import Config
from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.upstream.credential import Credential
from tollgate.proxy.state import Shared

from ..conftest import configured


@pytest.mark.parametrize("identified", [True, False])
def test_a_saved_flow_shows_where_the_credentials_were_whether_or_not_identify_looked(identified):
    from tollgate.providers.base import REDACTED
    from tollgate.proxy.stages.identity.identify import Identify
    from tollgate.proxy.stages.routing.redact import Redact
    from tollgate.proxy.stages.transport.classify import Classify

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
    assert call.caller.credential_positions == (("x-goog-api-key", "query:key") if identified else None)
    flow.response = flow.response or tflow.tresp()
    Redact(shared).responseheaders(flow)
    assert flow.request.headers.fields == ((b"accept", b"*/*"), (b"x-goog-api-key", REDACTED.encode()))
    assert dict(flow.request.query) == {"key": REDACTED, "alt": "sse"}


def refused_flow(*fields: tuple[bytes, bytes], path: str = "/v1/chat/completions"):
    """An OpenAI call as the client sent it, refused by Identify (no such client)."""
    from tollgate.proxy.stages.identity.identify import Identify
    from tollgate.proxy.stages.transport.classify import Classify

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
    from tollgate.proxy.stages.routing.redact import Redact

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
    shared, flow = refused_flow(*sent, path="/v1/chat/completions?key=tg-alice-1&x=1")
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
    from tollgate.proxy.stages.routing.redact import Redact

    shared, flow = refused_flow((b"x-api-key", b"tg-other"), (b"X-Anthropic-Key", b"sk-side"))
    flow.response = None
    call = flow.metadata[CALL]
    call.caller.client, call.caller.auth = "alice", "virtual_key"
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
    from tollgate.proxy.stages.routing.redact import Redact

    shared, flow = refused_flow((b"authorization", b"Bearer tg-alice-1"))
    flow.response = None
    flow.request.headers["authorization"] = "Bearer sk-real"  # as Credential leaves it
    redact = Redact(shared)
    redact.request(flow)
    redact.done()
    assert flow.request.headers["authorization"] == "[redacted by Tollgate]"
    assert not redact._sent


def test_a_refused_calls_trailers_leave_the_flow_with_its_body():
    from mitmproxy import http

    from tollgate.proxy.stages.routing.redact import Redact

    shared, flow = refused_flow((b"authorization", b"Bearer tg-alice-1"))
    flow.request.trailers = http.Headers(x_extra="tg-alice-1 after the body")
    Redact(shared).responseheaders(flow)
    assert flow.request.trailers is None and flow.request.raw_content is None


@settings(max_examples=examples(300), deadline=None)
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
    from tollgate.governance.routing.redaction import redacted_protocols

    value = b", ".join((prefix + rest).encode() for prefix, rest in entries)
    out = redacted_protocols(value)
    if not any(prefix for prefix, _ in entries):
        assert out == value
        return
    kept = out.split(b", ")
    assert len(kept) == len(entries)
    for (prefix, rest), entry in zip(entries, kept, strict=False):
        assert entry == (prefix.encode() + b"[redacted by Tollgate]" if prefix else rest.encode())


def test_a_query_credential_written_in_another_case_or_with_googles_dollar_is_redacted():
    from tollgate.providers.base import REDACTED
    from tollgate.proxy.stages.routing.redact import redact

    flow = tflow.tflow()
    flow.request.path = "/v1beta/m?KEY=a&%24key=b&Access_Token=c&%24X-Amz-Signature=d&keys=e&alt=sse"
    redact(flow.request, None)
    assert list(flow.request.query.items(multi=True)) == [
        ("KEY", REDACTED),
        ("$key", REDACTED),
        ("Access_Token", REDACTED),
        ("$X-Amz-Signature", REDACTED),
        ("keys", "e"),
        ("alt", "sse"),
    ]


MCP_CONFIG = {
    "clients": [{"name": "alice", "keys": ["tg-alice-1"]}],
    "mcp": {
        "servers": [
            {"name": "docs", "url": "https://mcp.example.com/mcp", "credential": {"header": {"name": "X-Docs-Key", "value": "real"}}},
            {"name": "wiki", "url": "https://wiki.example.com/mcp", "credential": {"bearer": "real-bearer"}},
        ]
    },
}  # fmt: skip


@pytest.mark.parametrize("path", ["/mcp", "/.well-known/oauth-authorization-server"])
def test_a_request_to_an_mcp_servers_host_keeps_no_credential_of_any_server(path):
    """Its server's URL or another path of its host, answered or open at shutdown: every header a
    credential goes in (the servers' own ones too), and its body, leave the flow."""
    from tollgate.providers.base import REDACTED
    from tollgate.proxy.stages.routing.redact import Redact

    for ending in ("responseheaders", "done"):
        shared = configured(MCP_CONFIG)
        flow = tflow.tflow()
        flow.request.scheme, flow.request.host, flow.request.port = "https", "mcp.example.com", 443
        flow.request.path, flow.request.content = path, b'{"jsonrpc": "2.0"}'
        flow.request.headers.fields = (
            (b"Authorization", b"Bearer own"),
            (b"X-Docs-Key", b"own-key"),
            (b"Cookie", b"s=1"),
            (b"accept", b"*/*"),
        )
        redact = Redact(shared)
        redact.request(flow)
        if ending == "done":
            redact.done()
        else:
            flow.response = tflow.tresp()
            redact.responseheaders(flow)
        assert dict(flow.request.headers) == {
            "accept": "*/*",
            "authorization": REDACTED,
            "cookie": REDACTED,
            "x-docs-key": REDACTED,
        }
        assert flow.request.raw_content is None


def test_an_azure_key_in_ocp_apim_subscription_key_or_its_query_twin_is_a_credential_position():
    from tollgate.governance.routing.redaction import credential_positions, redacted_fields
    from tollgate.providers import PROVIDERS

    assert {"ocp-apim-subscription-key", "query:subscription-key"} <= set(
        PROVIDERS["azure"].credentials.caller.key_positions
    )
    fields = ((b"Ocp-Apim-Subscription-Key", b"azure-key"), (b"accept", b"*/*"))
    present = credential_positions({b"ocp-apim-subscription-key": b"azure-key"}, {"subscription-key": "k"})
    assert present == ("ocp-apim-subscription-key", "query:subscription-key")
    assert redacted_fields(fields, present) == (
        (b"accept", b"*/*"),
        (b"ocp-apim-subscription-key", b"[redacted by Tollgate]"),
    )


def test_an_mcp_request_refused_as_misdirected_is_redacted_whatever_address_it_named():
    from tollgate.providers.base import REDACTED
    from tollgate.proxy.flows import MCP
    from tollgate.proxy.stages.routing.redact import Redact

    flow = tflow.tflow(resp=True)
    flow.request.host = "192.0.2.7"  # the address its CONNECT named; the Mcp stage refused it
    flow.request.headers.fields = ((b"Authorization", b"Bearer own"), (b"X-Docs-Key", b"own-key"))
    flow.metadata[MCP] = []
    Redact(configured(MCP_CONFIG)).responseheaders(flow)
    assert dict(flow.request.headers) == {"authorization": REDACTED, "x-docs-key": REDACTED}
