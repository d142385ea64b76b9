"""What `agents` read of a call's request (where its text came from, the taint index, the
injection signals over its outside content), the same for every answer format, and each of its
answer's tool calls decided against it. Each format reads its own request's provenance and tool
schemas (`AgentsFormat`) and decides its own answer's calls with `decided_call`.

The policy's `data.tollgate.tools.deny` is asked first (`AgentsCall.policy`, set only where the
policy has that rule). The proxy asks it from its event loop and must await the answers, while a
format decides its calls in plain functions: so the calls are asked before they are decided. An
answer read whole is read twice: once `probing` (each call only noted in `asking`), then, once
`asked`, for real. A format that decides as its events come holds its calls until none is
`unasked`, and goes on when fed again (its tap awaits `asked` meanwhile). A call decided before its
answer came is refused as a policy error: the policy fails closed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollgate.formats.provenance import Provenance
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.taint import TaintIndex, matches
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall, ToolDecision, decide, facts


class AnswerDeciding(Protocol):
    """How a format's answer has its calls decided (`answer_formats.AgentsFormat`), named here
    without importing the registry, which imports what decides each format's answers."""

    @property
    def decided_whole(self) -> Callable[[bytes, AgentsCall], bytes | None]: ...

    @property
    def held_stream(self) -> Callable[[AgentsCall, Rewrite | None], Rewrite]: ...

    def streams(self, event_stream: bool, asked: bool) -> bool: ...


logger = logging.getLogger(__name__)

POLICY_ERROR = "policy error"
# The policy asked about one tool call (its `input.tool` and `input.conversation`): its deny
# reasons, at once or awaited.
ToolPolicy = Callable[[dict[str, Any]], Sequence[str] | Awaitable[Sequence[str]]]


@dataclass(slots=True)
class AgentsCall:
    """What `agents` read of a call's request, and what it decided of its answer's tool calls."""

    settings: AgentsSettings
    provenance: Provenance = field(repr=False)
    index: TaintIndex = field(repr=False)
    findings: dict[str, int]  # injection kinds found in the outside content, by count
    schemas: dict[str, Any] = field(repr=False)  # each declared tool's argument schema
    format: AnswerDeciding | None = field(default=None, repr=False)  # how its answer's calls are decided
    # Its answer's tool calls are decided (not a streamed call without tools).
    decides: bool = True
    decisions: list[ToolDecision] = field(default_factory=list)
    # The policy's tools rule (None: the policy has none, nothing is asked) and its answers so far,
    # by call (`_policy_key`: arguments, kept no longer than the call).
    policy: ToolPolicy | None = field(default=None, repr=False)
    policy_answers: dict[Hashable, tuple[str, ...]] = field(default_factory=dict, repr=False)
    asking: dict[Hashable, ToolCall] = field(default_factory=dict, repr=False)  # calls still to ask
    probing: bool = False  # an answer read only to note its calls in `asking`
    # Keeps what Tollgate saw of the conversation up to its answer, by the answer's id, once the
    # answer's calls are decided: (id, the answer's output as the agent got it, refused call id →
    # the output item answering it). None where its format continues no conversation by id.
    remember: Callable[[str, Any, dict[str, dict[str, Any]]], None] | None = field(default=None, repr=False)

    def tool_calls(self) -> list[dict[str, Any]]:
        """The record's `tool_calls`: no argument value."""
        return [d.record() for d in self.decisions]


def read_request(
    provenance: Provenance, schemas: dict[str, Any], settings: AgentsSettings, signals: InjectionSignals
) -> AgentsCall:
    """The state of a call whose request's provenance and tool schemas its format read."""
    findings: Counter[str] = Counter()
    for piece in provenance.outside:
        if not matches(piece.tool, settings.trusted_tools):  # the owner's own tools' results are read as theirs
            findings.update(signals.signals(piece.text))
    return AgentsCall(
        settings=settings,
        provenance=provenance,
        index=TaintIndex.build(provenance, settings),
        findings=dict(findings),
        schemas=schemas,
    )


