"""The JWT verifier (`tollgate.governance.identity.jwt_identity`) without a proxy: every reason a token is refused, the
algorithms it refuses, keys fetched again for an unknown key id (at most once per interval), tokens
remembered until they expire; and the configuration of `identity.jwt`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tollgate.configuration.config import ConfigError, JwtIssuer, load_config, parse_config
from tollgate.governance.identity import jwt_identity
from tollgate.governance.identity.clients import Directory, KnownCaller, Token
from tollgate.governance.identity.jwt_identity import (
    ALGORITHM_NOT_ALLOWED,
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    NOT_YET_VALID,
    UNKNOWN_ISSUER,
    UNKNOWN_KEY_ID,
    WRONG_AUDIENCE,
    JwtIdentity,
    JwtRejected,
    Verifier,
    looks_like_jwt,
    mint,
    parse_jwks,
)
from tollgate.providers.credentials import Presented

ISSUER = "https://issuer.example"
SECRET_ISSUER = "https://tollgate.local"
SECRET = "s3cret-" + "x" * 40
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(private: Any, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) else jwt.algorithms.RSAAlgorithm
    )
    key = json.loads(algorithm.to_jwk(private.public_key()))
    return {**key, "kid": kid, "use": "sig", **({"alg": alg} if alg else {})}


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": "tollgate", "sub": "repo:acme/app", "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def rs256(payload: dict[str, Any], kid: str | None = "k1", key: Any = RSA_KEY, alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def issuer(**fields: Any) -> JwtIssuer:
    return JwtIssuer.model_validate(
        {"issuer": ISSUER, "audience": "tollgate", "algorithms": ["RS256"], "jwks_url": "https://issuer.example/jwks"}
        | fields
    )


def file_issuer(tmp_path: Path, *keys: dict[str, Any], **fields: Any) -> JwtIssuer:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(*(keys or (jwk(RSA_KEY, "k1"),))))
    return issuer(jwks_url=None, jwks_file=str(path), **fields)


def secret_issuer(**fields: Any) -> JwtIssuer:
    return JwtIssuer.model_validate(
        {"issuer": SECRET_ISSUER, "audience": ["tollgate", "other"], "algorithms": ["HS256"], "secret": SECRET} | fields
    )


class FakeJwks:
    """Stands in for the issuer's JWKS URL: counts the fetches, answers what it holds now."""

    def __init__(self, body: bytes | Exception) -> None:
        self.body = body
        self.fetches = 0

    def __call__(self) -> bytes:
        self.fetches += 1
        if isinstance(self.body, Exception):
            raise self.body
        return self.body


def fetching(settings: JwtIssuer, fake: FakeJwks, previous: Verifier | None = None) -> Verifier:
    verifier = Verifier([settings], previous)
    verifier.issuers[settings.issuer]._fetch = fake
    return verifier


def verified(verifier: Verifier, token: str) -> JwtIdentity:
    """The identity, awaiting the fetch when the verifier needs one."""
    outcome = verifier.verify(token)
    if isinstance(outcome, JwtIdentity):
        return outcome
    return asyncio.run(_await(outcome))


async def _await(outcome: Awaitable[JwtIdentity]) -> JwtIdentity:
    return await outcome


def rejected(verifier: Verifier, token: str) -> JwtRejected:
    with pytest.raises(JwtRejected) as info:
        verified(verifier, token)
    if token:
        assert token not in info.value.message and token not in str(info.value)
    return info.value


# --- accepted ---------------------------------------------------------------------------------------


def test_an_rs256_token_of_a_jwks_file_names_its_caller(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path, client_prefix="gha:")])
    identity = verified(verifier, rs256(claims(groups=["ci", "deploy"], agent_role="read-only")))
    assert (identity.issuer, identity.client, identity.groups) == (ISSUER, "gha:repo:acme/app", ("ci", "deploy"))
    assert identity.claims["agent_role"] == "read-only"
    assert identity.policy_input()["claims"]["agent_role"] == "read-only"


