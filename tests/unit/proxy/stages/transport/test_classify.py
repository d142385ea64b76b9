"""Classify on mitmproxy's test flows: which provider, endpoint and model a call is and what it asks
for; an upload streamed unread decided at its headers; a request it cannot read exactly refused
(400 `bad_request`) in the provider's own shape; no configuration, no call served (500)."""

from __future__ import annotations

import base64
import gzip
import json
import sys
import zlib

import brotli
import pytest
from mitmproxy import http
from mitmproxy.http import Headers
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from tollgate.formats.bodies.raw_headers import header_index
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.proxy import patches
from tollgate.proxy.flows import CALL, MISDIRECTED_AS
from tollgate.proxy.stages.transport.classify import HEAD_TOO_LARGE, MAX_DECODED_BODY, Classify
from tollgate.proxy.state import Shared

from ..conftest import HOSTS, PROVIDERS, VALID, api_flow, assert_refused, classified, configured

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# ---- each provider's main endpoint, read exactly

MAIN_ENDPOINTS = {
    "openai": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "stream": True,
            "max_tokens": 50,
            "max_completion_tokens": 80,
        },
        Classification("chat.completions", "gpt-4o", RequestFacts(2, True, True, True, 80), "openai-api"),
    ),
    "gemini": (
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}] * 3,
            "systemInstruction": {"parts": [{"text": "Be terse."}]},
            "generationConfig": {"maxOutputTokens": 64},
        },
        Classification(
            "streamGenerateContent", "gemini-2.0-flash", RequestFacts(3, True, False, True, 64), "gemini-generate"
        ),
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1024},
        Classification(
            "messages", "claude-sonnet-4-5", RequestFacts(1, False, False, False, 1024), "anthropic-messages"
        ),
    ),
    "bedrock": (
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        {
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be terse."}],
            "inferenceConfig": {"maxTokens": 30},
            "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]},
        },
        Classification(
            "converse",
            "anthropic.claude-3-haiku-20240307-v1:0",
            RequestFacts(1, True, True, False, 30),
            "bedrock-converse",
        ),
    ),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_providers_main_endpoint_is_read_exactly(provider: str) -> None:
    shared = configured()
    path, body, expected = MAIN_ENDPOINTS[provider]
    flow = api_flow(HOSTS[provider], path, body, headers=(("Authorization", "Bearer tg-x"),))
    Classify(shared).request(flow)
    assert flow.response is None
    call = flow.metadata[CALL]
    assert (call.route.target.provider, call.host, call.method, call.path) == (provider, HOSTS[provider], "POST", path)
    assert call.classification == expected
    assert call.request.body == body
    assert call.request.headers == header_index(flow.request.headers.fields)
    assert call.request.headers[b"authorization"] == b"Bearer tg-x"
    assert call.loaded is shared.loaded
    assert (call.request.streamed_upload, flow.request.stream, call.answer.answered_by_tollgate, call.answer.error) == (
        False,
        False,
        False,
        None,
    )


def test_an_openai_compatible_endpoint_of_another_provider_speaks_the_openai_format() -> None:
    body = {"model": "gemini-2.0-flash", "messages": [{"role": "system", "content": "x"}], "stream": True}
    call = classified(configured(), api_flow(HOSTS["gemini"], "/v1beta/openai/chat/completions", body))
    assert call.classification == Classification(
        "chat.completions", "gemini-2.0-flash", RequestFacts(1, True, False, True, None), "openai-api"
    )


def test_a_gzip_encoded_body_is_read_decoded() -> None:
    path, body, expected = MAIN_ENDPOINTS["openai"]
    flow = api_flow(HOSTS["openai"], path, headers=(("Content-Encoding", "gzip"),))
    flow.request.raw_content = gzip.compress(json.dumps(body).encode())
    call = classified(configured(), flow)
    assert call.classification == expected and call.request.body == body


