"""What `agents` read of a call's request (where its text came from, the taint index, the
injection signals over its outside content), the same for every answer format, and each of its
answer's tool calls decided against it. Each format reads its own request's provenance and tool
schemas (`AgentsFormat`) and decides its own answer's calls with `decided_call`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollgate.formats.provenance import Provenance
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.settings import AgentsSettings
from tollgate.governance.agents.taint import TaintIndex, matches
from tollgate.governance.agents.tool_decision import ToolCall, ToolDecision, decide


class AnswerDecider(Protocol):
    """How a format's answers are decided (`answer_formats.AgentsFormat`), as a call's state holds it."""

    @property
    def decided_whole(self) -> Callable[[bytes, AgentsCall], bytes | None]: ...

    @property
    def held_stream(self) -> Callable[[AgentsCall, Rewrite | None], Rewrite]: ...

    def streams(self, event_stream: bool, asked: bool) -> bool: ...


@dataclass(slots=True)
class AgentsCall:
    """What `agents` read of a call's request, and what it decided of its answer's tool calls."""

    settings: AgentsSettings
    provenance: Provenance = field(repr=False)
    index: TaintIndex = field(repr=False)
    findings: dict[str, int]  # injection kinds found in the outside content, by count
    schemas: dict[str, Any] = field(repr=False)  # each declared tool's argument schema
    format: AnswerDecider | None = field(default=None, repr=False)  # how its answer's calls are decided
    # Its answer's tool calls are decided (not a streamed call without tools).
    decides: bool = True
    decisions: list[ToolDecision] = field(default_factory=list)

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
    """One call decided, its decision kept for the record."""
    decision = decide(
        call,
        settings=state.settings,
        index=state.index,
        findings=state.findings,
        schema=state.schemas.get(call.name),
    )
    state.decisions.append(decision)
    return decision
