"""A changed request body is written back as the client sent it, but for the change."""

from __future__ import annotations

import pytest

from tollgate.proxy.flows import write_body

from .conftest import openai_flow


def test_a_rewritten_body_keeps_what_the_client_sent_but_the_change():
    """Lone surrogates once failed the rewrite (the call was refused); integers beyond 64 bits and
    NaN must not be rounded or nulled on the way."""
    from tollgate.formats.bodies.json_codec import read_request_json

    flow, call = openai_flow(("Content-Type", "application/json"))
    sent = b'{"model":"gpt-4o","seed":123456789012345678901234567890,"temperature":NaN,"user":"\\ud800"}'
    call.request.body = read_request_json(sent)
    call.request.body["model"] = "gpt-4o-mini"
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

    flow, call = openai_flow(*fields)
    call.request.body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "grüß dich"}]}
    write_body(flow.request, call)
    sent = flow.request.raw_content
    encoded = flow.request.headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(sent) if encoded else sent) == call.request.body
    assert flow.request.headers.get_all("content-length") == ([str(len(sent))] if length else [])
    assert flow.request.headers["content-type"] == "application/json"
