"""A request to an MCP server (`mcp_servers.py`): the
policy's input for one JSON-RPC request, and the audit records of one POST (`McpExchange`).

An MCP call is not an LLM call: it has no model, no tokens and no provider, so it has a record of
its own rather than fields on `Call`. Its caller is found as an LLM call's is."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tollgate.common.fingerprint import fingerprint
from tollgate.formats.mcp.answer_guard import guard_message, lines_hold
from tollgate.formats.mcp.answers import DROPPED, AnswerRelay, responses_in
from tollgate.formats.mcp.messages import McpRequest, RequestId
from tollgate.formats.mcp.revision import MalformedPost
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.limits.limits import EXPIRY_GRACE, Counter, LimitRule, counters
from tollgate.governance.matching import matches
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.ledger.store import Charge

if TYPE_CHECKING:
    from tollgate.governance.guardrails.rules import Guardrails
    from tollgate.governance.identity.jwt_identity import JwtIdentity


class ConfiguredMcp(Protocol):
    """What an exchange reads of the configuration its request runs under (`runtime.Loaded`, which
    the MCP stage sets): its answer guardrails."""

    @property
    def guardrails(self) -> Guardrails | None: ...


# The JSON-RPC error code of a request Tollgate refused (MCP leaves -32000 to -32099 to servers).
REFUSED_CODE = -32001
# The JSON-RPC error code of a request the server did not answer (unreachable, or too slow): the
# call failed, and was not refused.
UPSTREAM_FAILED_CODE = -32603
# The HTTP methods of Streamable HTTP that carry no JSON-RPC request: the server's event stream, and
# a session's end. Each is one record, its `method` the HTTP method.
UNREQUESTED = frozenset(("GET", "DELETE"))
# The audit's error when the server refused Tollgate's own credential.
SERVER_REFUSED_CREDENTIAL = "the MCP server refused Tollgate's credential"


@dataclass(slots=True)
class McpExchange:
    """One HTTP request to an MCP server (a POST of JSON-RPC messages, the GET stream or DELETE)
    and what came of it: one audit record for each JSON-RPC request it carried."""

    server: McpServer
    method: str  # the HTTP method
    requests: tuple[McpRequest, ...] = ()
    batch: bool = False  # the POST was a batch: its answer is one too
    session: str | None = None  # the Mcp-Session-Id the client sent
    # The MCP revision the request states (`revision.recorded`), and why it is refused as it came
    # (its headers and body disagree, a batch at 2026-07-28: `revision.check`).
    protocol_version: str | None = None
    malformed: MalformedPost | None = None
    request_id: str = ""
    started: float = field(default_factory=time.time)
    client: str | None = None
    groups: tuple[str, ...] = ()
    auth: str = "anonymous"
    identity: JwtIdentity | None = field(default=None, repr=False)
    # Who owns the sessions this caller opens, and may name them (`session_owner`).
    owner: str = "anonymous"
    decision: str = "allow"
    deny_reasons: tuple[str, ...] = ()
    # What the guardrails found in its tools/call and prompts/get requests, by kind, and how many
    # matches went to the server replaced; None when not read (`Guard.mcp`).
    findings: dict[str, int] | None = None
    redacted: int | None = None
    finding_actions: tuple[tuple[str, str, int], ...] = ()  # by kind and action, for the metrics
    # What the answer guardrails found in the answer to each request (`ResultGuard`), by request
    # id (none: not read; None: the GET stream's); the kind of a value that had a response
    # replaced by an error or a message dropped; and what each kind found does, for the metrics.
    answer_findings: dict[RequestId | None, dict[str, int]] = field(default_factory=dict)
    answer_denied: dict[RequestId | None, str] = field(default_factory=dict)
    answer_actions: dict[str, str] = field(default_factory=dict, repr=False)
    # Each denied request's reasons, by its place in `requests`.
    denied: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # `agents`: the injection kinds found in each tools/call's result, by request id (none: not
    # read); and why a call came under a quarantine, by its place in `requests` (refused, or let
    # through and recorded under `after_injection: record`).
    tool_findings: dict[RequestId, dict[str, int]] = field(default_factory=dict)
    quarantined: dict[int, str] = field(default_factory=dict)
    # The retries that answer a call's `input_required` result: the `request_id` of the first call,
    # by the retry's place in `requests`.
    retry_of: dict[int, str] = field(default_factory=dict)
    status: int | None = None
    outcomes: dict[RequestId, bool] = field(default_factory=dict)
    error: str | None = None
    upstream_key: str | None = None
    ended: float | None = None
    answered_by_tollgate: bool = False
    refused: str | None = None  # the X-Tollgate-Error Tollgate answered it with
    sent: bool = False  # to the server
    timed_out: bool = False  # no answer's headers within the server's `timeout`
    # What its requests reserved on `mcp_calls_per_minute` counters: given back if never sent.
    reserved: tuple[Any, list[Charge]] | None = field(default=None, repr=False)
    # The answer's relay as it streams, and the decisions on a tools/list answer's tools.
    reader: AnswerRelay | None = field(default=None, repr=False)
    tool_checks: Any = field(default=None, repr=False)
    # The configuration the request runs under, from its first step to its last.
    loaded: ConfiguredMcp | None = field(default=None, repr=False)

    def policy_input(self, request: McpRequest) -> dict[str, Any]:
        """The `input` `data.tollgate.mcp.deny` decides one request on."""
        document: dict[str, Any] = {
            "client": {"name": self.client, "groups": list(self.groups), "auth": self.auth},
            "mcp": {
                "server": self.server.name,
                "method": request.method,
                "tool": request.tool,
                "resource_scheme": request.resource_scheme,
                "prompt": request.prompt,
                "session": self.session,
                "protocol_version": self.protocol_version,
            },
            "findings": None if self.findings is None else dict(self.findings),
        }
        if self.identity is not None:
            document["identity"] = self.identity.policy_input()
        return document

    def tool_input(self, tool: str) -> dict[str, Any]:
        """The input a `tools/call` of `tool` by this caller would be decided on."""
        return self.policy_input(McpRequest("tools/call", 0, tool=tool))

    def answer_finding_actions(self) -> tuple[tuple[str, str, int], ...]:
        """What the answer guardrails found, by kind and the action taken on it (for the metrics)."""
        total: dict[str, int] = {}
        for found in self.answer_findings.values():
            for kind, n in found.items():
                total[kind] = total.get(kind, 0) + n
        return tuple((kind, self.answer_actions.get(kind, "audit"), n) for kind, n in total.items())

    def used_credential(self, secret: str | None) -> None:
        self.upstream_key = None if secret is None else fingerprint(secret)

    def leaves_records(self) -> bool:
        """Whether `records` has any: not for a POST of answers alone that Tollgate let through."""
        return bool(self.requests) or self.method in UNREQUESTED or self.decision != "allow"

    def records(self) -> list[dict[str, Any]]:
        """The audit records: one per JSON-RPC request (a notification too); one for the GET stream
        and one for a DELETE, their `method` the HTTP method (no JSON-RPC method is in upper case);
        none for a POST of answers alone unless Tollgate refused it."""
        ended = self.ended if self.ended is not None else time.time()
        base = {
            "event": "mcp_call",
            "ts": _timestamp(self.started),
            "request_id": self.request_id,
            "client": self.client,
            "auth": self.auth,
            "server": self.server.name,
            "protocol_version": self.protocol_version,
        }
        tail = {
            "status": self.status,
            "upstream_key": self.upstream_key,
            "latency_ms": round((ended - self.started) * 1000, 1),
            "error": self.error,
            "refusal": self.refused,
        }
        if not self.leaves_records():
            return []
        if not self.requests:
            stream_or_end = self.method in UNREQUESTED
            return [{**base, "method": self.method if stream_or_end else None, "tool": None, "decision": self.decision,
                     "deny_reasons": list(self.deny_reasons), "findings": None, "redacted": None,
                     "answer_findings": self.answer_findings.get(None),
                     "answer_redacted": self._redacted(self.answer_findings.get(None)), "is_error": None,
                     "retry_of": None, "tool_findings": None, "quarantined": None, **tail,
                     **(_CUT if None in self.answer_denied else {})}]  # fmt: skip
        records = []
        for i, request in enumerate(self.requests):
            reasons = self.denied.get(i, ())
            denied = self.decision == "deny"
            found = None if request.id is None else self.answer_findings.get(request.id)
            records.append({
                **base,
                "method": request.method,
                "tool": request.tool,
                "decision": self.decision,
                # The whole POST is refused when one request is: each names its own reasons, or the POST's.
                "deny_reasons": list(reasons or (self.deny_reasons if denied else ())),
                # What the guardrails found in the POST, on each of its records.
                "findings": self.findings,
                "redacted": self.redacted,
                # What the answer guardrails found in its result (null: not read).
                "answer_findings": found,
                # How many of them were of kinds an answer rule redacts: replaced in what the client got.
                "answer_redacted": self._redacted(found),
                "is_error": None if request.id is None or denied else self.outcomes.get(request.id),
                "retry_of": self.retry_of.get(i),
                # `agents`: what its result held, by kind (null: not read); why a quarantine held it.
                "tool_findings": None if request.id is None else self.tool_findings.get(request.id),
                "quarantined": self.quarantined.get(i),
                **tail,
                # Its result held a value to deny: the client got a JSON-RPC error in its place.
                **(_CUT if request.id is not None and request.id in self.answer_denied else {}),
            })  # fmt: skip
        return records

    def _redacted(self, found: dict[str, int] | None) -> int | None:
        """How many of an answer's findings were of kinds an answer rule redacts (null: not read)."""
        return (
            None if found is None else sum(n for kind, n in found.items() if self.answer_actions.get(kind) == "redact")
        )


