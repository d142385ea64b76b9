"""What every provider module offers; plain Python that knows nothing of mitmproxy.

Headers are any case-insensitive mutable mapping (mitmproxy's `Headers` in the proxy) and the
query any mutable mapping of parameter names to values.
"""

from __future__ import annotations

import json
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote

from ..call import Classification, Usage
from ..settings_models import ProviderConfig
from ..usage_readers import UsageReader, WholeBodyReader

Headers = MutableMapping[str, str]
Query = MutableMapping[str, str]


@dataclass(slots=True)  # not frozen: made on every call, and a frozen one costs twice as much to make
class Presented:
    """A credential the client put into the request, and where."""

    value: str
    position: str  # e.g. "authorization", "x-api-key", "query:key"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    headers: dict[str, str]
    body: bytes


# Why Tollgate refused or failed a call, as sent in `X-Tollgate-Error`.
UNAUTHENTICATED = "unauthenticated"
POLICY_DENIED = "policy_denied"
NO_UPSTREAM_CREDENTIAL = "no_upstream_credential"
MISCONFIGURED = "misconfigured"
INVALID_SIGNATURE = "invalid_signature"
INTERNAL_ERROR = "internal_error"
UPSTREAM_UNREACHABLE = "upstream_unreachable"
UPSTREAM_TIMEOUT = "upstream_timeout"
# A request Tollgate cannot read exactly (body, encoding, path, host, upgrade): refused, never guessed at.
BAD_REQUEST = "bad_request"
# The audit cannot be written: a call that cannot be recorded is not served.
AUDIT_UNAVAILABLE = "audit_unavailable"

STATUS = {
    UNAUTHENTICATED: 401,
    POLICY_DENIED: 403,
    NO_UPSTREAM_CREDENTIAL: 500,
    MISCONFIGURED: 500,
    INVALID_SIGNATURE: 403,
    INTERNAL_ERROR: 500,
    UPSTREAM_UNREACHABLE: 502,
    UPSTREAM_TIMEOUT: 504,
    BAD_REQUEST: 400,
    AUDIT_UNAVAILABLE: 503,
}


REDACTED = "[redacted by Tollgate]"


def _lookup(headers: Headers, query: Query, position: str) -> str | None:
    if position.startswith("query:"):
        return query.get(position.removeprefix("query:"))
    return headers.get(position)


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Provider:
    """One LLM provider: its hosts, wire format, credentials and error shape."""

    name: ClassVar[str]
    # Regular expression over the host name in lower case without a trailing dot; any port.
    host_pattern: ClassVar[str]
    # Header a client may send its own upstream key in (removed before forwarding).
    side_header: ClassVar[str]
    # Where clients put API keys: header names ("authorization" holds a Bearer token), or
    # "query:<parameter>"; `positions` adds what else carries a secret there.
    key_positions: ClassVar[tuple[str, ...]]
    positions: ClassVar[tuple[str, ...]]
    # Where Tollgate puts the upstream key for the provider's own wire format.
    key_header: ClassVar[str]
    # Where a call routed here goes when no upstream is configured (None: it must be, and
    # `upstream_hint` says where it should point).
    default_host: ClassVar[str | None] = None
    upstream_hint: ClassVar[str] = ""
    # Its OpenAI-compatible API, if it has one: the path prefix that stands for OpenAI's `/v1/`, and
    # the endpoints offered there. OpenAI-format calls may be routed here (`overrides:`).
    openai_compatible_prefix: ClassVar[str | None] = None
    openai_compatible_endpoints: ClassVar[frozenset[str]] = frozenset()
    # Its settings under `providers.<name>` in tollgate.yaml.
    settings_model: ClassVar[type[ProviderConfig]] = ProviderConfig
    # The response headers `usage_reader` and `usage` read (lower-case), and content-encoding.
    response_headers: ClassVar[frozenset[bytes]] = frozenset((b"content-type", b"content-encoding"))

    # Where the native format names the model in the path (a `model` group), if it does.
    model_in_path: ClassVar[re.Pattern[str] | None] = None

    def path_with_model(self, path: str, model: str) -> str | None:
        """The path calling another model; None where the model is named in the body."""
        raw, _, query = path.partition("?")
        m = self.model_in_path.match(raw) if self.model_in_path else None
        if m is None:
            return None
        # One path segment, ":" and "/" percent-encoded, as botocore and the Gemini SDKs send it.
        rewritten = f"{raw[: m.start('model')]}{quote(model, safe='-_.~')}{raw[m.end('model') :]}"
        return f"{rewritten}?{query}" if query else rewritten

    def load_runtime(self, config: Any, settings: ProviderConfig, previous: tuple[ProviderConfig, Any] | None) -> Any:
        """What this provider needs built for a configuration (`config`, its settings `settings`),
        kept in `Loaded.runtimes` and handed to `upstream_credential`. `previous` is the last
        configuration's settings and runtime, for what a reload keeps. A ValueError's message names
        the setting at fault (`"credentials: …"`). Default: nothing."""
        return None

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        """What the request is, read from its path (without the query), its query and its JSON
        body (None: no body, or one streamed unread); `Unreadable` when it cannot be read exactly."""
        raise NotImplementedError

    def streams_unread(self, method: str, path: str) -> bool:
        """Whether this endpoint's body goes upstream as it arrives, unread: only endpoints that take
        files or audio, whose model and facts the policy then sees as unread."""
        return False

    def presented(self, headers: Headers, query: Query) -> list[Presented]:
        """Every credential the client put where this provider's key goes."""
        found = []
        for position in self.key_positions:
            if position == "authorization":
                value = bearer(headers)
            else:
                value = (_lookup(headers, query, position) or "").strip()
            if value:
                found.append(Presented(value, position))
        return found

    @cached_property
    def header_positions(self) -> frozenset[bytes]:
        """The headers of `positions`, lower-case, as raw header names are compared."""
        return frozenset(p.encode() for p in self.positions if not p.startswith("query:"))

    @cached_property
    def query_positions(self) -> tuple[str, ...]:
        return tuple(p.removeprefix("query:") for p in self.positions if p.startswith("query:"))

    def injected(self, key: str, classification: Classification) -> tuple[str, str]:
        """The header carrying the upstream key where the call's wire format wants it: `Authorization:
        Bearer` for the OpenAI format (every provider's OpenAI-compatible endpoints too), else the
        provider's header."""
        if classification.wire_format == "openai" or self.key_header == "authorization":
            return "authorization", f"Bearer {key}"
        return self.key_header, key

    def refusal(self, reason: str, message: str) -> Refusal:
        raise NotImplementedError

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        """Usage from a whole, non-streamed answer."""
        raise NotImplementedError

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        """What reads usage from this answer as it streams by."""
        return WholeBodyReader(lambda body: self.usage(classification, headers, body))

    def _json_refusal(self, reason: str, payload: dict[str, Any], **headers: str) -> Refusal:
        return Refusal(
            STATUS[reason],
            {
                "content-type": "application/json",
                "x-tollgate-error": reason,
                # The official SDKs retry 5xx answers unless told not to: a refusal or a missing
                # credential does not heal by retrying, an unreachable upstream may.
                **({"x-should-retry": "false"} if STATUS[reason] < 502 else {}),
                **headers,
            },
            json.dumps(payload).encode(),
        )
