"""Identify with JWT callers, on mitmproxy's test flows: a token in every provider's key position
and as a `proxyauth=any` login's password; refusals in the provider's shape that say why and never
quote the token; the token out of the flow's metadata; keys fetched without blocking."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.governance.identity.jwt_identity import JwtIdentity
from tollgate.proxy.stages.identity.identify import PROXYAUTH, Identify
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

from ..conftest import HOSTS, VALID, api_flow, classified, configured

ISSUER = "https://tollgate.local"
SECRET = "stage-secret-" + "q" * 32
CONFIG: dict[str, Any] = {
    "clients": [{"name": "alice", "keys": ["tg-alice-0123456789"], "groups": ["research"]}],
    "identity": {
        "jwt": [
            {
                "issuer": ISSUER,
                "audience": "tollgate",
                "secret": SECRET,
                "algorithms": ["HS256"],
                "client_prefix": "svc:",
            }
        ]
    },
}
# Where each provider's SDK puts its key.
POSITIONS = {
    "openai": lambda t: {"headers": (("Authorization", f"Bearer {t}"),)},
    "anthropic": lambda t: {"headers": (("x-api-key", t),)},
    "gemini": lambda t: {"headers": (("x-goog-api-key", t),)},
    "gemini-query": lambda t: {"query": f"?key={t}"},
    "bedrock": lambda t: {"headers": (("Authorization", f"Bearer {t}"),)},
}


def token(**changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "tollgate", "sub": "batch", "groups": ["etl"], "iat": now, "exp": now + 300}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256")


def call_with(shared: Shared, provider: str, **where: Any) -> tuple[http.HTTPFlow, Call]:
    path, body = VALID[provider]
    flow = api_flow(HOSTS[provider], path + where.get("query", ""), body, headers=where.get("headers", ()))
    return flow, classified(shared, flow)


def identify(shared: Shared, flow: http.HTTPFlow, call: Call, stage: Identify | None = None) -> None:
    pending = (stage or Identify(shared)).handle(flow, call)
    if pending is not None:
        asyncio.run(_await(pending))


async def _await(pending: Any) -> None:
    await pending


@pytest.mark.parametrize("position", POSITIONS)
def test_a_jwt_is_taken_wherever_a_virtual_key_is(position: str) -> None:
    shared = configured(CONFIG)
    provider = position.split("-", maxsplit=1)[0]
    flow, call = call_with(shared, provider, **POSITIONS[position](token()))
    identify(shared, flow, call)
    assert flow.response is None
    assert (call.caller.client, call.caller.groups, call.caller.auth) == ("svc:batch", ("etl",), "jwt")
    assert isinstance(call.caller.identity, JwtIdentity) and call.caller.identity.claims["sub"] == "batch"
    record = audit_record(call)
    assert (record["client"], record["auth"], record["groups"]) == ("svc:batch", "jwt", ["etl"])
    assert "claims" not in json.dumps(record) and "identity" not in record


@pytest.mark.parametrize(
    ("provider", "status"), [("openai", 401), ("anthropic", 401), ("gemini", 401), ("bedrock", 403)]
)
def test_a_rejected_jwt_is_refused_in_the_providers_shape_saying_why(provider: str, status: int) -> None:
    shared = configured(CONFIG)
    bad = token(exp=int(time.time()) - 3600)
    flow, call = call_with(shared, provider, **POSITIONS[provider](bad))
    identify(shared, flow, call)
    assert flow.response is not None
    assert flow.response.status_code == status
    assert flow.response.headers["x-tollgate-error"] == "unauthenticated"
    assert b"Tollgate: JWT rejected: token expired" in flow.response.content
    assert bad.encode() not in flow.response.content
    assert (call.verdict.decision, call.verdict.deny_reasons, call.caller.client) == ("deny", ("token expired",), None)


def test_a_virtual_key_still_identifies_its_client() -> None:
    shared = configured(CONFIG)
    flow, call = call_with(shared, "openai", headers=(("Authorization", "Bearer tg-alice-0123456789"),))
    identify(shared, flow, call)
    assert (call.caller.client, call.caller.auth, call.caller.identity) == ("alice", "virtual_key", None)


def test_a_token_of_another_issuer_is_an_anonymous_callers_own_when_anonymity_is_allowed() -> None:
    other = jwt.encode({"iss": "https://elsewhere", "sub": "x"}, "k" * 32, algorithm="HS256")
    shared = configured({**CONFIG, "allow_anonymous": True})
    flow, call = call_with(shared, "openai", headers=(("Authorization", f"Bearer {other}"),))
    identify(shared, flow, call)
    assert (flow.response, call.caller.auth) == (None, "anonymous")
    # ... but a token of Tollgate's issuer that fails is refused all the same.
    flow, call = call_with(shared, "openai", headers=(("Authorization", f"Bearer {token(aud='x')}"),))
    identify(shared, flow, call)
    assert call.verdict.deny_reasons == ("wrong audience",)
    # ... and without anonymity, another issuer's token is refused.
    shared = configured(CONFIG)
    flow, call = call_with(shared, "openai", headers=(("Authorization", f"Bearer {other}"),))
    identify(shared, flow, call)
    assert call.verdict.deny_reasons == ("unknown issuer",)
    assert b"Tollgate: JWT rejected: unknown issuer" in flow.response.content  # type: ignore[union-attr]


def logged_in(shared: Shared, stage: Identify, user: str, password: str) -> tuple[http.HTTPFlow, Call]:
    """A request as mitmproxy's proxyauth leaves it: the login in the flow's metadata."""
    path, body = VALID["openai"]
    flow = api_flow(HOSTS["openai"], path, body)
    flow.metadata[PROXYAUTH] = (user, password)
    stage.forget_proxy_password(flow)  # at requestheaders
    return flow, classified(shared, flow)


def test_with_proxyauth_any_a_login_is_its_passwords_jwt() -> None:
    shared = configured(CONFIG)
    shared.logins_unchecked = True
    stage = Identify(shared)
    secret = token()
    flow, call = logged_in(shared, stage, "agent", secret)
    assert flow.metadata[PROXYAUTH] == ("agent", "")
    assert secret not in repr(flow.metadata) and secret not in repr(flow.get_state())
    identify(shared, flow, call, stage)
    assert (flow.response, call.caller.client, call.caller.auth) == (None, "svc:batch", "jwt")
    assert flow not in stage._passwords


@pytest.mark.parametrize("password", ["", "hunter2", "tg-alice-0123456789", "a.b.c"])
def test_with_proxyauth_any_a_login_without_a_valid_jwt_is_refused_whatever_name_it_claims(password: str) -> None:
    shared = configured({**CONFIG, "allow_anonymous": True})
    shared.logins_unchecked = True
    stage = Identify(shared)
    flow, call = logged_in(shared, stage, "alice", password)
    identify(shared, flow, call, stage)
    assert flow.response is not None and flow.response.status_code == 401
    assert call.caller.client is None and call.verdict.decision == "deny"
    assert call.verdict.deny_reasons == ("malformed token",)


def test_with_proxyauth_any_an_expired_login_token_says_so() -> None:
    shared = configured(CONFIG)
    shared.logins_unchecked = True
    stage = Identify(shared)
    flow, call = logged_in(shared, stage, "agent", token(exp=int(time.time()) - 100))
    identify(shared, flow, call, stage)
    assert call.verdict.deny_reasons == ("token expired",)


def test_with_a_checked_proxyauth_the_login_name_is_the_client_as_before() -> None:
    shared = configured(CONFIG)
    stage = Identify(shared)
    flow, call = logged_in(shared, stage, "alice", "htpasswd-password")
    assert flow.metadata[PROXYAUTH] == ("alice", "") and flow not in stage._passwords
    identify(shared, flow, call, stage)
    assert (call.caller.client, call.caller.auth) == ("alice", "proxyauth")


def test_a_password_not_judged_is_let_go_at_request() -> None:
    shared = configured(CONFIG)
    shared.logins_unchecked = True
    stage = Identify(shared)
    flow, _ = logged_in(shared, stage, "agent", token())
    assert flow in stage._passwords
    stage.request(flow)
    assert flow not in stage._passwords


def test_a_token_whose_key_must_be_fetched_makes_identify_awaitable() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tollgate.configuration.config import parse_config
    from tollgate.configuration.runtime import Loaded

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    fetches = []

    def fetch() -> bytes:
        fetches.append(1)
        return json.dumps({"keys": [{**public, "kid": "k1"}]}).encode()

    config = {
        "identity": {
            "jwt": [
                {
                    "issuer": "https://oidc.example",
                    "audience": "tollgate",
                    "algorithms": ["RS256"],
                    "jwks_url": "https://oidc.example/jwks",
                }
            ]
        }
    }
    shared = Shared()
    shared.apply(Loaded.build(parse_config(config, {})), None)
    assert shared.loaded is not None
    shared.loaded.jwt.issuers["https://oidc.example"]._fetch = fetch
    now = int(time.time())
    rs = jwt.encode(
        {"iss": "https://oidc.example", "aud": "tollgate", "sub": "pod", "exp": now + 60},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    flow, call = call_with(shared, "openai", headers=(("Authorization", f"Bearer {rs}"),))
    pending = Identify(shared).handle(flow, call)
    assert pending is not None and call.caller.client is None
    asyncio.run(_await(pending))
    assert (call.caller.client, call.caller.auth, len(fetches)) == ("pod", "jwt", 1)
    flow, call = call_with(shared, "openai", headers=(("Authorization", f"Bearer {rs}"),))
    assert Identify(shared).handle(flow, call) is None and call.caller.client == "pod"  # remembered
