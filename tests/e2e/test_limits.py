"""Limits end to end: what a call may use is reserved before it goes, and a call that would cross a
limit gets 429 in its provider's own shape, which each official SDK raises as its own error."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from tests.support import streams
from tests.support.canned import OPENAI_RESPONSES, provider_answers
from tests.support.cli import run_tollgate
from tests.support.configs import with_policy
from tests.support.fake_upstream import Received, Reply

REAL = {
    "openai": "sk-real-openai-limits-0001",
    "gemini": "AIza-real-gemini-limits-0001",
    "anthropic": "sk-ant-real-limits-0001",
    "bedrock": "ABSK-real-bedrock-limits-0001",
}
CLIENTS = {
    # name: groups
    **{f"daily-{sdk}": () for sdk in REAL},
    "rpm": (),
    "streamer": (),
    "spender": (),
    "sprinter": (),
    "pc1": ("pc",),
    "pc2": ("pc",),
    "pg1": ("pg",),
    "pg2": ("pg",),
    "all-1": ("x",),
    "all-2": ("y",),
    "watched": (),
    "retriever": (),
    "fetcher": (),
}


def key(name: str) -> str:
    return f"tg-{name}-limits-key"


POLICY = """
package tollgate
import rego.v1

# Exactly two: a denied call that still counted would make the next call the fourth, and let it go.
deny contains "two calls a day is the policy's limit" if {
    input.usage.counted[input.client.name].requests_per_day.used == 2
}
"""


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
        "clients": [{"name": name, "keys": [key(name)], "groups": list(groups)} for name, groups in CLIENTS.items()],
        "prices": [
            # Whole dollars per token, so that the costs below are exact in a glance.
            {
                "match": {"provider": "openai", "model": "gpt-4o-priced"},
                "input_per_mtok": 1_000_000,
                "cached_input_per_mtok": 500_000,
                "output_per_mtok": 2_000_000,
            }
        ],
        "limits": [
            {"name": "one a day", "match": {"client": "daily-*"}, "requests_per_day": 1},
            {"name": "two a minute", "match": {"client": "rpm"}, "requests_per_minute": 2},
            {"name": "tokens", "match": {"client": "streamer"}, "tokens_per_day": 120},
            {"name": "spend", "match": {"client": "spender"}, "usd_per_day": 60},
            {"name": "sprint", "match": {"client": "sprinter"}, "usd_per_day": 0.04},
            {"match": {"group": "pc"}, "per": "client", "requests_per_day": 1},
            {"match": {"group": "pg"}, "per": "group", "requests_per_day": 1},
            {"match": {"client": "all-*"}, "per": "all", "requests_per_day": 1},
            {"name": "counted", "match": {"client": "watched"}, "requests_per_day": 100},
            {"name": "kept", "match": {"client": "retriever"}, "tokens_per_day": 100},
            {"name": "thrifty", "match": {"client": "fetcher"}, "tokens_per_day": 50, "usd_per_day": 1},
        ],
        "policy": {"rego": ["policy.rego"]},
    }


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    return with_policy(start_gateway(config), config, POLICY)


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()


def twice(client: str, call: str, outcome: str) -> str:
    """Client code: `client` made (with the key `{key}`, formatted in later), then `call` made with
    it twice; each call's 200, or `outcome` (a list, of the exception `e`), reported."""
    return f"""
{textwrap.dedent(client).strip()}
outcomes = []
for _ in range(2):
    try:
        {call}
        outcomes.append(200)
    except Exception as e:
        outcomes.append({outcome})
report(outcomes=outcomes)
"""


CALLS = {
    "openai": twice(
        """
        from openai import OpenAI
        client = OpenAI(api_key="{key}")  # the SDK's own retries: told not to retry a spent budget
        """,
        'client.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])',
        '[type(e).__name__, e.status_code, e.code, e.response.headers.get("retry-after"), '
        'e.response.headers.get("x-tollgate-error")]',
    ),
    "anthropic": twice(
        """
        import anthropic
        client = anthropic.Anthropic(api_key="{key}")
        """,
        'client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])',
        '[type(e).__name__, e.status_code, e.body["error"]["type"], e.response.headers.get("retry-after"), '
        'e.response.headers.get("x-tollgate-error")]',
    ),
    "gemini": twice(
        """
        from google import genai
        client = genai.Client(api_key="{key}")
        """,
        'client.models.generate_content(model="gemini-2.0-flash", contents="hi")',
        "[type(e).__name__, e.code, e.status, None, None]",
    ),
    "bedrock": twice(
        """
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={{"total_max_attempts": 1}}))
        """,
        'client.converse(modelId="amazon.nova-lite-v1:0", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])',
        '[type(e).__name__, e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], '
        'e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), '
        'e.response["ResponseMetadata"]["HTTPHeaders"].get("x-tollgate-error")]',
    ),
}
EXPECTED = {
    "openai": ["RateLimitError", 429, "insufficient_quota"],
    "anthropic": ["RateLimitError", 429, "rate_limit_error"],
    "gemini": ["ClientError", 429, "RESOURCE_EXHAUSTED"],
    "bedrock": ["ThrottlingException", 429, "ThrottlingException"],  # botocore's modelled error class
}


