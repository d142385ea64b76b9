"""The demo's own OpenID Connect provider (`./run.sh demo --sign-in`), over HTTP on 127.0.0.1 with
the console's own sign-in code as its client: each person signs in with their groups; a request or
a token exchange that is not the demo console's is refused as a provider refuses it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from tollgate.configuration.config import parse_config
from tollgate.console.sign_in import SignIn, SignInFailed
from tollgate.console.viewer import Viewer
from tollgate.demo import identity
from tollgate.demo.__main__ import configuration

CALLBACK = "http://127.0.0.1:8190/auth/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


PLAIN = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)


@pytest.fixture(scope="module")
def provider() -> Iterator[identity.Provider]:
    started = identity.Provider("127.0.0.1", 0, CALLBACK).start()
    try:
        yield started
    finally:
        started.close()


def console_sign_in(provider: identity.Provider, tmp_path) -> SignIn:
    """The console as the demo configures it (its tollgate.yaml's `console.sign_in`)."""
    text = configuration(tmp_path, "https://127.0.0.1:1", provider.issuer)
    config = parse_config(yaml.safe_load(text), {})
    assert config.console.sign_in is not None
    return SignIn(config.console.sign_in, CALLBACK)


def answer(url: str, form: dict | None = None, headers: dict | None = None) -> tuple[int, dict, str]:
    data = urlencode(form).encode() if form is not None else None
    try:
        with PLAIN.open(urllib.request.Request(url, data, headers or {}), timeout=10) as got:
            return got.status, dict(got.headers), got.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def pick(provider: identity.Provider, location: str, email: str) -> tuple[int, str, str]:
    """The login page as a browser gets it, then the person picked: (page status, page, Location)."""
    status, _, page = answer(location)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    picked, headers, _ = answer(f"{provider.issuer}/authorize", {**query, "person": email})
    return status, page, headers.get("Location", "") if picked == 302 else ""


@pytest.mark.parametrize(
    ("email", "viewer"),
    [
        ("sam@example.com", Viewer("security", "sam@example.com", "Sam Security")),
        ("lena@example.com", Viewer("lead", "lena@example.com", "Lena Lead", frozenset({"research"}))),
        ("bob@example.com", Viewer("self", "bob@example.com", "Bob Developer")),
    ],
)
def test_each_person_signs_in_with_the_role_their_groups_give(provider, tmp_path, email: str, viewer: Viewer) -> None:
    si = console_sign_in(provider, tmp_path)
    cookie, location = si.begin("/#people")
    status, page, back = pick(provider, location, email)
    assert status == 200 and "Tollgate demo: who are you?" in page
    assert all(f'value="{p.email}"' in page for p in identity.PEOPLE)
    assert back.startswith(CALLBACK + "?")
    assert si.finish(si.take([cookie]), parse_qs(urlsplit(back).query)) == (viewer, "/#people")


def test_the_provider_refuses_what_is_not_the_demo_consoles(provider, tmp_path) -> None:
    si = console_sign_in(provider, tmp_path)
    _, location = si.begin("/")
    query = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    for wrong, why in [({"redirect_uri": "http://127.0.0.1:9/auth/callback"}, "redirect_uri is not the demo console"),
                       ({"client_id": "another"}, "unknown client_id"),
                       ({"code_challenge_method": "plain"}, "PKCE (S256)"), ({"nonce": ""}, "nonce are required")]:  # fmt: skip
        status, _, page = answer(f"{provider.issuer}/authorize?" + urlencode({**query, **wrong}))
        assert status == 400 and why in page, (wrong, page)
        assert answer(f"{provider.issuer}/authorize", {**query, **wrong, "person": "sam@example.com"})[0] == 400
    assert answer(f"{provider.issuer}/authorize", {**query, "person": "mallory@example.com"})[0] == 400
    # A code is exchanged once, by the console's secret, with its PKCE verifier and redirect URI.
    _, _, back = pick(provider, location, "sam@example.com")
    code = parse_qs(urlsplit(back).query)["code"][0]
    secret = base64.b64encode(f"{identity.CLIENT_ID}:{identity.CLIENT_SECRET}".encode()).decode()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": "wrong"}
    wrong_secret = {"Authorization": "Basic " + base64.b64encode(f"{identity.CLIENT_ID}:guess".encode()).decode()}
    assert answer(f"{provider.issuer}/token", form, wrong_secret)[0] == 401
    status, _, body = answer(f"{provider.issuer}/token", form, {"Authorization": f"Basic {secret}"})
    assert (status, json.loads(body)["error_description"]) == (400, "the PKCE verifier does not match")
    status, _, body = answer(f"{provider.issuer}/token", form, {"Authorization": f"Basic {secret}"})
    assert (status, json.loads(body)["error_description"]) == (400, "unknown, used or expired code")
    # Signing out goes back to the demo's console only.
    _, headers, _ = answer(f"{provider.issuer}/logout?post_logout_redirect_uri=http://127.0.0.1:8190/auth/signed-out")
    assert headers["Location"] == "http://127.0.0.1:8190/auth/signed-out"
    status, headers, _ = answer(f"{provider.issuer}/logout?post_logout_redirect_uri=https://evil.example/")
    assert status == 200 and "Location" not in headers
    with pytest.raises(SignInFailed, match="is not in the issuer's JWKS"):
        si.verify(_foreign_token(provider), "n")


def _foreign_token(provider: identity.Provider) -> str:
    """An ID token for the demo signed by a key the provider does not publish."""
    claims = {"iss": provider.issuer, "aud": identity.CLIENT_ID, "iat": 0, "exp": 2**31, "sub": "x", "nonce": "n"}
    return jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": "other"})
