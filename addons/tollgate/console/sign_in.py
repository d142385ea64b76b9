"""Sign-in to the console with the company's identity provider (OpenID Connect): the authorization
code flow with PKCE (S256), as plain code that knows nothing of the web server (`server.py` calls
`begin` for a page asked without a session and `finish` at `/auth/callback`).

`begin` keeps a sign-in under way (its `state`, `nonce`, PKCE verifier and the path first asked
for) against a pre-sign-in cookie's random value, for 10 minutes and for one callback, where the
console keeps its sessions (`sessions.py`: its memory, or PostgreSQL for every replica). `finish`
takes it back (once, whatever comes of it), checks `state`, exchanges the code at the issuer's
token endpoint (`client_secret_basic` when the client has a secret) and verifies the ID token:
its signature by a key of the issuer's JWKS with that key's own algorithm (never `none` or an HMAC
one; the JWKS fetched again once for a `kid` it does not hold), `iss`, `aud` (and `azp` when
`aud` names several), `exp`, `nonce`, a verified e-mail (unless `trust_email`) and, when
`allowed_groups` is set, membership of one. A token without a `kid` (OpenID Connect allows it)
is verified by each key of its algorithm the JWKS holds. An e-mail is folded in ASCII case only
(`common.emails`); one that Unicode NFKC would change is refused. The person's role comes from
the token's groups: `security` before `lead` before `self`. Every refusal is a `SignInFailed`
whose reason is logged and shown on the page, never with a token or a code in it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jwt

from tollgate.common.emails import changed_by_nfkc, email_key
from tollgate.configuration.console_settings import SignInConfig
from tollgate.console.sessions import MemorySessions, PendingSignIn, Sessions
from tollgate.console.viewer import Viewer

PENDING_S = 600  # a sign-in under way: its pre-sign-in cookie's life
FETCH_S = 10.0  # the issuer's answer: discovery, JWKS, token
MAX_BODY = 1 << 20  # of any of the issuer's answers
LEEWAY_S = 60  # clocks apart: exp and iat
# The algorithms a key of a JWKS may sign an ID token with: asymmetric ones (never `none`, never
# HMAC, whose key would be the client secret); a key without `alg` signs with its type's.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class SignInFailed(Exception):
    """A sign-in refused (401): the reason, for the console's log. `email` when the token said who."""

    status = 401

    def __init__(self, reason: str, email: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.email = email


class NotAllowed(SignInFailed):
    """A person verified but in none of `allowed_groups` (403)."""

    status = 403


@dataclass(frozen=True, slots=True)
class Metadata:
    """What discovery says of the issuer."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


def challenge(verifier: str) -> str:
    """PKCE's S256: BASE64URL(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class SignIn:
    """The issuer as the console sees it: its metadata and keys, fetched when first needed (and
    again after a failure). The sign-ins under way are kept in `sessions` (the console's memory by
    default; PostgreSQL for replicas: the callback may come to another one)."""

    def __init__(
        self,
        settings: SignInConfig,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
        sessions: Sessions | None = None,
    ) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self.clock = clock
        context = ssl.create_default_context(cafile=settings.ca_file)
        # No proxy: the console may run beside a Tollgate that is its own machine's proxy.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        self._metadata: Metadata | None = None
        self._keys: list[tuple[str | None, jwt.PyJWK]] = []  # (kid, key): kids are optional in a JWKS
        self.sessions = sessions if sessions is not None else MemorySessions(clock)
        self._lock = threading.Lock()

    # ---- the issuer's documents

    def _get_json(self, url: str, data: bytes | None = None, headers: Mapping[str, str] = {}) -> Any:
        fields = {"Accept": "application/json", "User-Agent": "tollgate-console", **headers}
        request = urllib.request.Request(url, data=data, headers=fields)
        try:
            with self._opener.open(request, timeout=FETCH_S) as answer:
                body = answer.read(MAX_BODY + 1)
        except urllib.error.HTTPError as e:
            raise SignInFailed(f"{_host_path(url)} answered {e.code}{_oauth_error(e)}") from None
        except (OSError, ValueError) as e:  # URLError, a timeout, a TLS failure
            raise SignInFailed(f"the issuer cannot be reached at {_host_path(url)}: {_why(e)}") from None
        if len(body) > MAX_BODY:
            raise SignInFailed(f"{_host_path(url)} answered more than 1 MiB")
        try:
            return json.loads(body)
        except ValueError:
            raise SignInFailed(f"{_host_path(url)} answered no JSON") from None

    def metadata(self) -> Metadata:
        """Discovery's answer, fetched once it is first needed (SignInFailed when it cannot be)."""
        if self._metadata is not None:
            return self._metadata
        issuer = self.settings.issuer
        document = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if not isinstance(document, dict):
            raise SignInFailed("the issuer's discovery document is not an object")
        if document.get("issuer") != issuer:
            raise SignInFailed(f"the discovery document names another issuer ({str(document.get('issuer'))[:200]!r})")
        fields = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise SignInFailed(f"the issuer's discovery document has no {name}")
            fields[name] = value
        end = document.get("end_session_endpoint")
        self._metadata = Metadata(**fields, end_session_endpoint=end if isinstance(end, str) else None)
        return self._metadata

    def _fetch_keys(self) -> None:
        document = self._get_json(self.metadata().jwks_uri)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise SignInFailed('the issuer\'s JWKS is not an object with a "keys" list')
        keys: list[tuple[str | None, jwt.PyJWK]] = []
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # encryption keys, and symmetric ones: never a signature's
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
            kid = entry.get("kid")
            keys.append((kid if isinstance(kid, str) else None, key))
        with self._lock:
            self._keys = keys

    def _held(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        with self._lock:
            keys = self._keys
        if kid is not None:
            return [key for named, key in keys if named == kid][:1]
        # No kid (OpenID Connect allows it when the issuer's keys tell themselves apart): the
        # keys that sign with the token's algorithm, each tried.
        return [key for _, key in keys if key.algorithm_name == alg]

    def _keys_for(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """The key `kid` names, or without a kid each key of the token's algorithm; the JWKS
        fetched again once when it holds none such (a rotation)."""
        keys = self._held(kid, alg)
        if not keys:
            self._fetch_keys()
            keys = self._held(kid, alg)
        if keys:
            return keys
        if kid is None:
            raise SignInFailed(f"the issuer's JWKS holds no {alg} key for an ID token without kid")
        raise SignInFailed(f"the ID token's key ({kid[:80]!r}) is not in the issuer's JWKS")

    # ---- the flow

    def begin(self, back: str) -> tuple[str, str]:
        """A sign-in started for the console's path `back`: the pre-sign-in cookie's value and the
        issuer's authorization URL the browser is sent to. SignInFailed when the issuer cannot be
        reached; `sessions.Unavailable` when the sign-in cannot be kept."""
        metadata = self.metadata()
        cookie = secrets.token_urlsafe(32)
        pending = PendingSignIn(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48), back)
        self.sessions.hold(cookie, pending, PENDING_S)
        query = urlencode({
            "response_type": "code", "client_id": self.settings.client_id, "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.settings.scopes), "state": pending.state, "nonce": pending.nonce,
            "code_challenge": challenge(pending.verifier), "code_challenge_method": "S256",
        }, quote_via=quote)  # fmt: skip
        endpoint = metadata.authorization_endpoint
        return cookie, endpoint + ("&" if "?" in endpoint else "?") + query

    def take(self, cookies: list[str]) -> PendingSignIn | None:
        """The sign-in under way one of the pre-sign-in cookies names, forgotten as it is taken
        (a callback uses it once)."""
        return self.sessions.take(cookies)

    def finish(self, pending: PendingSignIn | None, query: Mapping[str, list[str]]) -> tuple[Viewer, str]:
        """The person signed in by the callback's `query`, and the path to send them to.
        SignInFailed (NotAllowed) with the reason otherwise."""
        if pending is None:
            raise SignInFailed(
                "no sign-in under way in this browser (the pre-sign-in cookie is missing, used or expired)"
            )
        state = query.get("state", [""])[-1]
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise SignInFailed("the state the issuer sent back is not this browser's")
        if "error" in query:
            error = query["error"][-1][:80]
            raise SignInFailed(f"the issuer answered error={error!r}")
        code = query.get("code", [""])[-1]
        if not code:
            raise SignInFailed("the issuer sent back no code")
        id_token = self.exchange(code, pending.verifier)
        claims = self.verify(id_token, pending.nonce)
        return self.viewer_of(claims), pending.back

    def exchange(self, code: str, verifier: str) -> str:
        """The ID token the token endpoint gives for `code`."""
        settings = self.settings
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier}  # fmt: skip
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if settings.client_secret is not None:  # client_secret_basic: each part form-encoded (RFC 6749 2.3.1)
            pair = f"{quote(settings.client_id, safe='')}:{quote(settings.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = settings.client_id
        answer = self._get_json(self.metadata().token_endpoint, urlencode(form).encode(), headers)
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("the token endpoint gave no id_token")
        return id_token

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once every check passes; SignInFailed naming the first that fails."""
        settings = self.settings
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise SignInFailed("the ID token is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ASYMMETRIC:
            raise SignInFailed(
                f"the ID token's algorithm {str(alg)[:20]!r} is not allowed (only the issuer's keys sign)"
            )
        if kid is not None and not isinstance(kid, str):
            raise SignInFailed("the ID token's kid is not a string")
        keys = self._keys_for(kid, alg)
        own = keys[0].algorithm_name  # the key's `alg`, else its type's (RSA: RS256; EC: its curve's)
        if own != alg:
            raise SignInFailed(f"the ID token's algorithm {alg} is not its key's own ({own})")
        claims = self._decoded_by_one(id_token, keys, alg)
        if claims is None and kid is None:  # no kid to tell of a rotation: the JWKS fetched again once
            self._fetch_keys()
            keys = self._held(None, alg)
            claims = self._decoded_by_one(id_token, keys, alg)
        if claims is None:
            if kid is not None or len(keys) == 1:
                raise SignInFailed("the ID token's signature does not verify")
            raise SignInFailed(f"the ID token's signature does not verify with any {alg} key of the issuer's JWKS")
        audience = claims["aud"]
        azp = claims.get("azp")
        if ((isinstance(audience, list) and len(audience) > 1) or azp is not None) and azp != settings.client_id:
            raise SignInFailed("the ID token was issued to another client (azp)")
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
            raise SignInFailed("the ID token's nonce is not this sign-in's")
        return claims

    def _decoded_by_one(self, id_token: str, keys: list[jwt.PyJWK], alg: str) -> dict[str, Any] | None:
        """The token's claims as verified by the first of `keys` whose signature it is; None: none's."""
        for key in keys:
            claims = self._decoded(id_token, key, alg)
            if claims is not None:
                return claims
        return None

    def _decoded(self, id_token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any] | None:
        """The token's claims as verified with `key`; None when its signature is not that key's."""
        settings = self.settings
        try:
            return jwt.decode(
                id_token, key.key, algorithms=[alg], audience=settings.client_id, issuer=settings.issuer,
                leeway=LEEWAY_S, options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            return None
        except jwt.ExpiredSignatureError:
            raise SignInFailed("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise SignInFailed("the ID token is not for this console (aud)") from None
        except jwt.InvalidIssuerError:
            raise SignInFailed("the ID token is from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as e:
            raise SignInFailed(f"the ID token has no {e.claim} claim") from None
        except jwt.PyJWTError as e:
            raise SignInFailed(f"the ID token cannot be verified ({type(e).__name__})") from None

    def viewer_of(self, claims: Mapping[str, Any]) -> Viewer:
        """Who the verified claims name, with their role; SignInFailed without a (verified) e-mail,
        NotAllowed outside `allowed_groups`."""
        settings = self.settings
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise SignInFailed("the ID token has no e-mail (ask for the email scope)")
        changed = changed_by_nfkc(email)
        if changed:  # KELVIN SIGN, a full-width letter…: another address's look-alike
            raise SignInFailed(
                f"the ID token's e-mail holds characters Unicode NFKC changes ({', '.join(changed[:4])}):"
                " no address is compared so"
            )
        email = email_key(email.strip())
        if claims.get("email_verified") is not True and not settings.trust_email:
            raise SignInFailed("the ID token's e-mail is not verified (email_verified)", email)
        found = claims.get(settings.groups_claim)
        if found is None:
            groups: frozenset[str] = frozenset()
        elif isinstance(found, str):
            groups = frozenset({found})
        elif isinstance(found, list) and all(isinstance(g, str) for g in found):
            groups = frozenset(found)
        else:
            raise SignInFailed(f"the ID token's {settings.groups_claim} claim is not a list of strings", email)
        if settings.allowed_groups is not None and not groups & set(settings.allowed_groups):
            raise NotAllowed("in none of console.sign_in.allowed_groups", email)
        name = claims.get("name")
        name = name if isinstance(name, str) else None
        if groups & set(settings.security):
            return Viewer("security", email, name)
        leads = frozenset(t for g in groups & settings.leads.keys() for t in settings.leads[g])
        if groups & settings.leads.keys():
            return Viewer("lead", email, name, leads)
        return Viewer("self", email, name)

    def logout_location(self, signed_out: str) -> str:
        """Where a browser goes once its session has ended: the issuer's end_session_endpoint
        (back to `signed_out` afterwards) when discovery names one, else `signed_out`."""
        try:
            end = self.metadata().end_session_endpoint
        except SignInFailed:
            end = None
        if end is None:
            return signed_out
        query = urlencode({"client_id": self.settings.client_id, "post_logout_redirect_uri": signed_out})
        return end + ("&" if "?" in end else "?") + query


def _host_path(url: str) -> str:
    """A URL as the log says it: without its query (a code or a state)."""
    return url.split("?", 1)[0]


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {FETCH_S:g} s"
    reason = getattr(e, "reason", None)
    return f"{type(e).__name__}: {reason if reason is not None else e}"


def _oauth_error(e: urllib.error.HTTPError) -> str:
    """The OAuth error code of a token endpoint's refusal (`invalid_grant`…), never its other words."""
    try:
        error = json.loads(e.read(4096)).get("error")
    except (ValueError, AttributeError, OSError):
        return ""
    return f" {error[:60]}" if isinstance(error, str) else ""