def test_client_and_groups_come_from_the_claims_configured(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path, client_claim="email", groups_claim="roles")])
    identity = verified(verifier, rs256(claims(email="ci@acme.dev", roles="admin", groups=["ignored"])))
    assert (identity.client, identity.groups) == ("ci@acme.dev", ("admin",))
    assert rejected(verifier, rs256(claims(roles="admin"))).reason == MALFORMED  # no email claim
    assert rejected(verifier, rs256(claims(email="a", roles=[1]))).reason == MALFORMED


def test_an_es256_key_and_a_token_without_kid_from_a_one_key_issuer(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path, jwk(EC_KEY, "ec", "ES256"), algorithms=["ES256"])])
    assert verified(verifier, rs256(claims(), kid=None, key=EC_KEY, alg="ES256")).client == "repo:acme/app"


def test_an_hs256_token_signed_with_the_secret() -> None:
    verifier = Verifier([secret_issuer()])
    token = jwt.encode(claims(iss=SECRET_ISSUER, aud="other"), SECRET, algorithm="HS256")
    assert verified(verifier, token).client == "repo:acme/app"


def test_tollgate_token_mints_what_the_verifier_accepts() -> None:
    settings = secret_issuer(client_prefix="svc:")
    token = mint(settings, "batch-job", ["etl", "nightly"])
    identity = verified(Verifier([settings]), token)
    assert (identity.client, identity.groups) == ("svc:batch-job", ("etl", "nightly"))
    body = jwt.decode(token, SECRET, algorithms=["HS256"], audience="tollgate")
    assert body["aud"] == "tollgate" and body["exp"] - body["iat"] == 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


# --- refused, and why ---------------------------------------------------------------------------------


# The claims are made when the test runs (seconds from now), not when the tests are collected: a
# suite takes minutes, and a time taken at collection has passed by then.
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": -120}, EXPIRED),
        ({"nbf": 120}, NOT_YET_VALID),
        ({"iat": 120}, NOT_YET_VALID),
        ({"aud": "someone-else"}, WRONG_AUDIENCE),
        ({"aud": None}, WRONG_AUDIENCE),
        ({"iss": "https://elsewhere.example"}, UNKNOWN_ISSUER),
        ({"iss": None}, UNKNOWN_ISSUER),
        ({"exp": None}, MALFORMED),
        ({"exp": "soon"}, MALFORMED),
        ({"sub": None}, MALFORMED),
    ],
)
def test_each_claim_that_fails_says_why(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    now = int(time.time())
    payload = claims(**{k: now + v if k in ("exp", "nbf", "iat") and type(v) is int else v for k, v in changes.items()})
    verifier = Verifier([file_issuer(tmp_path)])
    error = rejected(verifier, rs256(payload))
    assert error.reason == reason
    assert error.message.startswith("Tollgate: JWT rejected: " + reason)


def test_a_signature_by_another_key_is_a_bad_signature(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path)])
    assert rejected(verifier, rs256(claims(), key=OTHER_RSA_KEY)).reason == BAD_SIGNATURE
    token = rs256(claims())
    head, _, signature = token.split(".")
    tampered = jwt.utils.base64url_encode(json.dumps(claims(sub="admin")).encode()).decode()
    assert rejected(verifier, f"{head}.{tampered}.{signature}").reason == BAD_SIGNATURE
    secret = Verifier([secret_issuer()])
    wrong = jwt.encode(claims(iss=SECRET_ISSUER), "another-secret-" + "y" * 40, algorithm="HS256")
    assert rejected(secret, wrong).reason == BAD_SIGNATURE


