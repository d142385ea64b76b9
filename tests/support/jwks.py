"""An identity provider for tests: signing keys (RS256, ES256), the tokens they sign, and a local
HTTPS server publishing their JWKS, which can rotate the document and go down and come back on
the same port."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .proxy import free_port
from .quiet_handler import QuietHandler


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(
    issuer: str,
    audience: str | list[str],
    sub: str,
    *,
    groups: list[str] | None = None,
    ttl: float = 3600,
    not_before: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A token's claims: issued now, expiring in `ttl` seconds (negative: already expired)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": int(now + ttl)}
    if groups is not None:
        payload["groups"] = groups
    if not_before is not None:
        payload["nbf"] = int(now + not_before)
    payload.update(extra)
    return payload


@dataclass
class SigningKey:
    kid: str
    alg: str  # RS256 or ES256
    private: Any

    def jwk(self) -> dict[str, Any]:
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        codec = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        public = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, payload: dict[str, Any], kid: str | None = None) -> str:

        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def hs256_token(payload: dict[str, Any], secret: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token signed with any bytes as the secret (PyJWT refuses a PEM key as one)."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', **(header or {})})}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def verified_hs256(token: str, secret: str, audience: str, issuer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An HS256 token's header and claims, once its signature, audience, issuer and expiry hold."""

    claims = jwt.decode(token, secret, algorithms=["HS256"], audience=audience, issuer=issuer)
    return jwt.get_unverified_header(token), claims


def unsigned_token(payload: dict[str, Any], kid: str | None = None) -> str:
    """`alg: none`, with an empty signature."""
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{segment(header)}.{segment(payload)}."


def payload_of(token: str) -> dict[str, Any]:
    """A token's claims, unverified."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{segment({**payload_of(token), **changes})}.{signature}"


class JwksServer:
    """GET /jwks.json on https://127.0.0.1:<port> answers the current key set. `stop` closes the
    port (connections are refused) and `start` opens the same port again."""

    PATH = "/jwks.json"

    def __init__(self, ca: trustme.CA, keys: list[SigningKey] | None = None, *, started: bool = True) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}{self.PATH}"
        self.fetches = 0  # GETs of the key set answered
        self._lock = threading.Lock()
        self._document = b""
        self.publish(keys or [])
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if started:
            self.start()

    def publish(self, keys: list[SigningKey]) -> None:
        """Rotate: the key set is these keys' public JWKs from the next fetch on."""
        with self._lock:
            self._document = json.dumps({"keys": [k.jwk() for k in keys]}).encode()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 5.0) -> None:
        assert self._server is None, "already running"
        jwks = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.split("?")[0] != JwksServer.PATH:
                    self.send_error(404)
                    return
                with jwks._lock:
                    body = jwks._document
                    jwks.fetches += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        # The port may still be held briefly by the previous server's sockets: retry for a while.
        deadline = time.monotonic() + timeout
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        raw_accept = server.socket.accept
        context = self._context

        def accept_tls():
            sock, addr = raw_accept()
            tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.settimeout(10)
            return tls, addr

        server.get_request = accept_tls  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
