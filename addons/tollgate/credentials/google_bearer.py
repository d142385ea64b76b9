"""OAuth access tokens for Tollgate's own calls to Google (Vertex AI; the Gemini API with
`credentials:`): Application Default Credentials or a credentials file, through google-auth,
refreshed in a background thread before they expire so that a call waits for a token only when
none is valid (at start-up, or after Google's token endpoint failed for the whole of a token's life)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import Applied, RequestParts, UpstreamCredential
from tollgate.credentials.errors import CredentialUnavailable, fetch_ahead
from tollgate.formats.bodies.raw_headers import Fields

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GENERATIVE_LANGUAGE = "https://www.googleapis.com/auth/generative-language"
# A refresh waits at most this long for Google's token endpoint (google-auth's own default is 120 s,
# and a blocking refresh holds up every call meanwhile).
REFRESH_TIMEOUT_S = 10.0
# What google-auth's credentials put into a request that Tollgate forwards: the token, and the
# project whose quota the call counts against where the credentials name one (a caller's never
# goes with Tollgate's token).
QUOTA_PROJECT = b"x-goog-user-project"
_FORWARDED = ("authorization", QUOTA_PROJECT.decode())


def _timed_request() -> Any:
    from google.auth.transport import requests as transport

    class TimedRequest(transport.Request):
        def __call__(
            self,
            url: Any,
            method: Any = "GET",
            body: Any = None,
            headers: Any = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Any:
            timeout = min(timeout or REFRESH_TIMEOUT_S, REFRESH_TIMEOUT_S)
            return super().__call__(url, method, body, headers, timeout=timeout, **kwargs)

    return TimedRequest()


class GoogleTokens:
    """Google credentials that give access tokens: `default` (Application Default Credentials:
    GOOGLE_APPLICATION_CREDENTIALS, gcloud's, or the metadata server's) or the path of a service
    account's key file or an authorized user's (other kinds go through `default`)."""

    def __init__(self, setting: str, scopes: tuple[str, ...]) -> None:
        """ValueError, saying why, when the credentials cannot be found or read."""
        import google.auth
        from google.auth import exceptions

        try:
            if setting == "default":
                credentials, project = google.auth.default(scopes=list(scopes))
            else:
                credentials, project = _from_file(Path(setting), scopes)
        except exceptions.DefaultCredentialsError as e:
            raise ValueError(str(e).splitlines()[0]) from None
        self.setting = setting
        self.project: str | None = project
        credentials.with_non_blocking_refresh()
        self._credentials = credentials
        self._request = _timed_request()
        account = getattr(credentials, "service_account_email", None) or getattr(credentials, "signer_email", None)
        # Tells the credentials apart in the audit, as a key's fingerprint does (the token changes hourly).
        self.fingerprint = fingerprint(f"google:{account or setting}")

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The header fields that carry a valid token. CredentialUnavailable when none can be had."""
        scratch: dict[str, str] = {}
        try:
            self._credentials.before_request(self._request, "POST", "", scratch)
        except Exception as e:
            raise CredentialUnavailable(f"Tollgate could not obtain a Google access token: {_fault(e)}") from None
        return [(name.encode(), scratch[name].encode()) for name in _FORWARDED if scratch.get(name)]

    def fetch_ahead(self) -> None:
        """Obtain the first token in a thread, so that the first call does not wait for it."""
        fetch_ahead(self.headers, "tollgate-google-token")


def load_tokens(setting: str, scopes: tuple[str, ...]) -> GoogleTokens:
    """A provider's `credentials` setting, its first token asked for ahead; ValueError naming the setting."""
    try:
        tokens = GoogleTokens(setting, scopes)
    except ValueError as e:
        raise ValueError(f"credentials: {e}") from None
    tokens.fetch_ahead()
    return tokens


def _from_file(path: Path, scopes: tuple[str, ...]) -> tuple[Any, str | None]:
    """A service account's key file, or an authorized user's (`gcloud auth application-default
    login` writes one), read as its own kind: a file of another kind is refused, not run."""
    from google.oauth2 import credentials, service_account

    try:
        info = json.loads(path.read_bytes())
    except OSError as e:
        raise ValueError(f"{path} cannot be read: {e.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=scopes), info.get("project_id")
        if kind == "authorized_user":
            return credentials.Credentials.from_authorized_user_info(info, scopes=scopes), None
    except ValueError as e:  # google-auth names the fields missing, never their values
        raise ValueError(f"{path}: {e}") from None
    raise ValueError(
        f"{path} holds no service account's key nor authorized user's credentials; for credentials of"
        " another kind, set `default` and point GOOGLE_APPLICATION_CREDENTIALS at the file"
    )


def _fault(e: Exception) -> str:
    """A refresh's fault: its kind, and the token endpoint's own words where google-auth has them
    (`invalid_grant: …`; what the endpoint answers holds no secret, and google-auth's message never
    quotes what it sent)."""
    said = e.args[0] if e.args and isinstance(e.args[0], str) else ""
    return f"{type(e).__name__} ({said[:200]})" if said else type(e).__name__


class BearerToken(UpstreamCredential):
    """A Google access token in `Authorization: Bearer`, the caller's credential positions (`drop`)
    and quota project dropped; `move` may send the request to another path and host (Vertex moves
    it to Tollgate's project)."""

    __slots__ = ("_drop", "_move", "_tokens", "pooled_key")

    def __init__(
        self,
        tokens: GoogleTokens,
        drop: frozenset[bytes],
        move: Callable[[RequestParts], tuple[bytes | None, str | None]] | None = None,
    ) -> None:
        self._tokens = tokens
        self._drop = drop | {QUOTA_PROJECT}
        self._move = move
        self.pooled_key = None

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        added = self._tokens.headers()
        path, host = self._move(request()) if self._move is not None else (None, None)
        kept = [f for f in fields if f[0].lower() not in self._drop]
        kept.extend(added)
        return Applied(tuple(kept), self._tokens.fingerprint, host, path)
