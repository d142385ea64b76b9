"""The one record each intercepted call carries through the addon chain, in parts by who writes them.
What is written of it (the audit record, the flow's summary and marker) is in `records/`."""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from tollgate.formats.request_facts import Classification
from tollgate.governance.guardrails.rules import shown_name
from tollgate.governance.identity.clients import Auth
from tollgate.providers import PROVIDERS, Provider

if TYPE_CHECKING:
    from tollgate.configuration.runtime import Loaded
    from tollgate.credentials.keypool import KeyPool
    from tollgate.formats.translation import Translation
    from tollgate.formats.usage import Usage
    from tollgate.governance.agents.chat_calls import AgentsCall
    from tollgate.governance.identity.jwt_identity import JwtIdentity
    from tollgate.governance.limits.limits import Estimate, Reserved
    from tollgate.governance.limits.rollup import Plan
    from tollgate.governance.routing.failover import Attempt
    from tollgate.governance.subscriptions.plan import PlanToken, Subscription
    from tollgate.ledger.store import Store


@dataclass(slots=True)
class RolledUp:
    """A conversation's earlier turns, summarized (`rollup:`): how many, and the summarizer's call
    (its usage and cost; none when the summary was one made before)."""

    messages: int
    summarizer: str  # provider/model
    usage: Usage | None = None
    cost_nanousd: int | None = None
    cached: bool = False


class ClientRequest(NamedTuple):
    """A request as its client sent it, its credentials left out and its body decoded: what a
    fallback to another provider is written from."""

    scheme: str
    host: str
    port: int
    path: str
    fields: tuple[tuple[bytes, bytes], ...]
    content: bytes


class Failure(enum.Enum):
    """How a call failed, where code must tell (the audit's `error` says it in words)."""

    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_BROKE_OFF = "upstream_broke_off"  # after its response headers
    CLIENT_DISCONNECTED = "client_disconnected"


def new_request_id() -> str:
    return os.urandom(16).hex()


@dataclass(frozen=True, slots=True)
class Target:
    """A provider and the model name asked of it (None for a call that names no model)."""

    provider: str
    model: str | None = None


@dataclass(slots=True)
class Route:
    """Where the call goes. Classify sets both ends, from the start: `requested` is the provider
    whose host the client called and the model it asked for, `target` where the call goes and the
    model sent there (the same until a rule changes it). Override writes a rule's target, upstream
    and translation, Fallback a fallback's target, the Route stage the upstream it goes to, and
    Translate what it sent (`upstream_classification`)."""

    requested: Target
    target: Target
    upstream: str | None = None
    # A route that translated the call into its provider's own format, and what it sent there.
    translated: Translation | None = field(default=None, repr=False)
    upstream_classification: Classification | None = None

    @classmethod
    def as_called(cls, provider: str, model: str | None = None) -> Route:
        """A call going where the client called it, asking what it asked."""
        target = Target(provider, model)
        return cls(target, target)

    @property
    def rerouted(self) -> bool:
        """A rule sent the call to a provider other than the one the client called."""
        return self.target.provider != self.requested.provider


@dataclass(slots=True)
class Caller:
    """Who made the call. Written by Identify (the credential's positions, then the client, its
    groups and how it proved itself; a plan call's plan and token), and by Credential (`caller_credential`)."""

    client: str | None = None
    groups: tuple[str, ...] = ()
    auth: Auth = "anonymous"
    # A JWT caller's issuer and claims, which the policy sees (never the audit).
    identity: JwtIdentity | None = field(default=None, repr=False)
    # When the virtual key that identified the caller expires (seconds since the epoch): a
    # Responses WebSocket's later messages are refused from then on.
    key_expires: float | None = None
    # The SHA-256 of that virtual key: the session's later responses are refused once the
    # configuration in force no longer holds it (`Identify.unexpired`).
    key_sha256: str | None = field(default=None, repr=False, compare=False)
    # Where the client put credentials, for any provider (names only, see `stages/routing/redact.py`);
    # None until Identify has looked.
    credential_positions: tuple[str, ...] | None = None
    # The credential that goes upstream is the caller's own (its side header): failover never
    # tries another key with it.
    caller_credential: bool = False
    # A call made with a vendor's user token (auth `subscription`): what it tells of the plan; the
    # token goes upstream as it came. None for every other call.
    subscription: Subscription | None = None
    # What Identify kept of that token, the one step that reads it (`PlanToken`: its fingerprint,
    # never the token): for Credential (the audit's `upstream_key`) and StreamTap (a Google token's tier).
    plan_token: PlanToken | None = field(default=None, repr=False)


