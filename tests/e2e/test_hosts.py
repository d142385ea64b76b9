"""Every host of every provider governed: the regional, mTLS and private forms a caller may pick,
and the hosts a configuration adds (`providers.<name>.hosts`), each decrypted, read as its
provider's, decided and audited, and sent to the host it asked for (an mTLS host to its twin).

Where a call goes is seen by name: `support/resolve.py` sends the hosts named here to one fake
upstream whose certificate covers them, so the fake sees the SNI and Host a provider would."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.support import eventstream
from tests.support.audit_fields import assert_fields
from tests.support.aws import botocore_accepts
from tests.support.canned import BEDROCK_CONVERSE, provider_answers
from tests.support.fake_upstream import FakeUpstream, Received, Reply

RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
REAL_OPENAI = "sk-real-openai-hosts-000000000001"
REAL_GEMINI = "AIza-real-gemini-hosts-000000000001"
REAL_VERTEX = "AQ.real-vertex-express-hosts-000000000001"
ALICE = "tg-alice-hosts-0123456789"
DEDICATED = "1234567890.us-central1-987654321.prediction.vertexai.goog"
# Bedrock: Tollgate's real AWS credentials; alice's and bob's virtual ones; a caller's own.
REAL_AWS = ("AKIAREALHOSTS0000000", "real-aws-SECRET-hosts-0000", "real-session-TOKEN-hosts")
ALICE_AWS = ("TGALICEHOSTS00000000", "alice-virtual-SECRET-hosts")
BOB_AWS = ("TGBOBHOSTS0000000000", "bob-virtual-SECRET-hosts")
OWN_AWS = ("AKIAOWNCALLER0000000", "callers-own-SECRET-0000")
AGENTS = "bedrock-agent-runtime.us-east-1.amazonaws.com"
CONTROL = "bedrock.us-east-1.amazonaws.com"
VPCE = "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.bedrock-runtime.us-east-1.vpce.amazonaws.com"
CORP_BEDROCK = "bedrock.corp.example"  # the configuration adds it, in eu-west-1
# The policy sees a job whose requests are in a bucket as one call starting a batch.
POLICY = """package tollgate
import rego.v1

deny contains "interns start no batch jobs" if {
	"interns" in input.client.groups
	input.request.batch.requests == null
}
"""
# The hosts a call may go to here, by name, all to one fake.
NAMED = (
    "eu.api.openai.com",
    "us.api.openai.com",
    "gpt.llm.corp.example",
    "generativelanguage.googleapis.com",
    "generativelanguage.mtls.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "us-central1-aiplatform.mtls.googleapis.com",
    "us-central1-aiplatform-corp1.p.googleapis.com",
    DEDICATED,
    AGENTS,
    CONTROL,
    VPCE,
    CORP_BEDROCK,
)


def agent_stream() -> list[bytes]:
    """InvokeAgent's answer with its traces on: a pre-processing, an orchestration and a
    post-processing model call, and the answer's text between them."""

    def trace(kind: str, given: int, made: int) -> bytes:
        usage = {"inputTokens": given, "outputTokens": made}
        step = {kind: {"modelInvocationOutput": {"traceId": "t", "metadata": {"usage": usage}}}}
        return eventstream.event("trace", {"agentId": "AGENT12345", "sessionId": "s-1", "trace": step})

    return [
        trace("preProcessingTrace", 310, 42),
        trace("orchestrationTrace", 1250, 96),
        eventstream.event("chunk", {"bytes": base64.b64encode(b"Hello from the agent").decode()}),
        trace("postProcessingTrace", 205, 31),
    ]


def answers(r: Received) -> Reply:
    """Each provider's answer; Bedrock's only to a request signed with Tollgate's real credentials or
    with the caller's own."""
    if "amazonaws.com" not in r.headers["host"] and r.headers["host"] != CORP_BEDROCK:
        return provider_answers(r)
    if not (botocore_accepts(r, *REAL_AWS) or botocore_accepts(r, *OWN_AWS)):
        return Reply(403, {"message": "fake Bedrock: bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"})
    path = r.path.partition("?")[0]
    if path.endswith("/text"):
        return Reply(200, chunks=agent_stream(), headers={"content-type": "application/vnd.amazon.eventstream"})
    if path == "/retrieveAndGenerate":
        return Reply(200, {"sessionId": "s-9", "output": {"text": "From the knowledge base."}, "citations": []})
    if path.endswith("/converse"):
        return Reply(200, BEDROCK_CONVERSE)
    if path == "/model-invocation-job":
        return Reply(200, {"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/job1"})
    if path == "/foundation-models":
        return Reply(200, {"modelSummaries": [{"modelId": "amazon.nova-lite-v1:0"}]})
    return Reply(404, {"message": f"no fake for {path}"}, {"x-amzn-errortype": "UnknownOperationException"})


