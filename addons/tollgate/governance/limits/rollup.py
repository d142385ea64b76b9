"""Conversation roll-up: a chat call whose conversation has grown past a rule's size goes upstream
with its earlier turns replaced by a summary (in its system prompt) and only its latest turns kept.
A summary is kept by the turns it summarizes: the conversation's next calls use it again while
the turns after it stay within the rule's size, and the next summary extends it with the turns
since, so that a conversation asks the summarizer once every so many turns, never for its whole
history again. Its rules, as the file writes them (`rollup:`), are declared here. Where a
format keeps a conversation's turns is the format's (its `turns.py`). Plain Python, knowing
nothing of mitmproxy."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from tollgate.common.config_base import Strict
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.chat import ChatRequest, ChatResponse, Message, Text
from tollgate.formats.registry import WIRE_FORMATS
from tollgate.governance.matching import OverrideMatch, known_providers, unknown_provider

# A token is about four bytes of text (as the limits estimate a prompt's tokens).
BYTES_PER_TOKEN = 4
SUMMARY_MAX_TOKENS = 1024
SUMMARIZER_SYSTEM = (
    "You condense conversations. Write a summary of the conversation you are given, for the assistant"
    " who continues it without seeing it: every fact, name, number, decision, instruction, result of a"
    " tool and open question it holds, in plain notes. Answer with the summary only."
)
SUMMARY_HEADING = "Summary of the conversation's earlier turns (rolled up by the gateway):\n"


class Summarizer(Strict):
    provider: str
    model: str = Field(min_length=1)


class RollupRule(Strict):
    """One `rollup:` rule: a conversation past `above_messages` turns (or an estimated `above_tokens`)
    goes upstream with all but its last `keep_last` turns summarized by `summarizer`."""

    match: OverrideMatch = OverrideMatch()
    above_messages: int | None = Field(default=None, ge=1)
    above_tokens: int | None = Field(default=None, ge=1)
    keep_last: int = Field(default=4, ge=1)
    summarizer: Summarizer
    cache_entries: int = Field(default=256, ge=0)

    @model_validator(mode="after")
    def _one_size(self, info: ValidationInfo) -> RollupRule:
        if (self.above_messages is None) == (self.above_tokens is None):
            raise ValueError("set one of above_messages and above_tokens")
        if self.above_messages is not None and self.keep_last >= self.above_messages:
            raise ValueError("keep_last must be below above_messages")
        known = known_providers(info)
        for name in (self.match.provider, self.summarizer.provider):
            if name is not None and name not in known:
                raise ValueError(unknown_provider(name, known))
        return self


@dataclass(frozen=True, slots=True)
class Plan:
    """A conversation to roll up: its first `count` turns (those before `cut` in the body's list),
    summarized by `summary` where one is kept; else by the summarizer, from the kept summary
    `earlier` of its first turns (if any) and the turns after them, `turns`."""

    fmt: str
    cut: int  # index in the body's list of the first turn kept
    count: int  # the conversation's turns rolled up (not OpenAI's system messages)
    key: str  # the summary's, by those turns and the summarizer (`Summaries`)
    summary: str | None = None
    earlier: str | None = None
    turns: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Size:
    """A rule's size: a conversation past it is rolled up, and the turns kept after a summary may
    grow up to it before the next (its turns, or its body's tokens estimated from bytes)."""

    above_messages: int | None
    above_tokens: int | None
    keep_last: int

    def exceeded(self, turns: int, size: int) -> bool:
        if self.above_messages is not None:
            return turns > self.above_messages
        return self.above_tokens is not None and size > self.above_tokens * BYTES_PER_TOKEN


def plan(fmt: str, body: dict[str, Any], size: Size, summarizer: str, summaries: Summaries) -> Plan | None:
    """What of this call's conversation to roll up, or None: the conversation is not past the
    rule's size, is not in a list of turns, or cannot be cut (no user's turn opens an exchange
    among the turns before the last `keep_last`: a tool's call and result stay together)."""
    known = WIRE_FORMATS.get(fmt)
    turns = known.turns if known is not None else None
    listed = body.get(turns.key) if turns is not None else None
    if turns is None or not isinstance(listed, list):
        return None
    positions = [i for i, turn in enumerate(listed) if turns.is_turn(turn)]
    conversation = [listed[i] for i in positions]
    whole = len(encode_json(body)) if size.above_tokens is not None else 0  # only a size in tokens reads it
    if not size.exceeded(len(conversation), whole):
        return None
    # Keep at least the last `keep_last` turns, from a turn that opens an exchange.
    cut = next((k for k in range(len(conversation) - size.keep_last, 0, -1) if turns.opens(conversation[k])), 0)
    if not cut:
        return None
    encoded = [encode_json(turn) for turn in conversation]
    keys = prefix_keys(summarizer, fmt, encoded)
    # The longest start of the conversation summarized before: used again while what follows it
    # stays within the size, else extended.
    found = ((k, s) for k in range(cut, 0, -1) if (s := summaries.get(keys[k])) is not None)
    earlier_at, earlier = next(found, (0, None))
    if earlier is not None:
        rest = whole - sum(len(e) for e in encoded[:earlier_at])
        if earlier_at == cut or not size.exceeded(len(conversation) - earlier_at, rest):
            return Plan(fmt, positions[earlier_at], earlier_at, keys[earlier_at], summary=earlier)
    return Plan(fmt, positions[cut], cut, keys[cut], earlier=earlier, turns=tuple(conversation[earlier_at:cut]))


def prefix_keys(summarizer: str, fmt: str, encoded: list[bytes]) -> list[str]:
    """Each start of the conversation's key, by its turns (as encoded) and who summarizes them:
    `keys[k]` for its first k turns, one hash chained through them all."""
    digest = hashlib.sha256(f"{summarizer}\n{fmt}".encode()).digest()
    keys = [digest.hex()]
    for turn in encoded:
        digest = hashlib.sha256(digest + turn).digest()
        keys.append(digest.hex())
    return keys


def roll_up(body: dict[str, Any], rolled: Plan, summary: str) -> None:
    """The body with the rolled-up turns out and the summary in its system prompt."""
    turns = WIRE_FORMATS[rolled.fmt].turns
    assert turns is not None, "a plan is made only where the format keeps turns"
    listed = body[turns.key]
    body[turns.key] = [t for i, t in enumerate(listed) if i >= rolled.cut or not turns.is_turn(t)]
    turns.add_system(body, SUMMARY_HEADING + summary)


def summary_request(model: str, rolled: Plan) -> ChatRequest:
    """What the summarizer is asked, in no provider's format (`formats/chat.py`): the turns as the
    JSON the caller sent, after the summary of those before them where there is one."""
    turns = encode_json(list(rolled.turns)).decode("utf-8", "surrogateescape")
    if rolled.earlier is None:
        prompt = f"The conversation, as the JSON list of its turns in the {rolled.fmt} format:\n\n{turns}"
    else:
        prompt = (
            f"A summary of the conversation's start:\n\n{rolled.earlier}\n\nThe turns that followed, as the"
            f" JSON list of them in the {rolled.fmt} format:\n\n{turns}"
        )
    return ChatRequest(
        model=model,
        messages=[Message("user", [Text(prompt)])],
        system=[Text(SUMMARIZER_SYSTEM)],
        max_tokens=SUMMARY_MAX_TOKENS,
    )


def summary_of(answer: ChatResponse) -> str:
    """The summary an answer gives: its first choice's text. ValueError when it gives none."""
    text = "".join(p.text for p in answer.choices[0].parts if isinstance(p, Text)) if answer.choices else ""
    if not text.strip():
        raise ValueError("the summarizer answered with no text")
    return text.strip()


class Summaries:
    """The summaries made, by the turns they summarize and who summarized them (`prefix_keys`),
    the least recently used let go past `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        summary = self._kept.get(key)
        if summary is not None:
            self._kept.move_to_end(key)
        return summary

    def put(self, key: str, summary: str) -> None:
        if self.size <= 0:
            return
        self._kept[key] = summary
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