@pytest.mark.parametrize("sdk", list(CALLS))
def test_a_spent_daily_limit_raises_each_sdks_own_rate_limit_error(g, sdk):
    client = f"daily-{sdk}"
    env = {"AWS_BEARER_TOKEN_BEDROCK": key(client)} if sdk == "bedrock" else None
    outcomes = g.run(textwrap.dedent(CALLS[sdk]).format(key=key(client)), env=env)["outcomes"]
    assert outcomes[0] == 200
    refused = outcomes[1]
    assert refused[:3] == EXPECTED[sdk], refused
    if refused[3] is not None:  # the SDKs that show the answer's headers
        assert abs(int(refused[3]) - seconds_to_midnight()) < 5
        assert refused[4] == "budget_exceeded"
    assert len(g.fakes[sdk].received) == 1  # the refused call never went, and was not retried
    served, denied = g.new_audit(2)
    assert (served["status"], served["decision"], served["client"]) == (200, "allow", client)
    assert (denied["status"], denied["decision"], denied["client"]) == (429, "deny", client)
    assert (served["refusal"], denied["refusal"]) == (None, "budget_exceeded")
    assert denied["deny_reasons"] == [f"limit 'one a day': requests_per_day 1 reached for {client}"]


def test_a_full_minute_is_rate_limited_with_the_seconds_to_wait(g):
    # Three calls in one UTC minute: started early enough in a minute that they all fall in it.
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("rpm")}", max_retries=0)
        outcomes = []
        for _ in range(3):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
                outcomes.append(200)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.code, int(e.response.headers["retry-after"]),
                                 e.response.headers.get("x-should-retry"), e.response.headers["x-tollgate-error"]])
        report(outcomes=outcomes, second=__import__("datetime").datetime.now(__import__("datetime").UTC).second)
    """)
    outcomes = result["outcomes"]
    assert outcomes[:2] == [200, 200]
    name, status, code, wait, should_retry, reason = outcomes[2]
    assert (name, status, code, reason) == ("RateLimitError", 429, "rate_limit_exceeded", "rate_limited")
    # The minute's end: the SDK's own retries wait that long (it honours Retry-After up to 60 s).
    assert should_retry is None and 1 <= wait <= 60 and abs(wait - (60 - result["second"])) <= 2
    denied = g.new_audit(3)[2]
    assert denied["deny_reasons"] == ["limit 'two a minute': requests_per_minute 2 reached for rpm"]


def test_a_streamed_call_settles_its_tokens_and_stops_the_next_call(g):
    g.fakes["anthropic"].handler = lambda r: Reply(
        200, headers={"content-type": "text/event-stream"}, chunks=streams.anthropic()
    )
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{key("streamer")}", max_retries=0)
        outcomes = []
        for _ in range(2):
            try:
                with client.messages.stream(model="claude-sonnet-4-5", max_tokens=20,
                                            messages=[{{"role": "user", "content": "hi"}}]) as stream:
                    outcomes.append(stream.get_final_message().usage.output_tokens)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, str(e)])
        report(outcomes=outcomes)
    """)
    first, second = result["outcomes"]
    assert first == 9
    assert second[:2] == ["RateLimitError", 429]
    # 80 prompt tokens (50 of them cache reads) and 9 answer tokens used; the next call's reservation does not fit.
    assert "tokens_per_day is 120 for streamer; 89 used" in second[2]
    streamed, denied = g.new_audit(2)
    assert (streamed["input_tokens"], streamed["output_tokens"], streamed["status"]) == (80, 9, 200)
    assert (denied["status"], denied["deny_reasons"]) == (
        429,
        ["limit 'tokens': tokens_per_day 120 reached for streamer"],
    )
    assert len(g.fakes["anthropic"].received) == 1


