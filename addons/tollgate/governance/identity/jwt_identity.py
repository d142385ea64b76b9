"""Callers identified by JSON Web Tokens (`identity.jwt` in tollgate.yaml), verified with PyJWT.

A token's unverified `iss` only chooses the issuer's settings; the token is then verified in full:
its algorithm among the issuer's `algorithms`, its signature with the issuer's secret or a key of
its JWKS, `iss`, `aud`, `exp` (required), `nbf` and `iat` within the leeway. A verified token is
remembered until it expires, so that each later call with it costs a dict lookup.

An issuer's JWKS is fetched over HTTPS (the system's roots or `ca_file`) in a thread, never on the
event loop: `Verifier.verify` answers at once when it knows the token's key, and returns an
awaitable when the key must be fetched first. A token naming a key id the issuer's keys do not hold
makes the keys be fetched again, at most once per `jwks_refresh_s`: a flood of made-up key ids
cannot hammer the issuer. Keys held longer than `jwks_max_age_s` are fetched again in the background
on the next call, so that a key the issuer withdrew stops being trusted: a token verified with the
keys before they changed is verified again. Nothing here imports mitmproxy; no message quotes a
token or a secret. The issuers, as the file writes them (`identity.jwt`), are declared here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from pydantic import Field, field_validator, model_validator

from tollgate.common.config_base import Strict

logger = logging.getLogger(__name__)

# Why a token is refused: the audit's deny reason, and the refusal's message after REJECTED.
EXPIRED = "token expired"
NOT_YET_VALID = "token not yet valid"
WRONG_AUDIENCE = "wrong audience"
UNKNOWN_ISSUER = "unknown issuer"
BAD_SIGNATURE = "bad signature"
UNKNOWN_KEY_ID = "unknown key id"
ALGORITHM_NOT_ALLOWED = "algorithm not allowed"
MALFORMED = "malformed token"
REJECTED = "Tollgate: JWT rejected: "

# Seconds after a fetch before a token naming a key id the keys do not hold fetches them again
# (`jwks_refresh_s`).
JWKS_REFRESH_S = 60.0
# Seconds after a fetch before the next call fetches the keys again, in the background
# (`jwks_max_age_s`): how long a key the issuer withdrew may still be trusted.
JWKS_MAX_AGE_S = 300.0
FETCH_TIMEOUT = 5.0  # seconds a JWKS fetch may take, connecting and reading
MAX_JWKS_BYTES = 1 << 20
VERIFIED_CACHE_SIZE = 4096  # tokens remembered as verified until they expire
# The algorithms an issuer may name: HMAC ones need `secret`, the others a JWKS.
HMAC_ALGORITHMS = frozenset(("HS256", "HS384", "HS512"))
PUBLIC_KEY_ALGORITHMS = frozenset(
    ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
)
# RFC 7518 §3.2: an HMAC key at least as long as the hash's output.
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

# Three base64url segments (the third, the signature, empty only for alg "none", which is refused).
_LOOKS_LIKE_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class JwtIssuer(Strict):
    """One `identity.jwt` entry: an issuer whose tokens identify callers."""

    issuer: str = Field(min_length=1)
    audience: str | tuple[str, ...]
    jwks_url: str | None = None
    jwks_file: str | None = None
    secret: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    algorithms: tuple[str, ...]
    client_claim: str = Field(default="sub", min_length=1)
    groups_claim: str = Field(default="groups", min_length=1)
    # None: not written out, which configured clients forbid (a token could take one's name).
    client_prefix: str | None = None
    leeway_s: float = Field(default=30.0, ge=0)
    jwks_refresh_s: float = Field(default=JWKS_REFRESH_S, ge=0)
    jwks_max_age_s: float = Field(default=JWKS_MAX_AGE_S, gt=0)

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else self.audience

    @property
    def prefix(self) -> str:
        """What goes before the client claim: `client_prefix`, or nothing."""
        return self.client_prefix or ""

    @field_validator("audience")
    @classmethod
    def _audience_given(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        values = (value,) if isinstance(value, str) else value
        if not values or any(not a for a in values):
            raise ValueError("an audience must be a non-empty string, or a list of them")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name the algorithms the issuer signs with, e.g. [RS256]")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError('"none" is refused: every token must be signed')
            if alg not in HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS:
                known = ", ".join(sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS))
                raise ValueError(f"unknown algorithm {alg!r}; one of {known}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme != "https" or not urlsplit(value).hostname):
            raise ValueError("must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtIssuer:
        sources = [n for n in ("jwks_url", "jwks_file", "secret") if getattr(self, n) is not None]
        if len(sources) != 1:
            raise ValueError(
                "set exactly one of jwks_url, jwks_file or secret"
                + (f" (not {' and '.join(sources)})" if sources else "")
            )
        if self.ca_file is not None and self.jwks_url is None:
            raise ValueError("ca_file is for jwks_url only")
        if self.secret is not None:
            wrong = [a for a in self.algorithms if a not in HMAC_ALGORITHMS]
            if wrong:
                raise ValueError(f"algorithms: {', '.join(wrong)} cannot be used with secret (HS256, HS384, HS512 can)")
            need = max(HMAC_MIN_BYTES[a] for a in self.algorithms)
            if len(self.secret.encode()) < need:
                raise ValueError(f"secret: must be at least {need} bytes long for {', '.join(self.algorithms)}")
        else:
            wrong = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
            if wrong:
                raise ValueError(f"algorithms: {', '.join(wrong)} needs secret, not a JWKS")
        return self


class IdentityConfig(Strict):
    """`identity:` the JWT issuers whose tokens identify callers."""

    jwt: tuple[JwtIssuer, ...] = ()


def looks_like_jwt(value: str) -> bool:
    """Whether a presented value has a JWT's shape (no decoding: a virtual key costs nothing more)."""
    return value.count(".") == 2 and _LOOKS_LIKE_JWT.fullmatch(value) is not None


