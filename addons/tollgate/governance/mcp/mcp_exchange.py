"""One request to an MCP server (`mcp_servers.py`) and what came of it (`McpExchange`): what was
asked and decided, who asked (`McpCaller`) and what came back (`McpAnswer`). Its audit records are
`records/audit/mcp_record.py`'s, the policy's input `mcp_input.py`'s; who owns a session
`mcp_sessions.py`'s, the retries of a call `mcp_rounds.py`'s, its limits `mcp_limits.py`'s, the
answer guardrails on its results `result_guard.py`'s."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tollgate.common.fingerprint import fingerprint
from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.formats.mcp.messages import McpRequest, RequestId
from tollgate.formats.mcp.revision import MalformedPost
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
# The audit's error when the server refused Tollgate's own credential.
SERVER_REFUSED_CREDENTIAL = "the MCP server refused Tollgate's credential"


@dataclass(slots=True)
class McpCaller:
    """Who sent an MCP server's request. Written by Identify: the client, its groups and how it
    proved itself, a JWT caller's claims (which the policy sees, never the audit), and who owns
    the sessions it opens and may name them (`session_owner`)."""

    client: str | None = None
    groups: tuple[str, ...] = ()
    auth: str = "anonymous"
    identity: JwtIdentity | None = field(default=None, repr=False)
    owner: str = "anonymous"


@dataclass(slots=True)
class McpAnswer:
    """What came of an MCP server's request: the server's answer (or Tollgate's in its place), and
    what the answer guardrails found in it."""

    status: int | None = None
    # Whether each request's result was an error, by request id.
    outcomes: dict[RequestId, bool] = field(default_factory=dict)
    error: str | None = None
    upstream_key: str | None = None
    ended: float | None = None
    answered_by_tollgate: bool = False
    refused: str | None = None  # the X-Tollgate-Error Tollgate answered it with
    sent: bool = False  # to the server
    timed_out: bool = False  # no answer's headers within the server's `timeout`
    # What the answer guardrails found in the answer to each request (`ResultGuard`), by request
    # id (none: not read; None: the GET stream's); the kind of a value that had a response
    # replaced by an error or a message dropped; and what each kind found does, for the metrics.
    found: dict[RequestId | None, dict[str, int]] = field(default_factory=dict)
    cut: dict[RequestId | None, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict, repr=False)

    def used_credential(self, secret: str | None) -> None:
        self.upstream_key = None if secret is None else fingerprint(secret)

    def finding_actions(self) -> tuple[tuple[str, str, int], ...]:
        """What the answer guardrails found, by kind and the action taken on it (for the metrics)."""
        total: dict[str, int] = {}
        for found in self.found.values():
            for kind, n in found.items():
                total[kind] = total.get(kind, 0) + n
        return tuple((kind, self.actions.get(kind, "audit"), n) for kind, n in total.items())

    def redacted(self, found: dict[str, int] | None) -> int | None:
        """How many of an answer's findings were of kinds an answer rule redacts (null: not read)."""
        if found is None:
            return None
        return sum(n for kind, n in found.items() if self.actions.get(kind) == "redact")


@dataclass(slots=True)
class McpExchange:
    """One HTTP request to an MCP server (a POST of JSON-RPC messages, the GET stream or DELETE)
    and what came of it: on it, what was asked and decided; in parts by who writes them, who asked
    (`caller`) and what came back (`answer`). Its audit records are `records/audit/mcp_record.py`'s,
    the policy's input `mcp_input.py`'s."""

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
    caller: McpCaller = field(default_factory=McpCaller)
    decision: str = "allow"
    deny_reasons: tuple[str, ...] = ()
    # What the guardrails found in its tools/call and prompts/get requests, by kind, and how many
    # matches went to the server replaced; None when not read (`Guard.mcp`).
    findings: dict[str, int] | None = None
    redacted: int | None = None
    finding_actions: tuple[tuple[str, str, int], ...] = ()  # by kind and action, for the metrics
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
    answer: McpAnswer = field(default_factory=McpAnswer)
    # What its requests reserved on `mcp_calls_per_minute` counters: given back if never sent.
    reserved: tuple[Any, list[Charge]] | None = field(default=None, repr=False)
    # The answer's relay as it streams, and the decisions on a tools/list answer's tools.
    reader: AnswerRelay | None = field(default=None, repr=False)
    tool_checks: Any = field(default=None, repr=False)
    # The configuration the request runs under, from its first step to its last.
    loaded: ConfiguredMcp | None = field(default=None, repr=False)