def test_usd_per_day_counts_exact_costs(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("spender")}", max_retries=0)
        outcomes = []
        for _ in range(2):
            try:
                client.chat.completions.create(model="gpt-4o-priced", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])
                outcomes.append(200)
            except Exception as e:
                outcomes.append([e.status_code, e.code, e.message])
        report(outcomes=outcomes)
    """)
    first, second = result["outcomes"]
    assert first == 200
    assert second[:2] == [429, "insufficient_quota"]
    # 16 uncached prompt tokens at $1, 5 cached at $0.50, 7 answer tokens at $2: $32.50.
    assert "usd_per_day is $60.00 for spender; $32.50 used" in second[2]
    served, denied = g.new_audit(2)
    assert served["cost_usd"] == 32.5
    assert denied["deny_reasons"] == ["limit 'spend': usd_per_day $60.00 reached for spender"]
    assert denied["cost_usd"] is None  # never sent: nothing spent


def test_fetching_a_stored_response_counts_none_of_its_tokens_again(g):
    def answers(r: Received) -> Reply:  # made (POST) or fetched (GET): the same stored response
        return Reply(200, OPENAI_RESPONSES) if r.path.startswith("/v1/responses") else provider_answers(r)

    g.fakes["openai"].handler = answers
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("retriever")}", max_retries=0)
        made = client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=5)
        fetched = [client.responses.retrieve(made.id).usage.total_tokens for _ in range(2)]
        try:
            client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=90)
            refused = None
        except Exception as e:
            refused = [type(e).__name__, e.status_code, e.message]
        report(made=made.usage.total_tokens, fetched=fetched, refused=refused)
    """)
    # The client gets the stored usage as it was; the limit counted it once: 40 used, not 120.
    assert (result["made"], result["fetched"]) == (40, [40, 40])
    assert result["refused"][:2] == ["RateLimitError", 429]
    assert "tokens_per_day is 100 for retriever; 40 used" in result["refused"][2]
    made, *fetched, refused = g.new_audit(4)
    assert (made["method"], made["input_tokens"], made["output_tokens"], made["total_tokens"]) == ("POST", 31, 9, 40)
    for record in fetched:
        assert (record["method"], record["path"], record["endpoint"], record["status"]) == (
            "GET",
            "/v1/responses/resp_1",
            "responses",
            200,
        )
        assert (record["input_tokens"], record["output_tokens"], record["total_tokens"], record["cost_usd"]) == (
            None,
            None,
            None,
            None,
        )
    assert refused["status"] == 429


FILE = {"id": "file-1", "object": "file", "bytes": 3, "created_at": 1700000000, "filename": "in.jsonl",
        "purpose": "batch", "status": "processed"}  # fmt: skip


def test_calls_that_generate_nothing_need_no_price_and_use_no_tokens(g):
    # A listing, an upload or a moderation names no model (no price to find under a usd cap); a
    # count of tokens is free.
    def answers(r: Received) -> Reply:
        if r.path == "/v1/messages/count_tokens":
            return Reply(200, {"input_tokens": 40})
        if r.path == "/v1/moderations":
            return Reply(200, {"id": "modr-1", "model": "omni-moderation-latest", "results": [{"flagged": False}]})
        return Reply(200, FILE) if r.path == "/v1/files" else provider_answers(r)

    g.fakes["anthropic"].handler = g.fakes["openai"].handler = answers
    result = g.run(f"""
        import anthropic
        from openai import OpenAI
        openai = OpenAI(api_key="{key("fetcher")}", max_retries=0)
        listed = len(openai.models.list().data)
        uploaded = openai.files.create(file=("in.jsonl", b"{{}}\\n"), purpose="batch").id
        moderated = openai.moderations.create(input="hi").results[0].flagged
        client = anthropic.Anthropic(api_key="{key("fetcher")}", max_retries=0)
        hi = [{{"role": "user", "content": "hi"}}]
        counted = [client.messages.count_tokens(model="claude-sonnet-4-5", messages=hi).input_tokens for _ in range(3)]
        try:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=hi)
            refused = None
        except Exception as e:
            refused = [e.status_code, str(e)]
        report(listed=listed, uploaded=uploaded, moderated=moderated, counted=counted, refused=refused)
    """)
    assert (result["listed"], result["uploaded"], result["moderated"], result["counted"]) == (
        0,
        "file-1",
        False,
        [40, 40, 40],
    )
    assert result["refused"][0] == 429 and "tokens_per_day is 50 for fetcher; 0 used" in result["refused"][1]
    listed, uploaded, moderated, *counted, refused = g.new_audit(7)
    assert (listed["endpoint"], listed["status"], listed["decision"]) == ("models", 200, "allow")
    assert (uploaded["endpoint"], uploaded["status"], uploaded["decision"]) == ("files", 200, "allow")
    assert (moderated["endpoint"], moderated["status"], moderated["decision"]) == ("moderations", 200, "allow")
    for record in counted:  # the audit says what the count was; the limit counted no tokens for it
        assert (record["endpoint"], record["status"], record["input_tokens"], record["cost_usd"]) == (
            "messages.count_tokens",
            200,
            40,
            0.0,
        )
    assert refused["status"] == 429


