"""Where calls go, and what the client sees when the upstream fails."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme
import yaml
from tests.support.canned import provider_answers
from tests.support.clients import run_client
from tests.support.fake_upstream import FakeUpstream, Reply, serving_text
from tests.support.proxy import Mitmdump, free_port
from tests.support.raw import get_through_tunnel

KEY = "sk-real-key-for-upstream-tests"


@pytest.fixture(scope="module")
def gw(start_gateway):
    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {
                "openai": {"upstream": f"https://127.0.0.1:{free_port()}", "keys": [KEY]},  # nothing listens
                "anthropic": {"upstream": urls["anthropic"], "keys": [KEY], "timeout": 1},
                # A hostname upstream: SNI and Host name it (the fake's certificate covers localhost).
                "gemini": {"upstream": urls["gemini"].replace("127.0.0.1", "localhost"), "keys": [KEY]},
                "bedrock": {"upstream": urls["bedrock"]},
            },
            # A server of the test's own on this machine, tunnelled: loopback, so named to be reached.
            "egress": {"allow": ["127.0.0.1"]},
        }

    return start_gateway(config)


def test_unreachable_upstream_is_a_502_in_the_providers_shape(g):
    result = g.run("""
        import openai
        try:
            openai.OpenAI(api_key="sk-own", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as e:
            report(error=type(e).__name__, status=e.status_code, body=e.body,
                   tollgate=e.response.headers.get("x-tollgate-error"),
                   request_id=e.response.headers.get("x-tollgate-request-id"))
    """)
    assert (result["error"], result["status"], result["tollgate"]) == (
        "InternalServerError",
        502,
        "upstream_unreachable",
    )
    assert result["body"]["type"] == "server_error" and "unreachable" in result["body"]["message"]
    record = g.last_audit()
    assert (record["status"], record["request_id"]) == (502, result["request_id"])
    assert record["error"].startswith("upstream unreachable")
    assert record["ttfb_ms"] is None


def test_proxy_keeps_serving_after_a_failure(g):
    result = g.run("""
        from google import genai
        client = genai.Client(api_key="AIza-own")
        report(text=client.models.generate_content(model="gemini-2.0-flash", contents="hi").text)
    """)
    assert result == {"text": "Hello!"}


def test_hostname_upstream_gets_sni_and_host(g):
    g.run("""
        from google import genai
        client = genai.Client(api_key="AIza-own")
        report(text=client.models.generate_content(model="gemini-2.0-flash", contents="hi").text)
    """)
    seen = g.fakes["gemini"].received[-1]
    assert seen.sni == "localhost"
    assert seen.headers["host"] == f"localhost:{g.fakes['gemini'].port}"
    assert g.last_audit()["upstream"] == f"https://localhost:{g.fakes['gemini'].port}"


def test_slow_upstream_is_a_504_after_the_configured_timeout(g):
    g.fakes["anthropic"].handler = lambda r: Reply(200, {"late": True}, delay=4)
    result = g.run("""
        import anthropic, time
        started = time.monotonic()
        try:
            anthropic.Anthropic(api_key="sk-ant-own", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        except anthropic.APIStatusError as e:
            report(error=type(e).__name__, status=e.status_code, body=e.body, seconds=time.monotonic() - started)
    """)
    assert (result["error"], result["status"]) == ("GatewayTimeoutError", 504), str(result)
    assert result["body"]["type"] == "error" and result["body"]["error"]["type"] == "timeout_error"
    assert 1 <= result["seconds"] < 3.5
    record = g.last_audit()
    assert record["status"] == 504 and record["error"].startswith("upstream timeout")


def test_bedrock_unreachable_region_is_an_aws_error(start_gateway):
    gw = start_gateway({"providers": {"bedrock": {"upstream": f"https://127.0.0.1:{free_port()}"}}})
    result = gw.run("""
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret", config=Config(retries={"total_max_attempts": 1}))
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    """)
    assert (result["error"], result["status"], result["code"]) == (
        "ServiceUnavailableException",
        502,
        "ServiceUnavailableException",
    )


def test_other_tls_hosts_are_tunnelled_with_their_own_certificate(gw):
    """A non-LLM host is not decrypted: the client sees the real server's certificate."""
    other_ca = trustme.CA()
    with serving_text(other_ca, b"not an llm") as server:
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=other_ca.cert_pem.bytes().decode())
        with socket.create_connection(("127.0.0.1", gw.proxy.port), timeout=10) as raw:
            raw.sendall(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            assert raw.recv(4096).startswith(b"HTTP/1.1 200")
            issuer, answer = get_through_tunnel(raw, context)
        assert "mitmproxy" not in str(issuer)
        assert answer.endswith(b"not an llm")
        assert len(server.received) == 1


def test_a_server_of_your_own_is_reached_once_its_certificate_is_trusted(
    tmp_path_factory, upstream_ca, confdir, bundle
):
    """The README's recipe for a test server: `upstream` at it, and mitmproxy told to trust it.
    Without that, its certificate is refused (502); `ssl_insecure=true`, for a throwaway test, takes
    it. (`ssl_verify_upstream_trusted_ca`, the recipe's first way, is how every other test runs.)"""
    fake = FakeUpstream(upstream_ca, provider_answers)
    workdir = tmp_path_factory.mktemp("own-server")
    config = workdir / "tollgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": fake.url, "keys": [KEY]}},
                "audit": {"path": str(workdir / "a.jsonl")},
            }
        )
    )
    chat = """
        import openai
        try:
            r = openai.OpenAI(api_key="sk-caller", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            report(status=200, tokens=r.usage.total_tokens)
        except openai.APIStatusError as e:
            report(status=e.status_code, error=e.response.headers.get("x-tollgate-error"), message=e.message)
    """
    try:
        for options in ((), ("--set", "ssl_insecure=true")):
            proxy = Mitmdump(workdir, confdir, None, config, *options)
            try:
                proxy.wait_ready()
                results = run_client(chat, proxy.proxy_url, bundle)
            finally:
                proxy.stop()
            if not options:
                assert (results["status"], results["error"]) == (502, "upstream_unreachable"), results
                assert "is unreachable: Certificate verify failed" in results["message"], results
                assert fake.received == []
            else:
                assert results == {"status": 200, "tokens": 28}
                assert fake.received[-1].headers["authorization"] == f"Bearer {KEY}"
    finally:
        fake.close()
