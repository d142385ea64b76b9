"""JWTs as caller credentials: an identity provider's RS256 and ES256 tokens checked against its
JWKS (fetched over HTTPS from a local server that rotates its keys and goes down), HS256 tokens
from `tollgate token`, in every position a virtual key takes and as a proxy-login password. A
token is swapped for the provider's real key, never forwarded; a bad one is refused in the
provider's own shape with the reason, never echoed, and appears in no output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tests.support.jwks import (
    JwksServer,
    b64url,
    claims,
    ec_key,
    hs256_token,
    payload_of,
    rsa_key,
    segment,
    tampered,
    unsigned_token,
    verified_hs256,
)
from tests.support.leaks import saved_flows
from tests.support.proxy import ROOT

REAL = {
    "openai": "sk-REAL-openai-jwt-5ecret-a1",
    "gemini": "AIza-REAL-gemini-jwt-5ecret-b2",
    "anthropic": "sk-ant-REAL-jwt-5ecret-c3",
    "bedrock": "ABSK-REAL-bedrock-jwt-5ecret-d4",
}
ISSUER = "https://idp.tollgate.test"
AUDIENCE = "tollgate-gateway"
LOCAL_ISSUER = "tollgate-local"
HS_SECRET = "hs256-SECRET-for-jwt-tests-5ecret-0123456789abcdef"
PREFIX, LOCAL_PREFIX = "idp:", "local:"
REFRESH_S = 1.0  # how often an unknown kid may trigger a JWKS refetch, as configured here
REFRESH = {"jwks_refresh_s": REFRESH_S}
POLICY = (
    'package tollgate\nimport rego.v1\ndeny contains "read-only role" if input.identity.claims.role == "read-only"\n'
)

RSA, EC = rsa_key("rsa-1"), ec_key("ec-1")
ROTATED = rsa_key("rsa-2")
FILE_ISSUER, FILE_KEY = (
    "https://files.tollgate.test",
    ec_key("file-1"),
)  # a jwks_file issuer  # published only once the key set rotates
ISSUED: list[str] = []  # every token a gateway saw: none may reach any output


def issued(token: str) -> str:
    ISSUED.append(token)
    return token


def token(sub: str, key=RSA, audience: str | list[str] = AUDIENCE, **options) -> str:
    return issued(key.token(claims(ISSUER, audience, sub, **options)))


def identity(jwks: JwksServer, ca_file, *more: dict, **settings: object) -> dict:
    issuers = [
        {
            "issuer": ISSUER,
            "audience": [AUDIENCE, "another-audience"],
            "jwks_url": jwks.url,
            "ca_file": str(ca_file),
            "algorithms": ["RS256", "ES256"],
            "client_prefix": PREFIX,
            **REFRESH,
            **settings,
        },
        {
            "issuer": LOCAL_ISSUER,
            "audience": AUDIENCE,
            "secret": HS_SECRET,
            "algorithms": ["HS256"],
            "client_prefix": LOCAL_PREFIX,
        },
        *more,
    ]
    return {"jwt": issuers}


def _started(start_gateway, jwks, ca_file, *extra: str, more=(), issuer_settings=None, **config):
    return start_gateway(
        lambda urls: {
            "providers": {p: {"upstream": url, "keys": [REAL[p]]} for p, url in urls.items()},
            "identity": identity(jwks, ca_file, *more, **(issuer_settings or {})),
            **config,
        },
        *extra,
        save_flows=True,
    )


def serving_keys(upstream_ca) -> Iterator[JwksServer]:
    """An issuer's key set (RSA's and EC's keys) served until the generator is closed."""
    server = JwksServer(upstream_ca, [RSA, EC])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idp(upstream_ca):
    yield from serving_keys(upstream_ca)


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory, idp, upstream_ca_pem):
    policy = tmp_path_factory.mktemp("policy") / "claims.rego"
    policy.write_text(POLICY)
    jwks_file = policy.with_name("jwks.json")
    jwks_file.write_text(json.dumps({"keys": [FILE_KEY.jwk()]}))
    from_file = {
        "issuer": FILE_ISSUER,
        "audience": AUDIENCE,
        "jwks_file": str(jwks_file),
        "algorithms": ["ES256"],
        "client_claim": "email",
        "groups_claim": "roles",
        "client_prefix": "file:",
        "leeway_s": 0,
    }
    return _started(
        start_gateway,
        idp,
        upstream_ca_pem,
        more=[from_file],
        policy={"rego": [str(policy)]},
    )