def test_a_call_is_reserved_at_the_speed_it_asks_for(g):
    # claude-opus-5's 1000 answer tokens: $0.025 at standard speed, $0.05 in fast mode (2x), over the $0.04 a day.
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{key("sprinter")}", max_retries=0)
        outcomes = []
        for speed in ("fast", "standard"):
            try:
                client.beta.messages.create(model="claude-opus-5", max_tokens=1000, speed=speed,
                    betas=["fast-mode-2026-02-01"], messages=[{{"role": "user", "content": "hi"}}])
                outcomes.append(200)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code])
        report(outcomes=outcomes)
    """)
    assert result["outcomes"] == [["RateLimitError", 429], 200]
    denied, served = g.new_audit(2)
    assert denied["deny_reasons"] == ["limit 'sprint': usd_per_day $0.04 reached for sprinter"]
    assert (served["status"], served["speed"]) == (200, None)  # the fake's answer does not say
    assert len(g.fakes["anthropic"].received) == 1


def outcomes_of(g, names: list[str]) -> list[int]:
    code = "from openai import OpenAI\noutcomes = []\n"
    for name in names:
        code += f"""
try:
    OpenAI(api_key="{key(name)}", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    outcomes.append(200)
except Exception as e:
    outcomes.append(e.status_code)
"""
    return g.run(code + "report(outcomes=outcomes)")["outcomes"]


def test_limits_per_client_per_group_and_for_all(g):
    # Per client: each client of the group has its own call a day.
    assert outcomes_of(g, ["pc1", "pc2", "pc1", "pc2"]) == [200, 200, 429, 429]
    # Per group: the group's one call a day, whoever makes it.
    assert outcomes_of(g, ["pg1", "pg2"]) == [200, 429]
    # For all: one call a day among all the clients it matches, whatever their groups.
    assert outcomes_of(g, ["all-2", "all-1"]) == [200, 429]
    reasons = [r["deny_reasons"] for r in g.new_audit(2)]
    assert reasons == [[], ["limit 'client=all-* per all': requests_per_day 1 reached for all"]]


def test_the_policy_sees_the_counters_and_its_denial_frees_the_reservation(g):
    assert outcomes_of(g, ["watched"] * 4) == [200, 200, 403, 403]
    records = g.new_audit(4)
    assert [r["deny_reasons"] for r in records[2:]] == [["two calls a day is the policy's limit"]] * 2
    assert len(g.fakes["openai"].received) == 2


def test_the_usage_report_from_the_ledger_totals_what_the_audit_says(gw):
    """Last in this module: every call above is in both."""
    audit = gw.audit()
    deadline = time.monotonic() + 10  # the ledger writes its rows in batches, half a second apart
    while True:
        report = usage_report(gw)
        if report["total"]["requests"] == len(audit) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    total = report["total"]
    assert total["requests"] == len(audit) > 20
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        assert total[field] == sum(r[field] or 0 for r in audit), field
    assert Decimal(str(total["cost_usd"])) == sum(Decimal(str(r["cost_usd"])) for r in audit if r["cost_usd"])
    by_client = {row["client"]: row["requests"] for row in report["rows"]}
    assert by_client["pc1"] == 2 and by_client["spender"] == 2
    assert report["malformed"] == 0


def usage_report(gw) -> dict:
    done = run_tollgate(
        "usage", "--config", str(gw.config_path), "--since", "1d", "--by", "client", "--format", "json",
        cwd=gw.config_path.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
