"""Sign-in with OpenID Connect (`console/sign_in.py`) against the tests' own provider: the
settings' errors name their field; the flow's authorization request (PKCE S256, state, nonce);
an ID token accepted only when every check passes, each bad one refused with its reason; the
JWKS fetched again once for a key it does not hold; roles from the token's groups; the
pre-sign-in state used once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from tests.support.oidc_provider import OidcProvider, Person

from tollgate.configuration.config import ConfigError, load_config
from tollgate.configuration.console_settings import SignInConfig
from tollgate.console.sign_in import NotAllowed, SignIn, SignInFailed, challenge
from tollgate.console.viewer import Viewer

REDIRECT = "http://127.0.0.1:8090/auth/callback"
ALICE = Person("Alice@Example.com", ["engineering"], "Alice Liddell")


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    started = OidcProvider(client_secret="console-client-secret-0001-of-the-tests", host="127.0.0.1").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def idp(provider: OidcProvider) -> Iterator[OidcProvider]:
    provider.person, provider.bad, provider.signing, provider.deny, provider.kids = ALICE, {}, "rsa-1", False, True
    keys = provider.keys
    yield provider
    provider.bad, provider.kids, provider.keys = {}, True, keys  # a test that rotates them gives them back


def sign_in(provider: OidcProvider, **settings) -> SignIn:
    config = {"issuer": provider.issuer, "client_id": provider.client_id, "client_secret": provider.client_secret,
              "security": ["secops"], "leads": {"eng-leads": ["research"], "ml-leads": ["ml", "research"]}}  # fmt: skip
    return SignIn(SignInConfig.model_validate({**config, **settings}), REDIRECT)


def flow(provider: OidcProvider, si: SignIn, back: str = "/#people") -> tuple[Viewer, str]:
    """A whole sign-in: begin, the provider approves, the callback finishes."""
    cookie, location = si.begin(back)
    status, headers, _ = provider.authorize({k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()})
    assert status == 302
    return si.finish(si.take([cookie]), parse_qs(urlsplit(headers["Location"]).query))


# ---- settings


@pytest.mark.parametrize(
    ("console", "error"),
    [
        ({"sign_in": {"issuer": "http://login.example.com", "client_id": "c"}},
         "console.sign_in.issuer: must be an https URL (http only for an issuer on loopback)"),
        ({"sign_in": {"issuer": "https://login.example.com?x=1", "client_id": "c"}},
         "console.sign_in.issuer: must be the issuer's https URL without a query"),
        ({"sign_in": {"issuer": "https://login.example.com", "client_id": "c", "scopes": ["email"]}},
         "console.sign_in.scopes: must include openid"),
        ({"sign_in": {"issuer": "https://login.example.com", "client_id": "c",
                      "redirect_uri": "https://console.example.com/callback"}},
         "console.sign_in.redirect_uri: must end in /auth/callback"),
        ({"sign_in": {"issuer": "https://login.example.com"}}, "console.sign_in.client_id: missing (it is required)"),
        ({"listen": "0.0.0.0:8090", "tls": {"cert": "c.pem", "key": "k.pem"},
          "sign_in": {"issuer": "https://login.example.com", "client_id": "c"}},
         "sign_in.redirect_uri: required when the console listens on 0.0.0.0:8090 (not loopback)"),
    ],
)  # fmt: skip
def test_settings_errors_name_their_field(tmp_path: Path, console: dict, error: str) -> None:
    import json

    path = tmp_path / "tollgate.yaml"
    path.write_text(json.dumps({"console": console}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert error in str(raised.value)


def test_the_redirect_uri_defaults_to_the_loopback_address() -> None:
    from tollgate.configuration.console_settings import redirect_uri

    settings = SignInConfig(issuer="https://login.example.com", client_id="c")
    assert redirect_uri(settings, "127.0.0.1:8090", tls=False) == "http://127.0.0.1:8090/auth/callback"
    assert redirect_uri(settings, "[::1]:9000", tls=True) == "https://[::1]:9000/auth/callback"


# ---- the flow


def test_the_authorization_request_uses_pkce_s256_a_state_and_a_nonce(idp: OidcProvider) -> None:
    si = sign_in(idp)
    cookie, location = si.begin("/")
    assert location.startswith(f"{idp.issuer}/authorize?")
    query = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    pending = si.take([cookie])
    assert pending is not None
    assert query == {
        "response_type": "code", "client_id": "tollgate-console", "redirect_uri": REDIRECT,
        "scope": "openid email profile", "state": pending.state, "nonce": pending.nonce,
        "code_challenge": challenge(pending.verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    assert len({pending.state, pending.nonce, pending.verifier, cookie}) == 4
    assert si.take([cookie]) is None  # used once


def test_a_whole_sign_in_with_a_client_secret_gives_the_person_and_the_path_first_asked(idp: OidcProvider) -> None:
    viewer, back = flow(idp, sign_in(idp))
    assert (viewer, back) == (Viewer("self", "alice@example.com", "Alice Liddell"), "/#people")
    request = idp.token_requests[-1]
    assert request["authorization"].startswith("Basic ")  # client_secret_basic: the secret never in the form
    assert "client_secret" not in request["form"] and "client_id" not in request["form"]


def test_a_public_client_sends_its_id_and_pkce_alone(tmp_path: Path) -> None:
    provider = OidcProvider(host="127.0.0.1").start()  # no secret: a public client
    try:
        provider.person = ALICE
        viewer, _ = flow(provider, sign_in(provider, client_secret=None))
        assert viewer.email == "alice@example.com"
        assert provider.token_requests[-1]["authorization"] is None
        assert provider.token_requests[-1]["form"]["client_id"] == "tollgate-console"
    finally:
        provider.stop()


def test_a_wrong_client_secret_is_refused_by_the_token_endpoint(idp: OidcProvider) -> None:
    with pytest.raises(SignInFailed, match=r"/token answered 401 invalid_client$"):
        flow(idp, sign_in(idp, client_secret="not-the-secret-0000"))


def test_the_state_must_be_this_browsers_and_the_sign_in_under_way(idp: OidcProvider) -> None:
    si = sign_in(idp)
    cookie, _ = si.begin("/")
    pending = si.take([cookie])
    with pytest.raises(SignInFailed, match="the state the issuer sent back is not this browser's"):
        si.finish(pending, {"state": ["another"], "code": ["x"]})
    with pytest.raises(SignInFailed, match="no sign-in under way in this browser"):
        si.finish(None, {"state": ["x"], "code": ["x"]})
    assert pending is not None
    with pytest.raises(SignInFailed, match="the issuer answered error='access_denied'"):
        si.finish(pending, {"state": [pending.state], "error": ["access_denied"]})


def test_a_code_is_exchanged_once(idp: OidcProvider) -> None:
    si = sign_in(idp)
    cookie, location = si.begin("/")
    _, headers, _ = idp.authorize({k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()})
    callback = parse_qs(urlsplit(headers["Location"]).query)
    pending = si.take([cookie])
    si.finish(pending, callback)
    with pytest.raises(SignInFailed, match="answered 400 invalid_grant"):
        si.finish(pending, callback)


def test_an_issuer_that_cannot_be_reached_is_a_reason() -> None:
    from tests.support.proxy import free_port

    si = SignIn(SignInConfig(issuer=f"http://127.0.0.1:{free_port()}", client_id="c"), REDIRECT)
    with pytest.raises(SignInFailed, match=r"the issuer cannot be reached at http://127\.0\.0\.1:"):
        si.begin("/")


def test_discovery_naming_another_issuer_is_refused(idp: OidcProvider) -> None:
    idp.bad = {"discovery_issuer": "https://evil.example"}
    with pytest.raises(SignInFailed, match="the discovery document names another issuer"):
        sign_in(idp).begin("/")


# ---- the ID token


NONCE = "the-nonce-of-this-sign-in"


@pytest.mark.parametrize("signing", ["rsa-1", "ec-1"])
def test_a_good_id_token_is_accepted_with_its_keys_own_algorithm(idp: OidcProvider, signing: str) -> None:
    idp.signing = signing
    claims = sign_in(idp).verify(idp.id_token(NONCE), NONCE)
    assert (claims["email"], claims["nonce"], claims["aud"]) == ("Alice@Example.com", NONCE, "tollgate-console")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"iss": "https://evil.example"}, "the ID token is from another issuer (iss)"),
        ({"aud": "another-client"}, "the ID token is not for this console (aud)"),
        ({"aud": ["tollgate-console", "another-client"]}, "the ID token was issued to another client (azp)"),
        ({"aud": ["tollgate-console", "another-client"], "azp": "another-client"},
         "the ID token was issued to another client (azp)"),
        ({"azp": "another-client"}, "the ID token was issued to another client (azp)"),
        ({"nonce": "another-nonce"}, "the ID token's nonce is not this sign-in's"),
        ({"drop": ["nonce"]}, "the ID token's nonce is not this sign-in's"),
        ({"exp": -120}, "the ID token has expired"),
        ({"drop": ["exp"]}, "the ID token has no exp claim"),
        ({"drop": ["aud"]}, "the ID token has no aud claim"),
        ({"alg": "none"}, "the ID token's algorithm 'none' is not allowed (only the issuer's keys sign)"),
        ({"alg": "HS256"}, "the ID token's algorithm 'HS256' is not allowed (only the issuer's keys sign)"),
        ({"kid": "unknown"}, "the ID token's key ('not-in-the-jwks') is not in the issuer's JWKS"),
        ({"kid": "ec-1"}, "the ID token's algorithm RS256 is not its key's own (ES256)"),
    ],
)  # fmt: skip
def test_each_bad_id_token_is_refused_with_its_reason(idp: OidcProvider, bad: dict, reason: str) -> None:
    with pytest.raises(SignInFailed) as refused:
        sign_in(idp).verify(idp.id_token(NONCE, **bad), NONCE)
    assert refused.value.reason == reason


def test_a_signature_by_another_key_under_a_known_kid_is_refused(idp: OidcProvider) -> None:
    token = idp.id_token(NONCE)
    header, _, signature = token.split(".")
    forged = idp.id_token(NONCE, email="mallory@example.com").split(".")[1]
    with pytest.raises(SignInFailed, match="the ID token's signature does not verify"):
        sign_in(idp).verify(f"{header}.{forged}.{signature}", NONCE)


def test_the_jwks_is_fetched_again_once_for_a_key_it_does_not_hold(idp: OidcProvider) -> None:
    si = sign_in(idp)
    si.verify(idp.id_token(NONCE), NONCE)
    fetched = idp.requests.count(("GET", "/jwks"))
    idp.rotate()
    try:
        assert si.verify(idp.id_token(NONCE), NONCE)["email"] == "Alice@Example.com"
        assert idp.requests.count(("GET", "/jwks")) == fetched + 1
        si.verify(idp.id_token(NONCE), NONCE)
        assert idp.requests.count(("GET", "/jwks")) == fetched + 1  # held now
        with pytest.raises(SignInFailed, match="is not in the issuer's JWKS"):
            si.verify(idp.id_token(NONCE, kid="unknown"), NONCE)
        assert idp.requests.count(("GET", "/jwks")) == fetched + 2  # once per token, no more
    finally:
        idp.signing = "rsa-1"


@pytest.mark.parametrize("jwks_kids", [False, True])
def test_an_id_token_without_kid_is_verified_by_the_one_key_of_its_type(idp: OidcProvider, jwks_kids: bool) -> None:
    """OpenID Connect lets an issuer leave `kid` out: the JWKS's one RSA key (beside an EC one) is it,
    whether the JWKS names kids or not."""
    idp.kids = False
    tokens = [idp.id_token(NONCE)]
    idp.signing = "ec-1"
    tokens.append(idp.id_token(NONCE))
    assert all("kid" not in jwt.get_unverified_header(token) for token in tokens)
    idp.kids = jwks_kids  # the JWKS as the console fetches it
    for token in tokens:
        assert sign_in(idp).verify(token, NONCE)["email"] == "Alice@Example.com"


def test_an_id_token_without_kid_tries_each_key_of_its_type(idp: OidcProvider) -> None:
    idp.kids = False
    si = sign_in(idp)
    assert si.verify(idp.id_token(NONCE), NONCE)["nonce"] == NONCE
    old = idp.signing
    idp.rotate(keep_old=True)  # two RSA keys now: the new one signs
    try:
        assert si.verify(idp.id_token(NONCE), NONCE)["nonce"] == NONCE  # the JWKS fetched again, each tried
        idp.signing = old
        assert si.verify(idp.id_token(NONCE), NONCE)["nonce"] == NONCE
        with pytest.raises(SignInFailed) as refused:
            si.verify(idp.id_token(NONCE, kid="unknown"), NONCE)
        assert (
            refused.value.reason == "the ID token's signature does not verify with any RS256 key of the issuer's JWKS"
        )
        token = idp.id_token(NONCE)
        header, _, signature = token.split(".")
        forged = idp.id_token(NONCE, email="mallory@example.com").split(".")[1]
        with pytest.raises(SignInFailed, match="signature does not verify"):
            si.verify(f"{header}.{forged}.{signature}", NONCE)
        with pytest.raises(SignInFailed, match="the ID token has expired"):
            si.verify(idp.id_token(NONCE, exp=-120), NONCE)
    finally:
        idp.signing = "rsa-1"


def test_an_id_token_without_kid_and_no_key_of_its_type_is_refused(idp: OidcProvider) -> None:
    idp.kids = False
    idp.keys = [k for k in idp.keys if k.alg == "ES256"]
    with pytest.raises(SignInFailed) as refused:
        sign_in(idp).verify(idp.id_token(NONCE, kid="unknown"), NONCE)
    assert refused.value.reason == "the issuer's JWKS holds no RS256 key for an ID token without kid"


# ---- who signed in


def test_e_mails_fold_in_ascii_only_and_one_nfkc_changes_is_refused(idp: OidcProvider) -> None:
    claims = {"sub": "1", "email": "Kate@Example.COM", "email_verified": True, "groups": []}
    assert sign_in(idp).viewer_of(claims) == Viewer("self", "kate@example.com")
    for email, shown in [("\u212aate@example.com", "U+212A"), ("\uff4bate@example.com", "U+FF4B"),
                         ("ka\ufb01@example.com", "U+FB01"), ("kate@exa\u2126ple.com", "U+2126")]:  # fmt: skip
        with pytest.raises(SignInFailed) as refused:
            sign_in(idp).viewer_of({**claims, "email": email})
        assert refused.value.reason == (
            f"the ID token's e-mail holds characters Unicode NFKC changes ({shown}): no address is compared so"
        )
    # Written with a capital outside ASCII that NFKC keeps, it is that address, not the small letter's.
    assert sign_in(idp).viewer_of({**claims, "email": "\u00c9lodie@example.com"}).email == "\u00c9lodie@example.com"


def test_an_unverified_email_is_refused_unless_trusted(idp: OidcProvider) -> None:
    claims = {"sub": "1", "email": "bob@example.com", "email_verified": False, "groups": []}
    with pytest.raises(SignInFailed, match=r"the ID token's e-mail is not verified \(email_verified\)"):
        sign_in(idp).viewer_of(claims)
    with pytest.raises(SignInFailed, match="the ID token has no e-mail"):
        sign_in(idp).viewer_of({"sub": "1", "email_verified": True})
    assert sign_in(idp, trust_email=True).viewer_of(claims) == Viewer("self", "bob@example.com")


@pytest.mark.parametrize(
    ("groups", "viewer"),
    [
        (["secops", "eng-leads"], Viewer("security", "p@example.com", "P")),
        (["eng-leads"], Viewer("lead", "p@example.com", "P", frozenset({"research"}))),
        (["eng-leads", "ml-leads", "x"], Viewer("lead", "p@example.com", "P", frozenset({"research", "ml"}))),
        (["research"], Viewer("self", "p@example.com", "P")),  # a Tollgate group is not an IdP group
        ([], Viewer("self", "p@example.com", "P")),
        ("secops", Viewer("security", "p@example.com", "P")),
    ],
)  # fmt: skip
def test_the_role_is_security_before_lead_before_self(idp: OidcProvider, groups, viewer: Viewer) -> None:
    claims = {"sub": "1", "email": "P@example.com", "email_verified": True, "name": "P", "groups": groups}
    assert sign_in(idp).viewer_of(claims) == viewer


def test_allowed_groups_refuse_everyone_else_with_403(idp: OidcProvider) -> None:
    si = sign_in(idp, allowed_groups=["tollgate-users", "secops"])
    claims = {"sub": "1", "email": "p@example.com", "email_verified": True, "groups": ["engineering"]}
    with pytest.raises(NotAllowed) as refused:
        si.viewer_of(claims)
    assert (refused.value.status, refused.value.email) == (403, "p@example.com")
    assert si.viewer_of({**claims, "groups": ["tollgate-users"]}).role == "self"
    with pytest.raises(SignInFailed, match="groups claim is not a list of strings"):
        si.viewer_of({**claims, "groups": [1, 2]})