class JwtRejected(Exception):
    """A token refused; `reason` is one of the reasons above, `detail` (optional) says more. Neither
    quotes the token."""

    def __init__(self, reason: str, detail: str = "", ours: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        # False when the token names no configured issuer (or cannot be read to tell): it may be
        # a credential meant for someone else, which an anonymous caller may send upstream.
        self.ours = ours

    @property
    def message(self) -> str:
        return REJECTED + self.reason + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True, eq=False)
class JwtIdentity:
    """A verified token's caller. Equal (and hashed alike) when issuer and claims are: the policy's
    decision cache keys on it."""

    issuer: str
    client: str
    groups: tuple[str, ...]
    claims: Mapping[str, Any] = field(repr=False)
    claims_key: str = field(repr=False)  # the claims as canonical JSON
    valid_until: float = 0.0  # exp plus the leeway, in seconds since the epoch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JwtIdentity):
            return NotImplemented
        return self.issuer == other.issuer and self.claims_key == other.claims_key

    def __hash__(self) -> int:
        return hash((self.issuer, self.claims_key))

    def policy_input(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "claims": dict(self.claims)}


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith("https://"):
            raise urllib.error.URLError("the JWKS URL redirects to a URL that is not https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _url_fetcher(url: str, ca_file: str | None) -> Callable[[], bytes]:
    """A function that fetches the URL over HTTPS, trusting `ca_file` or the system's roots (no
    proxy: Tollgate may be its own process's proxy)."""
    context = ssl.create_default_context(cafile=ca_file)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context), _HttpsRedirectsOnly()
    )

    def fetch() -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "tollgate"})
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("the JWKS is larger than 1 MiB")
        return body

    return fetch


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithm: str | None  # the JWK's own `alg`, when it names one


def parse_jwks(body: bytes | str) -> dict[str | None, _Key]:
    """A JWKS document's signing keys by `kid`; keys PyJWT cannot use, and encryption keys, left
    out. ValueError when it is no JWKS at all."""
    try:
        document = json.loads(body)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS (an object with a "keys" list)')
    keys: dict[str | None, _Key] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = _Key(jwk.key, entry.get("alg"))
    return keys


