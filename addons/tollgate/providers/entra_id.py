"""Microsoft Entra ID access tokens for Tollgate's own calls to Azure OpenAI (`credentials:
default`): azure-identity's DefaultAzureCredential (the AZURE_* variables, workload identity, a
managed identity, the Azure CLI's login…), imported on first need. A token is refreshed in a
background thread before it expires, so that a call waits for one only when none is valid (at
start-up, or after the token endpoint failed for the whole of a token's life)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tollgate.fingerprint import fingerprint
from tollgate.formats.raw_headers import Fields
from tollgate.providers.base import Applied, CredentialUnavailable, RequestParts, UpstreamCredential

# The scope Azure OpenAI (Azure AI services) takes tokens for.
SCOPE = "https://cognitiveservices.azure.com/.default"
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
        self._lock = threading.Lock()
        self._refreshing = False
        # The header value, when to renew it, when it expires.
        self._token: tuple[bytes, float, float] | None = None
        # Tells the credentials apart in the audit, as a key's fingerprint does (the token changes
        # hourly); an application's client id is no secret.
        self.fingerprint = fingerprint(f"entra:{os.environ.get('AZURE_CLIENT_ID') or setting}")

    def header(self) -> bytes:
        """`Authorization`'s value with a valid token. CredentialUnavailable when none can be had."""
        token, now = self._token, time.time()
        if token is not None and now < token[2] - MIN_LEFT_S:
            if now >= token[1]:
                self._renew_in_background()
            return token[0]
        with self._lock:  # one request for a token at a time; the others then find it
            token = self._token
            if token is not None and time.time() < token[2] - MIN_LEFT_S:
                return token[0]
            return self._fetch()

    def _fetch(self) -> bytes:
        try:
            got = self._credential.get_token(SCOPE)
        except Exception as e:
            raise CredentialUnavailable(f"Tollgate could not obtain a Microsoft Entra ID token: {_fault(e)}") from None
        expires = float(got.expires_on)
        value = f"Bearer {got.token}".encode()
        self._token = (value, max(time.time(), expires - REFRESH_AHEAD_S), expires)
        return value

    def _renew_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def renew() -> None:
            try:
                with self._lock:
                    self._fetch()
            except CredentialUnavailable:
                pass  # the token in hand serves until it expires; the next call tries again
            finally:
                self._refreshing = False

        threading.Thread(target=renew, name="tollgate-entra-token", daemon=True).start()

    def fetch_ahead(self) -> None:
        """Obtain the first token in a thread, so that the first call does not wait for it."""

        def fetch() -> None:
            try:
                self.header()
            except CredentialUnavailable:
                pass  # the first call that needs one tries again, and is refused saying why

        threading.Thread(target=fetch, name="tollgate-entra-token", daemon=True).start()


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
    """An Entra ID token in `Authorization: Bearer`, the caller's credential positions (`drop`) out."""

    __slots__ = ("_drop", "_tokens", "pooled_key")

    def __init__(self, tokens: EntraTokens, drop: frozenset[bytes]) -> None:
        self._tokens = tokens
        self._drop = drop
        self.pooled_key = None

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        value = self._tokens.header()
        kept = [f for f in fields if f[0].lower() not in self._drop]
        kept.append((b"authorization", value))
        return Applied(tuple(kept), self._tokens.fingerprint)
