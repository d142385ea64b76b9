"""Bedrock with virtual AWS credentials: unchanged boto3 code signs with them, Tollgate verifies
the signature and signs the final request with credentials that never leave it; the fake Bedrock
checks that signature itself, with botocore and the real credentials."""

from __future__ import annotations

import pytest
from tests.support import streams
from tests.support.aws import botocore_accepts
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Reply

VIRTUAL = ("TGALICE0000000000000", "alice-virtual-SECRET-0000")
REAL = ("AKIAREAL000000000000", "real-aws-SECRET-key-0000", "real-session-TOKEN-0000")
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def client(key=VIRTUAL, extra: str = "") -> str:
    return f"""
import boto3
from botocore.config import Config
client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{key[0]}",
    aws_secret_access_key="{key[1]}", config=Config(retries={{"total_max_attempts": 1}}))
{extra}
"""


def bedrock_answers(received):
    if not botocore_accepts(received, *REAL):
        return Reply(403, {"message": "fake Bedrock: bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"})
    path = received.path
    if path.endswith("/converse-stream"):
        return Reply(200, chunks=streams.bedrock_converse(), headers=EVENTSTREAM)
    if path.endswith("/invoke-with-response-stream"):
        return Reply(200, chunks=streams.bedrock_invoke(), headers=EVENTSTREAM)
    if path.endswith("/count-tokens"):
        return Reply(200, {"inputTokens": 42})
    if path.endswith("/apply"):
        return Reply(200, {"usage": {"topicPolicyUnits": 1}, "action": "NONE", "outputs": [], "assessments": []})
    return provider_answers(received)