def test_alg_none_is_refused(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path), secret_issuer()])
    for iss in (ISSUER, SECRET_ISSUER):
        token = jwt.encode(claims(iss=iss), None, algorithm="none")
        assert token.endswith(".")  # no signature at all
        assert rejected(verifier, token).reason == ALGORITHM_NOT_ALLOWED
        for alg in ("None", "NONE"):
            head = jwt.utils.base64url_encode(json.dumps({"alg": alg, "kid": "k1"}).encode()).decode()
            assert rejected(verifier, f"{head}.{token.split('.')[1]}.").reason == ALGORITHM_NOT_ALLOWED


def test_hs256_signed_with_the_public_keys_pem_is_refused(tmp_path: Path) -> None:
    """The classic confusion: the RS256 issuer's public key, published, used as an HMAC secret."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode()).decode()
    head = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').decode()
    signature = jwt.utils.base64url_encode(hmac.new(pem, f"{head}.{payload}".encode(), hashlib.sha256).digest())
    token = f"{head}.{payload}.{signature.decode()}"
    assert rejected(Verifier([file_issuer(tmp_path)]), token).reason == ALGORITHM_NOT_ALLOWED
    # Even an issuer that lists both kinds could not be configured.
    with pytest.raises(ValueError, match="needs secret"):
        file_issuer(tmp_path, algorithms=["RS256", "HS256"])


def test_an_algorithm_the_issuer_does_not_list_or_the_key_does_not_name(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path, algorithms=["RS256", "PS256"])])
    assert rejected(verifier, rs256(claims(), alg="RS384")).reason == ALGORITHM_NOT_ALLOWED
    # The key is published for RS256: a PS256 signature by the same key is not taken.
    assert rejected(verifier, rs256(claims(), alg="PS256")).reason == ALGORITHM_NOT_ALLOWED
    secret = Verifier([secret_issuer()])
    token = jwt.encode(claims(iss=SECRET_ISSUER), SECRET + "z" * 30, algorithm="HS512")
    assert rejected(secret, token).reason == ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize(
    "token", ["a.b.c", "not-a-jwt", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "eyJhbGciOiJSUzI1NiJ9.W10.c2ln", ""]
)
def test_what_cannot_be_read_is_malformed(tmp_path: Path, token: str) -> None:
    error = rejected(Verifier([file_issuer(tmp_path)]), token)
    assert (error.reason, error.ours) == (MALFORMED, False)


def test_an_unknown_issuer_is_not_ours(tmp_path: Path) -> None:
    error = rejected(Verifier([file_issuer(tmp_path)]), rs256(claims(iss="https://other")))
    assert (error.reason, error.ours) == (UNKNOWN_ISSUER, False)
    assert rejected(Verifier([file_issuer(tmp_path)]), rs256(claims(exp=1))).ours is True


def test_a_kid_a_jwks_file_does_not_hold_is_unknown(tmp_path: Path) -> None:
    assert rejected(Verifier([file_issuer(tmp_path)]), rs256(claims(), kid="k9")).reason == UNKNOWN_KEY_ID


# --- leeway and the cache of verified tokens -----------------------------------------------------------


def test_the_leeway_applies_to_exp_nbf_and_iat(tmp_path: Path) -> None:
    now = int(time.time())
    lenient = Verifier([file_issuer(tmp_path, leeway_s=30)])
    strict = Verifier([file_issuer(tmp_path, leeway_s=0)])
    for payload in (claims(exp=now - 10), claims(nbf=now + 10), claims(iat=now + 10)):
        assert verified(lenient, rs256(payload)).client == "repo:acme/app"
        assert rejected(strict, rs256(payload)).reason in (EXPIRED, NOT_YET_VALID)


def test_a_verified_token_is_remembered_until_it_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier([file_issuer(tmp_path, leeway_s=5)])
    token = rs256(claims(exp=int(time.time()) + 60))
    first = verified(verifier, token)

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    monkeypatch.setattr(jwt, "get_unverified_header", no_decoding)
    assert verifier.verify(token) is first  # a dict lookup
    later = time.time() + 66
    monkeypatch.setattr(jwt_identity.time, "time", lambda: later)
    assert rejected(verifier, token).reason == EXPIRED
    assert token not in verifier._verified


def test_the_cache_of_verified_tokens_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt_identity, "VERIFIED_CACHE_SIZE", 5)
    verifier = Verifier([file_issuer(tmp_path)])
    for i in range(12):
        verified(verifier, rs256(claims(jti=str(i))))
        assert len(verifier._verified) <= 5


def test_equal_claims_are_one_identity_for_the_policy_cache(tmp_path: Path) -> None:
    verifier = Verifier([file_issuer(tmp_path)])
    payload = claims(agent_role="read-only")
    a, b = verified(verifier, rs256(payload)), verified(verifier, rs256(payload, key=RSA_KEY, alg="RS256"))
    assert a == b and hash(a) == hash(b)
    assert a != verified(verifier, rs256({**payload, "agent_role": "admin"}))


# --- keys fetched from the JWKS URL -----------------------------------------------------------------------


def test_an_unknown_kid_fetches_the_keys_again_then_verifies() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    verifier = fetching(issuer(), fake)
    pending = verifier.verify(rs256(claims()))
    assert isinstance(pending, Coroutine)  # no keys yet: awaited, not blocked on
    pending.close()
    assert verified(verifier, rs256(claims())).client == "repo:acme/app"
    assert fake.fetches == 1
    # The issuer rotates its keys: a token with the new kid fetches them again.
    fake.body = jwks(jwk(RSA_KEY, "k1"), jwk(OTHER_RSA_KEY, "k2"))
    verifier.issuers[ISSUER].fetched_at = time.monotonic() - 61
    assert verified(verifier, rs256(claims(), kid="k2", key=OTHER_RSA_KEY)).client == "repo:acme/app"
    assert fake.fetches == 2
    # A known key verifies at once, without fetching.
    outcome = verifier.verify(rs256(claims(sub="other")))
    assert isinstance(outcome, JwtIdentity) and fake.fetches == 2


def test_made_up_kids_fetch_at_most_once_per_interval() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    verifier = fetching(issuer(jwks_refresh_s=60), fake)
    verified(verifier, rs256(claims()))
    for i in range(20):
        with pytest.raises(JwtRejected) as info:
            verifier.verify(rs256(claims(), kid=f"made-up-{i}"))  # refused at once, nothing awaited
        assert info.value.reason == UNKNOWN_KEY_ID
    assert fake.fetches == 1
    verifier.issuers[ISSUER].fetched_at = time.monotonic() - 60
    assert rejected(verifier, rs256(claims(), kid="made-up")).reason == UNKNOWN_KEY_ID
    assert fake.fetches == 2


def test_calls_waiting_for_the_same_keys_share_one_fetch() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    verifier = fetching(issuer(), fake)

    async def many() -> list[JwtIdentity]:
        outcomes = [verifier.verify(rs256(claims(sub=f"agent-{i}"))) for i in range(8)]
        assert all(not isinstance(o, JwtIdentity) for o in outcomes)
        return list(await asyncio.gather(*outcomes))  # type: ignore[arg-type]

    assert [i.client for i in asyncio.run(many())] == [f"agent-{i}" for i in range(8)]
    assert fake.fetches == 1


def test_an_unreachable_jwks_refuses_its_tokens_and_keeps_known_keys(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeJwks(OSError("connection refused"))
    verifier = fetching(issuer(jwks_refresh_s=0), fake)
    asyncio.run(verifier.fetch_missing())  # as at start: a warning, no exception
    assert "could not be fetched" in caplog.text and "its tokens are refused" in caplog.text
    error = rejected(verifier, rs256(claims()))
    assert error.reason == UNKNOWN_KEY_ID and "could not be fetched" in error.message
    fake.body = jwks(jwk(RSA_KEY, "k1"))
    assert verified(verifier, rs256(claims())).client == "repo:acme/app"  # the keys arrived
    fake.body = OSError("down again")
    assert rejected(verifier, rs256(claims(), kid="k2")).reason == UNKNOWN_KEY_ID
    assert verified(verifier, rs256(claims(sub="still-works"))).client == "still-works"


def test_a_fetch_that_is_no_jwks_keeps_the_keys_held() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    verifier = fetching(issuer(jwks_refresh_s=0), fake)
    verified(verifier, rs256(claims()))
    fake.body = b"<html>oops</html>"
    assert rejected(verifier, rs256(claims(), kid="k2")).reason == UNKNOWN_KEY_ID
    assert verified(verifier, rs256(claims(sub="b"))).client == "b"


def test_keys_older_than_their_age_are_fetched_again_and_a_withdrawn_key_stops_verifying() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1"), jwk(OTHER_RSA_KEY, "k2")))
    verifier = fetching(issuer(jwks_max_age_s=300), fake)
    held = verifier.issuers[ISSUER]
    withdrawn = rs256(claims(sub="withdrawn"), kid="k2", key=OTHER_RSA_KEY)
    kept = rs256(claims(sub="kept"))
    assert verified(verifier, withdrawn).client == "withdrawn" and verified(verifier, kept).client == "kept"
    fake.body = jwks(jwk(RSA_KEY, "k1"))  # the issuer withdraws k2
    assert isinstance(verifier.verify(withdrawn), JwtIdentity) and fake.fetches == 1  # within the age

    async def after_the_age() -> None:
        assert held.fetched_at is not None
        held.fetched_at -= 300
        # Answered at once with the keys held, the next call fetches them again in the background.
        assert isinstance(verifier.verify(withdrawn), JwtIdentity)
        assert held.fetching
        await asyncio.wait_for(held.refresh(), 5)

    asyncio.run(after_the_age())
    assert fake.fetches == 2
    assert rejected(verifier, withdrawn).reason == UNKNOWN_KEY_ID  # remembered, but verified again
    assert verified(verifier, kept).client == "kept"
    assert fake.fetches == 2  # k2's absence within `jwks_refresh_s` fetches nothing


def test_keys_fetched_again_unchanged_keep_the_tokens_verified() -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    verifier = fetching(issuer(jwks_max_age_s=1), fake)
    held = verifier.issuers[ISSUER]
    token = rs256(claims())
    verified(verifier, token)
    generation = held.generation

    async def after_the_age() -> None:
        assert held.fetched_at is not None
        held.fetched_at -= 1
        verifier.verify(token)
        await asyncio.wait_for(held.refresh(), 5)

    asyncio.run(after_the_age())
    assert fake.fetches == 2 and held.generation == generation
    fake.body = OSError("down")  # a failed fetch keeps the keys, and what they verified
    asyncio.run(after_the_age())
    assert fake.fetches == 3 and held.generation == generation
    assert verified(verifier, token).client == "repo:acme/app"


def test_a_reload_keeps_the_keys_of_an_unchanged_issuer(tmp_path: Path) -> None:
    fake = FakeJwks(jwks(jwk(RSA_KEY, "k1")))
    first = fetching(issuer(), fake)
    verified(first, rs256(claims()))
    kept = Verifier([issuer(), secret_issuer()], first)
    assert kept.issuers[ISSUER].keys is first.issuers[ISSUER].keys
    assert kept.issuers_to_fetch() == []
    changed = Verifier([issuer(leeway_s=5)], first)
    assert changed.issuers[ISSUER].keys == {} and changed.issuers_to_fetch() == [changed.issuers[ISSUER]]


def test_a_jwks_file_is_read_at_each_load(tmp_path: Path) -> None:
    settings = file_issuer(tmp_path)
    before = Verifier([settings])
    Path(settings.jwks_file or "").write_bytes(jwks(jwk(OTHER_RSA_KEY, "k2")))
    after = Verifier([settings], before)
    assert rejected(after, rs256(claims())).reason == UNKNOWN_KEY_ID
    assert verified(after, rs256(claims(), kid="k2", key=OTHER_RSA_KEY)).client == "repo:acme/app"
    Path(settings.jwks_file or "").write_text("{}")
    with pytest.raises(ValueError, match=r"identity\.jwt\.0\.jwks_file: .* not a JWKS"):
        Verifier([settings])


def test_parse_jwks_keeps_signing_keys_it_can_use() -> None:
    keys = parse_jwks(
        jwks(
            jwk(RSA_KEY, "k1"),
            {**jwk(OTHER_RSA_KEY, "enc"), "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken"},
            jwk(EC_KEY, "ec", None),
        )
    )
    assert sorted(k for k in keys if k) == ["ec", "k1"]
    with pytest.raises(ValueError):
        parse_jwks(b"[]")


# --- what looks like a JWT, and who the directory says calls ---------------------------------------------


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(rs256(claims()))
    for value in ("sk-proj-abc123", "AIzaSyA-x_y", "tg-alice-0123", "a.b", "a.b.c.d", "a b.c.d", "a+b.c.d", ".b.c"):
        assert not looks_like_jwt(value), value


def test_a_virtual_key_wins_and_a_jwt_is_a_token_only_with_issuers(tmp_path: Path) -> None:
    token = rs256(claims())
    data: dict[str, Any] = {"clients": [{"name": "alice", "keys": ["tg-alice-1"]}]}
    without = Directory(parse_config(data, {}))
    assert without.identify(None, [Presented(token, "authorization")]) is None
    data["identity"] = {"jwt": [secret_issuer(client_prefix="").model_dump(exclude_none=True)]}
    directory = Directory(parse_config(data, {}))
    assert directory.identify(None, [Presented(token, "authorization")]) == Token(token)
    assert token not in repr(Token(token))
    both = [Presented(token, "authorization"), Presented("tg-alice-1", "x-api-key")]
    assert directory.identify(None, both) == KnownCaller("alice", (), "virtual_key")


# --- configuration ----------------------------------------------------------------------------------------


def config_error(entry: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"identity": {"jwt": [entry]}, **top}, {})
    return str(info.value)


BASE = {"issuer": ISSUER, "audience": "tollgate", "algorithms": ["RS256"], "jwks_url": "https://i.example/jwks"}


def test_configuration_errors_name_the_field() -> None:
    assert config_error({**BASE, "audiance": "x"}) == "identity.jwt.0.audiance: unknown key (did you mean audience?)"
    assert "identity.jwt.0.audience: missing (it is required)" in config_error(
        {k: v for k, v in BASE.items() if k != "audience"}
    )
    assert "identity.jwt.0.algorithms: missing (it is required)" in config_error(
        {k: v for k, v in BASE.items() if k != "algorithms"}
    )
    assert '"none" is refused' in config_error({**BASE, "algorithms": ["RS256", "none"]})
    assert "unknown algorithm 'RS1'" in config_error({**BASE, "algorithms": ["RS1"]})
    assert "exactly one of jwks_url, jwks_file or secret (not jwks_url and secret)" in config_error(
        {**BASE, "secret": SECRET}
    )
    assert "exactly one of" in config_error({k: v for k, v in BASE.items() if k != "jwks_url"})
    assert "https://" in config_error({**BASE, "jwks_url": "http://i.example/jwks"})
    assert "HS256 needs secret" in config_error({**BASE, "algorithms": ["HS256"]})
    assert "RS256 cannot be used with secret" in config_error(
        {**BASE, "jwks_url": None, "secret": SECRET, "algorithms": ["RS256"]}
    )
    assert "at least 32 bytes" in config_error({**BASE, "jwks_url": None, "secret": "short", "algorithms": ["HS256"]})
    assert "ca_file is for jwks_url only" in config_error(
        {**BASE, "jwks_url": None, "secret": SECRET, "algorithms": ["HS256"], "ca_file": "ca.pem"}
    )
    with pytest.raises(ConfigError, match=r"identity\.jwt\.1\.issuer: .* configured twice"):
        parse_config({"identity": {"jwt": [BASE, {**BASE, "audience": ["a", "b"]}]}}, {})


ALICE = {"name": "alice", "keys": ["tg-alice-1"]}


def test_an_issuer_without_client_prefix_may_not_name_configured_clients(tmp_path: Path) -> None:
    """A token with `sub: alice` would be client alice: her counters, overrides and policy rules."""
    error = config_error(BASE, clients=[ALICE])
    assert error.startswith("identity.jwt.0.client_prefix: not set, and clients are configured"), error
    assert f"a token of {ISSUER} could take a configured client's name (sub: 'alice' would be client 'alice')" in error
    assert 'client_prefix: "" to let its tokens name configured clients' in error
    second = {**BASE, "issuer": "https://other.example"}
    with pytest.raises(ConfigError, match=r"^identity\.jwt\.1\.client_prefix: not set"):
        parse_config({"identity": {"jwt": [{**BASE, "client_prefix": "a:"}, second]}, "clients": [ALICE]}, {})
    # A prefix written out, even an empty one, says what its tokens may name.
    for prefix, client in (("", "alice"), ("jwt:", "jwt:alice")):
        data = {"identity": {"jwt": [{**BASE, "client_prefix": prefix}]}, "clients": [ALICE]}
        assert parse_config(data, {}).identity.jwt[0].client_prefix == prefix
        verifier = Verifier([file_issuer(tmp_path, client_prefix=prefix)])
        assert verifier.verify(rs256(claims(sub="alice"))).client == client  # type: ignore[union-attr]
    # Without clients a token names no one else's: no prefix is needed.
    assert Verifier([file_issuer(tmp_path)]).verify(rs256(claims(sub="alice"))).client == "alice"  # type: ignore[union-attr]
    assert parse_config({"identity": {"jwt": [BASE]}}, {}).identity.jwt[0].client_prefix is None


def test_secrets_never_appear_in_a_configuration_error_or_repr() -> None:
    error = config_error({**BASE, "jwks_url": None, "secret": "short-secret-value", "algorithms": ["RS256"]})
    assert "short-secret-value" not in error
    assert SECRET not in repr(secret_issuer())


def test_issuers_make_anonymous_callers_refused_by_default() -> None:
    assert parse_config({}, {}).anonymous_allowed
    assert not parse_config({"identity": {"jwt": [BASE]}}, {}).anonymous_allowed
    assert parse_config({"identity": {"jwt": [BASE]}, "allow_anonymous": True}, {}).anonymous_allowed


def test_files_are_named_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "tollgate.yaml"
    path.write_text(
        "identity:\n  jwt:\n"
        "    - {issuer: a, audience: x, algorithms: [RS256], jwks_file: keys/jwks.json}\n"
        "    - {issuer: b, audience: x, algorithms: [ES256], jwks_url: 'https://b/jwks', ca_file: ca.pem}\n"
        "    - {issuer: c, audience: x, algorithms: [HS256], secret: '${TOLLGATE_JWT_SECRET}'}\n"
    )
    config = load_config(path, {"TOLLGATE_JWT_SECRET": SECRET})
    a, b, c = config.identity.jwt
    assert a.jwks_file == str(tmp_path / "conf" / "keys" / "jwks.json")
    assert b.ca_file == str(tmp_path / "conf" / "ca.pem")
    assert c.secret == SECRET


def test_an_unreadable_jwks_file_or_ca_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"identity\.jwt\.0\.jwks_file: cannot read"):
        Verifier([issuer(jwks_url=None, jwks_file=str(tmp_path / "missing.json"))])
    with pytest.raises(ValueError, match=r"identity\.jwt\.0\.ca_file: cannot load"):
        Verifier([issuer(ca_file=str(tmp_path / "missing.pem"))])