def encoded(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip, two members":
        return gzip.compress(data[:7]) + gzip.compress(data[7:])
    if encoding == "deflate, raw":
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return z.compress(data) + z.flush()
    return {"deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}[encoding](data)


@pytest.mark.parametrize("encoding", ["gzip, two members", "deflate", "deflate, raw", "br", "zstd"])
def test_a_body_in_any_content_coding_providers_take_is_read_decoded(encoding: str) -> None:
    path, body, expected = MAIN_ENDPOINTS["openai"]
    flow = api_flow(HOSTS["openai"], path, headers=(("Content-Encoding", encoding.partition(",")[0]),))
    flow.request.raw_content = encoded(encoding, json.dumps(body).encode())
    call = classified(configured(), flow)
    assert call.classification == expected and call.request.body == body


def test_a_listing_has_no_model_and_no_body() -> None:
    call = classified(configured(), api_flow(HOSTS["openai"], "/v1/models", method="GET"))
    assert call.classification == Classification(endpoint="models", wire_format="openai-api")
    assert (call.method, call.request.body) == ("GET", None)


def test_a_host_that_is_no_providers_is_left_alone() -> None:
    flow = api_flow("example.com", "/v1/chat/completions", {"model": "gpt-4o"})
    classify = Classify(configured())
    classify.requestheaders(flow)
    classify.request(flow)
    assert CALL not in flow.metadata and flow.response is None


def test_a_flow_already_answered_or_classified_is_not_classified_again() -> None:
    shared = configured()
    answered = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o"})
    answered.response = tflow.tresp()
    Classify(shared).request(answered)
    assert CALL not in answered.metadata

    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o"})
    first = classified(shared, flow)
    flow.request.raw_content = b"not json"  # read once: a second look would refuse it
    Classify(shared).request(flow)
    assert flow.metadata[CALL] is first and flow.response is None


# ---- the host, as DNS reads it


def test_the_host_is_read_in_lower_case_without_its_trailing_dot_and_goes_upstream_so() -> None:
    flow = api_flow("API.OpenAI.COM.", "/v1/models", method="GET")
    call = classified(configured(), flow)
    assert call.host == "api.openai.com"
    assert flow.request.host == "api.openai.com"
    assert flow.request.headers.fields == ((b"Host", b"api.openai.com"),)


def test_a_host_header_naming_the_host_called_in_another_case_and_with_its_port_is_read() -> None:
    flow = api_flow(HOSTS["anthropic"], "/v1/models", method="GET")
    flow.request.headers["Host"] = "API.Anthropic.com.:443"
    call = classified(configured(), flow)
    assert (call.route.target.provider, call.host, call.classification.endpoint) == (
        "anthropic",
        "api.anthropic.com",
        "models",
    )


# ---- one host throughout: the connection's, the TLS server name's, the Host header's


def assert_misdirected(flow: http.HTTPFlow, provider: str, host: str, named: str) -> None:
    """Refused 421 in the provider's shape, as a call to `host`, naming what the request named."""
    message = f"Tollgate refused this request: it names more than one host ({named}). Call {host} by its name, through the proxy."
    assert_refused(flow, "openai" if provider == "acme" else provider, "misdirected", message)  # acme: OpenAI's shape
    call = flow.metadata[CALL]
    assert (call.host, call.route.requested.provider, call.answer.error) == (host, provider, f"misdirected: {named}")
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("misdirected",))


def connected(target: str, sni: str | None, *hosts: str, authority: str = "") -> http.HTTPFlow:
    """A chat call in a tunnel to `target` (mitmproxy's request.host), with this server name and Host header fields."""
    flow = api_flow(HOSTS["openai"], *VALID["openai"])
    flow.request.host = target
    flow.request.headers.fields = tuple((b"Host", h.encode()) for h in hosts) + flow.request.headers.fields[1:]
    flow.request.authority = authority
    flow.client_conn.sni = sni
    return flow


MISDIRECTED = [
    # curl --connect-to api.openai.com:443:127.0.0.1:8443: the address the caller chose.
    (
        ("127.0.0.1", "api.openai.com", "api.openai.com"),
        ("openai", "api.openai.com", "connection to 127.0.0.1, TLS server name api.openai.com, Host api.openai.com"),
    ),
    (
        ("127.0.0.1", "api.openai.com"),
        ("openai", "api.openai.com", "connection to 127.0.0.1, TLS server name api.openai.com"),
    ),
    # One provider's name connected to, another's asked for: the Host header's provider refuses it.
    (
        ("api.openai.com", "api.anthropic.com", "api.anthropic.com"),
        (
            "anthropic",
            "api.anthropic.com",
            "connection to api.openai.com, TLS server name api.anthropic.com, Host api.anthropic.com",
        ),
    ),
    (
        ("api.openai.com", "api.openai.com", "attacker.example"),
        (
            "openai",
            "api.openai.com",
            "connection to api.openai.com, TLS server name api.openai.com, Host attacker.example",
        ),
    ),
    (
        ("api.openai.com", None, "api.anthropic.com:443"),
        ("anthropic", "api.anthropic.com", "connection to api.openai.com, no TLS server name, Host api.anthropic.com"),
    ),
    # Two Host header fields: a server may read either.
    (
        ("api.openai.com", "api.openai.com", "api.openai.com", "attacker.example"),
        (
            "openai",
            "api.openai.com",
            "connection to api.openai.com, TLS server name api.openai.com, Host api.openai.com, attacker.example",
        ),
    ),
    # A Host header that is no host is left to `check_transport` (400): the others still disagree.
    (
        ("10.1.2.3", "generativelanguage.googleapis.com", "generativelanguage.googleapis.com:https"),
        (
            "gemini",
            "generativelanguage.googleapis.com",
            "connection to 10.1.2.3, TLS server name generativelanguage.googleapis.com",
        ),
    ),
]


@pytest.mark.parametrize(("names", "expected"), MISDIRECTED)
def test_a_request_naming_another_host_than_a_governed_one_is_refused_421(names, expected) -> None:
    flow = connected(*names)
    classify = Classify(configured())
    classify.requestheaders(flow)
    classify.request(flow)  # refused already: not read
    assert_misdirected(flow, *expected)


def test_an_http2_authority_and_a_host_header_naming_other_hosts_are_refused() -> None:
    flow = connected("api.openai.com", "api.openai.com", "attacker.example", authority="api.openai.com")
    Classify(configured()).requestheaders(flow)
    named = "connection to api.openai.com, TLS server name api.openai.com, Host api.openai.com, attacker.example"
    assert_misdirected(flow, "openai", "api.openai.com", named)
    flow = connected("api.openai.com", "api.openai.com", authority="generativelanguage.googleapis.com")
    Classify(configured()).requestheaders(flow)
    named = "connection to api.openai.com, TLS server name api.openai.com, Host generativelanguage.googleapis.com"
    assert_misdirected(flow, "gemini", "generativelanguage.googleapis.com", named)


@pytest.mark.parametrize(
    "names",
    [
        ("api.openai.com", "api.openai.com", "api.openai.com"),
        ("API.OpenAI.com.", "api.openai.com", "api.openai.com:443"),  # one host, written otherwise
        ("api.openai.com", None, "api.openai.com"),  # no server name: the connection's and the Host header's
        ("api.openai.com", "api.openai.com"),  # no Host header (HTTP/1.0)
    ],
)
def test_a_call_naming_one_host_throughout_is_read(names) -> None:
    flow = connected(*names)
    classify = Classify(configured())
    classify.requestheaders(flow)
    assert classified(classify.shared, flow).route.requested.provider == "openai"


def test_a_request_naming_hosts_none_of_which_is_governed_is_left_alone() -> None:
    flow = connected("10.1.2.3", "example.com", "other.example")
    classify = Classify(configured())
    classify.requestheaders(flow)
    classify.request(flow)
    assert (flow.response, flow.request.host) == (None, "10.1.2.3") and CALL not in flow.metadata


def test_a_configured_providers_host_is_governed_as_a_built_in_ones() -> None:
    shared = configured({"providers": {"acme": {"kind": "openai_compatible", "hosts": ["*.acme.example"]}}})
    flow = connected("192.0.2.7", "api.acme.example", "api.acme.example")
    Classify(shared).requestheaders(flow)
    named = "connection to 192.0.2.7, TLS server name api.acme.example, Host api.acme.example"
    assert_misdirected(flow, "acme", "api.acme.example", named)


def test_an_mcp_servers_host_named_with_another_is_left_to_the_mcp_stage_to_refuse() -> None:
    shared = configured({"mcp": {"servers": [{"name": "docs", "url": "https://mcp.example.com/mcp"}]}})
    flow = connected("192.0.2.7", "mcp.example.com", "mcp.example.com")
    Classify(shared).requestheaders(flow)
    assert flow.response is None and CALL not in flow.metadata
    assert flow.metadata[MISDIRECTED_AS] == {
        "governed": "mcp.example.com",
        "named": "connection to 192.0.2.7, TLS server name mcp.example.com, Host mcp.example.com",
    }


# ---- a captured request (./run.sh --capture): named by what it asked for, not the address dialled


def captured(mode: str, host_header: str | None, sni: str | None) -> http.HTTPFlow:
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o"})
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.client_conn.sni = sni
    flow.request.host = "10.213.0.3"  # mitmproxy's: the address the client's resolver gave
    if host_header is None:
        del flow.request.headers["Host"]
    else:
        flow.request.headers["Host"] = host_header
    return flow


@pytest.mark.parametrize("mode", ["transparent", "wireguard", "local:go_client"])
def test_a_captured_call_is_named_by_its_host_header_and_goes_there(mode: str) -> None:
    shared = configured()
    flow = captured(mode, "api.openai.com", "api.openai.com")
    Classify(shared).requestheaders(flow)
    call = classified(shared, flow)
    assert (call.route.target.provider, call.host, flow.request.host, flow.request.port) == (
        "openai",
        "api.openai.com",
        "api.openai.com",
        443,
    )


def test_a_captured_call_without_a_host_header_is_named_by_its_server_name() -> None:
    shared = configured()
    flow = captured("transparent", None, "api.openai.com")
    Classify(shared).requestheaders(flow)
    assert classified(shared, flow).host == "api.openai.com"


def test_a_captured_request_to_a_host_no_one_governs_goes_there_not_to_the_address_dialled() -> None:
    flow = captured("wireguard", "example.com", "example.com")
    classify = Classify(configured())
    classify.requestheaders(flow)
    classify.request(flow)
    assert (flow.request.host, flow.response) == ("example.com", None) and CALL not in flow.metadata


def test_a_captured_call_whose_host_header_names_another_host_than_its_server_name_is_misdirected() -> None:
    flow = captured("wireguard", "example.com", "api.openai.com")
    classify = Classify(configured())
    classify.requestheaders(flow)
    classify.request(flow)
    named = "TLS server name api.openai.com, Host example.com"  # the address dialled names nothing
    assert_misdirected(flow, "openai", "api.openai.com", named)


def test_a_captured_call_whose_host_header_is_not_a_host_is_refused_as_its_server_names_provider() -> None:
    shared = configured()
    flow = captured("transparent", "api.openai.com:https", "api.openai.com")
    Classify(shared).requestheaders(flow)
    Classify(shared).request(flow)
    assert_refused(
        flow,
        "openai",
        "bad_request",
        "Tollgate cannot read this request exactly and did not forward it: the Host header is not a host.",
    )


# ---- uploads streamed unread, decided at their headers

UPLOADS = [
    ("openai", "/v1/files", Classification("files", None, RequestFacts(), "openai-api", ("model", "request"))),
    (
        "gemini",
        "/upload/v1beta/files",
        Classification("files.upload", wire_format="gemini-generate", unread=("model", "request")),
    ),
    ("anthropic", "/v1/files", Classification("files", wire_format="anthropic-messages", unread=("model", "request"))),
    (
        "bedrock",
        "/model/amazon.nova-sonic-v1%3A0/invoke-with-bidirectional-stream",
        Classification(
            "invoke-with-bidirectional-stream",
            "amazon.nova-sonic-v1:0",
            RequestFacts(stream=True),
            "bedrock-invoke",
            ("request",),
        ),
    ),
]


@pytest.mark.parametrize(("provider", "path", "expected"), UPLOADS)
def test_an_upload_is_classified_at_its_headers_and_streamed_upstream_unread(provider, path, expected) -> None:
    shared = configured()
    flow = api_flow(HOSTS[provider], path, headers=(("Content-Type", "multipart/form-data; boundary=b"),))
    flow.request.raw_content = None  # mitmproxy has not read the body at `requestheaders`
    classify = Classify(shared)
    classify.requestheaders(flow)
    call = flow.metadata[CALL]
    assert flow.response is None
    assert (call.route.target.provider, call.path, call.classification) == (provider, path, expected)
    assert call.request.streamed_upload is True and flow.request.stream is True
    assert call.request.body is None and call.loaded is shared.loaded
    classify.request(flow)  # the call made at its headers is the call
    assert flow.metadata[CALL] is call and flow.response is None


def test_a_call_that_is_no_upload_waits_for_its_body() -> None:
    flow = api_flow(HOSTS["openai"], "/v1/files", method="GET")  # the listing, not an upload
    Classify(configured()).requestheaders(flow)
    assert CALL not in flow.metadata and flow.request.stream is False


def test_an_upload_refused_at_its_headers_is_not_streamed() -> None:
    flow = api_flow(HOSTS["openai"], "/v1/files", scheme="http", port=80)
    flow.request.raw_content = None
    Classify(configured()).requestheaders(flow)
    call = flow.metadata[CALL]
    assert flow.response is not None and flow.response.status_code == 400
    assert call.request.streamed_upload is False and flow.request.stream is False


# ---- what cannot be read exactly: 400 bad_request in the provider's own shape


def plain_http(flow) -> None:
    flow.request.scheme, flow.request.port = "http", 80


def https_url_in_cleartext(flow) -> None:
    # `POST https://host/... HTTP/1.1` sent to the proxy over plain TCP, not through CONNECT.
    flow.client_conn.timestamp_tls_setup = None  # what `tls_established` reads


def utf16_body(flow) -> None:
    flow.request.raw_content = json.dumps(json.loads(flow.request.raw_content)).encode("utf-16")


def trace(flow) -> None:
    flow.request.method = "TRACE"


def method_override(flow) -> None:
    flow.request.headers["X-HTTP-Method-Override"] = "GET"


def another_port(flow) -> None:
    flow.request.headers["Host"] = f"{flow.request.host}:8443"


def two_objects(flow) -> None:
    flow.request.raw_content = flow.request.raw_content + b'{"model":"other"}'


def an_array(flow) -> None:
    flow.request.raw_content = b"[" + flow.request.raw_content + b"]"


def bad_gzip(flow) -> None:
    flow.request.headers["Content-Encoding"] = "gzip"  # the body is plain JSON


def base64_encoding(flow) -> None:
    flow.request.headers["Content-Encoding"] = "base64"  # a Python codec mitmproxy would decode; no provider does
    flow.request.raw_content = base64.b64encode(flow.request.raw_content)


def truncated_gzip(flow) -> None:
    flow.request.headers["Content-Encoding"] = "gzip"
    flow.request.raw_content = gzip.compress(flow.request.raw_content)[:-4]


def gzip_then_more(flow) -> None:
    flow.request.headers["Content-Encoding"] = "gzip"
    flow.request.raw_content = gzip.compress(flow.request.raw_content) + b"{}"


def gzip_bomb(flow) -> None:
    flow.request.headers["Content-Encoding"] = "gzip"
    flow.request.raw_content = gzip.compress(flow.request.raw_content[:-1] + b" " * MAX_DECODED_BODY + b"}", 1)


def trailers(flow) -> None:
    flow.request.trailers = Headers(x_api_key="tg-key-in-a-trailer")


def h2c_upgrade(flow) -> None:
    flow.request.headers["Upgrade"] = "h2c"


def websocket_upgrade(flow) -> None:
    flow.request.headers["Upgrade"] = "websocket"  # only the Realtime API is upgraded


FAULTS = [
    (plain_http, "LLM APIs are called over HTTPS; Tollgate refuses plain HTTP"),
    (
        https_url_in_cleartext,
        "the https:// request came to the proxy in cleartext, not through CONNECT; Tollgate refuses plain HTTP",
    ),
    (utf16_body, "the body is UTF-16; Tollgate reads JSON in UTF-8 with no byte order mark (RFC 8259)"),
    (trace, "Tollgate does not forward TRACE requests"),
    (method_override, "the request asks to be taken for another method (X-HTTP-Method-Override)"),
    (another_port, "the Host header names another host than the one called"),
    (two_objects, "the body is not one JSON object"),
    (an_array, "the body is not a JSON object"),
    (bad_gzip, "the body's Content-Encoding cannot be decoded"),
    (base64_encoding, "the body's Content-Encoding cannot be decoded"),
    (truncated_gzip, "the body's Content-Encoding cannot be decoded"),
    (gzip_then_more, "the body's Content-Encoding cannot be decoded"),
    (gzip_bomb, "the body decodes to more than 64 MiB"),
    (trailers, "Tollgate does not forward request trailers"),
    (h2c_upgrade, "Tollgate does not upgrade this connection to another protocol"),
    (websocket_upgrade, "Tollgate does not upgrade this connection to another protocol"),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("fault", "detail"), FAULTS, ids=[f.__name__ for f, _ in FAULTS])
@pytest.mark.slow
def test_a_request_that_cannot_be_read_exactly_is_refused_400_in_the_providers_shape(provider, fault, detail) -> None:
    path, body = VALID[provider]
    flow = api_flow(HOSTS[provider], path, body)
    fault(flow)
    Classify(configured()).request(flow)
    call = flow.metadata[CALL]
    assert_refused(
        flow, provider, "bad_request", f"Tollgate cannot read this request exactly and did not forward it: {detail}."
    )
    assert call.answer.error == f"bad request: {detail}"
    assert call.answer.answered_by_tollgate is True
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("bad_request",))  # Tollgate's own refusal
    assert call.request.body is None and call.classification.model is None