@pytest.fixture(scope="module")
def named(upstream_ca) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(upstream_ca, answers, names=NAMED)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gw(start_gateway, named, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "batch.rego"
    policy.write_text(POLICY)
    aws = {"access_key_id": REAL_AWS[0], "secret_access_key": REAL_AWS[1], "session_token": REAL_AWS[2]}
    config = {
        "providers": {
            "openai": {"keys": [REAL_OPENAI], "hosts": ["*.llm.corp.example"]},
            "gemini": {"keys": [REAL_GEMINI]},
            "vertex": {"keys": [REAL_VERTEX]},
            "bedrock": {"credentials": aws, "hosts": [CORP_BEDROCK], "region": "eu-west-1"},
        },
        "clients": [
            {
                "name": "alice",
                "keys": [ALICE],
                "aws_credentials": [dict(zip(("access_key_id", "secret_access_key"), ALICE_AWS, strict=True))],
            },
            {
                "name": "bob",
                "groups": ["interns"],
                "aws_credentials": [dict(zip(("access_key_id", "secret_access_key"), BOB_AWS, strict=True))],
            },
        ],
        "policy": {"rego": [str(policy)]},
    }
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps(dict.fromkeys(NAMED, named.port))}
    return start_gateway(config, "-s", str(RESOLVE), env=env)


@pytest.fixture
def g(gw, named):
    gw.reset()
    named.received.clear()
    named.handler = answers
    return gw


def openai_chat(base_url: str, key: str = ALICE) -> str:
    return f"""
        import openai
        client = openai.OpenAI(api_key="{key}", base_url="{base_url}", max_retries=0)
        try:
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
            report(tokens=r.usage.total_tokens)
        except openai.APIStatusError as e:
            report(status=e.status_code, error=e.response.headers.get("x-tollgate-error"))
    """


@pytest.mark.parametrize("host", ["eu.api.openai.com", "us.api.openai.com"])
def test_openais_data_residency_hosts_are_governed_and_the_call_stays_there(g, named, host):
    assert g.run(openai_chat(f"https://{host}/v1")) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"], seen.path) == (host, host, "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {REAL_OPENAI}"
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["host"], record["upstream"]) == (
        "alice",
        "openai",
        "chat.completions",
        host,
        f"https://{host}",
    )
    assert (record["model"], record["input_tokens"], record["output_tokens"], record["decision"]) == (
        "gpt-4o-mini",
        21,
        7,
        "allow",
    )


def test_a_data_residency_host_refuses_an_unknown_key_as_openai_does(g, named):
    assert g.run(openai_chat("https://eu.api.openai.com/v1", key="sk-own-key")) == {
        "status": 401,
        "error": "unauthenticated",
    }
    assert named.received == []
    assert (g.last_audit()["host"], g.last_audit()["decision"]) == ("eu.api.openai.com", "deny")


def test_a_host_the_configuration_adds_is_its_providers(g, named):
    assert g.run(openai_chat("https://gpt.llm.corp.example/v1")) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"], seen.headers["authorization"]) == (
        "gpt.llm.corp.example",
        "gpt.llm.corp.example",
        f"Bearer {REAL_OPENAI}",
    )
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["host"], record["total_tokens"]) == (
        "alice",
        "openai",
        "chat.completions",
        "gpt.llm.corp.example",
        28,
    )


