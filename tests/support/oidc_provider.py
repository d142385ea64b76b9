"""An OpenID Connect provider of the tests' own, that speaks the protocol as an identity provider
does: discovery, authorize (the authorization code flow with PKCE), token (the code, its PKCE
verifier, the client's authentication and redirect URI checked), JWKS (an RS256 and an ES256 key,
rotated on demand) and end_session. Built on PyJWT and http.server, over TLS (a trustme CA whose
certificate the test gives the console as `ca_file`) or plain HTTP on loopback.

The person who signs in is the one the test sets (`provider.person`) before the browser goes;
`form` makes authorize a page with a button (else it approves at once). It misbehaves on demand:
`provider.bad` holds what the next ID tokens get wrong (`iss`, `aud`, `azp`, `nonce`, `exp`,
`alg` none/HS256, an unknown `kid`, `email_verified`...), as `id_token` does for a test that
verifies a token itself."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .proxy import free_port
from .quiet_handler import QuietHandler


@dataclass
class Person:
    email: str
    groups: list[str] = field(default_factory=list)
    name: str = ""
    email_verified: bool = True
    sub: str = ""

    def claims(self, groups_claim: str = "groups") -> dict[str, Any]:
        return {"sub": self.sub or hashlib.sha256(self.email.encode()).hexdigest()[:16], "email": self.email,
                "email_verified": self.email_verified, "name": self.name or self.email.split("@")[0],
                groups_claim: self.groups}  # fmt: skip


@dataclass
class _Key:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        as_jwk = RSAAlgorithm.to_jwk if self.alg.startswith("RS") else ECAlgorithm.to_jwk
        return {**as_jwk(public, as_dict=True), "kid": self.kid, "alg": self.alg, "use": "sig"}


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcProvider:
    """The provider, serving from `start` to `stop`; `issuer` is its URL."""

    def __init__(
        self, client_id: str = "tollgate-console", client_secret: str | None = None, tls_dir: Path | None = None,
        host: str = "localhost",
    ) -> None:  # fmt: skip
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.port = free_port()
        self.person: Person | None = None
        self.form = False  # authorize shows a page with a button; else approves at once
        self.deny = False  # authorize answers error=access_denied
        self.bad: dict[str, Any] = {}  # what the next ID tokens get wrong (see id_token)
        self.end_session = True  # discovery names an end_session_endpoint
        self.groups_claim = "groups"
        self.keys = [_Key("rsa-1", "RS256", rsa.generate_private_key(65537, 2048)),
                     _Key("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))]  # fmt: skip
        self.signing = "rsa-1"  # the kid the ID tokens are signed with
        self.kids = True  # the JWKS's keys and the ID tokens' headers name a kid (OIDC makes it optional)
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in the order they came
        self.token_requests: list[dict[str, Any]] = []  # each token request's form and Authorization
        self.logouts: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()
        self.ca_file: Path | None = None
        context = None
        if tls_dir is not None:
            import trustme

            ca = trustme.CA()
            ca.issue_cert(host, "127.0.0.1").configure_cert(
                context := ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            )
            self.ca_file = tls_dir / "issuer-ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
        self.scheme = "https" if context else "http"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def issuer(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> OidcProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def key(self, kid: str) -> _Key:
        return next(k for k in self.keys if k.kid == kid)

    def rotate(self, keep_old: bool = False) -> str:
        """A new RSA key signs from now on (the old ones gone from the JWKS unless `keep_old`); its kid."""
        kid = f"rsa-{len(self.keys) + 1}-{secrets.token_hex(2)}"
        new = _Key(kid, "RS256", rsa.generate_private_key(65537, 2048))
        self.keys = [*self.keys, new] if keep_old else [k for k in self.keys if k.alg != "RS256"] + [new]
        self.signing = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = [k.jwk() for k in self.keys]
        return {"keys": keys if self.kids else [{n: v for n, v in k.items() if n != "kid"} for k in keys]}

    def discovery(self) -> dict[str, Any]:
        document = {
            "issuer": self.bad.get("discovery_issuer", self.issuer),
            "authorization_endpoint": f"{self.issuer}/authorize", "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        }  # fmt: skip
        if self.end_session:
            document["end_session_endpoint"] = f"{self.issuer}/logout"
        return document

    def id_token(self, nonce: str | None, person: Person | None = None, /, **bad: Any) -> str:
        """An ID token for `person` (default: `self.person`), signed by the `signing` key; `bad`
        (else `self.bad`) makes it wrong: iss, aud, azp, nonce, exp (seconds from now), iat,
        email_verified, email, groups, drop (claims left out), alg ("none", "HS256"), kid
        ("unknown": a key not in the JWKS; else the kid named in the header; none at all while
        `kids` is False), key_alg (the header's
        alg with the right key, e.g. ES256 with the RSA key's kid)."""
        bad = bad or dict(self.bad)
        person = person or self.person
        assert person is not None, "the test chooses who signs in: provider.person = Person(...)"
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                                  **person.claims(self.groups_claim)}  # fmt: skip
        if nonce is not None:
            claims["nonce"] = nonce
        for name in ("iss", "aud", "azp", "nonce", "iat", "email_verified", "email", "groups"):
            if name in bad:
                claims[self.groups_claim if name == "groups" else name] = bad[name]
        if "exp" in bad:
            claims["exp"] = now + bad["exp"]
        for name in bad.get("drop", ()):
            claims.pop(name, None)
        alg = bad.get("alg")
        if alg == "none":
            return jwt.encode(claims, None, algorithm="none", headers={"kid": self.signing})
        if alg == "HS256":  # the confusion attack: the client secret (or the public key) as an HMAC key
            secret = (self.client_secret or "a-secret-the-attacker-knows-0123").encode()
            return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": self.signing})
        if bad.get("kid") == "unknown":
            stranger = rsa.generate_private_key(65537, 2048)
            return jwt.encode(claims, stranger, algorithm="RS256",
                              headers={"kid": "not-in-the-jwks"} if self.kids else None)  # fmt: skip
        key = self.key(self.signing)
        return jwt.encode(claims, key.private, algorithm=key.alg,
                          headers={"kid": bad.get("kid", key.kid)} if self.kids else None)  # fmt: skip

    # ---- the endpoints' logic

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) for an authorization request once approved."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect:
            return 400, {}, "unknown client or no redirect_uri"
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, {}, "the code flow with PKCE S256 only"
        if not query.get("code_challenge") or not query.get("state") or not query.get("nonce"):
            return 400, {}, "code_challenge, state and nonce are required"
        back = {"state": query["state"]}
        if self.deny:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = {"redirect_uri": redirect, "challenge": query["code_challenge"],
                                    "nonce": query["nonce"], "person": self.person, "used": False}  # fmt: skip
            back["code"] = code
        return 302, {"Location": redirect + ("&" if "?" in redirect else "?") + urlencode(back)}, ""

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.token_requests.append({"form": dict(form), "authorization": authorization})
        if self.client_secret is not None:
            scheme, _, value = (authorization or "").partition(" ")
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if scheme != "Basic" or unquote(user) != self.client_id or unquote(password) != self.client_secret:
                return 401, {"error": "invalid_client"}
        elif form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant["used"]:
                return 400, {"error": "invalid_grant"}
            grant["used"] = True
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        if _challenge(form.get("code_verifier", "")) != grant["challenge"]:
            return 400, {"error": "invalid_grant"}
        token = self.id_token(grant["nonce"], grant["person"])
        return 200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                     "id_token": token}  # fmt: skip


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _send(self, status: int, body: str | bytes, kind: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, document: Any) -> None:
            self._send(status, json.dumps(document))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            provider.requests.append(("GET", parts.path))
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                return self._json(200, provider.discovery())
            if parts.path == "/jwks":
                return self._json(200, provider.jwks())
            if parts.path == "/authorize":
                if provider.form:
                    return self._form(query)
                return self._answer(*provider.authorize(query))
            if parts.path == "/logout":
                provider.logouts.append(parse_qs(parts.query))
                back = query.get("post_logout_redirect_uri")
                if back:
                    return self._send(302, "", "text/plain", {"Location": back})
                return self._send(200, "<p>Signed out of the provider</p>", "text/html")
            self._send(404, "{}")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            provider.requests.append(("POST", parts.path))
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if parts.path == "/token":
                return self._json(*provider.token(form, self.headers.get("Authorization")))
            if parts.path == "/authorize":  # the form's button
                return self._answer(*provider.authorize(form))
            self._send(404, "{}")

        def _answer(self, status: int, headers: dict[str, str], body: str) -> None:
            self._send(status, body, "text/plain", headers)

        def _form(self, query: dict[str, str]) -> None:
            person = provider.person
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
            )
            who = html.escape(person.email if person else "nobody")
            self._send(200, f'<!doctype html><title>Test IdP</title><h1>Test IdP</h1><form method="post" '
                       f'action="/authorize">{hidden}<button id="approve">Sign in as {who}</button></form>',
                       "text/html; charset=utf-8")  # fmt: skip

    return Handler


@contextmanager
def oidc_provider(**kwargs: Any) -> Iterator[OidcProvider]:
    provider = OidcProvider(**kwargs).start()
    try:
        yield provider
    finally:
        provider.stop()