def test_a_body_that_is_refused_keeps_the_endpoint_its_path_names_for_the_audit() -> None:
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o", "stream": "yes"})
    Classify(configured()).request(flow)
    call = flow.metadata[CALL]
    assert flow.response.status_code == 400
    assert call.classification == Classification(endpoint="chat.completions")
    assert call.answer.error == "bad request: 'stream' is not a boolean"


def test_a_refused_upgrade_keeps_the_endpoint_its_path_names_for_the_audit() -> None:
    flow = api_flow(HOSTS["openai"], *VALID["openai"])
    h2c_upgrade(flow)
    Classify(configured()).request(flow)
    assert flow.response.status_code == 400
    assert flow.metadata[CALL].classification.endpoint == "chat.completions"


def test_the_realtime_websocket_is_the_one_upgrade_let_through() -> None:
    flow = api_flow(
        HOSTS["openai"],
        "/v1/realtime?model=gpt-realtime",
        method="GET",
        headers=(("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")),
    )
    call = classified(configured(), flow)
    assert call.path == "/v1/realtime"
    # Its tools and instructions come in its events, which no decision sees: taken as given.
    facts = RequestFacts(has_system=True, has_tools=True, stream=True, unread=("session_updates",))
    assert call.classification == Classification("realtime", "gpt-realtime", facts, "openai-api")


