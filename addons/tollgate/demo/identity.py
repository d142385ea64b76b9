"""`./run.sh demo --sign-in`: an OpenID Connect provider of the demo's own, on 127.0.0.1, for the
console's sign-in. It speaks the protocol as a company's identity provider does: discovery, the
authorization code flow with PKCE (S256 only), a token endpoint that checks the client's secret,
the code (once, for a minute), its redirect URI and the PKCE verifier, a JWKS of one RSA key made
at each start, and ID tokens signed with it (RS256). Its login page asks for no password: you pick
who you are among the demo's people. Plain HTTP on loopback, as the console allows for an issuer
on this machine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "tollgate-demo-console"
# Known to the demo's console and its provider alone, both on this machine; no real secret.
CLIENT_SECRET = "demo-console-secret-not-a-real-one"
CODE_S = 60  # an authorization code's life
TOKEN_S = 300  # an ID token's
MAX_FORM = 16 << 10  # a form's bytes at most


@dataclass(frozen=True, slots=True)
class Person:
    email: str
    name: str
    groups: tuple[str, ...]
    sees: str  # what the console shows them, as the demo prints it


# The demo's people: the groups are the provider's, which the console's `sign_in` maps to roles.
PEOPLE = (
    Person("sam@example.com", "Sam Security", ("security",), "security: every record, the Audit view, who read what"),
    Person("lena@example.com", "Lena Lead", ("research-leads",), "lead of research: alice's calls (client alice)"),
    Person("bob@example.com", "Bob Developer", ("developers",), "self: their own calls (client bob), nobody else's"),
)


@dataclass(frozen=True, slots=True)
class Grant:
    person: Person
    redirect_uri: str
    challenge: str
    nonce: str
    until: float


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Provider:
    """The provider, serving on 127.0.0.1 from `start` to `close`; `issuer` is its URL. It signs in
    only the console whose callback is `redirect_uri`."""

    def __init__(self, host: str, port: int, redirect_uri: str) -> None:
        self.redirect_uri = redirect_uri
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.issuer = f"http://{host}:{self.server.server_address[1]}"
        self.key = rsa.generate_private_key(65537, 2048)
        self.kid = "demo-" + secrets.token_hex(4)
        self.grants: dict[str, Grant] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, name="tollgate-demo-idp", daemon=True)

    def start(self) -> Provider:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"], "claims_supported": [
                "sub", "email", "email_verified", "name", "groups"],
        }  # fmt: skip

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def request_error(self, query: dict[str, str]) -> str | None:
        """Why an authorization request cannot be answered, or None."""
        if query.get("client_id") != CLIENT_ID:
            return f"unknown client_id (this provider knows {CLIENT_ID} only)"
        if query.get("redirect_uri") != self.redirect_uri:
            return f"redirect_uri is not the demo console's ({self.redirect_uri})"
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return "only the authorization code flow with PKCE (S256)"
        if not query.get("code_challenge") or not query.get("state") or not query.get("nonce"):
            return "code_challenge, state and nonce are required"
        if "openid" not in query.get("scope", "").split():
            return "the scope must include openid"
        return None

    def approve(self, query: dict[str, str], email: str) -> str | None:
        """Where the browser goes once `email` is picked: the console's callback with a new code."""
        person = next((p for p in PEOPLE if p.email == email), None)
        if person is None or self.request_error(query) is not None:
            return None
        code = secrets.token_urlsafe(32)
        now = time.time()
        with self.lock:
            for old in [c for c, g in self.grants.items() if g.until <= now]:
                del self.grants[old]
            self.grants[code] = Grant(person, query["redirect_uri"], query["code_challenge"], query["nonce"],
                                      now + CODE_S)  # fmt: skip
        return query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        scheme, _, value = (authorization or "").partition(" ")
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or unquote(user) != CLIENT_ID or not hmac.compare_digest(
            unquote(password).encode(), CLIENT_SECRET.encode()
        ):  # fmt: skip
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.grants.pop(form.get("code", ""), None)  # once, whatever comes of it
        if grant is None or grant.until <= time.time():
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "not the redirect_uri of the code"}
        if not hmac.compare_digest(_challenge(form.get("code_verifier", "")).encode(), grant.challenge.encode()):
            return 400, {"error": "invalid_grant", "error_description": "the PKCE verifier does not match"}
        return 200, {"access_token": secrets.token_urlsafe(32), "token_type": "Bearer", "expires_in": TOKEN_S,
                     "id_token": self.id_token(grant.person, grant.nonce)}  # fmt: skip

    def id_token(self, person: Person, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + TOKEN_S, "nonce": nonce,
                  "sub": hashlib.sha256(person.email.encode()).hexdigest()[:20], "email": person.email,
                  "email_verified": True, "name": person.name, "groups": list(person.groups)}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def login_page(self, query: dict[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
        )
        buttons = "".join(
            f'<li><button name="person" value="{html.escape(p.email)}">{html.escape(p.name)}</button>'
            f" <span>{html.escape(p.email)}: {html.escape(p.sees)}</span></li>"
            for p in PEOPLE
        )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo sign-in</title><style>'
            "body{font:16px system-ui,sans-serif;margin:3em auto;max-width:42em;padding:0 1em}"
            "ul{list-style:none;padding:0}li{display:flex;gap:1em;align-items:center;margin:.8em 0}"
            "button{font:inherit;flex:0 0 10em;padding:.4em}span{color:#555}</style></head><body>"
            "<h1>Tollgate demo: who are you?</h1>"
            "<p>The demo's own identity provider (OpenID Connect). No password: pick a person to sign in"
            f' to the console as them.</p><form method="post" action="/authorize">{hidden}<ul>{buttons}</ul>'
            "</form></body></html>"
        )


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tollgate-demo-idp"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the console's log says what came of each sign-in

        def _send(self, status: int, body: str, kind: str = "application/json", location: str | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if location is not None:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, document: Any) -> None:
            self._send(status, json.dumps(document))

        def _page(self, status: int, text: str) -> None:
            self._send(status, f"<!doctype html><title>Demo sign-in</title><p>{html.escape(text)}</p>",
                       "text/html; charset=utf-8")  # fmt: skip

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                return self._json(200, provider.discovery())
            if parts.path == "/jwks":
                return self._json(200, provider.jwks())
            if parts.path == "/authorize":
                error = provider.request_error(query)
                if error is not None:
                    return self._page(400, f"This sign-in request cannot be answered: {error}.")
                return self._send(200, provider.login_page(query), "text/html; charset=utf-8")
            if parts.path == "/logout":
                back = query.get("post_logout_redirect_uri", "")
                console = provider.redirect_uri.removesuffix("/auth/callback")
                if back.startswith(console + "/"):  # the demo's console only: no open redirect
                    return self._send(302, "", "text/plain", back)
                return self._page(200, "Signed out of the demo's identity provider.")
            self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_FORM:
                return self._json(413, {"error": "invalid_request"})
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode(errors="replace")).items()}
            if parts.path == "/token":
                return self._json(*provider.token(form, self.headers.get("Authorization")))
            if parts.path == "/authorize":  # a person picked on the login page
                email = form.pop("person", "")
                location = provider.approve(form, email)
                if location is None:
                    return self._page(400, "This sign-in request cannot be answered: pick one of the demo's people.")
                return self._send(302, "", "text/plain", location)
            self._json(404, {"error": "not_found"})

    return Handler