# The error of a request left unanswered where its answer was stopped at another's result denied,
# or at a message that answers no request (a notification, a server's request) denied.
CUT_OFF = "Tollgate stopped this answer: another result in it holds {kind}."
STOPPED = "Tollgate stopped this answer: a message in it holds {kind}."
# The error of each request whose answer the answer guardrails could not read (no JSON).
UNREAD = "unread"
UNREAD_ANSWER = "Tollgate refused this answer: it could not be read for its guardrails."
# A record whose result the answer guardrails replaced by an error (as an LLM call's answer cut).
_CUT = {"error": CONTENT_DENIED, "refusal": CONTENT_DENIED}

# The JSON-RPC method whose answer opens a session (its `Mcp-Session-Id`).
INITIALIZE = "initialize"
# How many MCP sessions' owners a process keeps in memory; past it the least recently used is
# forgotten, and its next request gets 404 (its client opens a new session), as from a server that
# ended it.
MAX_SESSIONS = 50_000
# How long a shared store (Redis) keeps a session's owner after it was last looked up there.
SESSION_TTL_S = 7 * 86400
# Why a request naming a session is refused (404, as a server answers for a session it does not know).
SESSION_OF_ANOTHER = "the MCP session belongs to another caller"
UNKNOWN_SESSION = "the MCP session was not opened through Tollgate"


