"""The Rego policy decides every call: a denied call gets the SDK's own permission error with the
reasons, reaches no upstream, and is audited as denied."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from tests.support.fake_upstream import Reply
from tests.support.proxy import ROOT, run_to_exit

EXAMPLES = ROOT / "docs" / "examples" / "policies"
SAM = "tg-sam-support-1"
ALICE = "tg-alice-research-1"
KEYS = {"openai": "sk-real-o", "gemini": "AIza-real-g", "anthropic": "sk-ant-real-a", "bedrock": "ABSK-real-b"}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("policy")
    (directory / "allowlist.rego").write_text((EXAMPLES / "model_allowlist.rego").read_text())
    (directory / "live.rego").write_text("package tollgate\n")
    (directory / "tiers.rego").write_text(TIERS)
    return directory


# A rule on how a call asks to be run, which the price depends on.
TIERS = """package tollgate
import rego.v1

premium if input.request.service_tier == "priority"

premium if input.request.speed in {"fast", "optimized"}

deny contains "group support may not buy priority or fast mode" if {
	"support" in input.client.groups
	premium
}
"""


@pytest.fixture(scope="module")
def gw(start_gateway, policy_dir):
    return start_gateway(
        lambda urls: {
            "providers": {name: {"upstream": url, "keys": [KEYS[name]]} for name, url in urls.items()},
            "clients": [
                {"name": "alice", "keys": [ALICE], "groups": ["research"]},
                {"name": "sam", "keys": [SAM], "groups": ["support"]},
            ],
            "policy": {"rego": [str(policy_dir / name) for name in ("allowlist.rego", "live.rego", "tiers.rego")]},
        }
    )


@pytest.mark.parametrize(
    ("provider", "code", "expected"),
    [
        (
            "openai",
            f"""
            import openai
            openai.OpenAI(api_key="{SAM}", max_retries=0).chat.completions.create(
                model="gpt-4.1", messages=[{{"role": "user", "content": "hi"}}])
        """,
            ("PermissionDeniedError", 403, "gpt-4.1"),
        ),
        (
            "anthropic",
            f"""
            import anthropic
            anthropic.Anthropic(api_key="{SAM}", max_retries=0).messages.create(
                model="claude-opus-4-1", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
        """,
            ("PermissionDeniedError", 403, "claude-opus-4-1"),
        ),
        (
            "gemini",
            f"""
            from google import genai
            client = genai.Client(api_key="{SAM}")
            client.models.generate_content(model="gemini-2.5-pro", contents="hi")
        """,
            ("ClientError", 403, "gemini-2.5-pro"),
        ),
        (
            "bedrock",
            """
            import boto3
            boto3.client("bedrock-runtime", region_name="us-east-1").converse(
                modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        """,
            ("AccessDeniedException", 403, "amazon.nova-pro-v1:0"),
        ),
    ],
)
def test_denied_model_raises_the_sdks_permission_error(gw, provider, code, expected):
    gw.reset()
    result = gw.run(textwrap.dedent(code) + "\nreport(error=None)", env={"AWS_BEARER_TOKEN_BEDROCK": SAM})
    error, status, model = expected
    assert (result["error"], result["status"]) == (error, status), str(result)
    reason = f'model {model} is not allowed for groups ["support"]'
    assert reason in result["message"]
    if provider == "bedrock":
        assert result["code"] == "AccessDeniedException"
    assert gw.fakes[provider].received == []
    record = gw.last_audit()
    assert (record["client"], record["decision"], record["deny_reasons"], record["status"]) == (
        "sam",
        "deny",
        [reason],
        403,
    )
    assert record["refusal"] == "policy_denied"


@pytest.mark.parametrize(
    ("provider", "code", "reason"),
    [
        (
            "openai",
            f"""
            import openai
            openai.OpenAI(api_key="{SAM}", max_retries=0).batches.create(
                input_file_id="file-abc", endpoint="/v1/chat/completions", completion_window="24h")
        """,
            'the model of this batches call is not read; groups ["support"] may not make one',
        ),
        (
            "anthropic",
            f"""
            import anthropic
            anthropic.Anthropic(api_key="{SAM}", max_retries=0).messages.batches.create(requests=[
                {{"custom_id": "a", "params": {{"model": "claude-opus-4-1", "max_tokens": 10,
                                               "messages": [{{"role": "user", "content": "hi"}}]}}}}])
        """,
            'model claude-opus-4-1 is not allowed for groups ["support"]',
        ),
    ],
)
def test_a_batch_is_decided_on_the_models_it_runs(gw, provider, code, reason):
    gw.reset()
    result = gw.run(textwrap.dedent(code) + "\nreport(error=None)")
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403), str(result)
    assert reason in result["message"]
    assert gw.fakes[provider].received == []
    record = gw.last_audit()
    assert (record["client"], record["decision"], record["deny_reasons"]) == ("sam", "deny", [reason])


def test_allowed_call_goes_through(gw):
    gw.reset()
    result = gw.run(f"""
        from openai import OpenAI
        r = OpenAI(api_key="{SAM}", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        report(tokens=r.usage.total_tokens)
    """)
    assert result == {"tokens": 28}
    record = gw.last_audit()
    assert (record["decision"], record["deny_reasons"], record["refusal"]) == ("allow", [], None)


@pytest.mark.parametrize(
    "code",
    [
        f"""
        import openai
        openai.OpenAI(api_key="{SAM}", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", service_tier="priority", messages=[{{"role": "user", "content": "hi"}}])
    """,
        f"""
        import anthropic
        anthropic.Anthropic(api_key="{SAM}", max_retries=0).beta.messages.create(
            model="claude-opus-5", max_tokens=10, speed="fast", betas=["fast-mode-2026-02-01"],
            messages=[{{"role": "user", "content": "hi"}}])
    """,
        """
        import boto3
        boto3.client("bedrock-runtime", region_name="us-east-1").converse(
            modelId="amazon.nova-pro-v1:0", serviceTier={"type": "priority"},
            messages=[{"role": "user", "content": [{"text": "hi"}]}])
    """,
        """
        import boto3, json
        boto3.client("bedrock-runtime", region_name="us-east-1").invoke_model(
            modelId="anthropic.claude-3-5-haiku-20241022-v1:0", performanceConfigLatency="optimized",
            body=json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 9, "messages": []}))
    """,
    ],
    ids=["openai-priority", "anthropic-fast", "bedrock-priority", "bedrock-optimized"],
)
def test_a_rule_on_the_tier_a_call_asks_for(gw, code):
    gw.reset()
    result = gw.run(textwrap.dedent(code) + "report(error=None)\n", env={"AWS_BEARER_TOKEN_BEDROCK": SAM})
    error = "AccessDeniedException" if "boto3" in code else "PermissionDeniedError"
    assert (result["error"], result["status"]) == (error, 403), str(result)
    record = gw.last_audit()
    assert "group support may not buy priority or fast mode" in record["deny_reasons"]
    assert not any(fake.received for fake in gw.fakes.values())


def test_an_edit_takes_effect_without_restart_and_a_broken_one_keeps_the_last_good(gw, policy_dir):
    gw.reset()
    call = f"""
        import openai
        try:
            openai.OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
            report(status=200)
        except openai.PermissionDeniedError as e:
            report(status=403, message=e.message)
    """
    assert gw.run(call) == {"status": 200}
    live = policy_dir / "live.rego"
    live.write_text(
        'package tollgate\nimport rego.v1\ndeny contains "research is closed today" if "research" in input.client.groups\n'
    )
    os.utime(live, ns=(time.time_ns(), time.time_ns() + 10**9))

    def outcome_within(seconds: float, wanted: int) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            result = gw.run(call)
            if result["status"] == wanted or time.monotonic() > deadline:
                return result
            time.sleep(0.3)

    denied = outcome_within(10, 403)
    assert denied["status"] == 403 and "research is closed today" in denied["message"]
    # A builtin OPA does not have: refused when the policy loads, never undefined at call time.
    live.write_text('package tollgate\nimport rego.v1\ndeny contains "x" if graphql.nope(input.model)\n')
    os.utime(live, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    gw.wait_console(f"{live}:3: rego_type_error: undefined function graphql.nope")
    assert "policy not reloaded, the last good one stays in force" in gw.proxy.console()
    still = gw.run(call)
    assert still["status"] == 403, "a broken edit must keep the last good policy"
    # A built-in a policy may not call (its env holds the real keys): refused at the reload as at
    # start-up, the last good policy kept.
    live.write_text("package tollgate\nimport rego.v1\ndeny contains r if {\n  r := opa.runtime().env.HOME\n}\n")
    os.utime(live, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))
    gw.wait_console(f"policy not reloaded, the last good one stays in force: {live}:4: calls opa.runtime, which")
    kept = gw.run(call)
    assert kept["status"] == 403 and "research is closed today" in kept["message"]


def test_broken_policy_stops_start_up_naming_file_and_line(tmp_path, confdir):
    (tmp_path / "policy.rego").write_text("package tollgate\n\ndeny contains x if {\n")
    config = tmp_path / "tollgate.yaml"
    config.write_text("policy:\n  rego: [policy.rego]\n")  # relative to the configuration file
    done = run_to_exit(confdir, config)
    assert done.returncode != 0
    assert f"policy.rego: {tmp_path}/policy.rego:4: rego_parse_error: unexpected eof token" in done.stdout + done.stderr


def test_a_builtin_opa_lacks_stops_start_up_naming_file_line_and_builtin(tmp_path, confdir):
    (tmp_path / "policy.rego").write_text(
        'package tollgate\nimport rego.v1\n\ndeny contains "no" if not json.match_schemas(input, {})\n'
    )
    config = tmp_path / "tollgate.yaml"
    config.write_text("policy:\n  rego: [policy.rego]\n")
    done = run_to_exit(confdir, config)
    assert done.returncode != 0
    assert (
        f"policy.rego: {tmp_path}/policy.rego:4: rego_type_error: undefined function json.match_schemas"
        in done.stdout + done.stderr
    )


def test_missing_policy_file_stops_start_up(tmp_path, confdir):
    config = tmp_path / "tollgate.yaml"
    config.write_text("policy:\n  rego: [nowhere.rego]\n")
    done = run_to_exit(confdir, config)
    assert done.returncode != 0
    assert f"{tmp_path}/nowhere.rego: cannot read" in done.stdout + done.stderr


# --- docs/examples/policies/inference_only.rego ------------------------------------------------------

AGENT = "tg-agent-traces-1"
TRACES = """
import http.client, json, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port,
    context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("api.openai.com", 443)
conn.request("POST", "/v1/traces/ingest", body=json.dumps({"data": [{"object": "trace", "id": "trace_0"}]}),
    headers={"authorization": "Bearer %s", "content-type": "application/json"})
response = conn.getresponse()
report(status=response.status, body=json.loads(response.read() or b"null"))
"""


@pytest.fixture(scope="module")
def gw_inference(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [KEYS["openai"]]}},
            "clients": [
                {"name": "alice", "keys": [ALICE], "groups": ["research"]},
                {"name": "agent", "keys": [AGENT], "groups": ["agents"]},
            ],
            "policy": {"rego": [str(EXAMPLES / "inference_only.rego")]},
        }
    )


def test_inference_only_refuses_a_trace_upload(gw_inference):
    gw_inference.reset()
    result = gw_inference.run(TRACES % ALICE)
    reason = 'endpoint traces.ingest is not inference; groups ["research"] may not call it'
    assert result["status"] == 403 and reason in result["body"]["error"]["message"], str(result)
    assert gw_inference.fakes["openai"].received == []
    record = gw_inference.last_audit()
    assert (record["client"], record["endpoint"], record["decision"], record["deny_reasons"], record["status"]) == (
        "alice",
        "traces.ingest",
        "deny",
        [reason],
        403,
    )


def test_inference_only_refuses_files_to_the_sdk(gw_inference):
    gw_inference.reset()
    result = gw_inference.run(f"""
import openai
openai.OpenAI(api_key="{ALICE}", max_retries=0).files.list()
report(error=None)
""")
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403), str(result)
    assert "endpoint files is not inference" in result["message"]
    assert gw_inference.fakes["openai"].received == []


def test_inference_only_lets_a_group_it_names_upload_traces(gw_inference):
    gw_inference.reset()
    gw_inference.fakes["openai"].handler = lambda r: Reply(200, {"ok": True})
    result = gw_inference.run(TRACES % AGENT)
    assert result == {"status": 200, "body": {"ok": True}}
    (seen,) = gw_inference.fakes["openai"].received
    assert (seen.path, seen.headers["authorization"]) == ("/v1/traces/ingest", f"Bearer {KEYS['openai']}")
    assert gw_inference.last_audit()["decision"] == "allow"
