"""What Tollgate cannot read exactly never reaches a provider with a real key: raw requests through a
real mitmdump (paths, bodies, encodings and hosts no SDK sends), each refused in the provider's own
shape, audited, and absent from the upstream; and the cases an SDK can send."""

from __future__ import annotations

import base64
import gzip
import json
import sys
import zlib

import brotli
import pytest
from tests.support.fake_upstream import Reply
from tests.support.grouped_cases import flat_cases
from tests.support.h2 import H2Reply, H2Request, H2Upstream, h2_calls
from tests.support.raw import send

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

REAL = {
    "openai": "sk-REAL-openai-fc-1",
    "gemini": "AIza-REAL-gemini-fc-2",
    "anthropic": "sk-ant-REAL-fc-3",
    "bedrock": "ABSK-REAL-bedrock-fc-4",
}
ALICE = "tg-alice-failclosed-5"
PROMPT = "PROMPT-fail-closed-never-logged"
HOSTS = {
    "openai": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
    "anthropic": "api.anthropic.com",
    "bedrock": "bedrock-runtime.us-east-1.amazonaws.com",
}
KEY_HEADER = {
    "openai": ("Authorization", f"Bearer {ALICE}"),
    "gemini": ("x-goog-api-key", ALICE),
    "anthropic": ("x-api-key", ALICE),
    "bedrock": ("Authorization", f"Bearer {ALICE}"),
}
POLICY = """
package tollgate

import rego.v1

# is_number: a call that sets no max_tokens (null) is not judged
deny contains "max_tokens over 1000" if {
    is_number(input.request.max_tokens)
    input.request.max_tokens > 1000
}

deny contains "the model of this call was not read" if {
    "model" in input.unread
    not "uploaders" in input.client.groups
}
"""


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "policy.rego"
    policy.write_text(POLICY)

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
            "clients": [
                {"name": "alice", "keys": [ALICE]},
                {"name": "uma", "keys": ["tg-uma-uploads-6"], "groups": ["uploaders"]},
            ],
            "policy": {"rego": [str(policy)]},
        }

    gateway = start_gateway(config, "--set", "termlog_verbosity=debug", save_flows=True)
    return gateway


def raw(g, provider: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None, **kw):
    """A request as alice would send it, but for what the test changes; the audit record it added."""
    before = len(g.audit())
    pairs = [KEY_HEADER[provider], ("Content-Type", "application/json"), *(headers or [])]
    response = send(g.proxy.port, g.bundle, kw.pop("host", HOSTS[provider]), target, body=body, headers=pairs, **kw)
    return response, g.wait_audit(before + 1)[before]


def assert_refused(g, provider: str, response, record, why: str) -> None:
    assert response.status == 400, response.body
    assert response.headers["x-tollgate-error"] == "bad_request"
    assert why in response.body.decode()
    shape = response.json()
    if provider == "openai":
        assert shape["error"]["type"] == "invalid_request_error" and shape["error"]["code"] == "bad_request"
    elif provider == "gemini":
        assert shape["error"]["status"] == "INVALID_ARGUMENT" and shape["error"]["code"] == 400
    elif provider == "anthropic":
        assert shape == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": shape["error"]["message"]},
        }
    else:
        assert response.headers["x-amzn-errortype"] == "ValidationException" and "message" in shape
    assert g.fakes[provider].received == []
    assert record["status"] == 400 and record["error"].startswith("bad request: ")
    assert why in record["error"]
    assert record["provider"] == provider and record["upstream_key"] is None


CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}).encode()
# An upload's multipart body: it streams upstream unread.
BOUNDARY = "tollgate-boundary"
FORM = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    f"Content-Type: audio/wav\r\n\r\nRIFF....WAVE\r\n--{BOUNDARY}--\r\n"
).encode()
GEMINI_BODY = json.dumps({"contents": [{"parts": [{"text": PROMPT}]}]}).encode()
CONVERSE = json.dumps({"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}).encode()


@pytest.mark.parametrize(
    ("provider", "target", "body", "why"),
    [
        ("gemini", "//v1beta/models/gemini-2.0-flash:generateContent", GEMINI_BODY, "empty segment"),
        ("gemini", "/v1beta/./models/gemini-2.0-flash:generateContent", GEMINI_BODY, "'.' or '..' segment"),
        ("gemini", "/v1beta/models/gemini-2.0-flash:generateContent/", GEMINI_BODY, "ends in '/'"),
        ("gemini", "/v1beta/models%2Fgemini-2.0-flash:generateContent", GEMINI_BODY, "percent-encoded"),
        ("gemini", "/v1beta/models/gemini-2.0-flash:GenerateContent", GEMINI_BODY, "is not written 'generateContent'"),
        ("gemini", "/v1beta/Models/gemini-2.0-flash:generateContent", GEMINI_BODY, "is not written 'models'"),
        ("gemini", "/v1beta/models/gemini-2.0-flash:generateContent:x", GEMINI_BODY, "method is not one Gemini names"),
        ("bedrock", "//model/amazon.nova-lite-v1%3A0/converse", CONVERSE, "empty segment"),
        ("bedrock", "/model/amazon.nova-lite-v1%3A0/converse/", CONVERSE, "ends in '/'"),
        ("bedrock", "/./model/amazon.nova-lite-v1%3A0/converse", CONVERSE, "'.' or '..' segment"),
        ("bedrock", "/model/amazon.nova-lite-v1%3A0/Converse", CONVERSE, "is not written 'converse'"),
        ("bedrock", "/model/amazon.nova-lite-v1%3A0/converse;x", CONVERSE, "';' parameters"),
        ("openai", "/V1/Chat/Completions", CHAT, "is not written 'v1'"),
        ("openai", "/v1/chat/completions;x=1", CHAT, "';' parameters"),
        ("openai", "/v1/chat%2Fcompletions", CHAT, "percent-encoded"),
        ("openai", "/chat/completions", CHAT, "start with /v1/"),
        (
            "anthropic",
            "/v1/messages/",
            json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5000}).encode(),
            "ends in '/'",
        ),
    ],
)
def test_a_path_not_in_canonical_form_is_refused(g, provider, target, body, why):
    response, record = raw(g, provider, target, body)
    assert_refused(g, provider, response, record, why)


# Valid JSON of just over 64 MiB, some 65 KB gzipped.
GZIP_BOMB = gzip.compress(CHAT[:-1] + b" " * (64 * 1024 * 1024) + b"}", 1)
MAX_TOKENS_2_63 = b'{"model": "gpt-4o-mini", "max_tokens": 9223372036854775808, "messages": []}'


@pytest.mark.parametrize(
    ("case", "body", "headers", "kw", "why"),
    [
        ("chunked text", CHAT, [("Content-Type", "text/plain")], {"chunked": True}, None),
        ("chunked, no type", CHAT, [], {"chunked": True}, None),
        ("large non-JSON", b"x" * (5 * 1024 * 1024), [("Content-Type", "text/plain")], {}, "not a JSON object"),
        ("unknown encoding", CHAT, [("Content-Encoding", "x-unknown")], {}, "Content-Encoding cannot be decoded"),
        ("gzip on a plain body", CHAT, [("Content-Encoding", "gzip")], {}, "Content-Encoding cannot be decoded"),
        ("a codec, not a coding", base64.b64encode(CHAT), [("Content-Encoding", "base64")], {}, "cannot be decoded"),
        ("gzip cut short", gzip.compress(CHAT)[:-4], [("Content-Encoding", "gzip")], {}, "cannot be decoded"),
        ("gzip bomb", GZIP_BOMB, [("Content-Encoding", "gzip")], {}, "the body decodes to more than 64 MiB"),
        ("invalid UTF-8", CHAT.replace(PROMPT.encode(), b"caf\xe9"), [], {}, "not UTF-8"),
        (
            "deep nesting",
            b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            [],
            {},
            "nested too deeply",
        ),
        ("repeated model", b'{"model": "gpt-4o-mini", "model": "gpt-5", "messages": []}', [], {}, "repeats a key"),
        ("max_tokens 2**63", MAX_TOKENS_2_63, [], {}, "'max_tokens' is out of range"),
        (
            "max_tokens as text",
            b'{"model": "gpt-4o-mini", "max_tokens": "lots", "messages": []}',
            [],
            {},
            "'max_tokens' is not an integer",
        ),
        ("lone surrogate model", b'{"model": "gpt-4o-mini\\ud800", "messages": []}', [], {}, "not valid Unicode"),
    ],
)
def test_an_unreadable_body_is_refused(g, case, body, headers, kw, why):
    # The content type is the client's to get wrong: chunked bodies and other types are read whole and,
    # being JSON, served (Tollgate read them exactly).
    replaced = {n.lower() for n, _ in headers}
    pairs = [KEY_HEADER["openai"], *headers] + (
        [("Content-Type", "application/json")] if "content-type" not in replaced else []
    )
    before = len(g.audit())
    response = send(g.proxy.port, g.bundle, HOSTS["openai"], "/v1/chat/completions", body=body, headers=pairs, **kw)
    record = g.wait_audit(before + 1)[before]
    if why is None:
        assert response.status == 200
        seen = g.fakes["openai"].received[-1]
        assert seen.headers["authorization"] == f"Bearer {REAL['openai']}" and json.loads(seen.body) == json.loads(CHAT)
        assert (record["model"], record["message_count"], record["status"]) == ("gpt-4o-mini", 1, 200)
        return
    assert_refused(g, "openai", response, record, why)


