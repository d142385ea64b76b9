"""Microsoft Entra ID access tokens for Tollgate's own calls to Azure OpenAI (`credentials:
default`): azure-identity's DefaultAzureCredential (the AZURE_* variables, workload identity, a
managed identity, the Azure CLI's login…), imported on first need. A token is refreshed in a
background thread before it expires, so that a call waits for one only when none is valid (at
start-up, or after the token endpoint failed for the whole of a token's life). Azure's sovereign
clouds take tokens for a scope of their own: a call's token is for the cloud of the host it goes to
(`scope_for`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import Applied, RequestParts, UpstreamCredential
from tollgate.credentials.errors import CredentialUnavailable, fetch_ahead
from tollgate.formats.bodies.raw_headers import Fields

# The scope Azure OpenAI (Azure AI services) takes tokens for in each cloud, by its hosts' domain:
# Microsoft's public cloud, Azure Government and Azure operated by 21Vianet (China).
SCOPES = {
    "azure.com": "https://cognitiveservices.azure.com/.default",
    "azure.us": "https://cognitiveservices.azure.us/.default",
    "azure.cn": "https://cognitiveservices.azure.cn/.default",
}
SCOPE = SCOPES["azure.com"]
# The top-level domain of each sovereign cloud's authorities (login.microsoftonline.us;
# login.chinacloudapi.cn, login.partner.microsoftonline.cn) and of its hosts.
_AUTHORITY_CLOUDS = {"us": SCOPES["azure.us"], "cn": SCOPES["azure.cn"]}
# A token is renewed this long before it expires, in the background; one with less than
# MIN_LEFT_S to live is never sent (it may expire on the way).
REFRESH_AHEAD_S = 300.0
MIN_LEFT_S = 30.0
# A token request waits at most this long for each connection and read (azure-core's own default
# is 300 s, and a call that must wait for a token waits meanwhile).
REQUEST_TIMEOUT_S = 10


class EntraTokens:
    """Tokens of DefaultAzureCredential, the one kind of `credentials` (`default`)."""

    def __init__(self, setting: str) -> None:
        """ValueError, saying why, when the credential cannot be made."""
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ValueError("azure-identity is not installed (pip install azure-identity)") from None
        try:
            # The authority is the one configured (AZURE_AUTHORITY_HOST, else Microsoft's public
            # cloud): it is not looked up in Microsoft's instance discovery, which Microsoft's own
            # authorities skip anyway and a private cloud's would fail.
            self._credential: Any = DefaultAzureCredential(
                disable_instance_discovery=True,
                connection_timeout=REQUEST_TIMEOUT_S,
                read_timeout=REQUEST_TIMEOUT_S,
            )
        except ValueError as e:  # AZURE_TOKEN_CREDENTIALS naming no credential, say
            raise ValueError(_first_line(e)) from None
        self.setting = setting
        # The scope of the authority's cloud: a call to a host of no cloud's (a private name, a
        # test's) is for it.
        self.default_scope = authority_scope(os.environ.get("AZURE_AUTHORITY_HOST", ""))
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()
        # Per scope: the header value, when to renew it, when it expires.
        self._tokens: dict[str, tuple[bytes, float, float]] = {}
        # Tells the credentials apart in the audit, as a key's fingerprint does (the token changes
        # hourly); an application's client id is no secret.
        self.fingerprint = fingerprint(f"entra:{os.environ.get('AZURE_CLIENT_ID') or setting}")

    def header(self, scope: str | None = None) -> bytes:
        """`Authorization`'s value with a valid token for `scope` (else the authority's cloud's).
        CredentialUnavailable when none can be had."""
        scope = scope or self.default_scope
        token, now = self._tokens.get(scope), time.time()
        if token is not None and now < token[2] - MIN_LEFT_S:
            if now >= token[1]:
                self._renew_in_background(scope)
            return token[0]
        with self._lock:  # one request for a token at a time; the others then find it
            token = self._tokens.get(scope)
            if token is not None and time.time() < token[2] - MIN_LEFT_S:
                return token[0]
            return self._fetch(scope)

    def _fetch(self, scope: str) -> bytes:
        try:
            got = self._credential.get_token(scope)
        except Exception as e:
            raise CredentialUnavailable(
                f"Tollgate could not obtain a Microsoft Entra ID token for {scope}: {_fault(e)}"
            ) from None
        expires = float(got.expires_on)
        value = f"Bearer {got.token}".encode()
        self._tokens[scope] = (value, max(time.time(), expires - REFRESH_AHEAD_S), expires)
        return value

    def _renew_in_background(self, scope: str) -> None:
        with self._lock:
            if scope in self._refreshing:
                return
            self._refreshing.add(scope)

        def renew() -> None:
            try:
                with self._lock:
                    self._fetch(scope)
            except CredentialUnavailable:
                pass  # the token in hand serves until it expires; the next call tries again
            finally:
                self._refreshing.discard(scope)

        threading.Thread(target=renew, name="tollgate-entra-token", daemon=True).start()

    def fetch_ahead(self) -> None:
        """Obtain the first token in a thread, so that the first call does not wait for it."""
        fetch_ahead(self.header, "tollgate-entra-token")


def scope_for(host: str) -> str | None:
    """The scope of the cloud a host (lower case) is in, by its domain; None for a host of none."""
    return SCOPES.get(".".join(host.rsplit(".", 2)[-2:]))


def authority_scope(authority: str) -> str:
    """The scope of the cloud whose authority AZURE_AUTHORITY_HOST names (a URL or a host): a
    sovereign cloud's by its top-level domain, else the public cloud's."""
    host = (urlsplit(authority).hostname if "//" in authority else authority.partition("/")[0]) or ""
    return _AUTHORITY_CLOUDS.get(host.lower().rstrip(".").rpartition(".")[2], SCOPE)


def load_tokens(setting: str) -> EntraTokens:
    """Azure's `credentials` setting, its first token asked for ahead; ValueError naming the setting."""
    try:
        tokens = EntraTokens(setting)
    except ValueError as e:
        raise ValueError(f"credentials: {e}") from None
    tokens.fetch_ahead()
    return tokens


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _fault(e: Exception) -> str:
    """A token request's fault: its kind, and the credentials' own words, shortened (they name the
    credentials tried and the token endpoint's error, never a secret)."""
    said = " ".join(str(getattr(e, "message", None) or e).split())
    said = said.split(" To mitigate this issue", 1)[0]  # DefaultAzureCredential's link to its guide
    return f"{type(e).__name__} ({said[:400]})" if said else type(e).__name__


class EntraToken(UpstreamCredential):
    """An Entra ID token in `Authorization: Bearer`, the caller's credential positions (`drop`) out:
    for the cloud of the host the request goes to, else of the host its caller called (an upstream
    of no cloud's: a private name), else of the authority."""

    __slots__ = ("_drop", "_tokens", "pooled_key")

    def __init__(self, tokens: EntraTokens, drop: frozenset[bytes]) -> None:
        self._tokens = tokens
        self._drop = drop
        self.pooled_key = None

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        parts = request()
        upstream = urlsplit(parts.upstream).hostname if parts.upstream else None
        scope = (scope_for(upstream) if upstream else None) or scope_for(parts.called_host.lower())
        value = self._tokens.header(scope)
        kept = [f for f in fields if f[0].lower() not in self._drop]
        kept.append((b"authorization", value))
        return Applied(tuple(kept), self._tokens.fingerprint)