def session_owner(client: str | None, own_credential: str | None = None) -> str:
    """Who owns the sessions a caller opens: its client's name; an anonymous caller, the
    fingerprint of the credential it presented to the server (anonymous callers without one share
    theirs)."""
    if client is not None:
        return f"client:{client}"
    return "anonymous" if own_credential is None else f"anonymous:{fingerprint(own_credential)}"


def shared_session_key(server: str, session: str) -> str:
    """A session's name in a shared store: not its id, which its holder presents as a credential."""
    return hashlib.sha256(f"{server}\n{session}".encode()).hexdigest()


class McpSessions:
    """The owner of each MCP session opened through this process (or looked up in the shared
    store), by server and `Mcp-Session-Id`: the caller whose `initialize` the server answered with
    it. Bounded: the least recently used is forgotten first."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()

    def owner(self, server: str, session: str) -> str | None:
        key = (server, session)
        owner = self._owners.get(key)
        if owner is not None:
            self._owners.move_to_end(key)
        return owner

    def bind(self, server: str, session: str, owner: str) -> str:
        """Bind a session to `owner` unless it is bound already; its owner now."""
        key = (server, session)
        known = self._owners.get(key)
        if known is not None:
            self._owners.move_to_end(key)
            return known
        self._owners[key] = owner
        if len(self._owners) > self._limit:
            self._owners.popitem(last=False)
        return owner

    def forget(self, server: str, session: str) -> None:
        self._owners.pop((server, session), None)

    def __len__(self) -> int:
        return len(self._owners)


# How many calls awaiting their client's answers (`input_required`) a process remembers.
MAX_ROUNDS = 10_000
# Why a retry is refused: the result it answers was another call's.
RETRY_OF_ANOTHER = "the retry answers a call of another tool, prompt or resource"


@dataclass(frozen=True, slots=True)
class Round:
    """A call a server answered `input_required`: the first call's `request_id`, and what it called."""

    request_id: str
    method: str
    target: str | None