class Issuer:
    """One `identity.jwt` entry: its settings, and its keys (fetched, read from a file, or its secret)."""

    def __init__(self, settings: JwtIssuer, previous: Issuer | None = None) -> None:
        self.settings = settings
        self.audience = list(settings.audiences)
        self.algorithms = frozenset(settings.algorithms)
        self.keys: dict[str | None, _Key] = {}
        self.fetched_at: float | None = None  # monotonic time of the last fetch attempt
        self.fetch_error: str | None = None
        self.generation = 0  # counts the fetched keys' changes: what was verified with others is verified again
        self._document: bytes | None = None  # the JWKS as last fetched
        self._fetching: asyncio.Future[None] | None = None
        self._fetch: Callable[[], bytes] | None = None
        if settings.secret is not None:
            self.keys = {None: _Key(settings.secret.encode(), None)}
        elif settings.jwks_file is not None:
            try:
                self.keys = parse_jwks(Path(settings.jwks_file).read_bytes())
            except OSError as e:
                raise ValueError(f"jwks_file: cannot read {settings.jwks_file}: {e.strerror}") from None
            except ValueError as e:
                raise ValueError(f"jwks_file: {settings.jwks_file}: {e}") from None
        else:
            assert settings.jwks_url is not None
            try:
                self._fetch = _url_fetcher(settings.jwks_url, settings.ca_file)
            except (OSError, ssl.SSLError) as e:
                why = getattr(e, "strerror", None) or e
                raise ValueError(f"ca_file: cannot load {settings.ca_file}: {why}") from None
            if previous is not None and previous.settings == settings:
                self.keys, self.fetched_at, self.fetch_error = previous.keys, previous.fetched_at, previous.fetch_error
                self.generation, self._document = previous.generation, previous._document

    @property
    def fetches(self) -> bool:
        return self._fetch is not None

    @property
    def fetching(self) -> bool:
        return self._fetching is not None

    def key_for(self, kid: str | None) -> _Key | None:
        keys = self.keys
        if self.settings.secret is not None:
            return keys[None]
        key = keys.get(kid)
        if key is None and kid is None and len(keys) == 1:
            return next(iter(keys.values()))  # a token without a kid, from an issuer with one key
        return key

    def may_fetch(self, now: float) -> bool:
        """Whether an unknown key id may make the keys be fetched again now."""
        if self._fetch is None:
            return False
        if self._fetching is not None:
            return True  # the fetch under way is awaited, not repeated
        return self.fetched_at is None or now - self.fetched_at >= self.settings.jwks_refresh_s

    def stale(self, now: float) -> bool:
        """Whether the fetched keys are older than `jwks_max_age_s` (and no fetch is under way)."""
        fetched_at = self.fetched_at
        return fetched_at is not None and self._fetching is None and now - fetched_at >= self.settings.jwks_max_age_s

    def refresh(self) -> Awaitable[None]:
        """Fetch the keys in a thread, once for all who ask meanwhile; a failed fetch keeps the keys held."""
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._refresh())
        return asyncio.shield(self._fetching)

    async def _refresh(self) -> None:
        assert self._fetch is not None
        self.fetched_at = time.monotonic()
        try:
            body = await asyncio.wait_for(asyncio.to_thread(self._fetch), FETCH_TIMEOUT * 2)
            keys = parse_jwks(body)
        except Exception as e:  # unreachable, refused, not a JWKS: known keys keep working
            self.fetch_error = _describe_fetch_error(e)
            logger.warning(
                f"Tollgate: the JWKS of issuer {self.settings.issuer} could not be fetched"
                f" ({self.fetch_error}); {'its known keys stay in use' if self.keys else 'its tokens are refused'}"
                " until it can"
            )
        else:
            if not keys:
                logger.warning(f"Tollgate: the JWKS of issuer {self.settings.issuer} holds no key Tollgate can use")
            if body != self._document:
                self.generation += 1
            self.keys, self.fetch_error, self._document = keys, None, body
        finally:
            self._fetching = None


def _describe_fetch_error(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:g} s"
    reason = getattr(e, "reason", None)
    if reason is not None:
        return f"{type(e).__name__}: {reason}"
    return f"{type(e).__name__}: {e}"