# ---- no configuration: nothing is served


@pytest.mark.parametrize("provider", PROVIDERS)
def test_without_a_configuration_every_call_is_refused_500_misconfigured(provider: str) -> None:
    flow = api_flow(HOSTS[provider], *VALID[provider])
    Classify(Shared()).request(flow)
    call = flow.metadata[CALL]
    assert_refused(flow, provider, "misconfigured", "Tollgate has no valid configuration; see its console.")
    assert (call.answer.error, call.loaded, call.answer.answered_by_tollgate) == ("no valid configuration", None, True)
    assert call.classification == Classification()


def test_without_a_configuration_an_upload_is_refused_at_its_headers_and_not_streamed() -> None:
    flow = api_flow(HOSTS["openai"], "/v1/files")
    flow.request.raw_content = None
    Classify(Shared()).requestheaders(flow)
    call = flow.metadata[CALL]
    assert flow.response.status_code == 500 and flow.response.headers["x-tollgate-error"] == "misconfigured"
    assert call.request.streamed_upload is False and flow.request.stream is False


# ---- a request whose head passed 64 KiB (patches.bound_message_heads read its first line alone)


def cut(flow: http.HTTPFlow) -> http.HTTPFlow:
    flow.request.headers.clear()
    flow.request.raw_content = b""
    patches.cut_head(flow.request)
    return flow


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_request_whose_head_was_cut_is_refused_431_at_its_headers(provider: str) -> None:
    flow = cut(api_flow(HOSTS[provider], VALID[provider][0] + "?key=AIza-in-the-query"))
    Classify(configured()).requestheaders(flow)
    assert_refused(flow, provider, "headers_too_large", HEAD_TOO_LARGE)
    call = flow.metadata[CALL]
    assert flow.response.status_code == 431
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("headers_too_large",))
    assert call.answer.error == "request headers past 64 KiB"
    assert (call.method, call.path, call.caller.client) == ("POST", VALID[provider][0], None)