class McpRounds:
    """The calls awaiting their client's answers, by server, caller and a SHA-256 of the
    `requestState` the server gave: each retry that echoes it is tied to the first call. Bounded:
    the oldest is forgotten first (its retry is then decided and recorded on its own)."""

    def __init__(self, limit: int = MAX_ROUNDS) -> None:
        self._limit = limit
        self._rounds: OrderedDict[tuple[str, str, str], Round] = OrderedDict()

    def asked(self, server: str, owner: str, state: str, first: Round) -> None:
        self._rounds[(server, owner, state)] = first
        self._rounds.move_to_end((server, owner, state))
        if len(self._rounds) > self._limit:
            self._rounds.popitem(last=False)

    def answering(self, server: str, owner: str, state: str) -> Round | None:
        return self._rounds.get((server, owner, state))

    def __len__(self) -> int:
        return len(self._rounds)


MCP_CALLS = "mcp_calls_per_minute"


def mcp_counters(rules: Sequence[LimitRule], client: str | None, groups: tuple[str, ...], now: float) -> list[Counter]:
    """The `mcp_calls_per_minute` counters an MCP caller's requests charge: those of each limit
    that sets it and matches the caller (its client, its groups)."""
    applying = [
        (rule, ((MCP_CALLS, "mcp_calls", "minute", rule.mcp_calls_per_minute),))
        for rule in rules
        if rule.mcp_calls_per_minute is not None and matches(rule.match, "", None, client, groups)
    ]
    return counters(applying, client, groups, now)


def mcp_charges(found: Sequence[Counter], calls: int) -> list[Charge]:
    return [Charge(c.key, calls, c.cap, c.end + EXPIRY_GRACE) for c in found]


def _timestamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ResultGuard:
    """The answer guardrails on what an MCP server sends its client (the rules on `answer` whose
    `match` names no provider or model): every message of a POST's answer or of the GET stream,
    read whole as the relay passes it, what they find noted on the exchange. A response's
    findings are its request's; those of a message that answers none (a notification, a server's
    request) the request still awaiting its answer first (on the GET stream, the stream's own)."""

    def __init__(self, exchange: McpExchange, detectors: AnswerDetectors, ids: Sequence[RequestId]) -> None:
        self._exchange = exchange
        self._detectors = detectors
        self._ids = tuple(ids)
        self._awaiting = list(ids)  # the requests not answered yet, in order
        self.refuses_unread = False
        self.stop: tuple[int, str] | None = None
        exchange.answer_actions = detectors.actions
        if not self._ids:  # the GET stream: read, nothing found so far
            exchange.answer_findings.setdefault(None, {})

    @classmethod
    def of(cls, exchange: McpExchange) -> ResultGuard | None:
        """The guard of an exchange's answer, under the configuration its request ran under; None
        where no answer rule applies."""
        loaded = exchange.loaded
        guardrails = loaded.guardrails if loaded is not None else None
        if guardrails is None or not guardrails.answer_rules:
            return None  # most configurations: nothing to build
        client, groups = exchange.client, exchange.groups
        detectors = guardrails.answer("mcp", None, client, groups)
        if detectors is None:
            return None
        guard = cls(exchange, detectors, [r.id for r in exchange.requests if r.id is not None])
        guard.refuses_unread = guardrails.answer_unread("mcp", None, client, groups) == "deny"
        return guard

    def __call__(self, value: Any) -> Any | None:
        read = guard_message(self._detectors, value)
        exchange = self._exchange
        owner = self._awaiting[0] if self._awaiting else None
        for rid, found in read.findings.items():
            into = exchange.answer_findings.setdefault(owner if rid is None else rid, {})
            for kind, n in found.items():
                into[kind] = into.get(kind, 0) + n
        for rid, kind in read.denied.items():
            exchange.answer_denied.setdefault(owner if rid is None else rid, kind)
            if self.stop is None:  # the answer ends with this message
                message = CUT_OFF if rid is not None else STOPPED
                self.stop = (REFUSED_CODE, message.format(kind=kind))
        for response in responses_in(value):
            if response["id"] in self._awaiting:
                self._awaiting.remove(response["id"])
        return DROPPED if read.dropped else read.value

    def lines_hold(self, block: bytes) -> bool:
        return lines_hold(self._detectors, block)

    def unread(self) -> tuple[int, str]:
        """An answer that is no JSON: each result it was to carry cut as unread, as a denied one."""
        self._exchange.answer_denied.update(dict.fromkeys(self._ids or (None,), UNREAD))
        return REFUSED_CODE, UNREAD_ANSWER
