"""A wire format as a plug-in (`WireFormat`): what Tollgate asks of a format wherever a call speaks
it, whichever provider serves the call. A classification names its call's format
(`Classification.wire_format`), and the registry (`formats/registry.py`) hands over the format by
that name: the usage of its answers, whole and streamed; Tollgate's refusals in its error shape; the
turns of a conversation in its body (`rollup:`); the caller's headers a translation carries over;
and, for a chat format, its reading and writing in the common model (`chat.ChatFormat`).

Plain Python, knowing nothing of mitmproxy nor of any provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tollgate.formats.bodies.attachments import Attachments, TextRuns
from tollgate.formats.chat import ChatFormat
from tollgate.formats.refusals import Refusal
from tollgate.formats.request_facts import Classification
from tollgate.formats.turns import Turns
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader

# An answer's headers (lower-case names), as the usage readers read them.
Headers = Mapping[str, str]


def no_usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    return Usage()


def read_whole(classification: Classification, headers: Headers) -> UsageReader | None:
    return None


def no_conversation(classification: Classification) -> str | None:
    return None


def conversation_at(endpoints: frozenset[str], chat_format: str) -> Callable[[Classification], str | None]:
    """A format whose calls at `endpoints` hold a conversation in `chat_format`'s body (`rollup:`)."""

    def conversation(classification: Classification) -> str | None:
        return chat_format if classification.endpoint in endpoints else None

    return conversation


def as_reported(usage: Usage) -> Usage:
    return usage


def no_attachments(data: dict[str, Any]) -> Attachments:
    return Attachments()


def no_text_runs(data: dict[str, Any]) -> TextRuns:
    return []


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One wire format, whole. Only `name` is required: a format that is only a route's target (a
    body written for a provider, read back by its provider's own format) leaves the rest out."""

    name: str
    usage: Callable[[Classification, Headers, bytes | None], Usage] = no_usage
    """A whole answer's usage, from its headers and body (None: none read)."""
    stream_reader: Callable[[Classification, Headers], UsageReader | None] = read_whole
    """What reads an answer's usage as it streams by, by its headers; None: the answer is read
    whole (`usage`)."""
    refusal: Callable[[str, str], Refusal] | None = None
    """Tollgate's refusal (its reason and message) in this format's error shape; None where no
    provider answers in it."""
    chat: ChatFormat | None = None
    """Its chat calls read into the common model and written out of it, for a route between formats."""
    turns: Turns | None = None
    """Where its chat bodies keep a conversation, which `rollup:` cuts."""
    conversation: Callable[[Classification], str | None] = no_conversation
    """The chat format whose turns a call in this format holds (for `rollup:`), or None."""
    bearer_key: bool = False
    """Its calls carry an API key as `Authorization: Bearer` (OpenAI's API), where Tollgate puts
    the upstream's too, on whichever provider's endpoint."""
    caller_headers: tuple[bytes, ...] = ()
    """The caller's request headers (lower case) that carry part of a call in this format (Anthropic's
    betas): a translation hands them to the target's writer."""
    ask_for_usage: Callable[[Classification, dict[str, Any] | None], bool] | None = None
    """Asks a streamed answer for the usage its caller did not ask for, changing the body; whether it
    did (`audit.stream_usage: inject`). None: the format's streams report it unasked."""
    reasoning_beside: frozenset[str] = frozenset()
    """The endpoints whose answers may report reasoning beside the output they count (the reasoning
    tokens of OpenAI's chat completions, which an API may leave out of `completion_tokens`): a
    provider that bills it as output too counts it so (`with_reasoning`)."""
    with_reasoning: Callable[[Usage], Usage] = as_reported
    """An answer's usage with the reasoning reported beside its output counted as output."""
    attachments: Callable[[dict[str, Any]], Attachments] = no_attachments
    """What a request body's JSON carries besides its text: documents inline and what Tollgate
    cannot read (`formats/bodies/attachments.py`)."""
    text_runs: Callable[[dict[str, Any]], TextRuns] = no_text_runs
    """The runs of adjacent text parts of one message in a request body's JSON, which a model reads
    joined (`formats/bodies/attachments.py`)."""
    attachment_markers: tuple[bytes, ...] = ()
    """What a body must hold for `attachments` to find anything (keys and types as JSON writes
    them): a body without any is not walked."""