# Bodies that carry Tollgate's own real key, which the guardrails find with no configuration: in
# UTF-8 they are refused 403; in another encoding the guardrails (which read UTF-8) would not see it.
LEAKY = {
    "openai": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": REAL["openai"]}]},
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": REAL["openai"]}]},
    ),
    "gemini": (
        "/v1beta/models/gemini-2.0-flash:generateContent",
        {"contents": [{"parts": [{"text": REAL["openai"]}]}]},
    ),
    "bedrock": (
        "/model/amazon.nova-lite-v1%3A0/converse",
        {"messages": [{"role": "user", "content": [{"text": REAL["openai"]}]}]},
    ),
}


@pytest.mark.parametrize(
    ("provider", "encoding", "why"),
    flat_cases(
        {
            "openai": [
                ("utf-16", "UTF-16"),
                ("utf-16-le", "UTF-16"),
                ("utf-16-be", "UTF-16"),
                ("utf-32", "UTF-32"),
                ("utf-32-le", "UTF-32"),
                ("utf-32-be", "UTF-32"),
                ("utf-8-sig", "byte order mark"),
            ],
            "anthropic": [
                ("utf-16-le", "UTF-16"),
            ],
            "gemini": [
                ("utf-16-be", "UTF-16"),
            ],
            "bedrock": [
                ("utf-32-le", "UTF-32"),
            ],
        }
    ),
)
def test_a_json_body_in_another_encoding_than_utf8_is_refused(g, provider, encoding, why):
    target, body = LEAKY[provider]
    response, record = raw(g, provider, target, json.dumps(body).encode(encoding))
    assert_refused(g, provider, response, record, why)
    assert record["decision"] == "deny"
    # Refused for its body, its caller named all the same by the virtual key it came with.
    assert (record["client"], record["auth"]) == ("alice", "virtual_key")
    assert REAL["openai"] not in response.body.decode() and REAL["openai"] not in json.dumps(record)


def test_a_gzipped_utf16_body_is_refused_and_its_utf8_twin_is_found_by_the_guardrails(g):
    target, body = LEAKY["openai"]
    encoded = gzip.compress(json.dumps(body).encode("utf-16"))
    response, record = raw(g, "openai", target, encoded, [("Content-Encoding", "gzip")])
    assert_refused(g, "openai", response, record, "UTF-16")
    # The same body in UTF-8 is read, and the guardrails find the key in it.
    response, record = raw(g, "openai", target, json.dumps(body).encode())
    assert (response.status, response.headers["x-tollgate-error"]) == (403, "content_denied")
    assert g.fakes["openai"].received == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_an_encoded_body_is_read_and_a_max_tokens_cap_holds(g, encoding):
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 5000, "messages": []}).encode()
    encode = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}[encoding]
    response, record = raw(g, "openai", "/v1/chat/completions", encode(body), [("Content-Encoding", encoding)])
    assert response.status == 403 and response.headers["x-tollgate-error"] == "policy_denied"
    assert record["max_tokens"] == 5000 and record["deny_reasons"] == ["max_tokens over 1000"]
    assert g.fakes["openai"].received == []


