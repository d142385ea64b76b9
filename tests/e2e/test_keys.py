"""The provider's key pool, and callers with no upstream credential."""

from __future__ import annotations

import time

import pytest
from tests.support.fake_upstream import Reply

K1, K2 = "sk-pool-key-one-111", "sk-pool-key-two-222"
ALICE = "tg-alice-keys-test"
CHAT = """
    from openai import OpenAI
    client = OpenAI(api_key="%s", max_retries=0)
    outcomes = []
    for _ in range(%d):
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            outcomes.append(200)
        except Exception as e:
            outcomes.append(getattr(e, "status_code", repr(e)))
    report(outcomes=outcomes)
"""


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [K1, K2]},
                "anthropic": {"upstream": urls["anthropic"]},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
        }
    )


def used_keys(fake) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in fake.received]


def test_keys_are_used_in_turn(gw):
    gw.reset()
    assert gw.run(CHAT % (ALICE, 4)) == {"outcomes": [200, 200, 200, 200]}
    keys = used_keys(gw.fakes["openai"])
    assert keys in ([K1, K2, K1, K2], [K2, K1, K2, K1])
    fingerprints = [r["upstream_key"] for r in gw.new_audit(4)]
    assert len(set(fingerprints)) == 2 and fingerprints[0] == fingerprints[2]


def test_a_pool_key_bills_the_account_it_was_issued_for_whatever_organization_the_sdk_names(gw):
    # OPENAI_ORG_ID and OPENAI_PROJECT_ID name the caller's own account: with a key of Tollgate's,
    # OpenAI would refuse them (mismatched_organization) or bill another organization of its user.
    gw.reset()
    env = {"OPENAI_ORG_ID": "org-callers-own", "OPENAI_PROJECT_ID": "proj_callers_own"}
    assert gw.run(CHAT % (ALICE, 1), env=env) == {"outcomes": [200]}
    # With the caller's own key (its side header) they go along.
    result = gw.run(
        f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0, default_headers={{"X-OpenAI-Key": "sk-callers-own"}})
        client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        report(ok=True)
    """,
        env=env,
    )
    assert result == {"ok": True}
    pooled, own = gw.fakes["openai"].received
    assert pooled.headers["authorization"] in (f"Bearer {K1}", f"Bearer {K2}")
    assert "openai-organization" not in pooled.headers and "openai-project" not in pooled.headers
    assert own.headers["authorization"] == "Bearer sk-callers-own"
    assert (own.headers["openai-organization"], own.headers["openai-project"]) == (
        "org-callers-own",
        "proj_callers_own",
    )


def test_a_key_that_got_429_rests_for_its_retry_after(gw):
    gw.reset()
    limited = {K1: 0}

    def answer(r):
        if r.headers["authorization"] == f"Bearer {K1}":
            limited[K1] += 1
            return Reply(
                429,
                {"error": {"message": "Rate limit", "type": "requests", "code": "rate_limit_exceeded"}},
                {"retry-after": "2"},
            )
        return Reply(200, {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    gw.fakes["openai"].handler = answer
    first = gw.run(CHAT % (ALICE, 5))["outcomes"]
    # At most one call meets K1 (and its 429), whichever key's turn came first; then K1 rests and
    # K2 serves every call (in turn, K1 would have served two or three of the five).
    assert limited[K1] <= 1 and first.count(429) == limited[K1]
    keys = used_keys(gw.fakes["openai"])
    assert (len(keys), keys.count(K1)) == (5, limited[K1])
    time.sleep(2.2)
    gw.fakes["openai"].received.clear()
    gw.fakes["openai"].handler = lambda r: Reply(200, {"choices": []})
    gw.run(CHAT % (ALICE, 2))
    assert sorted(used_keys(gw.fakes["openai"])) == [K1, K2]  # rested long enough: back in turn


def test_caller_without_upstream_credential_is_told_which_setting_is_missing(gw):
    gw.reset()
    result = gw.run(f"""
        import anthropic
        anthropic.Anthropic(api_key="{ALICE}", max_retries=2).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
        report(error=None)
    """)
    assert (result["error"], result["status"]) == ("InternalServerError", 500), str(result)
    assert "providers.anthropic.keys" in result["message"] and "X-Anthropic-Key" in result["message"]
    assert gw.fakes["anthropic"].received == []
    record = gw.last_audit()
    assert (record["client"], record["status"], record["error"]) == ("alice", 500, "no upstream credential")
    # x-should-retry: false kept the SDK from retrying a refusal that cannot heal.
    assert len([r for r in gw.audit() if r["provider"] == "anthropic"]) == 1


def test_client_that_hangs_up_is_audited(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, {"choices": []}, delay=1.5)
    count = len(gw.audit())
    result = gw.run(f"""
        from openai import OpenAI
        OpenAI(api_key="{ALICE}", max_retries=0, timeout=0.3).chat.completions.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        report(error=None)
    """)
    assert result["error"] == "APITimeoutError", str(result)
    record = gw.wait_audit(count + 1)[-1]
    assert (record["client"], record["error"], record["status"]) == ("alice", "client disconnected", None)