def test_a_cut_head_is_refused_whatever_another_addon_answered_and_whatever_the_configuration() -> None:
    flow = cut(api_flow(HOSTS["anthropic"], "/v1/messages"))
    flow.response = http.Response.make(407)  # a proxy login's demand, made of a head never read whole
    Classify(Shared()).requestheaders(flow)
    assert_refused(flow, "anthropic", "headers_too_large", HEAD_TOO_LARGE)


def test_a_cut_head_to_another_host_is_refused_in_plain_text_and_makes_no_call() -> None:
    flow = cut(api_flow("example.com", "/"))
    Classify(configured()).requestheaders(flow)
    assert flow.response.status_code == 431 and flow.response.text == HEAD_TOO_LARGE
    assert CALL not in flow.metadata


def test_a_cut_connect_to_a_provider_is_refused_as_its_call() -> None:
    connect = http.Request(
        HOSTS["openai"], 443, b"CONNECT", b"", b"api.openai.com:443", b"", b"HTTP/1.1", http.Headers(), b"", None, 0, 0
    )
    flow = tflow.tflow(req=connect)
    patches.cut_head(flow.request)
    Classify(configured()).http_connect(flow)
    assert_refused(flow, "openai", "headers_too_large", HEAD_TOO_LARGE)
    assert flow.metadata[CALL].method == "CONNECT"


def test_a_whole_head_is_not_taken_for_a_cut_one() -> None:
    flow = api_flow(HOSTS["openai"], *VALID["openai"])
    Classify(configured()).http_connect(flow)
    assert flow.response is None and CALL not in flow.metadata