@dataclass(slots=True)
class Failover:
    """Its attempts, when a target fails (`providers.<name>.retry`, an override rule's `fallbacks`).
    Written by Override (the fallbacks), by Attempts (each failed attempt, when the next began) and
    by Fallback (the target a fallback took the call from)."""

    # The attempts that failed before this one, and when this one began.
    attempts: list[Attempt] | None = field(default=None, repr=False)
    attempt_started: float | None = None
    # An override rule's `fallbacks` (provider, model) not tried yet, and the target a fallback
    # took the call from (`input.fallback_of`).
    fallbacks: tuple[tuple[str, str], ...] = ()
    fallback_of: tuple[str, str | None] | None = None
    # Only for a call whose fallbacks may go to another provider: its request as the client sent it.
    client_request: ClientRequest | None = field(default=None, repr=False)
    # Its roll-up (`rollup:`) with the summary, which a fallback written anew from it applies again.
    rolled_up: tuple[Plan, str] | None = field(default=None, repr=False)


@dataclass(slots=True)
class LedgerState:
    """What the limits' ledger holds of the call. Written by the Ledger stage: the counters as they
    stood and its reservation before the call goes; at its end, what it spent (and a store's
    failure at either)."""

    # The limits' counters as they stood before this call, which the policy sees (`input.usage`).
    usage_counters: tuple[tuple[str, str, str, int, int, str], ...] = ()
    # The limits' counters this call charged and what it reserved on them, settled when it ends.
    reserved: Reserved | None = field(default=None, repr=False)
    # What the call used on those counters, as its end settled them (the metrics show the room left).
    spent: Estimate | None = None
    # The store its settlement went to, while it may not be written yet: its answer's last bytes
    # wait for it (`Store.flushed`), so that a client that has the whole answer finds it counted.
    settled_in: Store | None = field(default=None, repr=False)
    # Its roll-up's summary was counted, with a failed attempt's reservation (`settle_attempt`).
    summary_counted: bool = False
    # Its reservation is a retry's, made as the retry was decided (`next_step`), before it went:
    # the call settled before the retry goes (not made after all) gives it back whole.
    awaits_retry: bool = False
    # The ledger's store failed this call (`ledger.on_store_error` says whether it went on).
    error: str | None = None


@dataclass(slots=True)
class Answer:
    """How the call went and what came back. Written by Credential (the key it went with), by
    UpstreamWatch (the request sent, the first byte, the status, a failure), by UsageTap (the first
    chunk, the usage), by whichever stage refuses the call (`refuse`: Tollgate's own answer, its
    reason, the error), and by Audit (the end)."""

    # The key that went upstream, as its fingerprint; and the one taken from a pool, which rests
    # it if the upstream refuses it.
    upstream_key: str | None = None
    pooled_key: tuple[KeyPool, str] | None = field(default=None, repr=False)
    # The request's last byte went to the upstream's connection (`patches.note_requests_sent`), or
    # an answer came from it: the provider may bill the call whatever its client does next.
    request_sent: bool = False
    status: int | None = None
    first_byte: float | None = None
    first_chunk: float | None = None  # when the answer's first body chunk came (`UsageTap`)
    ended: float | None = None
    usage: Usage | None = None  # once read from the answer
    error: str | None = None
    failure: Failure | None = None  # set with `error` when the call failed in one of these ways
    # True when Tollgate answered the call itself (a refusal or an upstream failure).
    answered_by_tollgate: bool = False
    refused: str | None = None  # the reason Tollgate answered it with (`providers.base.STATUS`)
    # What the answer guardrails found in the answer as its client got it, by kind (never a value);
    # None when it was not read (`StreamTap`).
    findings: dict[str, int] | None = None
    # The same findings by kind and the action taken on them, and the kind of the value that cut
    # the answer (`unread`: it could not be read), for the metrics.
    finding_actions: tuple[tuple[str, str, int], ...] = ()
    cut: str | None = None
    # The bodies' bytes each way with the upstream (`Audit`, `UsageTap`): the request's as it went,
    # the answer's as it came; None when none went, or none came.
    bytes_sent: int | None = None
    bytes_received: int | None = None


