"""Pure audit mode: no clients configured, anyone may call, their own keys pass through."""

from __future__ import annotations

import pytest
from tests.support.fake_upstream import Reply

from tollgate.common.fingerprint import fingerprint


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(lambda urls: {"providers": {name: {"upstream": url} for name, url in urls.items()}})


def test_callers_own_key_passes_through(g):
    own = "sk-proj-callers-own-key-777"
    result = g.run(f"""
        from openai import OpenAI
        r = OpenAI(api_key="{own}", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        report(tokens=r.usage.total_tokens)
    """)
    assert result == {"tokens": 28}
    assert g.fakes["openai"].received[-1].headers["authorization"] == f"Bearer {own}"
    record = g.last_audit()
    assert (record["client"], record["auth"], record["status"]) == (None, "anonymous", 200)
    assert record["upstream_key"].startswith("sha256:") and own not in record["upstream_key"]


def test_bedrock_sigv4_passes_through_as_signed(g):
    result = g.run("""
        import boto3
        client = boto3.client("bedrock-runtime", region_name="us-west-2",
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        r = client.converse(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        report(stop=r["stopReason"])
    """)
    assert result == {"stop": "end_turn"}
    seen = g.fakes["bedrock"].received[-1]
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "host" in seen.headers["authorization"]  # SignedHeaders
    # The signature covers Host: it arrives as the client signed it, although the call went elsewhere.
    assert seen.headers["host"] == "bedrock-runtime.us-west-2.amazonaws.com"
    assert seen.path == "/model/amazon.nova-lite-v1%3A0/converse"
    record = g.last_audit()
    assert (record["auth"], record["model"], record["input_tokens"]) == ("anonymous", "amazon.nova-lite-v1:0", 17)
    # Callers are told apart by their access key id (the secret is never sent).
    assert record["upstream_key"] == fingerprint("AKIDEXAMPLE")
    assert "wJalrXUtnFEMI" not in g.audit_path.read_text() and "wJalrXUtnFEMI" not in g.proxy.console()


def test_model_listing_passes_through(g):
    result = g.run("""
        from openai import OpenAI
        models = OpenAI(api_key="sk-own", max_retries=0).models.list()
        report(count=len(models.data))
    """)
    assert result == {"count": 0}
    record = g.last_audit()
    assert (record["method"], record["endpoint"], record["model"]) == ("GET", "models", None)


def test_body_that_is_not_json_is_refused_even_with_the_callers_own_key(g):
    before = len(g.fakes["openai"].received)
    result = g.run("""
        import urllib.error, urllib.request
        req = urllib.request.Request("https://api.openai.com/v1/chat/completions", data=b"\\x00\\xffnot json{",
            headers={"authorization": "Bearer sk-own", "content-type": "application/json"})
        try:
            urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            report(status=e.code, kind=e.headers["x-tollgate-error"], body=e.read().decode())
    """)
    assert (result["status"], result["kind"]) == (400, "bad_request")
    assert "the body is not a JSON object" in result["body"]
    assert len(g.fakes["openai"].received) == before
    record = g.last_audit()
    assert (record["endpoint"], record["model"], record["status"], record["error"]) == (
        None,
        None,
        400,
        "bad request: the body is not a JSON object",
    )


def test_compressed_body_is_classified_and_forwarded_unchanged(g):
    result = g.run("""
        import gzip, json, urllib.request
        body = gzip.compress(json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}).encode())
        req = urllib.request.Request("https://api.anthropic.com/v1/messages", data=body,
            headers={"x-api-key": "sk-ant-own", "content-type": "application/json", "content-encoding": "gzip"})
        with urllib.request.urlopen(req) as resp:
            report(status=resp.status, sent=len(body))
    """)
    assert result["status"] == 200
    seen = g.fakes["anthropic"].received[-1]
    assert len(seen.body) == result["sent"] and seen.headers["content-encoding"] == "gzip"
    record = g.last_audit()
    assert (record["model"], record["max_tokens"], record["message_count"]) == ("claude-haiku-4-5", 5, 1)


def test_broken_compression_is_refused(g):
    result = g.run("""
        import urllib.error, urllib.request
        req = urllib.request.Request("https://api.anthropic.com/v1/messages", data=b"definitely not gzip",
            headers={"x-api-key": "sk-ant-own", "content-type": "application/json", "content-encoding": "gzip"})
        try:
            urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            report(status=e.code, kind=e.headers["x-tollgate-error"])
    """)
    assert result == {"status": 400, "kind": "bad_request"}
    record = g.last_audit()
    assert (record["provider"], record["model"], record["status"], record["error"]) == (
        "anthropic",
        None,
        400,
        "bad request: the body's Content-Encoding cannot be decoded",
    )


def test_upstream_error_status_reaches_the_client_and_the_audit(g):
    g.fakes["anthropic"].handler = lambda r: Reply(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    result = g.run("""
        import anthropic
        anthropic.Anthropic(api_key="sk-ant-own", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        report(error=None)
    """)
    assert (result["error"], result["status"]) == ("OverloadedError", 529), str(result)
    record = g.last_audit()
    assert (record["status"], record["error"], record["input_tokens"]) == (529, None, None)
