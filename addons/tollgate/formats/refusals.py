"""Why Tollgate refuses or fails a call: its reasons, sent in `X-Tollgate-Error` and audited, the
status each answers with (`STATUS`), the kind of refusal each is (`KIND`), and a refusal as the
client gets it (`Refusal`), which each format writes in its own error shape (its
`errors.refusal`: the kind's type or code there).
Plain data, below every format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


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
# A limit's minute window is full: a retry after `Retry-After` seconds goes.
RATE_LIMITED = "rate_limited"
# A limit's day or month window is full: retrying before the window ends is in vain.
BUDGET_EXCEEDED = "budget_exceeded"
# The ledger's store cannot be reached, and `ledger.on_store_error` is deny.
LEDGER_UNAVAILABLE = "ledger_unavailable"
# A limit caps tokens or money, and the call starts work whose use Tollgate cannot bound (a batch
# job whose requests are in a file or a bucket).
LIMIT_UNENFORCEABLE = "limit_unenforceable"
# The request's header fields are larger in all than Tollgate reads (`MAX_REQUEST_HEADERS`).
HEADERS_TOO_LARGE = "headers_too_large"
# Every key of the provider, or the upstream the call goes to, failed `circuit.failures` calls in a
# row and rests (`providers.<name>.circuit`).
CIRCUIT_OPEN = "circuit_open"
# The request names more than one host (its CONNECT target, TLS server name, Host header or
# :authority), one of them governed: it goes nowhere, least of all with a real key.
MISDIRECTED = "misdirected"
# The call would mint a credential usable without Tollgate (an ephemeral key, a client secret),
# which `providers.<name>.ephemeral_credentials` does not allow.
MINTS_CREDENTIAL = "mints_credential"
# The request carries what a guardrail denies (`guardrails:`, Tollgate's own keys), or what a rule
# with `unread: deny` cannot read.
CONTENT_DENIED = "content_denied"
# A call made with a person's plan that the company's `subscriptions:` do not allow (a plan at all,
# or one outside its tenants).
TENANT_DENIED = "tenant_denied"

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
    RATE_LIMITED: 429,
    BUDGET_EXCEEDED: 429,
    LEDGER_UNAVAILABLE: 503,
    LIMIT_UNENFORCEABLE: 403,
    HEADERS_TOO_LARGE: 431,
    CIRCUIT_OPEN: 503,
    MISDIRECTED: 421,
    MINTS_CREDENTIAL: 403,
    CONTENT_DENIED: 403,
    TENANT_DENIED: 403,
}
# What kind of refusal each reason is: each format writes a kind as its own error type
# (`errors.REFUSAL_TYPES`), so a new reason is a line here and in STATUS.
KIND = {
    UNAUTHENTICATED: "authentication",
    POLICY_DENIED: "permission",
    NO_UPSTREAM_CREDENTIAL: "server",
    MISCONFIGURED: "server",
    INVALID_SIGNATURE: "signature",
    INTERNAL_ERROR: "server",
    UPSTREAM_UNREACHABLE: "unavailable",
    UPSTREAM_TIMEOUT: "timeout",
    BAD_REQUEST: "invalid_request",
    AUDIT_UNAVAILABLE: "unavailable",
    RATE_LIMITED: "rate_limit",
    BUDGET_EXCEEDED: "quota",
    LEDGER_UNAVAILABLE: "unavailable",
    LIMIT_UNENFORCEABLE: "permission",
    HEADERS_TOO_LARGE: "invalid_request",
    CIRCUIT_OPEN: "unavailable",
    MISDIRECTED: "invalid_request",
    MINTS_CREDENTIAL: "permission",
    CONTENT_DENIED: "permission",
    TENANT_DENIED: "permission",
}
KINDS = frozenset(KIND.values())
# Reasons that say the call failed on its way, not that Tollgate refused it.
FAILURES = frozenset((UPSTREAM_UNREACHABLE, UPSTREAM_TIMEOUT))


def json_refusal(reason: str, payload: dict[str, Any], **headers: str) -> Refusal:
    """A refusal with a JSON body, `X-Tollgate-Error` naming its reason, and the header that keeps
    the official SDKs from retrying what retrying does not heal."""
    return Refusal(
        STATUS[reason],
        {
            "content-type": "application/json",
            "x-tollgate-error": reason,
            # The official SDKs retry 5xx answers unless told not to: a refusal or a missing
            # credential does not heal by retrying, an unreachable upstream may.
            **({"x-should-retry": "false"} if STATUS[reason] < 502 and reason != RATE_LIMITED else {}),
            **headers,
        },
        json.dumps(payload).encode(),
    )