def bedrock(urls: dict[str, str]) -> dict:
    """Bedrock's provider settings: its fake upstream, signed for with the real credentials."""
    return {
        "upstream": urls["bedrock"],
        "credentials": {"access_key_id": REAL[0], "secret_access_key": REAL[1], "session_token": REAL[2]},
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(
        lambda urls: {
            "providers": {"bedrock": bedrock(urls)},
            "clients": [
                {
                    "name": "alice",
                    "aws_credentials": [{"access_key_id": VIRTUAL[0], "secret_access_key": VIRTUAL[1]}],
                    "groups": ["research"],
                }
            ],
            "overrides": [{"match": {"provider": "bedrock", "model": "amazon.nova-premier*"}, "model": PROFILE}],
        }
    )
    return gateway


@pytest.fixture
def g(gw):
    gw.reset()
    gw.fakes["bedrock"].handler = bedrock_answers
    return gw


CALLS = {
    "converse": f"""r = client.converse(modelId="{PROFILE}", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
report(out=r["usage"]["totalTokens"])""",
    "converse-stream": """r = client.converse_stream(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
report(out=[k for e in r["stream"] for k in e])""",
    "invoke": """import json
r = client.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=json.dumps({"messages": []}))
report(out=json.loads(r["body"].read())["stop_reason"])""",
    "invoke-with-response-stream": """r = client.invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=b"{}")
report(out=len(list(r["body"])))""",
}
EXPECTED = {
    "converse": 23,
    "converse-stream": streams.CONVERSE_STREAM_KINDS,
    "invoke": "max_tokens",
    "invoke-with-response-stream": 4,
}


@pytest.mark.parametrize("operation", list(CALLS))
def test_virtual_credentials_verified_and_resigned(g, operation):
    result = g.run(client(extra=CALLS[operation]))
    assert result == {"out": EXPECTED[operation]}, str(result)
    seen = g.fakes["bedrock"].received[-1]
    assert botocore_accepts(seen, *REAL) and not botocore_accepts(seen, REAL[0], "another secret", REAL[2])
    assert seen.headers["x-amz-security-token"] == REAL[2]
    assert VIRTUAL[0] not in str(seen.headers)
    record = g.last_audit()
    assert (record["client"], record["auth"], record["endpoint"], record["status"]) == (
        "alice",
        "sigv4",
        operation,
        200,
    )
    if operation == "converse":
        assert (
            record["model"] == PROFILE
            and seen.path == "/model/" + PROFILE.replace(":", "%3A").replace("/", "%2F") + "/converse"
        )


@pytest.mark.parametrize(
    ("key", "extra", "code", "text"),
    [
        ((VIRTUAL[0], "wrong-secret"), "", "InvalidSignatureException", "signature we calculated does not match"),
        (("TGNOBODY000000000000", "x"), "", "UnrecognizedClientException", "unknown or missing API key"),
        (
            VIRTUAL,
            """
def tamper(request, **kwargs):
    request.body = request.body.replace(b"hi", b"HI")
client.meta.events.register("before-send.bedrock-runtime.Converse", tamper)
""",
            "InvalidSignatureException",
            "signature we calculated does not match",
        ),
        (
            VIRTUAL,
            """
import datetime, botocore.auth
real_now = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda: real_now() - datetime.timedelta(minutes=6)
""",
            "InvalidSignatureException",
            "Signature expired",
        ),
    ],
    ids=["wrong-secret", "unknown-key", "tampered-body", "six-minutes-old"],
)
def test_refusals_are_aws_errors(g, key, extra, code, text):
    result = g.run(
        client(
            key,
            extra
            + """
client.converse(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
report(error=None)""",
        )
    )
    assert (result["status"], result["code"]) == (403, code), str(result)
    assert text in result["message"]
    assert g.fakes["bedrock"].received == []
    record = g.last_audit()
    assert (record["decision"], record["status"], record["client"]) == ("deny", 403, None)


def test_bearer_token_mode(start_gateway):
    gw = start_gateway(
        lambda urls: {
            "providers": {"bedrock": {"upstream": urls["bedrock"], "bearer_token": "ABSK-real-bedrock-api-key"}},
            "clients": [
                {"name": "alice", "aws_credentials": [{"access_key_id": VIRTUAL[0], "secret_access_key": VIRTUAL[1]}]}
            ],
        }
    )
    assert gw.run(client(extra=CALLS["converse"])) == {"out": 23}
    seen = gw.fakes["bedrock"].received[-1]
    assert seen.headers["authorization"] == "Bearer ABSK-real-bedrock-api-key"
    assert "x-amz-security-token" not in seen.headers
    assert gw.last_audit()["auth"] == "sigv4"


def test_side_header_credentials_sign_for_the_region_asked(start_gateway):
    """The seed proxy's X-AWS-Access-Key / X-AWS-Secret-Key / X-AWS-Region: Tollgate signs with
    them, for that region, and they never travel on."""
    gw = start_gateway(lambda urls: {"providers": {"bedrock": {"upstream": urls["bedrock"]}}})
    gw.fakes["bedrock"].handler = provider_answers
    result = gw.run(f"""
import json, urllib.request
req = urllib.request.Request("https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-lite-v1%3A0/converse",
    data=json.dumps({{"messages": [{{"role": "user", "content": [{{"text": "hi"}}]}}]}}).encode(),
    headers={{"content-type": "application/json", "X-AWS-Access-Key": "{REAL[0]}", "X-AWS-Secret-Key": "{REAL[1]}",
             "X-AWS-Session-Token": "{REAL[2]}", "X-AWS-Region": "eu-west-1"}})
with urllib.request.urlopen(req) as resp:
    report(status=resp.status)
""")
    assert result == {"status": 200}
    seen = gw.fakes["bedrock"].received[-1]
    assert (
        f"Credential={REAL[0]}/" in seen.headers["authorization"]
        and "/eu-west-1/bedrock/aws4_request" in seen.headers["authorization"]
    )
    assert botocore_accepts(seen, *REAL)
    assert not {h for h in seen.headers if h.startswith("x-aws-")}
    record = gw.last_audit()
    assert (record["auth"], record["status"], record["upstream_key"][:7]) == ("anonymous", 200, "sha256:")


def test_an_overridden_request_is_re_signed(g):
    """The model changed in the path after the caller signed: the new signature covers the new path."""
    result = g.run(
        client(
            extra="""r = client.converse(modelId="amazon.nova-premier-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
report(out=r["stopReason"])"""
        )
    )
    assert result == {"out": "end_turn"}
    seen = g.fakes["bedrock"].received[-1]
    assert seen.path == "/model/" + PROFILE.replace(":", "%3A").replace("/", "%2F") + "/converse"
    assert botocore_accepts(seen, *REAL)
    record = g.last_audit()
    assert (record["requested_model"], record["model"], record["auth"]) == (
        "amazon.nova-premier-v1:0",
        PROFILE,
        "sigv4",
    )


def test_count_tokens_and_guardrail_apply_are_verified_and_re_signed(g):
    result = g.run(
        client(
            extra="""
n = client.count_tokens(modelId="anthropic.claude-3-haiku-20240307-v1:0",
    input={"converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}})["inputTokens"]
a = client.apply_guardrail(guardrailIdentifier="gr1", guardrailVersion="1", source="INPUT",
    content=[{"text": {"text": "hi"}}])["action"]
report(out=[n, a])"""
        )
    )
    assert result == {"out": [42, "NONE"]}, str(result)
    count, apply = g.fakes["bedrock"].received[-2:]
    assert count.path.endswith("/count-tokens") and apply.path == "/guardrail/gr1/version/1/apply"
    assert botocore_accepts(count, *REAL) and botocore_accepts(apply, *REAL)
    records = g.new_audit(2)
    assert [(r["endpoint"], r["auth"], r["input_tokens"]) for r in records] == [
        ("count-tokens", "sigv4", 42),
        ("apply-guardrail", "sigv4", None),
    ]


def test_a_streamed_openai_format_call_is_signed_after_it_asks_for_usage(start_gateway):
    """`stream_usage: inject` changes the body of an OpenAI-format stream; a call routed to Bedrock's
    OpenAI-compatible API is signed over the body as it goes, usage request included."""
    gw = start_gateway(
        lambda urls: {
            "providers": {"bedrock": bedrock(urls)},
            "clients": [{"name": "alice", "keys": ["tg-alice-stream"]}],
            "overrides": [
                {
                    "match": {"provider": "openai", "model": "openai.gpt-oss-*"},
                    "provider": "bedrock",
                    "upstream": urls["bedrock"],
                }
            ],
        }
    )

    def answer(received):
        if not botocore_accepts(received, *REAL):
            return Reply(
                403, {"message": "fake Bedrock: bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"}
            )
        return Reply(200, chunks=streams.openai_chat(), headers={"content-type": "text/event-stream"})

    gw.fakes["bedrock"].handler = answer
    result = gw.run("""
        from openai import OpenAI
        stream = OpenAI(api_key="tg-alice-stream", max_retries=0).chat.completions.create(
            model="openai.gpt-oss-120b-1:0", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = list(stream)
        report(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
               usage=[c.usage.total_tokens for c in chunks if c.usage])
    """)
    assert result == {"text": "Hello", "usage": []}
    seen = gw.fakes["bedrock"].received[-1]
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.json()["stream_options"] == {"include_usage": True}
    assert botocore_accepts(seen, *REAL)
    record = gw.last_audit()
    assert (record["provider"], record["status"], record["input_tokens"], record["output_tokens"]) == (
        "bedrock",
        200,
        19,
        5,
    )


def test_a_signed_call_refused_for_its_body_names_its_caller(g):
    """Refused before Identify (a UTF-16 body: 400), the call is still named by the virtual
    credential its signature holds for."""
    result = g.run(
        client(
            extra="""
import json
try:
    client.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                        body=json.dumps({"messages": []}).encode("utf-16"))
    report(status=200)
except client.exceptions.ValidationException as e:
    report(status=e.response["ResponseMetadata"]["HTTPStatusCode"])
"""
        )
    )
    assert result == {"status": 400}
    assert g.fakes["bedrock"].received == []
    record = g.last_audit()
    assert (record["status"], record["client"], record["auth"], record["groups"]) == (
        400, "alice", "sigv4", ["research"]
    )  # fmt: skip