def decided_call(call: ToolCall, state: AgentsCall) -> ToolDecision:
    """One call decided, the policy's reasons first, its decision kept for the record. While
    `probing`, a call the policy was not asked about is only noted (`asking`), its decision not kept."""
    reasons: Sequence[str] = ()
    if state.policy is not None:
        key = _policy_key(call)
        answer = state.policy_answers.get(key)
        if answer is None and state.probing:
            state.asking[key] = call
        elif answer is None:
            answer = _asked_now(call, state)
        reasons = answer or ()
    decision = decide(
        call,
        settings=state.settings,
        index=state.index,
        findings=state.findings,
        policy_reasons=list(reasons),
        schema=state.schemas.get(call.name),
    )
    if not state.probing:
        state.decisions.append(decision)
    return decision


def unasked(calls: Iterable[ToolCall], state: AgentsCall) -> bool:
    """Whether the policy is still to be asked about some of these calls (noted in `asking`): a
    format deciding as events come holds them, and goes on once fed again after `asked`."""
    if state.policy is None:
        return False
    for call in calls:
        key = _policy_key(call)
        if key not in state.policy_answers:
            state.asking[key] = call
    return bool(state.asking)


def probed(read: Callable[[], object], state: AgentsCall) -> bool:
    """An answer read once only to note the calls the policy is to be asked about (`read`: the
    format's reading, its result let go); whether there are some."""
    if state.policy is None:
        return False
    state.probing = True
    try:
        read()
    finally:
        state.probing = False
    return bool(state.asking)


async def asked(state: AgentsCall) -> None:
    """The policy asked about every call noted, together; each answer kept for `decided_call`. An
    answer that does not come (the worker's fault) is a policy error: the call is refused."""
    asking, state.asking = state.asking, {}
    policy = state.policy
    if policy is None or not asking:
        return
    awaited: dict[Hashable, Awaitable[Sequence[str]]] = {}
    for key, call in asking.items():
        try:
            answer = policy(_facts_of(call, state))
        except Exception:
            logger.exception("Tollgate: asking the policy about a tool call failed")
            answer = (POLICY_ERROR,)
        if isinstance(answer, Awaitable):
            awaited[key] = answer
        else:
            state.policy_answers[key] = tuple(answer)
    if not awaited:
        return
    done = await asyncio.gather(*awaited.values(), return_exceptions=True)
    for key, given in zip(awaited, done, strict=True):
        if isinstance(given, BaseException):
            logger.error(f"Tollgate: asking the policy about a tool call failed: {type(given).__name__}")
        state.policy_answers[key] = (POLICY_ERROR,) if isinstance(given, BaseException) else tuple(given)


def _asked_now(call: ToolCall, state: AgentsCall) -> tuple[str, ...]:
    """The policy's answer on a call not asked before: at once where it can give one (no event
    loop running: a check, a test); else, in the proxy, a policy error: it fails closed."""
    assert state.policy is not None
    try:
        answer = state.policy(_facts_of(call, state))
    except Exception:
        logger.exception("Tollgate: asking the policy about a tool call failed")
        return (POLICY_ERROR,)
    if isinstance(answer, Awaitable):
        close = getattr(answer, "close", None)
        if close is not None:
            close()  # a coroutine never awaited
        return (POLICY_ERROR,)
    answer = tuple(answer)
    state.policy_answers[_policy_key(call)] = answer
    return answer


def _facts_of(call: ToolCall, state: AgentsCall) -> dict[str, Any]:
    return facts(call, state.index, state.provenance, state.findings)


def _policy_key(call: ToolCall) -> Hashable:
    """A call as the policy reads it: its name and arguments (unread ones apart from any value)."""
    if call.arguments is UNREAD:
        return (call.name, None)
    try:
        return (call.name, json.dumps(call.arguments, sort_keys=True, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return (call.name, repr(call.arguments))
