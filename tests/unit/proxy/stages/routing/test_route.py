"""The route stage: the upstream's scheme, host, port and Host header (or HTTP/2 authority)."""

from __future__ import annotations

import pytest
from mitmproxy.test import tflow, tutils

from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.routing.route import Destination
from tollgate.proxy.stages.transport.classify import Classify
from tollgate.proxy.state import Shared

from ..conftest import configured, openai_flow


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
    flow, call = openai_flow(("Host", "api.openai.com"), ("content-type", "application/json"), shared=shared)
    call.route.upstream = upstream
    CallSteps(Destination(shared).handle).at_request(flow)
    scheme, _, _rest = upstream.partition("://")
    assert (flow.request.scheme, flow.request.host_header, call.route.upstream) == (scheme, host_header, upstream)
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
    flow, call = openai_flow(("Host", "api.openai.com"))
    flow.request.scheme, flow.request.port = scheme, port
    CallSteps(Destination(Shared()).handle).at_request(flow)
    assert call.route.upstream == upstream
    assert (flow.request.scheme, flow.request.host, flow.request.port) == (scheme, "api.openai.com", port)


def test_route_retargets_an_http2_requests_authority_and_adds_no_host_header():
    flow, call = openai_flow(("content-type", "application/json"))
    flow.request.http_version, flow.request.authority = "HTTP/2.0", "api.openai.com"
    call.route.upstream = "https://127.0.0.1:8443"
    CallSteps(Destination(configured()).handle).at_request(flow)
    assert (flow.request.authority, flow.request.host, flow.request.port) == ("127.0.0.1:8443", "127.0.0.1", 8443)
    assert flow.request.headers.fields == ((b"content-type", b"application/json"),)


@pytest.mark.parametrize(
    ("provider", "host", "path", "twin"),
    [
        ("gemini", "generativelanguage.mtls.googleapis.com", "/v1beta/models/m:generateContent",
         "generativelanguage.googleapis.com"),
        ("vertex", "us-central1-aiplatform.mtls.googleapis.com", "/v1/publishers/google/models/m:generateContent",
         "us-central1-aiplatform.googleapis.com"),
    ],
)  # fmt: skip
def test_an_mtls_host_goes_to_its_twin_without_mtls(provider: str, host: str, path: str, twin: str) -> None:
    """Tollgate holds no client certificate: the mTLS host would refuse its call."""
    shared = configured()
    request = tutils.treq(host=host, port=443, path=path, method=b"POST", headers=((b"Host", host.encode()),))
    flow = tflow.tflow(req=request)
    flow.request.scheme, flow.request.content = "https", b"{}"
    Classify(shared).request(flow)
    call = flow.metadata[CALL]
    assert (call.route.target.provider, call.host, flow.response) == (provider, host, None)
    CallSteps(Destination(shared).handle).at_request(flow)
    assert (call.route.upstream, flow.request.host, flow.request.host_header) == (f"https://{twin}", twin, twin)


def test_a_client_certificate_keeps_an_mtls_hosts_calls_there() -> None:
    shared = configured({"providers": {"vertex": {"client_cert": "/etc/tollgate/client.pem"}}})
    host = "us-central1-aiplatform.mtls.googleapis.com"
    request = tutils.treq(host=host, port=443, path="/v1/publishers/google/models/m:generateContent", method=b"POST")
    flow = tflow.tflow(req=request)
    flow.request.scheme, flow.request.content = "https", b"{}"
    Classify(shared).request(flow)
    CallSteps(Destination(shared).handle).at_request(flow)
    assert (flow.metadata[CALL].route.upstream, flow.request.host) == (f"https://{host}", host)


def test_a_governed_answer_goes_without_its_alt_svc_and_another_flows_keeps_it():
    flow, _ = openai_flow(("Host", "api.openai.com"))
    alt_svc = 'h3=":443"; ma=86400'
    fields = ((b"Content-Type", b"application/json"), (b"Alt-Svc", alt_svc.encode()), (b"alt-svc", b'h2=":8443"'))
    flow.response = tutils.tresp(headers=fields)
    Destination(configured()).responseheaders(flow)
    assert flow.response.headers.fields == ((b"Content-Type", b"application/json"),)
    other = tflow.tflow(resp=tutils.tresp(headers=((b"Alt-Svc", alt_svc.encode()),)))
    Destination(configured()).responseheaders(other)
    assert other.response.headers["alt-svc"] == alt_svc