# ---- what the clients run

OPENAI_CALLS = """
    import json, openai, time
    outcomes = []
    for token in json.loads(%r):
        if isinstance(token, (int, float)):  # a pause until this time (seconds since the epoch)
            time.sleep(max(0.0, token - time.time()))
            continue
        try:
            r = openai.OpenAI(api_key=token, max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            outcomes.append({"ok": r.choices[0].message.content})
        except openai.APIStatusError as e:
            outcomes.append({"error": type(e).__name__, "status": e.status_code,
                             "tollgate_error": e.response.headers.get("x-tollgate-error"), "body": e.response.text})
    report(outcomes=outcomes)
"""


def openai_calls(gateway, tokens: list[str | float], proxy_url: str | None = None) -> list[dict]:
    """One OpenAI chat call per token (a number: a pause until that time), each with a new client;
    what each got."""
    result = gateway.run(OPENAI_CALLS % json.dumps(tokens), proxy_url=proxy_url)
    assert "outcomes" in result, result
    return result["outcomes"]


OK = {"ok": "Hi there."}


def assert_refused(outcome: dict, reason: str, token: str, error: str = "AuthenticationError", status: int = 401):
    assert (outcome.get("error"), outcome.get("status"), outcome.get("tollgate_error")) == (
        error,
        status,
        "unauthenticated",
    ), outcome
    assert reason in outcome["body"], outcome
    assert token not in outcome["body"]
    assert not any(part in outcome["body"] for part in token.split(".")[1:] if len(part) > 8)  # payload, signature


def assert_denied_record(record: dict, reason: str, token: str, status: int = 401) -> None:
    assert (record["decision"], record["status"]) == ("deny", status), record
    assert any(reason in r for r in record["deny_reasons"]), record
    assert record["client"] is None or not record["client"].startswith(PREFIX), record
    assert token not in json.dumps(record)


def assert_jwt_record(record: dict, client: str, groups: list[str], provider: str = "openai") -> None:
    assert (record["client"], record["auth"], record["groups"], record["provider"]) == (
        client,
        "jwt",
        groups,
        provider,
    ), record
    assert (record["decision"], record["status"], record["error"]) == ("allow", 200, None), record


# ---- accepted tokens


def test_rs256_and_es256_tokens_from_the_jwks(g, idp):
    rs = token("alice", groups=["research", "ops"])
    es = token("bob", key=EC, audience="another-audience")  # the second of the issuer's audiences
    # leeway_s defaults to 30: ten seconds past exp, or before nbf, is clock skew.
    late, early = token("late", ttl=-10), token("early", key=EC, not_before=10)
    assert openai_calls(g, [rs, es, late, early]) == [OK] * 4
    assert [r.headers["authorization"] for r in g.fakes["openai"].received] == [f"Bearer {REAL['openai']}"] * 4
    alice, bob, late_record, early_record = g.new_audit(4)
    assert_jwt_record(alice, "idp:alice", ["research", "ops"])
    assert_jwt_record(bob, "idp:bob", [])
    assert_jwt_record(late_record, "idp:late", [])
    assert_jwt_record(early_record, "idp:early", [])
    assert alice["upstream_key"] == bob["upstream_key"] and alice["upstream_key"].startswith("sha256:")
    assert idp.fetches >= 1


def test_a_jwks_file_issuer_with_its_own_claims_and_no_leeway(g):
    def file_token(**options) -> str:
        return issued(FILE_KEY.token(claims(FILE_ISSUER, AUDIENCE, "user-123", **options)))

    good = file_token(email="dev@example.com", roles=["builders"], groups=["ignored"])
    late = file_token(email="dev@example.com", ttl=-5)  # leeway_s: 0
    nameless = file_token(roles=["builders"])  # no email claim: no one to call it
    # Valid for some seconds (a loaded machine's client takes several to start): accepted (and
    # remembered as verified), then expired.
    short = file_token(email="brief@example.com", ttl=15)
    after_exp = payload_of(short)["exp"] + 1.1
    short_ok, ok, expired, unnamed, short_expired = openai_calls(g, [short, good, late, nameless, after_exp, short])
    assert ok == short_ok == OK
    assert_refused(expired, "token expired", late)
    assert unnamed.get("status") == 401 and unnamed.get("tollgate_error") == "unauthenticated", unnamed
    assert_refused(short_expired, "token expired", short)
    assert len(g.fakes["openai"].received) == 2
    brief, record, refused, _, brief_expired = g.new_audit(5)
    assert_jwt_record(record, "file:dev@example.com", ["builders"])
    assert_denied_record(refused, "token expired", late)
    assert_jwt_record(brief, "file:brief@example.com", [])
    assert_denied_record(brief_expired, "token expired", short)


