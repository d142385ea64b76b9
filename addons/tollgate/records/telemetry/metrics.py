"""Prometheus metrics of the calls, on a registry of Tollgate's own: the OpenTelemetry GenAI
semantic conventions' client metrics as Prometheus names them (`gen_ai_client_token_usage`,
`gen_ai_client_operation_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`), and
Tollgate's own (`tollgate_*`). Pure: `stages/records/metrics_server.py` serves them and feeds them each call's end.

Label values come only from the configuration and the call record (names of clients, groups,
providers, models, endpoints, limits), never a key, a token or text. Clients, groups and models are
named by callers, and each new value is a new time series: per label, the first `max_label_values`
distinct values are kept and every later one is counted as `other`. Where they are served, and that
bound, are its settings (`metrics:`, declared here)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tollgate.calls.call import Call
from tollgate.common.shape_memo import ShapeMemo
from tollgate.configuration.fleet import instance_name
from tollgate.providers import semconv_name
from tollgate.records.audit.auditlog import tollgate_version
from tollgate.records.telemetry.traces import operation_name

if TYPE_CHECKING:
    from tollgate.credentials.keypool import KeyPool
    from tollgate.governance.limits.limits import Estimate
    from tollgate.governance.routing.failover import Attempt

OTHER = "other"  # the value of a label past its `max_label_values` distinct values

# The buckets the semantic conventions recommend (ExplicitBucketBoundaries).
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# A policy evaluation in the worker: a few hundred µs, up to the policy's time limit (1 s by default).
POLICY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


GEN_AI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
TOKEN_FIELDS = (("input", "input_tokens"), ("output", "output_tokens"))
CALL_LABELS = ("client", "groups", "provider", "model", "decision", "status_class", "error_kind")


def status_class(status: int | None) -> str:
    """`2xx`, `4xx`, `5xx`, …; `none` when the call got no answer at all."""
    return "none" if status is None else f"{status // 100}xx"


def error_kind(call: Call) -> str:
    """What went wrong, as one word of a fixed set: how the call failed (`Failure`), else why
    Tollgate refused it (the refusal's reason, `providers.base.STATUS`), else `upstream_5xx` for an
    upstream's server error; "" for a call that went well (a 4xx of the upstream's is its answer)."""
    if call.answer.failure is not None:
        return call.answer.failure.value
    if call.answer.refused is not None:
        return call.answer.refused
    if call.answer.status is not None and call.answer.status >= 500 and not call.answer.answered_by_tollgate:
        return "upstream_5xx"
    return ""


class LabelCap:
    """Per label, the first `limit` distinct values kept; later ones become `other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: dict[str, set[str]] = {}

    def __call__(self, label: str, value: str) -> str:
        kept = self._kept.get(label)
        if kept is None:
            kept = self._kept[label] = set()
        if value in kept:
            return value
        if len(kept) >= self.limit:
            return OTHER
        kept.add(value)
        return value


class State(Collector):
    """What is read at scrape time rather than counted: the key pools' resting keys, the audit's
    queue. Called from the HTTP server's thread: it only reads."""

    def __init__(
        self,
        pools: Callable[[], Mapping[str, KeyPool]],
        audit_depth: Callable[[], int | None],
        export_lag: Callable[[], int | None] = lambda: None,
        postgres_lag: Callable[[], int | None] = lambda: None,
        agents_kept: Callable[[], tuple[int, int] | None] = lambda: None,
    ) -> None:
        self._pools = pools
        self._audit_depth = audit_depth
        self._export_lag = export_lag
        self._postgres_lag = postgres_lag
        self._agents_kept = agents_kept  # the Responses answers `agents` keeps, and their characters

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("tollgate_pool_keys", "Keys in the provider's pool.", labels=["provider"]),
            GaugeMetricFamily(
                "tollgate_pool_keys_resting",
                "Keys of the provider's pool resting now for every model: refused (401, 429), or their circuit open.",
                labels=["provider"],
            ),
            GaugeMetricFamily(
                "tollgate_audit_queue_depth", "Audit records queued or held, not yet written to the audit file."
            ),
            GaugeMetricFamily(
                "tollgate_audit_export_lag_records",
                "Audit records written to the audit file and not yet acknowledged by the collector (audit.otlp).",
            ),
            GaugeMetricFamily(
                "tollgate_audit_postgres_lag_records",
                "Audit records written to the audit file and not yet stored in PostgreSQL (audit.postgres).",
            ),
            GaugeMetricFamily(
                "tollgate_agents_responses_kept",
                "Responses API answers whose conversation `agents` keeps, for a later previous_response_id.",
            ),
            GaugeMetricFamily(
                "tollgate_agents_responses_kept_chars", "Characters of text `agents` keeps of those conversations."
            ),
        ]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        keys, resting, depth, lag, postgres_lag, kept, kept_chars = self._families()
        for name, pool in list(self._pools().items()):
            if pool:
                keys.add_metric([name], len(pool))
                resting.add_metric([name], pool.resting())
        queued = self._audit_depth()
        if queued is not None:
            depth.add_metric([], queued)
        for family, read in ((lag, self._export_lag), (postgres_lag, self._postgres_lag)):
            behind = read()
            if behind is not None:
                family.add_metric([], behind)
        agents = self._agents_kept()
        if agents is not None:
            kept.add_metric([], agents[0])
            kept_chars.add_metric([], agents[1])
        return [keys, resting, depth, lag, postgres_lag, kept, kept_chars]


class ProcessInfo(Collector):
    """`tollgate_info`: 1, labelled with the process's `instance` (as the audit names it) and
    Tollgate's version; with several processes, one series per live one."""

    def __init__(self, instance: str, version: str | None) -> None:
        self._labels = [instance, version or ""]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "tollgate_info", "The Tollgate process: its instance and version.", labels=["instance", "version"]
        )
        info.add_metric(self._labels, 1)
        return [info]


class Family:
    """One metric family's series, by their label values: counted on the event loop's thread, read
    at scrape time from the HTTP server's. prometheus-client's own metric classes take a lock and
    several calls per update (about 2 µs each, a dozen a call): these are plain dictionary entries,
    all of a call's updates under one lock (`MetricSet.observe`)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels

    def family(self) -> Metric:
        raise NotImplementedError


class CounterFamily(Family):
    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        super().__init__(name, documentation, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + amount

    def family(self) -> Metric:
        metric = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in self.values.items():
            metric.add_metric(key, value)
        return metric


class GaugeFamily(CounterFamily):
    def set(self, key: tuple[str, ...], value: float) -> None:
        self.values[key] = value

    def family(self) -> Metric:
        metric = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in self.values.items():
            metric.add_metric(key, value)
        return metric


class HistogramFamily(Family):
    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        super().__init__(name, documentation, labels)
        self.buckets = buckets
        self._bounds = [floatToGoString(b) for b in buckets] + ["+Inf"]
        # Per series: the count in each bucket (not cumulative; the last is +Inf's), then the sum.
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        series = self.values.get(key)
        if series is None:
            series = self.values[key] = [0] * (len(self.buckets) + 2)
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def family(self) -> Metric:
        metric = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, series in self.values.items():
            total, buckets = 0.0, []
            for bound, count in zip(self._bounds, series, strict=False):
                total += count
                buckets.append((bound, total))
            metric.add_metric(key, buckets, series[-1])
        return metric


class Families(Collector):
    """The families, read whole at scrape time (under the lock their updates take)."""

    def __init__(self, families: list[Family], lock: threading.Lock) -> None:
        self._families = families
        self._lock = lock

    def describe(self) -> Iterable[Metric]:
        return self.collect()  # the names, for the registry to refuse a name twice

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return [f.family() for f in self._families]


class MetricSet:
    """The metric families, and what one call's end adds to them (`observe`)."""

    def __init__(
        self,
        max_label_values: int = 200,
        pools: Callable[[], Mapping[str, KeyPool]] = dict,
        audit_depth: Callable[[], int | None] = lambda: None,
        export_lag: Callable[[], int | None] = lambda: None,
        postgres_lag: Callable[[], int | None] = lambda: None,
        agents_kept: Callable[[], tuple[int, int] | None] = lambda: None,
    ) -> None:
        self.cap = LabelCap(max_label_values)
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(State(pools, audit_depth, export_lag, postgres_lag, agents_kept))
        registry.register(ProcessInfo(instance_name(), tollgate_version()))
        self.token_usage = HistogramFamily(
            "gen_ai_client_token_usage",
            "Input and output tokens per call, as the upstream reported them.",
            (*GEN_AI, "gen_ai_token_type"),
            TOKEN_BUCKETS,
        )
        self.duration = HistogramFamily(
            "gen_ai_client_operation_duration_seconds",
            "Each call's duration, from its request to its answer's end.",
            (*GEN_AI, "endpoint", "status_class", "error_type"),
            DURATION_BUCKETS,
        )
        self.ttft = HistogramFamily(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from a streamed call's request to the first chunk of its answer's body (streams only).",
            GEN_AI,
            TTFT_BUCKETS,
        )
        self.calls = CounterFamily("tollgate_calls", "Calls Tollgate handled.", CALL_LABELS)
        self.tokens = CounterFamily(
            "tollgate_tokens",
            "Tokens the calls used, by client and model.",
            ("client", "provider", "model", "gen_ai_token_type"),
        )
        self.cost = CounterFamily(
            "tollgate_cost_usd",
            "What the calls cost in US dollars, by their usage and the model's price.",
            ("client", "provider", "model"),
        )
        self.upstream_errors = CounterFamily(
            "tollgate_upstream_errors",
            "Calls whose upstream failed: unreachable, timed out, broke off, or answered 5xx.",
            ("provider", "kind"),
        )
        self.retries = CounterFamily(
            "tollgate_retries",
            "Attempts that failed before their answer began and were made again (providers.<name>.retry),"
            " by the provider and model each went to and what failed: a status, connect or timeout.",
            ("provider", "model", "failed"),
        )
        self.fallbacks = CounterFamily(
            "tollgate_fallbacks",
            "Fallbacks made (an override rule's fallbacks): a call sent to another model or provider after its target"
            " failed, by the provider and model that ended the call.",
            ("provider", "model"),
        )
        self.limit_remaining = GaugeFamily(
            "tollgate_limit_remaining",
            "What a limit's counter has left in its window, as of the latest call it counted"
            " (requests, tokens, or US dollars).",
            ("limit", "subject", "cap"),
        )
        self.policy_seconds = HistogramFamily(
            "tollgate_policy_seconds",
            "Policy evaluations in the worker process, as the call waited for them (cached decisions not counted).",
            ("outcome",),
            POLICY_BUCKETS,
        )
        self.mcp_calls = CounterFamily(
            "tollgate_mcp_calls",
            "MCP servers' JSON-RPC requests (mcp.servers), by server, method and tool; outcome: ok, error"
            " (the answer's error or a tool's isError), denied, or unknown (no answer read).",
            ("client", "server", "method", "tool", "outcome"),
        )
        self.findings = CounterFamily(
            "tollgate_guardrail_findings",
            "What the guardrails found in the calls' bodies (occurrences), by provider (mcp: an MCP server's"
            " requests), kind and the action taken: deny, redact or audit.",
            ("provider", "kind", "action"),
        )
        self.answer_findings = CounterFamily(
            "tollgate_guardrail_answer_findings",
            "What the answer guardrails found in the answers as their clients got them (occurrences), by provider"
            " (mcp: an MCP server's results), kind and the action taken: deny, redact or audit.",
            ("provider", "kind", "action"),
        )
        self.answers_cut = CounterFamily(
            "tollgate_guardrail_answers_cut",
            "Answers the answer guardrails stopped (a stream cut, a JSON answer refused, an MCP result replaced by"
            " an error), by provider and the kind that stopped it (unread: it could not be read).",
            ("provider", "kind"),
        )
        self.connections = CounterFamily(
            "tollgate_connections",
            "Connections clients opened through Tollgate (egress), by AI service and category (empty: none"
            " catalogued) and decision: allow or deny.",
            ("service", "category", "decision"),
        )
        self.connection_bytes = CounterFamily(
            "tollgate_connection_bytes",
            "Bytes relayed through the tunnels Tollgate did not read, by AI service, category and direction:"
            " sent (by the client) or received.",
            ("service", "category", "direction"),
        )
        self.brokered = CounterFamily(
            "tollgate_brokered_requests",
            "Requests to a brokered credential's host (egress.credentials), by host and outcome: brokered (the"
            " placeholder replaced by the token) or refused (a placeholder misplaced).",
            ("host", "outcome"),
        )
        self.anchor_gaps = CounterFamily(
            "tollgate_audit_anchor_gaps",
            "Audit checkpoints a time-stamp authority of audit.anchor did not anchor (anchor_gap records), by TSA.",
            ("tsa",),
        )
        self._lock = threading.Lock()
        # Most calls repeat a few shapes: their label values, capped, are found once.
        self._shapes: ShapeMemo[tuple[Any, ...]] = ShapeMemo(self._labels)
        self._limit_keys: ShapeMemo[tuple[str, str, str]] = ShapeMemo(self._limit_key)
        registry.register(
            Families(
                [
                    self.token_usage, self.duration, self.ttft, self.calls, self.tokens, self.cost,
                    self.upstream_errors, self.retries, self.fallbacks, self.limit_remaining,
                    self.policy_seconds, self.mcp_calls, self.findings, self.answer_findings, self.answers_cut,
                    self.connections, self.connection_bytes, self.brokered, self.anchor_gaps,
                ],
                self._lock,
            )
        )  # fmt: skip

    @property
    def max_label_values(self) -> int:
        return self.cap.limit

    @max_label_values.setter
    def max_label_values(self, limit: int) -> None:
        self.cap.limit = limit  # values kept so far stay kept

    def observe(self, call: Call, record: Mapping[str, Any], used: Estimate | None = None) -> None:
        """One call's end: `record` is its audit record; `used` what it used as the ledger settles
        it, when it reserved on limits' counters."""
        shape = (record["client"], call.caller.groups, call.route.target.provider, record["model"], record["endpoint"])
        client, groups, provider, model, endpoint, gen_ai = self._shapes.get(shape, shape)
        status = status_class(call.answer.status)
        error = error_kind(call)
        limits: list[tuple[tuple[str, str, str], float]] = []
        found = [(self.cap("kind", kind), action, n) for kind, action, n in call.request.finding_actions]
        answer = call.answer
        in_answer = [(self.cap("kind", kind), action, n) for kind, action, n in answer.finding_actions]
        cut = None if answer.cut is None else self.cap("kind", answer.cut)
        if used is not None and call.ledger.usage_counters:
            for label, subject, field, before, most, metric in call.ledger.usage_counters:
                key = self._limit_keys.get((label, subject, field), label, subject, field)
                limits.append((key, remaining(before, most, metric, used, field.endswith("_minute"))))
        with self._lock:
            self.calls.inc((client, groups, provider, model, call.verdict.decision, status, error))
            if call.answer.ended is not None:
                self.duration.observe((*gen_ai, endpoint, status, error), call.answer.ended - call.started)
            if call.answer.first_chunk is not None and call.classification.facts.stream:
                self.ttft.observe(gen_ai, call.answer.first_chunk - call.started)
            for kind, field in TOKEN_FIELDS:
                tokens = record[field]
                if tokens is not None:
                    self.token_usage.observe((*gen_ai, kind), tokens)
                    if tokens:
                        self.tokens.inc((client, provider, model, kind), tokens)
            cost = record["cost_usd"]
            if cost:
                self.cost.inc((client, provider, model), cost)
            if error.startswith("upstream_"):
                self.upstream_errors.inc((provider, error))
            if call.failover.attempts:
                for attempt in call.failover.attempts:  # by its own provider and model, not the call's last
                    tried = self.cap("model", attempt.model or "")
                    self.retries.inc((attempt.provider, tried, retry_cause(attempt.status, attempt.error)))
                if fallbacks := fallbacks_made(call.failover.attempts, call.route.target.provider, record["model"]):
                    self.fallbacks.inc((provider, model), fallbacks)
            for key, left in limits:
                self.limit_remaining.set(key, left)
            for kind, action, n in found:
                self.findings.inc((provider, kind, action), n)
            for kind, action, n in in_answer:
                self.answer_findings.inc((provider, kind, action), n)
            if cut is not None:
                self.answers_cut.inc((provider, cut))

    def _labels(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """A call shape's label values, capped."""
        client, groups, provider, model, endpoint = shape
        cap = self.cap
        endpoint = cap("endpoint", endpoint or "")
        model = cap("model", model or "")
        gen_ai = (operation_name(endpoint), semconv_name(provider), model)
        client, groups = cap("client", client or "anonymous"), cap("groups", ",".join(groups))
        return (client, groups, provider, model, endpoint, gen_ai)

    def _limit_key(self, label: str, subject: str, field: str) -> tuple[str, str, str]:
        return (self.cap("limit", label), self.cap("subject", subject), field)

    def mcp_called(self, record: Mapping[str, Any]) -> None:
        """One MCP request's end, by its `mcp_call` audit record."""
        cap = self.cap
        is_error = record["is_error"]
        if record["decision"] == "deny":
            outcome = "denied"
        else:
            outcome = "unknown" if is_error is None else "error" if is_error else "ok"
        key = (
            cap("client", record["client"] or "anonymous"), cap("server", record["server"]),
            cap("method", record["method"] or ""), cap("tool", record["tool"] or ""), outcome,
        )  # fmt: skip
        with self._lock:
            self.mcp_calls.inc(key)

    def found(self, provider: str, finding_actions: tuple[tuple[str, str, int], ...]) -> None:
        """What the guardrails found in a request that is not an LLM call (an MCP server's)."""
        if not finding_actions:
            return
        with self._lock:
            for kind, action, n in finding_actions:
                self.findings.inc((provider, self.cap("kind", kind), action), n)

    def found_in_answer(
        self, provider: str, finding_actions: tuple[tuple[str, str, int], ...], cut: tuple[str, ...] = ()
    ) -> None:
        """What the answer guardrails found in an answer that is no LLM call's (an MCP server's
        results), and the kind that replaced each result cut by an error."""
        if not finding_actions and not cut:
            return
        with self._lock:
            for kind, action, n in finding_actions:
                self.answer_findings.inc((provider, self.cap("kind", kind), action), n)
            for kind in cut:
                self.answers_cut.inc((provider, self.cap("kind", kind)))

    def connection_decided(self, service: str | None, category: str | None, decision: str) -> None:
        """One connection's decision (`allow`, `deny`), by the AI service its host belongs to."""
        key = (self.cap("service", service or ""), category or "", decision)
        with self._lock:
            self.connections.inc(key)

    def connection_closed(self, service: str | None, category: str | None, sent: int, received: int) -> None:
        """A tunnel's bytes each way, once it has closed."""
        service = self.cap("service", service or "")
        with self._lock:
            self.connection_bytes.inc((service, category or "", "sent"), sent)
            self.connection_bytes.inc((service, category or "", "received"), received)

    def brokered_request(self, host: str, outcome: str) -> None:
        """A request to a brokered credential's host (a configured host: no cap needed): `brokered`
        or `refused`."""
        with self._lock:
            self.brokered.inc((host, outcome))

    def anchor_gap(self, tsa: str) -> None:
        """A checkpoint the TSA at `tsa` (a configured URL: no cap needed) did not anchor."""
        with self._lock:
            self.anchor_gaps.inc((tsa,))

    def policy_evaluated(self, seconds: float, outcome: str) -> None:
        """One evaluation in the policy's worker: `allow`, `deny` or `error` (a time-out among them)."""
        with self._lock:
            self.policy_seconds.observe((outcome,), seconds)


def remaining(before: int, cap: int, metric: str, used: Estimate, minute: bool = False) -> float:
    """What a counter has left once a call that found it at `before` used `used`: dollars for money.
    A batch counts on a minute window as one request (`limits.Counter.charged`)."""
    if used.job and minute:
        spent = 1 if metric == "requests" else 0
    else:
        spent = used.requests if metric == "requests" else used.tokens if metric == "tokens" else used.nanousd or 0
    left = cap - before - spent
    return left / 1e9 if metric == "usd" else left


def fallbacks_made(attempts: list[Attempt], provider: str, model: str | None) -> int:
    """How many times a call's attempts went on to another model or provider (a fallback), the last
    to `model` of `provider`."""
    targets = [(a.provider, a.model) for a in attempts] + [(provider, model)]
    return sum(1 for before, after in pairwise(targets) if before != after)


def retry_cause(status: int | None, error: str | None) -> str:
    """What made an attempt fail, as the retries counter labels it: its status, else `timeout` or
    `connect`."""
    if status is not None:
        return str(status)
    return "timeout" if error is not None and error.startswith("upstream timeout") else "connect"