@pytest.mark.parametrize(
    ("provider", "target", "body"),
    [
        (
            "gemini",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            {"contents": [], "generationConfig": {"maxOutputTokens": 5, "max_output_tokens": 5000}},
        ),
        ("anthropic", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 5000.5, "messages": []}),
        ("bedrock", "/model/amazon.nova-lite-v1%3A0/converse", {"messages": [], "inferenceConfig": {"maxTokens": "x"}}),
    ],
)
def test_a_limit_the_policy_caps_is_read_exactly_or_refused(g, provider, target, body):
    response, record = raw(g, provider, target, json.dumps(body).encode())
    assert_refused(g, provider, response, record, "")


def test_a_trailing_dot_or_odd_case_host_is_governed_like_the_host(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", base_url="https://API.OpenAI.com./v1", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "{PROMPT}"}}])
        report(tokens=r.usage.total_tokens)
    """)
    assert result == {"tokens": 28}
    seen = g.fakes["openai"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {REAL['openai']}"
    record = g.last_audit()
    assert (record["client"], record["host"], record["model"], record["status"]) == (
        "alice",
        "api.openai.com",
        "gpt-4o-mini",
        200,
    )


def test_another_port_is_governed_like_the_host(g):
    response, record = raw(
        g, "openai", "/v1/chat/completions", CHAT, host="api.openai.com:8443", connect="api.openai.com:8443"
    )
    assert response.status == 200
    assert g.fakes["openai"].received[-1].headers["authorization"] == f"Bearer {REAL['openai']}"
    assert (record["client"], record["host"], record["status"]) == ("alice", "api.openai.com", 200)


PLAIN = {
    "openai": ("/v1/chat/completions", CHAT),
    "anthropic": ("/v1/messages", json.dumps({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}).encode()),
    "gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", GEMINI_BODY),
    "bedrock": ("/model/amazon.nova-lite-v1%3A0/converse", CONVERSE),
}


@pytest.mark.parametrize("provider", PLAIN)
def test_plain_http_to_an_llm_host_is_refused(g, provider):
    target, body = PLAIN[provider]
    response, record = raw(g, provider, target, body, tls=False)
    assert_refused(g, provider, response, record, "plain HTTP")
    assert record["decision"] == "deny"


@pytest.mark.parametrize("provider", PLAIN)
def test_an_https_url_sent_in_cleartext_to_the_proxy_is_refused(g, provider):
    # `POST https://api.openai.com/... HTTP/1.1` over plain TCP, no CONNECT: its virtual key crossed
    # the hop to the proxy unencrypted. Refused, never forwarded.
    target, body = PLAIN[provider]
    response, record = raw(g, provider, target, body, tls=False, scheme="https")
    assert_refused(g, provider, response, record, "came to the proxy in cleartext")
    assert record["decision"] == "deny"
    assert all(fake.received == [] for fake in g.fakes.values())


def test_a_listing_by_an_https_url_sent_in_cleartext_is_refused(g):
    response, record = raw(g, "openai", "/v1/models", tls=False, scheme="https", method="GET")
    assert_refused(g, "openai", response, record, "came to the proxy in cleartext")


def test_a_host_header_naming_another_host_is_refused_as_misdirected(g):
    # Absolute form inside the tunnel: the URL names the host, the Host header another.
    response, record = raw(
        g, "openai", "https://api.openai.com/v1/chat/completions", CHAT, headers=[("Host", "evil.example")]
    )
    assert (response.status, response.headers["x-tollgate-error"]) == (421, "misdirected")
    assert g.fakes["openai"].received == []
    assert (record["decision"], record["deny_reasons"], record["status"]) == ("deny", ["misdirected"], 421)
    assert record["error"] == (
        "misdirected: connection to api.openai.com, TLS server name api.openai.com, Host api.openai.com, evil.example"
    )


def test_a_host_header_naming_another_port_is_refused(g):
    response, record = raw(g, "openai", "/v1/chat/completions", CHAT, headers=[("Host", "api.openai.com:8443")])
    assert_refused(g, "openai", response, record, "Host header names another host")


@pytest.mark.parametrize(
    ("target", "method", "headers", "why"),
    [
        ("/v1/chat/completions", "POST", [("Connection", "Upgrade"), ("Upgrade", "websocket")], "does not upgrade"),
        ("/v1/models", "GET", [("Connection", "Upgrade"), ("Upgrade", "custom/1")], "does not upgrade"),
        ("/v1/models", "TRACE", [], "does not forward TRACE"),
        ("/v1/chat/completions", "GET", [("X-HTTP-Method-Override", "POST")], "taken for another method"),
    ],
)
def test_upgrades_and_odd_methods_are_refused(g, target, method, headers, why):
    body = CHAT if method == "POST" else b""
    response, record = raw(g, "openai", target, body, headers=headers, method=method)
    assert_refused(g, "openai", response, record, why)


def test_an_audio_upload_streams_unread_and_the_policy_sees_its_model_unread(g):
    code = """
        import io
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        try:
            t = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", io.BytesIO(b"RIFF" + bytes(5000))))
            report(text=t.text)
        except Exception as e:
            report(error=type(e).__name__, status=getattr(e, "status_code", None))
    """
    denied = g.run(code.format(key=ALICE))
    assert denied == {"error": "PermissionDeniedError", "status": 403}
    assert g.fakes["openai"].received == []
    record = g.last_audit()
    assert (record["endpoint"], record["model"], record["deny_reasons"]) == (
        "audio.transcriptions",
        None,
        ["the model of this call was not read"],
    )
    served = g.run(code.format(key="tg-uma-uploads-6"))
    assert served["text"].endswith("bytes heard")
    seen = g.fakes["openai"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {REAL['openai']}" and b"whisper-1" in seen.body
    assert (g.last_audit()["client"], g.last_audit()["status"]) == ("uma", 200)


def test_nothing_refused_leaks_to_the_console_or_saved_flows(g):
    raw(g, "openai", "/v1/chat%2Fcompletions", CHAT)
    raw(g, "openai", "/v1/chat/completions", CHAT, [("Content-Encoding", "x-unknown")])
    raw(g, "bedrock", "/model/amazon.nova-lite-v1%3A0/Converse", CONVERSE, [("X-AWS-Secret-Key", "aws-5ecret-fc")])
    console = g.proxy.console()
    saved = g.saved.read_bytes()
    assert "400" in console and b"bad_request" in saved
    for secret in (ALICE, PROMPT, "aws-5ecret-fc", *REAL.values()):
        assert secret not in console
        assert secret.encode() not in saved


def test_an_answer_that_decodes_to_more_than_any_event_goes_through_as_sent_unread(g):
    """A gzip-encoded stream whose middle decodes to some 200 MiB of blank lines: the client gets
    every byte as the upstream sent it, and the reading stops there rather than inflate it."""
    z = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    chunk = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    usage = b'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    pieces = [
        z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH),
        z.compress(b"\n" * (200 * 1024 * 1024)) + z.flush(zlib.Z_SYNC_FLUSH),
        z.compress(usage + b"data: [DONE]\n\n") + z.flush(),
    ]
    g.fakes["openai"].handler = lambda _r: Reply(200, chunks=pieces, headers={"content-encoding": "gzip"})
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
    response, record = raw(g, "openai", "/v1/chat/completions", body.encode())
    assert response.status == 200 and response.body == b"".join(pieces)
    assert record["status"] == 200 and record["input_tokens"] is None
    assert record["error"] == (
        "the answer's Content-Encoding: the body decodes to more than 16 MiB at once; not read for usage"
    )
    g.reset()
    follow, after = raw(g, "openai", "/v1/chat/completions", CHAT)  # and the proxy keeps serving
    assert follow.status == 200 and after["error"] is None


def test_request_trailers_are_refused_where_the_body_is_read_and_dropped_where_it_streams(start_gateway, upstream_ca):
    # HTTP/2 on both sides (mitmproxy sends no trailers to an HTTP/1 upstream); HTTP/1 below.
    upstream = H2Upstream(
        upstream_ca, lambda _r: H2Reply(200, {"content-type": "application/json"}, [b'{"text": "ok"}'])
    )
    try:
        config = {
            "providers": {"openai": {"upstream": upstream.url, "keys": [REAL["openai"]]}},
            "clients": [{"name": "uma", "keys": ["tg-uma-uploads-6"]}],
        }
        gw = start_gateway(config)
        key = {"authorization": "Bearer tg-uma-uploads-6"}
        chat = H2Request("/v1/chat/completions", CHAT, key, {"x-api-key": "tg-uma-uploads-6"})
        upload = H2Request(
            "/v1/audio/transcriptions",
            FORM,
            {**key, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            {"x-extra": "after the body"},
        )
        refused, served = h2_calls(gw.proxy.port, gw.bundle, HOSTS["openai"], [chat, upload], timeout=20)
        records = {r["status"]: r for r in gw.wait_audit(2)}
    finally:
        upstream.close()
    assert refused.status == 400 and refused.headers["x-tollgate-error"] == "bad_request"
    assert records[400]["error"] == "bad request: Tollgate does not forward request trailers"
    # The upload streams on unread: its trailers, which come after its body, are not forwarded.
    assert (served.status, records[200]["client"], records[200]["endpoint"]) == (200, "uma", "audio.transcriptions")
    (seen,) = upstream.received
    assert (seen.headers[":path"], seen.body, seen.trailers) == ("/v1/audio/transcriptions", FORM, {})


def test_request_trailers_over_http1_are_refused_where_the_body_is_read_and_dropped_where_it_streams(start_gateway):
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL["openai"]]}},
            "clients": [{"name": "uma", "keys": ["tg-uma-uploads-7"]}],
        }
    )
    key, trailers = ("Authorization", "Bearer tg-uma-uploads-7"), [("X-Extra", "after the body")]
    calls = [
        ("/v1/chat/completions", CHAT, "application/json"),
        ("/v1/audio/transcriptions", FORM, f"multipart/form-data; boundary={BOUNDARY}"),
    ]
    refused, served = [
        send(
            gw.proxy.port,
            gw.bundle,
            HOSTS["openai"],
            target,
            body=body,
            headers=[key, ("Content-Type", kind)],
            chunked=True,
            trailers=trailers,
        )
        for target, body, kind in calls
    ]
    records = gw.wait_audit(2)
    assert refused.status == 400 and refused.headers["x-tollgate-error"] == "bad_request"
    assert records[0]["error"] == "bad request: Tollgate does not forward request trailers"
    # The upload streams on unread: its trailers, which come after its body, are not forwarded.
    assert served.status == 200 and served.json() == {"text": f"{len(FORM)} bytes heard"}
    assert (records[1]["client"], records[1]["endpoint"]) == ("uma", "audio.transcriptions")
    (seen,) = gw.fakes["openai"].received
    assert (seen.path, seen.body, seen.trailers) == ("/v1/audio/transcriptions", FORM, [])


@pytest.mark.parametrize(
    ("header", "value", "why"),
    [
        # Google's front end would run this GET as the POST it names, over a body Tollgate reads only on a POST.
        ("X-HTTP-Method-Override", "POST", "the request asks to be taken for another method (X-HTTP-Method-Override)"),
        ("X-Goog-FieldMask", "candidates", "X-Goog-FieldMask asks for a partial answer, which may leave out its usage"),
    ],
)
def test_a_gemini_call_with_a_header_tollgate_cannot_honour_is_refused_as_the_sdk_sends_it(g, header, value, why):
    result = g.run(f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{ALICE}", http_options=types.HttpOptions(headers={{"{header}": "{value}"}}))
        client.models.generate_content(model="gemini-2.0-flash", contents="{PROMPT}")
        report(error=None)
    """)
    assert (result["error"], result["status"]) == ("ClientError", 400), str(result)
    record = g.last_audit()
    assert record["error"] == f"bad request: {why}"
    assert g.fakes["gemini"].received == [] and record["upstream_key"] is None


def test_a_gemini_body_declared_protobuf_is_refused(g):
    # Valid JSON to Tollgate; Google's front end would parse the same bytes as protobuf.
    response, record = raw(
        g,
        "gemini",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        GEMINI_BODY,
        headers=[("Content-Type", "application/x-protobuf")],
    )
    assert_refused(g, "gemini", response, record, "the body is declared protobuf (Content-Type)")


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("fields=candidates", "asks for a partial answer ('fields')"),
        ("alt=proto", "asks for an answer format ('alt') Tollgate does not read"),
        ("%24alt=media", "asks for an answer format ('alt') Tollgate does not read"),
        ("%24httpMethod=GET", "asks Google to take the request for another method ('$httpMethod')"),
        ("%24ct=application%2Fx-protobuf", "asks Google to read the body as another Content-Type ('$ct')"),
    ],
)
def test_a_gemini_call_asking_for_an_answer_without_readable_usage_is_refused(g, query, why):
    target = f"/v1beta/models/gemini-2.0-flash:generateContent?{query}"
    response, record = raw(g, "gemini", target, GEMINI_BODY)
    assert_refused(g, "gemini", response, record, why)