@dataclass(slots=True)
class Request:
    """The request as Tollgate reads and changes it. Written by Classify (its body and headers, read
    once; `streamed_upload`), by the WebSocket stage and the sockets' calls (`transport`; a Responses
    WebSocket message's body), by Identify (`body_sha256`), by the stages that rewrite the body
    (Override, RollUp, Translate, Fallback: `body`, `client_body`; a rewritten body's hash no longer
    holds), by AskForUsage (`usage_asked`), by Guard (`findings`, `redacted`; the body redacted)
    and by Redact (body and headers dropped after the request stages)."""

    # The request body's JSON object, parsed once for the request stages (dropped after them).
    body: dict[str, Any] | None = field(default=None, repr=False)
    # Where a route translated `body`: the body as its client sent it, whose turns a roll-up cuts.
    client_body: dict[str, Any] | None = field(default=None, repr=False)
    # The request's raw headers by lower-case name (`header_index`), read once for the request
    # stages (dropped after them): each pass over the fields costs about as much as a stage.
    headers: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    # A large upload streamed upstream as it arrives: decided at its headers, its body unread.
    streamed_upload: bool = False
    # How it went: an HTTP request, or over a WebSocket (a Realtime session, a message of the
    # Responses API's WebSocket mode).
    transport: Literal["http", "websocket"] = "http"
    # SHA-256 of the body as verified with SigV4, while Tollgate has not changed the body.
    body_sha256: str | None = None
    # Tollgate asked an OpenAI stream for usage the client did not ask for (`stream_usage: inject`).
    usage_asked: bool = False
    # What the guardrails found in the body as its client sent it, by kind (never a value), and
    # how many matches went upstream replaced; None when it was not read (`Guard`).
    findings: dict[str, int] | None = None
    redacted: int | None = None
    # The same findings by kind and the action taken on them, for the metrics.
    finding_actions: tuple[tuple[str, str, int], ...] = ()
    # A model, or the path of a call refused with none read, that holds a secret: as the client
    # wrote it and as it is shown (`Call.classified`, `Call.refused_unread`). Redact writes the
    # request's path so once it has gone.
    secret_in_path: tuple[str, str] | None = field(default=None, repr=False)


@dataclass(slots=True)
class Verdict:
    """Whether the call may go, and why not. Written by the stages that refuse a call for reasons of
    their own (Identify, Ledger, Decide: `deny_reasons`), by Decide (the policy's decision) and by
    `refuse` (a refusal is a denial, for the stage's reasons or its own)."""

    decision: Literal["allow", "deny"] = "allow"
    deny_reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class Trace:
    """The call's place in a distributed trace. Written by Classify (the client's context) and by
    Tracing (its span's ids); the sockets' calls take their session's context."""

    # The client's W3C trace context (`traceparent`, `tracestate`), when it sent one: the call's
    # span joins the client's trace.
    context: tuple[bytes, bytes | None] | None = None
    # The trace and span ids the call's span is given (when traces are on): its request goes
    # upstream with that span as its parent, before the span itself is made at the call's end.
    span_ids: tuple[int, int] | None = None


@dataclass(slots=True)
class _Derived:
    """A call's values worked out once, each with what it was worked out of: asked again of the
    same, it is given as it was."""

    # `cost_nanousd`, with the usage, configuration and model it priced
    cost: tuple[Usage, Loaded, str | None, int | None] | None = None
    # `target_model`, with the target it names
    named: tuple[Target, str | None] | None = None


