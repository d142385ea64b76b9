"""The answer guardrails on what an MCP server sends its client (`ResultGuard`), what they find
noted on the exchange's answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollgate.formats.mcp.answer_guard import guard_message, lines_hold
from tollgate.formats.mcp.answers import DROPPED, responses_in
from tollgate.formats.mcp.messages import RequestId
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.mcp.mcp_exchange import REFUSED_CODE, McpExchange

# The error of a request left unanswered where its answer was stopped at another's result denied,
# or at a message that answers no request (a notification, a server's request) denied.
CUT_OFF = "Tollgate stopped this answer: another result in it holds {kind}."
STOPPED = "Tollgate stopped this answer: a message in it holds {kind}."
# The error of each request whose answer the answer guardrails could not read (no JSON).
UNREAD = "unread"
UNREAD_ANSWER = "Tollgate refused this answer: it could not be read for its guardrails."


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
        exchange.answer.actions = detectors.actions
        if not self._ids:  # the GET stream: read, nothing found so far
            exchange.answer.found.setdefault(None, {})

    @classmethod
    def of(cls, exchange: McpExchange) -> ResultGuard | None:
        """The guard of an exchange's answer, under the configuration its request ran under; None
        where no answer rule applies."""
        loaded = exchange.loaded
        guardrails = loaded.guardrails if loaded is not None else None
        if guardrails is None or not guardrails.answer_rules:
            return None  # most configurations: nothing to build
        client, groups = exchange.caller.client, exchange.caller.groups
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
            into = exchange.answer.found.setdefault(owner if rid is None else rid, {})
            for kind, n in found.items():
                into[kind] = into.get(kind, 0) + n
        for rid, kind in read.denied.items():
            exchange.answer.cut.setdefault(owner if rid is None else rid, kind)
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
        self._exchange.answer.cut.update(dict.fromkeys(self._ids or (None,), UNREAD))
        return REFUSED_CODE, UNREAD_ANSWER