def genai_call(base_url: str, vertexai: bool) -> str:
    return f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{ALICE}", vertexai={vertexai},
            http_options=types.HttpOptions(base_url="{base_url}"))
        r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        report(tokens=r.usage_metadata.total_token_count)
    """


@pytest.mark.parametrize(
    ("provider", "host", "goes_to", "vertexai"),
    [
        # An mTLS host takes only a client certificate's calls: its twin serves the same API.
        ("gemini", "generativelanguage.mtls.googleapis.com", "generativelanguage.googleapis.com", False),
        ("vertex", "us-central1-aiplatform.mtls.googleapis.com", "us-central1-aiplatform.googleapis.com", True),
        # A Private Service Connect name stays private: the call goes to it.
        ("vertex", "us-central1-aiplatform-corp1.p.googleapis.com", "us-central1-aiplatform-corp1.p.googleapis.com", True),
    ],
)  # fmt: skip
def test_google_genai_at_an_mtls_or_private_host_is_governed(g, named, provider, host, goes_to, vertexai):
    assert g.run(genai_call(f"https://{host}", vertexai)) == {"tokens": 15}
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"]) == (goes_to, goes_to)
    assert seen.headers["x-goog-api-key"] == (REAL_VERTEX if vertexai else REAL_GEMINI)
    assert ALICE not in str(seen.headers)
    assert seen.path.endswith("/models/gemini-2.5-flash:generateContent")
    record = g.last_audit()
    assert (record["client"], record["provider"], record["endpoint"], record["model"]) == (
        "alice",
        provider,
        "generateContent",
        "gemini-2.5-flash",
    )
    assert (record["host"], record["upstream"], record["total_tokens"]) == (host, f"https://{goes_to}", 15)


def test_the_openai_sdk_at_a_vertex_ai_dedicated_endpoint_is_governed(g, named):
    base = f"https://{DEDICATED}/v1beta1/projects/p/locations/us-central1/endpoints/1234567890"
    assert g.run(openai_chat(base)) == {"tokens": 28}
    seen = named.received[-1]
    assert (seen.sni, seen.path) == (
        DEDICATED,
        "/v1beta1/projects/p/locations/us-central1/endpoints/1234567890/chat/completions",
    )
    assert seen.headers["x-goog-api-key"] == REAL_VERTEX and "authorization" not in seen.headers
    record = g.last_audit()
    assert (record["provider"], record["endpoint"], record["model"], record["host"]) == (
        "vertex",
        "chat.completions",
        "endpoints/1234567890",
        DEDICATED,
    )
    assert (record["input_tokens"], record["output_tokens"]) == (21, 7)


def boto3_client(service: str, key: tuple[str, str], extra: str, region: str = "us-east-1", endpoint: str = "") -> str:
    endpoint_url = f", endpoint_url={endpoint!r}" if endpoint else ""
    return f"""
import boto3, botocore.exceptions
from botocore.config import Config
client = boto3.client("{service}", region_name="{region}", aws_access_key_id="{key[0]}",
    aws_secret_access_key="{key[1]}", config=Config(retries={{"total_max_attempts": 1}}){endpoint_url})
try:
{extra}
except botocore.exceptions.ClientError as e:
    report(status=e.response["ResponseMetadata"]["HTTPStatusCode"], code=e.response["Error"]["Code"],
           message=e.response["Error"]["Message"])
"""


def signed_by_tollgate(seen: Received, region: str = "us-east-1") -> None:
    """The request went with Tollgate's real credentials, signed for Bedrock in `region`."""
    assert botocore_accepts(seen, *REAL_AWS) and seen.headers["x-amz-security-token"] == REAL_AWS[2]
    assert f"/{region}/bedrock/aws4_request" in seen.headers["authorization"]
    assert ALICE_AWS[0] not in str(seen.headers) and BOB_AWS[0] not in str(seen.headers)


def test_boto3_invoke_agent_is_governed_and_its_traces_usage_read(g, named):
    result = g.run(
        boto3_client(
            "bedrock-agent-runtime",
            ALICE_AWS,
            """    r = client.invoke_agent(agentId="AGENT12345", agentAliasId="ALIAS12345", sessionId="s-1",
        inputText="hi", enableTrace=True)
    events = list(r["completion"])
    report(text=b"".join(e["chunk"]["bytes"] for e in events if "chunk" in e).decode(),
           traces=sum("trace" in e for e in events))""",
        )
    )
    assert result == {"text": "Hello from the agent", "traces": 3}, str(result)
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"], seen.path) == (
        AGENTS,
        AGENTS,
        "/agents/AGENT12345/agentAliases/ALIAS12345/sessions/s-1/text",
    )
    signed_by_tollgate(seen)
    record = g.last_audit()
    assert (record["client"], record["auth"], record["provider"], record["endpoint"], record["host"]) == (
        "alice",
        "sigv4",
        "bedrock",
        "invoke-agent",
        AGENTS,
    )
    # The three model calls the traces tell: 310 + 1250 + 205 in, 42 + 96 + 31 out.
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["stream"]) == (
        1765,
        169,
        1934,
        True,
    )


