"""OPA Rego policies, evaluated by OPA's own engine: compiled once, evaluated per call.

A call is allowed when `data.tollgate.deny` (a set of strings) is empty; the strings are the
reasons. Anything that is not a clean answer — an evaluation error, a `deny` that is not a set of
strings, an evaluation that exceeds its time limit — denies with the reason "policy error": a
policy never fails open. The proxy evaluates in a worker process (`policy_worker`), which can be
stopped, and compiles a policy in a short-lived one when it loads: OPA's engine (Go, loaded through
ctypes) never runs inside the proxy, so nothing it does can take the proxy down. What runs the
engine is `policy_engine`; the policy's settings (`policy:`) are declared here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tollgate.common.config_base import Strict
from tollgate.governance.policy.policy_builtins import check_builtins
from tollgate.governance.policy.policy_engine import CALL_RULE, POLICY_ERROR, Decision, PolicyError, Rules
from tollgate.governance.policy.policy_worker import CHECK_COMMAND, PolicyWorker, WorkerUnavailable

CACHE_SIZE = 4096
TIMEOUT = 1.0  # seconds an evaluation may take; `policy.timeout`
COMPILE_LIMIT = 30.0  # seconds for a policy to compile in its own process
# Built-ins whose answer is not a function of the input: time, HTTP, randomness, UUIDs, DNS, the
# runtime, and a JWT's verification (checked against the clock); called by name (`http.send(`,
# `http["send"](`), or put in a function's place (`with f as http.send`).
_IMPURE = re.compile(
    r"\b(?:(?:time|http|rand|uuid|net|opa)(?:\s*\.\s*[a-z_]+|\s*\[[^\]\n]*\])|io\.jwt\.decode_verify)\s*\("
    r"|\bas\s+(?:time|http|rand|uuid|net|opa)\s*[.\[]"
)
_DENY_RULE = re.compile(r"^\s*(?:default\s+)?deny\b", re.MULTILINE)
# Rego's comments, and its strings so that a `#` in one starts no comment. Strings are not
# dropped: a template string can read `input` (an `input` in any other costs only cache hits).
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')
# `input` and the names that follow it: `input.client.groups[_]` is input, client, groups.
_INPUT_PATH = re.compile(r"\binput\b((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PolicyConfig(Strict):
    """`policy:` the Rego files that decide each call, how long one evaluation may take, and whether
    they may reach the network (`http.send`, `net.lookup_ip_addr`; `policy_builtins`)."""

    rego: tuple[str, ...] = ()
    timeout: float = Field(default=TIMEOUT, gt=0)
    network: Literal["deny", "allow"] = "deny"


def compile_apart(sources: Mapping[str, str], network: bool = False) -> None:
    """Compile the sources in a process of their own, as the proxy's worker will: `PolicyError`
    with OPA's own words when they do not compile, or naming a built-in they may not call."""
    asked = {"modules": dict(sources), "network": network}
    try:
        done = subprocess.run(
            CHECK_COMMAND, input=json.dumps(asked).encode(), capture_output=True,
            timeout=COMPILE_LIMIT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PolicyError(f"{', '.join(sources)}: did not compile within {COMPILE_LIMIT:g} s") from None
    except OSError as e:
        raise PolicyError(f"{', '.join(sources)}: could not be compiled: {e.strerror or e}") from None
    try:
        error = json.loads(done.stdout)["error"]
    except (ValueError, TypeError, KeyError):
        raise PolicyError(f"{', '.join(sources)}: the compiler exited ({done.returncode}) without an answer") from None
    if error is not None:
        raise PolicyError(error)


@dataclass(frozen=True, slots=True, eq=False)
class DecisionKind[In]:
    """A kind of decision (an LLM call's, an MCP request's, a connection's: `KINDS`), declared once:
    the deny rule that makes it (its reasons, a set of strings), how its facts become the `input`
    document the rule reads, and how its decisions are cached for a policy's sources (`keyed`:
    on the facts they read). Every kind is asked the same way: `Policy.decide(kind, facts)`. `gives`: whether the
    proxy's input of this kind has a top-level name (`tollgate policy eval` warns of those a policy
    reads and a sample lacks: of this kind's only)."""

    name: str
    rule: str
    document: Callable[[In], Any]
    keyed: Callable[[Sequence[str]], Callable[[In], Hashable]]
    gives: Callable[[str], bool] = bool
    # Whether its decisions are cached: not where its facts hold what a caller's request carries
    # unbounded (a tool call's arguments), kept in memory past the call.
    cached: bool = True


class Policy:
    """The compiled modules of some Rego files, ready to decide each kind of decision
    (`DecisionKind`), asked one way (`decide`): in a worker process within a time limit where the
    asker runs an event loop (the proxy), else in this process. With `apart` (the proxy) they are
    compiled in a process of their own and OPA's engine is loaded here only for a decision asked
    with no loop running; else here, at once.
    A policy that calls `opa.runtime` is refused, and one that calls `http.send` or
    `net.lookup_ip_addr` but with `network` (`policy_builtins`)."""

    def __init__(
        self, files: Sequence[str | Path], timeout: float = TIMEOUT, *, apart: bool = False, network: bool = False
    ) -> None:
        self.files = tuple(Path(f) for f in files)
        self.timeout = timeout
        self.network = network
        # Before reading: an edit made while they are read is a change still to be seen.
        self.loaded_mtimes = self.mtimes()
        sources: dict[str, str] = {}
        for path in self.files:
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise PolicyError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
            sources[str(path)] = source
        self._rules: Rules | None = None
        if apart:
            compile_apart(sources, network)
        else:
            self._rules = Rules(sources)
            check_builtins(self._rules, sources, network)
        # A policy that never defines data.tollgate.deny (a misspelt package or rule name) would
        # allow every call: refuse it at load.
        packages = kind_packages(KINDS)
        if not any(packages.search(s) and _DENY_RULE.search(s) for s in sources.values()):
            raise PolicyError(
                f"{', '.join(map(str, self.files))}: no rule defines data.tollgate.deny"
                " (package tollgate; deny contains reason if { … })"
            )
        # The worker compiles these sources, not the files: they may have changed since.
        self.sources = sources
        self._worker: PolicyWorker | None = None
        # A policy is a function of its input unless it asks the clock, the network or chance:
        # then equal inputs get equal decisions, and a repeated input is not evaluated again.
        self._cache: dict[Hashable, Decision] | None = None if any(_IMPURE.search(s) for s in sources.values()) else {}
        # ... and of only the facts it reads: a call that differs from an earlier one only in
        # facts no rule reads (a conversation's growing message count) gets that call's decision.
        self._keys: dict[DecisionKind[Any], Callable[[Any], Hashable]] = {}
        self._decides: dict[DecisionKind[Any], bool] = {}

    def decides(self, kind: DecisionKind[Any]) -> bool:
        """Whether a package of the policy holds the kind's deny rule (`package tollgate.tools`): a
        kind no rule decides is not asked, at no cost."""
        found = self._decides.get(kind)
        if found is None:
            packages = kind_packages((kind,))
            found = self._decides[kind] = any(packages.search(s) for s in self.sources.values())
        return found

    def decide[In](self, kind: DecisionKind[In], facts: In) -> Decision | Awaitable[Decision]:
        """A decision of a kind (`CALL_DECISION`, `MCP_DECISION`, `EGRESS_DECISION`, `TOOLS_DECISION`) on its facts: a
        cached one at once (keyed on the facts the policy reads); else, asked from a running event
        loop (the proxy's, which must never wait on a policy), an awaitable evaluation in the worker
        process within the time limit; asked with no loop running (a check, a benchmark), one
        evaluated here at once, without a time limit. Its input document is built only then."""
        cache = self._cache
        if cache is None or not kind.cached:
            return self._made(None, kind, facts)
        key = (kind, (self._keys.get(kind) or self._key(kind))(facts))
        decision = cache.get(key)
        if decision is None:
            return self._made(key, kind, facts)
        return decision

    def _made(self, key: Hashable | None, kind: DecisionKind[Any], facts: Any) -> Decision | Awaitable[Decision]:
        document = kind.document(facts)
        if asyncio._get_running_loop() is not None:
            return self._in_worker(key, kind, document)
        decision = self._evaluate(kind, document)
        if key is not None:
            self._remember(key, decision)
        return decision

    def _key(self, kind: DecisionKind[Any]) -> Callable[[Any], Hashable]:
        """How a kind's facts key the cache, made at its first decision: by the facts the policy
        reads (`DecisionKind.keyed`). The key goes with its kind: each kind's decisions are its own."""
        key = self._keys[kind] = kind.keyed(tuple(self.sources.values()))
        return key

    async def _in_worker(self, key: Hashable | None, kind: DecisionKind[Any], document: Any) -> Decision:
        try:
            decision = await self.worker.evaluate(document, kind.rule)
        except WorkerUnavailable as e:
            return Decision((POLICY_ERROR,), str(e))  # not remembered: the next call tries again
        # A timeout is remembered too: the same input would take as long again.
        if key is not None:
            self._remember(key, decision)
        return decision

    @property
    def rules(self) -> Rules:
        """The policy compiled in this process (for a decision asked with no loop running), at its first need."""
        if self._rules is None:
            self._rules = Rules(self.sources)
        return self._rules

    @property
    def worker(self) -> PolicyWorker:
        if self._worker is None:
            self._worker = PolicyWorker(self.sources, self.timeout)
        return self._worker

    def start(self) -> None:
        """Start the worker process now rather than at the first call (needs a running event loop)."""
        self.worker.start()

    def close(self) -> None:
        """Stop the worker process, once the evaluation it may be running has ended."""
        if self._worker is not None:
            self._worker.close()

    async def aclose(self) -> None:
        """Stop the worker process now and wait for it to exit."""
        if self._worker is not None:
            await self._worker.aclose()

    def _remember(self, key: Hashable, decision: Decision) -> None:
        cache = self._cache
        if cache is None:
            return
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = decision

    def _evaluate(self, kind: DecisionKind[Any], document: Any) -> Decision:
        return self.rules.evaluate(document, kind.rule)

    def mtimes(self) -> tuple[int | None, ...]:
        return tuple(_mtime(p) for p in self.files)


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


# Where `input_document` puts each of `input_facts`: a leaf is the fact's index.
INPUT_LAYOUT: dict[str, Any] = {
    "client": {"name": 0, "groups": 1, "auth": 2},
    "provider": 3, "host": 4, "method": 5, "path": 6, "endpoint": 7, "requested_model": 8, "model": 9,
    "request": {
        "message_count": 10, "has_system": 11, "has_tools": 12, "stream": 13, "max_tokens": 14,
        "service_tier": 18, "speed": 19, "batch": 20, "mcp_servers": 21,
    },
    "publisher": 22,
    "fallback_of": 23,  # the target a fallback takes the call from: {provider, model}, else null
    "findings": 24,  # what the guardrails found, by kind: {kind: occurrences}; null when not read
    "unread": 15,
    "identity": 16,  # a JWT caller's: issuer and claims, one fact (`JwtIdentity`)
    "usage": 17,  # the limits' counters (`limits.usage_facts`), one fact
    "subscription": 25,  # a plan call's vendor, account, email, plan, tenant, one fact (`Subscription`)
}  # fmt: skip


def paths_read(sources: Iterable[str]) -> list[tuple[str, ...]] | None:
    """The paths of `input` Rego sources read (`input.client.groups` is `("client", "groups")`),
    each once, in the order first read; None when one uses `input` other than by a path of names:
    `input[k]`, `walk(input, …)`, `with input as …`, `import input`."""
    paths: dict[tuple[str, ...], None] = {}
    for source in sources:
        for match in _INPUT_PATH.finditer(_STRING_OR_COMMENT.sub(_without_comment, source)):
            names = tuple(_NAME.findall(match.group(1)))
            if not names:
                return None
            paths.setdefault(names)
    return list(paths)


def facts_read(sources: Iterable[str]) -> tuple[int, ...] | None:
    """Which of `input_facts` Rego sources can read (indices), found in their text; None (all of
    them) when one uses `input` other than by a path of names (`paths_read`). A path read reads
    everything beneath it; a path the input document does not have reads nothing."""
    paths = paths_read(sources)
    if paths is None:
        return None
    read: set[int] = set()
    for names in paths:
        node: Any = INPUT_LAYOUT
        for name in names:
            if not isinstance(node, dict):
                break
            node = node.get(name)
        read.update(_leaves(node))
    return tuple(sorted(read))


def egress_facts_read(sources: Iterable[str]) -> tuple[int, ...] | None:
    """Which of a connection's facts (`egress.EGRESS_FACTS`) Rego sources can read (indices); None
    (all) when one uses `input` other than by a path of names."""
    paths = paths_read(sources)
    if paths is None:
        return None
    return tuple(i for i, name in enumerate(EGRESS_FACTS) if any(p[0] == name for p in paths))


def reads_mcp_session(sources: Iterable[str]) -> bool:
    """Whether Rego sources can read an MCP request's `input.mcp.session`: by that path, by
    `input.mcp` whole, or by `input` other than by a path of names (`paths_read`)."""
    paths = paths_read(sources)
    return paths is None or any(p[:2] == ("mcp", "session")[: len(p)] for p in paths)


def lacking(document: Any, paths: Iterable[tuple[str, ...]]) -> list[str]:
    """The paths read that an input document lacks (where Rego finds them undefined, so that a rule
    reading one does not hold), each as its shortest lacking part, dotted. A path into a value that
    is no object (a `null` batch) is not lacking: the proxy gives such values. Nor is `identity`,
    which the proxy gives only for a caller a JWT identified."""
    if not isinstance(document, dict):
        return []
    found: dict[str, None] = {}
    for names in paths:
        node: Any = document
        for depth, name in enumerate(names):
            if not isinstance(node, dict):
                break
            if name not in node:
                if (depth, name) != (0, "identity"):
                    found.setdefault(".".join(names[: depth + 1]))
                break
            node = node[name]
    return list(found)


def _without_comment(match: re.Match[str]) -> str:
    return " " if match.group().startswith("#") else match.group()


def _leaves(node: Any) -> Iterable[int]:
    if isinstance(node, int):
        yield node
    elif isinstance(node, dict):
        for child in node.values():
            yield from _leaves(child)


def cache_key(read: tuple[int, ...] | None) -> Callable[[tuple[Any, ...]], Hashable]:
    """The decision cache's key for a call's facts: the facts read, or all of them."""
    if read is None:
        return lambda facts: facts
    if not read:
        return lambda facts: ()
    pick = itemgetter(*read)
    return (lambda facts: (pick(facts),)) if len(read) == 1 else pick


def input_document(facts: tuple[Any, ...]) -> dict[str, Any]:
    """The JSON document a policy evaluates as `input` (who calls, where the call goes, what it asks
    for), built from `input_facts` so that it holds exactly what the decision cache is keyed on."""
    (client, groups, auth, provider, host, method, path, endpoint, requested_model, model,
     message_count, has_system, has_tools, stream, max_tokens, unread, identity, usage,
     service_tier, speed, batch, mcp_servers, publisher, fallback_of, findings, subscription) = facts  # fmt: skip
    document = {
        "client": {"name": client, "groups": list(groups), "auth": auth},
        "provider": provider,
        "host": host,
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "requested_model": requested_model,
        "model": model,
        "publisher": publisher,
        "fallback_of": None if fallback_of is None else {"provider": fallback_of[0], "model": fallback_of[1]},
        "request": {
            "message_count": message_count,
            "has_system": has_system,
            "has_tools": has_tools,
            "stream": stream,
            "max_tokens": max_tokens,
            "service_tier": service_tier,
            "speed": speed,
            "batch": None if batch is None else batch.policy_input(),
            "mcp_servers": [{"url": url, "name": name} for url, name in mcp_servers],
        },
        "unread": list(unread),
        "findings": None if findings is None else dict(findings),
        "usage": usage_input(usage),
        # A call made with a plan's token: its vendor, account, e-mail, plan and tenant; else null.
        "subscription": None if subscription is None else subscription.policy_input(),
    }
    if identity is not None:  # a JWT caller: `input.identity` is undefined for every other
        document["identity"] = identity.policy_input()
    return document


NANO = Decimal(1_000_000_000)  # nano-dollars, the counters' unit of money, in a dollar


def usage_input(counters: tuple[tuple[str, str, str, int, int, str], ...]) -> dict[str, Any]:
    """`input.usage`: by limit, subject (client, group or "all") and field (e.g. usd_per_day), what
    was used before this call and the cap; money in dollars."""
    usage: dict[str, Any] = {}
    for label, subject, field, used, cap, metric in counters:
        if metric == "usd":
            entry: dict[str, Any] = {"used": float(Decimal(used) / NANO), "limit": float(Decimal(cap) / NANO)}
        else:
            entry = {"used": used, "limit": cap}
        usage.setdefault(label, {}).setdefault(subject, {})[field] = entry
    return usage


# Where `egress_input` puts each fact of a connection: the policy's cache is keyed on those read.
EGRESS_FACTS = ("client", "auth", "source", "host", "port", "address", "service")


def egress_facts(
    client: str | None,
    auth: str | None,
    source: str | None,
    host: str,
    port: int,
    address: str | None,
    service: str | None,
) -> tuple[Any, ...]:
    """A connection's facts for the policy, in `EGRESS_FACTS`' order."""
    return (client, auth, source, host, port, address, service)


def egress_input(facts: tuple[Any, ...]) -> dict[str, Any]:
    """The document `data.tollgate.egress.deny` evaluates as `input`."""
    return dict(zip(EGRESS_FACTS, facts, strict=True))


def _call_key(sources: Sequence[str]) -> Callable[[tuple[Any, ...]], Hashable]:
    return cache_key(facts_read(sources))


def _egress_key(sources: Sequence[str]) -> Callable[[tuple[Any, ...]], Hashable]:
    return cache_key(egress_facts_read(sources))  # a client's port, read by few rules, misses no hit


# What the proxy gives an MCP request's input: the caller, and the request (`mcp_input.request_input`).
MCP_INPUT = ("client", "mcp")


def _mcp_key(sources: Sequence[str]) -> Callable[[dict[str, Any]], Hashable]:
    """An MCP request's input whole, but for its session where no rule reads `input.mcp.session`:
    a session is new with each client's, and a new session's requests then hit the cache."""
    session_read = reads_mcp_session(sources)

    def key(document: dict[str, Any]) -> Hashable:
        mcp = document.get("mcp")
        if not session_read and isinstance(mcp, dict) and "session" in mcp:
            document = {**document, "mcp": {k: v for k, v in mcp.items() if k != "session"}}
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    return key


def _itself(document: Any) -> Any:
    return document


def _whole_key(sources: Sequence[str]) -> Callable[[Any], Hashable]:
    return lambda document: json.dumps(document, separators=(",", ":"), sort_keys=True)


# What a tool call's input adds to its call's (`tool_input`); not an LLM call's.
TOOL_INPUT = ("tool", "conversation")


def tool_input(facts: tuple[tuple[Any, ...], Mapping[str, Any]]) -> dict[str, Any]:
    """The document `data.tollgate.tools.deny` evaluates as `input`: the call's usual facts
    (`input_document`) and the tool call's (`tool`, `conversation`: `tool_decision.facts`)."""
    call_facts, tool_facts = facts
    return {**input_document(call_facts), **{k: tool_facts[k] for k in TOOL_INPUT}}


def _never_key(sources: Sequence[str]) -> Callable[[Any], Hashable]:
    raise AssertionError("an uncached kind has no cache key")


def _call_gives(top: str) -> bool:
    return top != "mcp" and top not in TOOL_INPUT


# The kinds of decision. An LLM call's: its facts (`policy_input.input_facts`) by `data.tollgate.deny`.
CALL_DECISION: DecisionKind[tuple[Any, ...]] = DecisionKind("call", CALL_RULE, input_document, _call_key, _call_gives)
# A tool call in an answer, before the agent gets it (`package tollgate.tools`): its call's facts
# and its own (`tool_input`). Never cached: its arguments are not kept past the call.
TOOLS_DECISION: DecisionKind[tuple[tuple[Any, ...], Mapping[str, Any]]] = DecisionKind(
    "tools", "data.tollgate.tools.deny", tool_input, _never_key, lambda top: top != "mcp", cached=False
)
# An MCP server's request's, by its own rules (`package tollgate.mcp`), never the LLM calls': its
# input document (`mcp_input.request_input`, `listed_tool_input`).
MCP_DECISION: DecisionKind[dict[str, Any]] = DecisionKind(
    "mcp", "data.tollgate.mcp.deny", _itself, _mcp_key, MCP_INPUT.__contains__
)
# A connection's a client opens through Tollgate (`package tollgate.egress`): its facts (`egress_facts`).
EGRESS_DECISION: DecisionKind[tuple[Any, ...]] = DecisionKind(
    "egress", "data.tollgate.egress.deny", egress_input, _egress_key, EGRESS_FACTS.__contains__
)
KINDS = (CALL_DECISION, MCP_DECISION, EGRESS_DECISION, TOOLS_DECISION)


@functools.cache
def whole(kind: DecisionKind[Any]) -> DecisionKind[Any]:
    """A kind's rule on input documents given whole (the command line's, a test's), not on facts."""
    return DecisionKind(kind.name, kind.rule, _itself, _whole_key, kind.gives, kind.cached)


@functools.cache
def kind_packages(kinds: tuple[DecisionKind[Any], ...]) -> re.Pattern[str]:
    """A package that holds some kind's deny rule (`tollgate`, `tollgate.mcp`, …): a policy with
    none would allow everything. Read from the kinds when a policy loads, so a kind declared in
    `KINDS` joins them."""
    names = "|".join(re.escape(k.rule.removeprefix("data.").removesuffix(".deny")) for k in kinds)
    return re.compile(rf"^\s*package\s+(?:{names})\s*(?:#.*)?$", re.MULTILINE)