@dataclass(slots=True)
class Call:
    """An intercepted call: on the call, what was called (host, method, path, its classification),
    the configuration it runs under, its id and start; in parts by who writes them, what Tollgate
    read and made of it: `request`, `caller`, `route`, `verdict`, `ledger`, `answer`, `failover`,
    `trace`, `rolled_up`."""

    route: Route
    host: str
    method: str
    path: str
    classification: Classification = field(default_factory=Classification)
    # The configuration current when the call was classified, which all its stages read: one
    # that reloads meanwhile applies to the next call. None only on a call refused for want of one.
    loaded: Loaded = field(default=None, repr=False)  # type: ignore[assignment]
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.time)
    request: Request = field(default_factory=Request)
    caller: Caller = field(default_factory=Caller)
    verdict: Verdict = field(default_factory=Verdict)
    answer: Answer = field(default_factory=Answer)
    failover: Failover = field(default_factory=Failover)
    ledger: LedgerState = field(default_factory=LedgerState)
    trace: Trace = field(default_factory=Trace)
    # Its conversation's earlier turns went upstream as a summary (`rollup:`).
    rolled_up: RolledUp | None = None
    # What `agents` read of its request and decided of its answer's tool calls (None: not read).
    agents: AgentsCall | None = None
    # What is worked out of the call once and asked again (`target_model`, `cost_nanousd`).
    _derived: _Derived = field(default_factory=_Derived, repr=False)

    @property
    def fetches(self) -> bool:
        """A request other than a POST: it fetches what was made before, as providers generate only
        for a POST (an answer's usage, if any, was counted when it was made)."""
        return self.method != "POST"

    def classified(self, classification: Classification) -> None:
        """The request as read: the route's both ends are the provider called and the model asked.
        A secret in the model is shown as its kind wherever the call is recorded (`shown_name`):
        the audit, the console, the metrics, traces and saved flows; the request goes as it came."""
        model = classification.model
        if model is not None:
            shown = shown_name(model, self.loaded.guardrails if self.loaded is not None else None)
            if shown != model:
                classification.model = shown
                self.path = self.path.replace(model, shown)
                self.request.secret_in_path = (model, shown)
        self.classification = classification
        route = self.route
        route.requested = route.target = Target(route.requested.provider, classification.model)

    def refused_unread(self) -> None:
        """Refused with no model read (its path not one Tollgate reads, or refused before it was
        read): the whole path is read as a model is, so that a secret in it is shown as its kind
        wherever the call is recorded (`shown_name`): the audit, the console, traces and saved flows."""
        classification = self.classification
        if classification is not None and classification.model is not None:
            return  # read, and shown so (`classified`)
        shown = shown_name(self.path, self.loaded.guardrails if self.loaded is not None else None)
        if shown != self.path:
            self.request.secret_in_path = (self.path, shown)
            self.path = shown

    @property
    def target_model(self) -> str | None:
        """The model the call goes to (`route.target.model`, the name sent), as the provider's
        settings name it where they name models apart from what callers ask for (Azure's
        `deployments`): what prices, limits, the policy and the audit go by. Named once a target."""
        target = self.route.target
        named = self._derived.named
        if named is not None and named[0] is target:
            return named[1]
        model, loaded = target.model, self.loaded
        if model is not None and loaded is not None and loaded.model_names:
            names = loaded.model_names.get(target.provider)
            if names is not None:
                model = names(model)
        self._derived.named = (target, model)
        return model

    @property
    def registry(self) -> Mapping[str, Provider]:
        """The providers by name as its configuration has them: the built-in ones and those it adds."""
        return PROVIDERS if self.loaded is None else self.loaded.registry

    def sent(self) -> Classification:
        """What the upstream is asked: the call as classified, or as a route translated it."""
        return self.route.upstream_classification or self.classification

    def cost_nanousd(self) -> int | None:
        """What the call cost by its usage and its model's price, in nano-dollars; None when
        either is unknown (or the call never had a configuration to price it with). Priced once
        its usage is known: the audit, the summary and the ledger all ask."""
        usage = self.answer.usage
        if usage is None or self.loaded is None:
            return None
        model = self.target_model
        priced = self._derived.cost
        if priced is not None and priced[0] is usage and priced[1] is self.loaded and priced[2] == model:
            return priced[3]
        c, who = self.classification, self.caller
        cost = self.loaded.prices.cost(
            self.route.target.provider, model, who.client, who.groups, c.endpoint, usage, self.started
        )
        self._derived.cost = (usage, self.loaded, model, cost)
        return cost