def test_boto3_retrieve_and_generate_is_governed_and_reports_no_usage(g, named):
    model = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    result = g.run(
        boto3_client(
            "bedrock-agent-runtime",
            ALICE_AWS,
            f"""    r = client.retrieve_and_generate(input={{"text": "what is new?"}},
        retrieveAndGenerateConfiguration={{"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {{
            "knowledgeBaseId": "KB12345678", "modelArn": "{model}"}}}})
    report(text=r["output"]["text"])""",
        )
    )
    assert result == {"text": "From the knowledge base."}, str(result)
    signed_by_tollgate(named.received[-1])
    record = g.last_audit()
    assert (record["client"], record["endpoint"], record["model"], record["input_tokens"], record["status"]) == (
        "alice",
        "retrieve-and-generate",
        model,
        None,
        200,
    )


def converse_at(g, named: FakeUpstream, host: str, region: str = "us-east-1") -> None:
    """Alice's boto3 Converse call, its client in `region` and pointed at `host`: answered, and
    sent on to that host signed by Tollgate for `region`."""
    converse = """    r = client.converse(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    report(tokens=r["usage"]["totalTokens"])"""
    result = g.run(boto3_client("bedrock-runtime", ALICE_AWS, converse, region=region, endpoint=f"https://{host}"))
    assert result == {"tokens": 23}, str(result)
    seen = named.received[-1]
    assert (seen.sni, seen.headers["host"]) == (host, host)
    signed_by_tollgate(seen, region=region)


def test_boto3_at_a_vpc_endpoint_is_governed_and_signed_for_its_region(g, named):
    converse_at(g, named, VPCE)
    record = g.last_audit()
    assert (record["client"], record["endpoint"], record["host"], record["upstream"], record["total_tokens"]) == (
        "alice",
        "converse",
        VPCE,
        f"https://{VPCE}",
        23,
    )


def test_boto3_at_a_host_the_configuration_adds_is_signed_for_its_configured_region(g, named):
    converse_at(g, named, CORP_BEDROCK, region="eu-west-1")
    assert (g.last_audit()["client"], g.last_audit()["host"]) == ("alice", CORP_BEDROCK)


JOB = """    r = client.create_model_invocation_job(jobName="nightly", roleArn="arn:aws:iam::123456789012:role/batch",
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://in/requests.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://out/"}})
    report(job=r["jobArn"])"""


def test_a_model_invocation_job_is_governed_as_a_batch_whose_requests_tollgate_cannot_read(g, named):
    assert g.run(boto3_client("bedrock", ALICE_AWS, JOB)) == {
        "job": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/job1"
    }
    seen = named.received[-1]
    assert (seen.sni, seen.path) == (CONTROL, "/model-invocation-job")
    signed_by_tollgate(seen)
    record = g.last_audit()
    assert_fields(
        record,
        client="alice",
        endpoint="create-model-invocation-job",
        model="anthropic.claude-3-haiku-20240307-v1:0",
        decision="allow",
    )
    # The policy sees the job as one call that starts a batch of unknown size.
    named.received.clear()
    result = g.run(boto3_client("bedrock", BOB_AWS, JOB))
    assert (result["status"], result["code"]) == (403, "AccessDeniedException"), str(result)
    assert "interns start no batch jobs" in result["message"]
    assert named.received == []
    assert (g.last_audit()["client"], g.last_audit()["deny_reasons"]) == ("bob", ["interns start no batch jobs"])


LIST_MODELS = """    r = client.list_foundation_models()
    report(models=[m["modelId"] for m in r["modelSummaries"]])"""


def test_the_rest_of_the_control_plane_goes_with_the_callers_own_credentials(g, named):
    """Tollgate has clients and refuses anonymous callers: a path outside the model API still goes,
    with the caller's own AWS credentials as signed, and is audited with no endpoint."""
    assert g.run(boto3_client("bedrock", OWN_AWS, LIST_MODELS)) == {"models": ["amazon.nova-lite-v1:0"]}
    seen = named.received[-1]
    assert (seen.sni, seen.path) == (CONTROL, "/foundation-models")
    assert botocore_accepts(seen, *OWN_AWS) and "x-amz-security-token" not in seen.headers
    record = g.last_audit()
    assert (record["client"], record["auth"], record["endpoint"], record["model"], record["decision"]) == (
        None,
        "anonymous",
        None,
        None,
        "allow",
    )
    assert (record["status"], record["host"], record["path"]) == (200, CONTROL, "/foundation-models")
    assert record["upstream_key"].startswith("sha256:") and record["input_tokens"] is None