def test_hs256_token_from_the_token_command(g):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tollgate",
            "token",
            "--client",
            "carol",
            "--groups",
            "a,b",
            "--ttl",
            "1h",
            "--config",
            str(g.config_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addons")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    printed = issued(done.stdout.strip())
    assert HS_SECRET not in done.stdout + done.stderr
    header, decoded = verified_hs256(printed, HS_SECRET, AUDIENCE, LOCAL_ISSUER)
    assert header["alg"] == "HS256"
    assert (decoded["sub"], decoded["groups"]) == ("carol", ["a", "b"])
    assert decoded["exp"] - time.time() == pytest.approx(3600, abs=60)
    # A token signed with another secret for the same issuer is not one of its tokens.
    forged = issued(hs256_token(claims(LOCAL_ISSUER, AUDIENCE, "carol"), b"another-secret-0123456789abcdef0123"))
    ok, refused = openai_calls(g, [printed, forged])
    assert ok == OK
    assert_refused(refused, "bad signature", forged)
    assert [r.headers["authorization"] for r in g.fakes["openai"].received] == [f"Bearer {REAL['openai']}"]
    carol, forger = g.new_audit(2)
    assert_jwt_record(carol, "local:carol", ["a", "b"])
    assert_denied_record(forger, "bad signature", forged)


def test_a_token_in_every_credential_position(g):
    anthropic_token, bearer = token("ann", groups=["g1"]), token("ben", key=EC)
    result = g.run(f"""
        import anthropic
        texts = []
        for client in (anthropic.Anthropic(api_key="{anthropic_token}", max_retries=0),
                       anthropic.Anthropic(auth_token="{bearer}", max_retries=0)):
            r = client.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                       messages=[{{"role": "user", "content": "hi"}}])
            texts.append(r.content[0].text)
        report(texts=texts)
    """)
    assert result == {"texts": ["Hello!", "Hello!"]}
    for seen in g.fakes["anthropic"].received:
        assert seen.headers["x-api-key"] == REAL["anthropic"]
        assert "authorization" not in seen.headers
    ann, ben = g.new_audit(2)
    assert_jwt_record(ann, "idp:ann", ["g1"], "anthropic")
    assert_jwt_record(ben, "idp:ben", [], "anthropic")

    header, query = token("gil"), token("quin", key=EC)
    result = g.run(f"""
        import json, urllib.request
        from google import genai
        gemini = genai.Client(api_key="{header}")  # kept: a client collected mid-call closes its connection
        r = gemini.models.generate_content(model="gemini-2.0-flash", contents="hi")
        req = urllib.request.Request(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key={query}&alt=json",
            data=json.dumps({{"contents": [{{"parts": [{{"text": "hi"}}]}}]}}).encode(),
            headers={{"content-type": "application/json"}})
        with urllib.request.urlopen(req) as resp:  # read whole, as a client does: else it leaves mid-answer
            answer = json.loads(resp.read())
        report(text=r.text, status=resp.status, query_text=answer["candidates"][0]["content"]["parts"][0]["text"])
    """)
    assert result == {"text": "Hello!", "status": 200, "query_text": "Hello!"}
    for seen in g.fakes["gemini"].received:
        assert seen.headers["x-goog-api-key"] == REAL["gemini"]
        assert "key=" not in seen.path and query not in seen.path
    assert "alt=json" in g.fakes["gemini"].received[-1].path
    gil, quin = g.new_audit(2)
    assert_jwt_record(gil, "idp:gil", [], "gemini")
    assert_jwt_record(quin, "idp:quin", [], "gemini")

    bedrock = token("bea", groups=["aws"])
    result = g.run(
        """
        import boto3
        r = boto3.client("bedrock-runtime", region_name="us-east-1").converse(modelId="amazon.nova-lite-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}])
        report(text=r["output"]["message"]["content"][0]["text"])
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": bedrock},
    )
    assert result == {"text": "Hello!"}
    assert g.fakes["bedrock"].received[-1].headers["authorization"] == f"Bearer {REAL['bedrock']}"
    assert_jwt_record(g.last_audit(), "idp:bea", ["aws"], "bedrock")

    for fake in g.fakes.values():
        for seen in fake.received:
            assert not any(t in json.dumps(seen.headers) + seen.path for t in ISSUED)


# ---- refused tokens


def malformed() -> str:
    """A header that names a known key, a payload that is not JSON."""
    return f"{segment({'alg': 'RS256', 'typ': 'JWT', 'kid': RSA.kid})}.{b64url(b'not json at all')}.{b64url(b'sig')}"


def test_bad_tokens_are_refused_with_the_reason(g):
    valid = RSA.token(claims(ISSUER, AUDIENCE, "mallory"))
    cases = [
        ("token expired", token("mallory", ttl=-300)),
        ("token not yet valid", token("mallory", not_before=300)),
        ("wrong audience", issued(RSA.token(claims(ISSUER, "someone-else", "mallory")))),
        ("unknown issuer", issued(RSA.token(claims("https://elsewhere.test", AUDIENCE, "mallory")))),
        ("bad signature", issued(tampered(valid, sub="admin", groups=["admins"]))),
        ("algorithm not allowed", issued(unsigned_token(claims(ISSUER, AUDIENCE, "mallory"), kid=RSA.kid))),
        # The RS256 public key's PEM as an HMAC secret: a verifier that took the key's algorithm
        # from the token would accept it.
        (
            "algorithm not allowed",
            issued(hs256_token(claims(ISSUER, AUDIENCE, "mallory"), RSA.public_pem(), {"kid": RSA.kid})),
        ),
        ("malformed token", issued(malformed())),
    ]
    outcomes = openai_calls(g, [t for _, t in cases])
    for (reason, bad), outcome in zip(cases, outcomes, strict=True):
        assert_refused(outcome, reason, bad)
    assert g.fakes["openai"].received == []
    for (reason, bad), record in zip(cases, g.new_audit(len(cases)), strict=True):
        assert_denied_record(record, reason, bad)


def test_a_refusal_has_each_providers_own_shape(g):
    expired = token("mallory", ttl=-300)
    result = g.run(
        f"""
        import anthropic, botocore.exceptions, boto3
        from google import genai
        from google.genai import errors
        outcomes = []
        try:
            anthropic.Anthropic(api_key="{expired}", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
        except anthropic.AuthenticationError as e:
            outcomes.append(["anthropic.AuthenticationError", e.status_code,
                             e.response.headers.get("x-tollgate-error"), e.response.text])
        try:
            gemini = genai.Client(api_key="{expired}")  # kept: a client collected mid-call closes its connection
            gemini.models.generate_content(model="gemini-2.0-flash", contents="hi")
        except errors.ClientError as e:
            outcomes.append(["genai.ClientError", e.code, e.response.headers.get("x-tollgate-error"), str(e)])
        try:
            boto3.client("bedrock-runtime", region_name="us-east-1").converse(modelId="amazon.nova-lite-v1:0",
                messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
        except botocore.exceptions.ClientError as e:
            meta = e.response["ResponseMetadata"]
            outcomes.append(["botocore.ClientError", meta["HTTPStatusCode"],
                             meta["HTTPHeaders"].get("x-tollgate-error"), str(e)])
        report(outcomes=outcomes)
    """,
        env={"AWS_BEARER_TOKEN_BEDROCK": expired},
    )
    outcomes = result.get("outcomes")
    assert [o[:3] for o in outcomes or []] == [
        ["anthropic.AuthenticationError", 401, "unauthenticated"],
        ["genai.ClientError", 401, "unauthenticated"],
        ["botocore.ClientError", 403, "unauthenticated"],
    ], result
    for outcome in outcomes:
        assert "token expired" in outcome[3] and expired not in outcome[3], outcome
    assert not any(fake.received for fake in g.fakes.values())
    records = g.new_audit(3)
    assert [r["provider"] for r in records] == ["anthropic", "gemini", "bedrock"]
    for record, status in zip(records, (401, 401, 403), strict=True):
        assert_denied_record(record, "token expired", expired, status)


def test_an_unknown_kid_is_fetched_once_the_key_set_rotates(g, idp):
    assert ROTATED.kid not in json.dumps([k.jwk() for k in (RSA, EC)])
    early = [token(f"rot{i}", key=ROTATED) for i in range(4)]
    time.sleep(REFRESH_S + 0.2)  # any refetch an earlier test caused is long enough ago
    fetches = idp.fetches
    outcomes = openai_calls(g, early)
    for bad, outcome in zip(early, outcomes, strict=True):
        assert_refused(outcome, "unknown key id", bad)
    # Four unknown kids in quick succession: at most one refetch each refresh interval.
    assert idp.fetches - fetches <= 2
    for bad, record in zip(early, g.new_audit(len(early)), strict=True):
        assert_denied_record(record, "unknown key id", bad)

    idp.publish([RSA, EC, ROTATED])
    time.sleep(REFRESH_S + 0.3)
    # No restart: the next call with the new kid refetches and finds it; the old keys still work.
    assert openai_calls(g, [token("rotated", key=ROTATED), token("old", groups=["x"])]) == [OK, OK]
    rotated, old = g.new_audit(2)
    assert_jwt_record(rotated, "idp:rotated", [])
    assert_jwt_record(old, "idp:old", ["x"])


def test_the_policy_reads_the_tokens_claims(g):
    reader = token("dana", role="read-only", groups=["support"])
    writer = token("erin", role="writer")
    outcomes = openai_calls(g, [reader, writer])
    assert outcomes[1] == OK
    denied = outcomes[0]
    assert (denied.get("error"), denied.get("status"), denied.get("tollgate_error")) == (
        "PermissionDeniedError",
        403,
        "policy_denied",
    ), denied
    assert "read-only role" in denied["body"] and reader not in denied["body"]
    assert len(g.fakes["openai"].received) == 1
    dana, erin = g.new_audit(2)
    assert (dana["client"], dana["auth"], dana["groups"], dana["decision"], dana["deny_reasons"], dana["status"]) == (
        "idp:dana",
        "jwt",
        ["support"],
        "deny",
        ["read-only role"],
        403,
    )
    assert_jwt_record(erin, "idp:erin", [])


# ---- the JWKS server down


@pytest.fixture(scope="module")
def idp_down(upstream_ca):
    server = JwksServer(upstream_ca, [RSA], started=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw_down(start_gateway, idp_down, upstream_ca_pem):
    return _started(start_gateway, idp_down, upstream_ca_pem)


def test_the_jwks_down_at_start_and_mid_run(gw_down, idp_down):
    gw_down.reset()
    first = token("frank")
    (outcome,) = openai_calls(gw_down, [first])  # Tollgate started without the key set
    assert_refused(outcome, "unknown key id", first)
    assert_denied_record(gw_down.last_audit(), "unknown key id", first)

    idp_down.start()
    time.sleep(REFRESH_S + 0.3)
    assert openai_calls(gw_down, [token("frank")]) == [OK]
    assert_jwt_record(gw_down.last_audit(), "idp:frank", [])

    # Down again: the keys it has keep working; a key it never saw cannot be had.
    newer = rsa_key("rsa-3")
    idp_down.publish([RSA, newer])
    idp_down.stop()
    time.sleep(REFRESH_S + 0.3)
    unseen = token("gina", key=newer)
    outcomes = openai_calls(gw_down, [token("frank"), unseen])
    assert outcomes[0] == OK
    assert_refused(outcomes[1], "unknown key id", unseen)
    frank, gina = gw_down.new_audit(2)
    assert_jwt_record(frank, "idp:frank", [])
    assert_denied_record(gina, "unknown key id", unseen)
    assert len(gw_down.fakes["openai"].received) == 2
    assert "Traceback" not in gw_down.proxy.console()


MAX_AGE_S = 1.0  # the keys' age before a call fetches them again, as configured for gw_aging


@pytest.fixture(scope="module")
def idp_aging(upstream_ca):
    yield from serving_keys(upstream_ca)


@pytest.fixture(scope="module")
def gw_aging(start_gateway, idp_aging, upstream_ca_pem):
    return _started(
        start_gateway,
        idp_aging,
        upstream_ca_pem,
        issuer_settings={"jwks_max_age_s": MAX_AGE_S},
    )


def test_a_key_the_issuer_withdraws_stops_verifying(gw_aging, idp_aging):
    gw_aging.reset()
    withdrawn, kept = token("erin", key=EC), token("rick")
    assert openai_calls(gw_aging, [withdrawn, kept]) == [OK, OK]
    fetches = idp_aging.fetches
    idp_aging.publish([RSA])
    time.sleep(MAX_AGE_S + 0.3)
    # The keys are older than their age: the next call is verified with them, and fetches them again.
    assert openai_calls(gw_aging, [withdrawn]) == [OK]
    deadline = time.monotonic() + 10
    while idp_aging.fetches == fetches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert idp_aging.fetches == fetches + 1
    time.sleep(0.5)  # the fetched keys read
    outcomes = openai_calls(gw_aging, [withdrawn, kept])
    assert_refused(outcomes[0], "unknown key id", withdrawn)
    assert outcomes[1] == OK
    refused, verified = gw_aging.new_audit(2)
    assert_denied_record(refused, "unknown key id", withdrawn)
    assert_jwt_record(verified, "idp:rick", [])
    assert len(gw_aging.fakes["openai"].received) == 4


# ---- a token as the proxy-login password


@pytest.fixture(scope="module")
def gw_login(start_gateway, idp, upstream_ca_pem):
    return _started(start_gateway, idp, upstream_ca_pem, "--set", "proxyauth=any")


def login_url(gateway, password: str, user: str = "agent") -> str:
    return gateway.proxy.proxy_url.replace("http://", f"http://{user}:{password}@")


def test_a_token_as_the_proxy_login_password(gw_login):
    gw_login.reset()
    good = token("hank", groups=["agents"])
    # The SDK's own key is no credential of Tollgate's: the login says who calls. Three calls on
    # one client: the login is judged for each request of the connection.
    result = gw_login.run(
        """
        from openai import OpenAI
        client = OpenAI(api_key="sk-not-a-tollgate-key", max_retries=0)
        texts = [client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
                 .choices[0].message.content for _ in range(3)]
        report(texts=texts)
    """,
        proxy_url=login_url(gw_login, good),
    )
    assert result == {"texts": ["Hi there."] * 3}
    assert [r.headers["authorization"] for r in gw_login.fakes["openai"].received] == [f"Bearer {REAL['openai']}"] * 3
    for record in gw_login.new_audit(3):
        assert_jwt_record(record, "idp:hank", ["agents"])


@pytest.mark.parametrize(
    ("password", "reason"),
    [("not-a-jwt-5ecret-password", "malformed token"), ("expired", "token expired")],
)
def test_a_login_whose_password_is_no_valid_token_is_refused(gw_login, password, reason):
    """proxyauth=any lets every login through to Tollgate: one without a valid token as its
    password is refused, never taken as the user it claims to be."""
    gw_login.reset()
    password = token("hank", ttl=-300) if password == "expired" else issued(password)
    (outcome,) = openai_calls(gw_login, ["sk-not-a-tollgate-key"], login_url(gw_login, password))
    assert_refused(outcome, reason, password)
    assert gw_login.fakes["openai"].received == []
    record = gw_login.last_audit()
    assert_denied_record(record, reason, password)
    assert record["client"] is None


# ---- nothing secret in any output


def test_no_token_or_secret_in_any_output(gw, gw_down, gw_login):
    # Calls of its own, so that it proves something when run alone.
    assert openai_calls(gw, [token("ivy")]) == [OK]
    assert_refused(openai_calls(gw, [refused := token("ivy", ttl=-300)])[0], "token expired", refused)
    assert openai_calls(gw_login, ["sk-not-a-tollgate-key"], login_url(gw_login, token("jack"))) == [OK]
    gw.new_audit(1)
    gw_login.last_audit()

    gateways = {"jwt": gw, "down": gw_down, "login": gw_login}
    for gateway in gateways.values():
        gateway.proxy.stop()  # flushes the saved flows
    secrets = [HS_SECRET, *ISSUED, *(t.split(".")[2] for t in ISSUED if t.count(".") == 2 and t.split(".")[2])]
    for name, gateway in gateways.items():
        outputs = {
            "audit": gateway.audit_path.read_bytes(),
            "console": gateway.proxy.output.read_bytes(),
            "saved flows": gateway.saved.read_bytes(),
        }
        if name != "down":  # the others had calls of this test's own
            assert len(outputs["saved flows"]) > 500, name
        for where, content in outputs.items():
            for secret in secrets:
                assert secret.encode() not in content, f"{secret[:40]}… found in the {name} gateway's {where}"

    flows = saved_flows(gw.saved)
    openai_flows = [f for f in flows if f.metadata.get("tollgate", {}).get("provider") == "openai"]
    assert openai_flows and all(f.request.headers["authorization"] == "[redacted by Tollgate]" for f in openai_flows)
    for flow in saved_flows(gw_login.saved):
        login = flow.metadata.get("proxyauth")
        assert login is None or login[1] == "", login