class Verifier:
    """The configured issuers, and the tokens verified and not yet expired. Built anew on each
    reload; an issuer whose settings did not change keeps the keys fetched for it."""

    def __init__(self, settings: Iterable[JwtIssuer], previous: Verifier | None = None) -> None:
        before = previous.issuers if previous is not None else {}
        self.issuers: dict[str, Issuer] = {}
        for i, s in enumerate(settings):
            try:
                self.issuers[s.issuer] = Issuer(s, before.get(s.issuer))
            except ValueError as e:
                raise ValueError(f"identity.jwt.{i}.{e}") from None
        # Tokens verified and not expired: the caller, its issuer, and the generation of the
        # issuer's keys that verified it.
        self._verified: dict[str, tuple[JwtIdentity, Issuer, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.issuers)

    def issuers_to_fetch(self) -> list[Issuer]:
        """The issuers whose keys are fetched and have not been yet (at start, after a reload)."""
        return [i for i in self.issuers.values() if i.fetches and i.fetched_at is None and not i.fetching]

    async def fetch_missing(self) -> None:
        """Fetch the keys of every issuer that has none yet (failures logged, not raised)."""
        pending = [issuer.refresh() for issuer in self.issuers_to_fetch()]
        if pending:
            await asyncio.gather(*pending)

    def verify(self, token: str) -> JwtIdentity | Awaitable[JwtIdentity]:
        """The token's caller; an awaitable of it when the issuer's keys must be fetched first.
        Raises (or the awaitable raises) JwtRejected."""
        known = self._verified.get(token)
        if known is not None:
            identity, verified_by, generation = known
            if time.time() >= identity.valid_until:
                del self._verified[token]
                raise JwtRejected(EXPIRED)
            if generation == verified_by.generation:
                self._keep_fresh(verified_by)
                return identity
            del self._verified[token]  # the keys changed since: verified again below
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise JwtRejected(MALFORMED, ours=False) from None
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise JwtRejected(UNKNOWN_ISSUER, ours=False)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            raise JwtRejected(ALGORITHM_NOT_ALLOWED)
        if kid is not None and not isinstance(kid, str):
            raise JwtRejected(MALFORMED)
        key = issuer.key_for(kid)
        if key is not None:
            self._keep_fresh(issuer)
            return self._verified_with(issuer, token, key, alg)
        if issuer.may_fetch(time.monotonic()):
            return self._after_fetch(issuer, token, kid, alg)
        raise self._no_key(issuer)

    async def _after_fetch(self, issuer: Issuer, token: str, kid: str | None, alg: str) -> JwtIdentity:
        await issuer.refresh()
        key = issuer.key_for(kid)
        if key is None:
            raise self._no_key(issuer)
        return self._verified_with(issuer, token, key, alg)

    @staticmethod
    def _keep_fresh(issuer: Issuer) -> None:
        """Fetch the issuer's keys again, in the background, once they are older than their age."""
        if issuer.fetches and issuer.stale(time.monotonic()):
            issuer.refresh()

    @staticmethod
    def _no_key(issuer: Issuer) -> JwtRejected:
        if not issuer.keys and issuer.fetch_error is not None:
            return JwtRejected(UNKNOWN_KEY_ID, "the issuer's keys could not be fetched")
        return JwtRejected(UNKNOWN_KEY_ID)

    def _verified_with(self, issuer: Issuer, token: str, key: _Key, alg: str) -> JwtIdentity:
        if key.algorithm is not None and key.algorithm != alg:
            raise JwtRejected(ALGORITHM_NOT_ALLOWED)  # the key is published for another algorithm
        settings = issuer.settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud"], "verify_sub": False, "verify_jti": False},
            )
        except jwt.PyJWTError as e:
            raise JwtRejected(_reason(e)) from None
        identity = self._identity(settings, claims)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._forget_expired()
        self._verified[token] = (identity, issuer, issuer.generation)
        return identity

    def _forget_expired(self) -> None:
        now = time.time()
        self._verified = {t: known for t, known in self._verified.items() if known[0].valid_until > now}
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()

    @staticmethod
    def _identity(settings: JwtIssuer, claims: dict[str, Any]) -> JwtIdentity:
        client = claims.get(settings.client_claim)
        if isinstance(client, int | float) and not isinstance(client, bool):
            client = str(client)
        if not isinstance(client, str) or not client:
            raise JwtRejected(MALFORMED, f"no {settings.client_claim} claim")
        groups = claims.get(settings.groups_claim)
        if groups is None:
            groups = ()
        elif isinstance(groups, str):
            groups = (groups,)
        elif isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            groups = tuple(groups)
        else:
            raise JwtRejected(MALFORMED, f"the {settings.groups_claim} claim is not a string or a list of strings")
        try:
            valid_until = float(claims["exp"]) + settings.leeway_s
            claims_key = json.dumps(claims, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            raise JwtRejected(MALFORMED) from None
        return JwtIdentity(settings.issuer, settings.prefix + client, groups, claims, claims_key, valid_until)


def _reason(e: jwt.PyJWTError) -> str:
    if isinstance(e, jwt.ExpiredSignatureError):
        return EXPIRED
    if isinstance(e, jwt.ImmatureSignatureError):
        return NOT_YET_VALID
    if isinstance(e, jwt.InvalidAudienceError):
        return WRONG_AUDIENCE
    if isinstance(e, jwt.InvalidIssuerError):
        return UNKNOWN_ISSUER
    if isinstance(e, jwt.MissingRequiredClaimError):
        return {"aud": WRONG_AUDIENCE, "iss": UNKNOWN_ISSUER}.get(e.claim, MALFORMED)
    if isinstance(e, jwt.InvalidSignatureError | jwt.InvalidKeyError):
        return BAD_SIGNATURE
    if isinstance(e, jwt.InvalidAlgorithmError):
        return ALGORITHM_NOT_ALLOWED
    return MALFORMED


def mint(settings: JwtIssuer, client: str, groups: Iterable[str] = (), ttl: timedelta = timedelta(hours=1)) -> str:
    """An HS256 token signed with the issuer's `secret`, as `tollgate token` prints it."""
    if settings.secret is None:
        raise ValueError(f"issuer {settings.issuer} has no secret to sign with")
    now = datetime.now(UTC)
    alg = "HS256" if "HS256" in settings.algorithms else sorted(settings.algorithms)[0]
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audiences[0],
        settings.client_claim: client,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    groups = list(groups)
    if groups:
        claims[settings.groups_claim] = groups
    return jwt.encode(claims, settings.secret, algorithm=alg)
