"""How a call's answer is read on its way to the client: by the answer guardrails that apply to
it, and with `agents.links` set by the link rewriter too (`governance/agents/answer_links.py`),
even where no answer rule applies; in the format its client gets it in (after any translation)."""

from __future__ import annotations

from typing import NamedTuple

from tollgate.calls.call import Call
from tollgate.calls.routes import client_answer_format
from tollgate.formats.answer_reading.scanning import AnswerFormat
from tollgate.governance.agents.answer_links import Detectors, link_scanners
from tollgate.governance.guardrails.answer_formats import answer_format


class AnswerReading(NamedTuple):
    """How a call's answer is read: its format's readers and the detectors (the guardrails', with
    links off the list rewritten first where `agents.links` is set). `links`: whether they are."""

    format: AnswerFormat
    detectors: Detectors
    links: bool = False


def answer_reading(call: Call) -> AnswerReading | None:
    """How a call's answer is read; None where neither an answer rule nor `agents.links` applies,
    or the format is not read."""
    loaded = call.loaded
    guardrails = loaded.guardrails if loaded is not None else None
    agents = loaded.config.agents if loaded is not None else None
    links = agents.links if agents is not None else None
    if (guardrails is None or not guardrails.answer_rules) and links is None:
        return None
    found = answer_format(client_answer_format(call))
    if found is None:
        return None
    detectors: Detectors | None = None
    if guardrails is not None and guardrails.answer_rules:
        who = call.caller
        detectors = guardrails.answer(call.route.target.provider, call.target_model, who.client, who.groups)
    if links is not None:
        return AnswerReading(found, link_scanners(links, detectors), links=True)
    return AnswerReading(found, detectors) if detectors is not None else None