def test_a_virtual_credential_outside_the_model_api_is_refused(g, named):
    result = g.run(boto3_client("bedrock", ALICE_AWS, LIST_MODELS))
    assert (result["status"], result["code"]) == (403, "UnrecognizedClientException"), str(result)
    assert "outside the model API" in result["message"] and "your own credentials" in result["message"]
    assert named.received == []
    record = g.last_audit()
    assert (record["endpoint"], record["decision"], record["status"]) == (None, "deny", 403)


def test_no_credential_of_any_of_these_hosts_reaches_the_console_or_the_audit(g):
    """Runs last in this module: every call above has been made through this gateway."""
    console, audit = g.proxy.console(), g.audit_path.read_text()
    assert "llm_call" in audit
    for secret in (REAL_OPENAI, REAL_GEMINI, REAL_VERTEX, ALICE, *REAL_AWS[1:], ALICE_AWS[1], BOB_AWS[1], OWN_AWS[1]):
        assert secret not in console and secret not in audit, secret


# --- a client certificate for Google's mTLS hosts ---------------------------------------------------

MTLS = "us-central1-aiplatform.mtls.googleapis.com"
MTLS_GEMINI = "generativelanguage.mtls.googleapis.com"


@pytest.fixture(scope="module")
def mtls(upstream_ca) -> Iterator[tuple[FakeUpstream, trustme.CA]]:
    """A Google mTLS host that serves only a client with a certificate of its own CA."""
    client_ca = trustme.CA()
    fake = FakeUpstream(upstream_ca, provider_answers, names=(MTLS, MTLS_GEMINI), client_ca=client_ca)
    yield fake, client_ca
    fake.close()


@pytest.fixture(scope="module")
def mg(start_gateway, mtls, named, tmp_path_factory):
    fake, client_ca = mtls
    pem = tmp_path_factory.mktemp("client-cert") / "tollgate-client.pem"
    client_ca.issue_cert("tollgate-client", common_name="tollgate-client").private_key_and_cert_chain_pem.write_to_path(
        str(pem)
    )
    config = {
        "providers": {"vertex": {"keys": [REAL_VERTEX], "client_cert": str(pem)}, "gemini": {"keys": [REAL_GEMINI]}},
        "clients": [{"name": "alice", "keys": [ALICE]}],
    }
    # The mTLS hosts to the fake that asks for a client certificate; the Gemini API's twin to the other.
    resolve = {MTLS: fake.port, MTLS_GEMINI: fake.port, "generativelanguage.googleapis.com": named.port}
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps(resolve)}
    return start_gateway(config, "-s", str(RESOLVE), env=env)


def test_a_client_certificate_keeps_an_mtls_hosts_calls_there_and_is_presented(mg, mtls):
    fake, _ = mtls
    fake.received.clear()
    assert mg.run(genai_call(f"https://{MTLS}", vertexai=True)) == {"tokens": 15}
    seen = fake.received[-1]
    assert (seen.sni, seen.headers["host"], seen.client_cert) == (MTLS, MTLS, "tollgate-client")
    assert seen.headers["x-goog-api-key"] == REAL_VERTEX
    record = mg.last_audit()
    assert (record["client"], record["provider"], record["host"], record["upstream"]) == (
        "alice",
        "vertex",
        MTLS,
        f"https://{MTLS}",
    )


def test_a_provider_without_a_client_certificate_still_sends_its_mtls_hosts_calls_to_the_twin(mg, mtls, named):
    """The Gemini API has none here: its mTLS host's call goes to the twin, never to the mTLS host."""
    fake, _ = mtls
    fake.received.clear()
    named.received.clear()
    assert mg.run(genai_call(f"https://{MTLS_GEMINI}", vertexai=False)) == {"tokens": 15}
    assert fake.received == []
    seen = named.received[-1]
    assert (seen.sni, seen.headers["x-goog-api-key"]) == ("generativelanguage.googleapis.com", REAL_GEMINI)
    record = mg.last_audit()
    assert (record["host"], record["upstream"]) == (MTLS_GEMINI, "https://generativelanguage.googleapis.com")
