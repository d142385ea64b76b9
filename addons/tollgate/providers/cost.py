"""The part of a provider that says what a call costs: the price tables its models are priced in,
the endpoints that are free, and how usage is read from its answers and counted as it bills it.
Plain Python that knows nothing of mitmproxy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import Counted, UsageReader, WholeBodyReader
from tollgate.providers.credentials import Headers

# The response headers every provider's usage is read with: its type and encoding.
RESPONSE_HEADERS = frozenset((b"content-type", b"content-encoding"))


@dataclass(frozen=True, slots=True)
class Cost:
    """What a provider's calls cost, which every provider declares as its `cost`.

    `price_table`: the id of its table in genai-prices' bundled prices (None: the table has none);
    `price_fallbacks`: the tables looked in, in order, for a model its own does not price (a
    vendor that serves other vendors' models: theirs). `free_endpoints`: endpoints no call to which
    is billed (uploading a file; storing it, where billed, is billed apart by the day): under a
    `usd_*` cap they need no price. `reasoning_in_completion`: whether its answers count the
    reasoning they report among their output (`completion_tokens`, as OpenAI's do); else the
    reasoning reported beside them is billed as output too (its format's `reasoning_apart`).
    `response_headers`: the answer headers (lower-case) `usage_reader`, `usage` and the answer
    hooks read."""

    price_table: str | None = None
    price_fallbacks: tuple[str, ...] = ()
    free_endpoints: frozenset[str] = frozenset()
    reasoning_in_completion: bool = True
    response_headers: frozenset[bytes] = RESPONSE_HEADERS

    def priced_model(self, model: str) -> str:
        """The model as its price table names it."""
        return model

    def answer_service_tier(self, headers: Headers) -> str | None:
        """The service tier an answer's headers (`response_headers`) say the call ran at, where its
        body does not say. Default: none."""
        return None

    def answer_speed(self, headers: Headers) -> str | None:
        """The speed an answer's headers (`response_headers`) say the call ran at, where its body
        does not say. Default: none."""
        return None

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        """Usage from a whole, non-streamed answer, read by the call's wire format and counted as
        this provider bills it."""
        read = wire_format(classification.wire_format).usage(classification, headers, body)
        return self.billed_usage(classification, read)

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        """What reads usage from this answer as it streams by (its wire format's reader, or the whole
        answer's `usage`), counted as this provider bills it."""
        reader = wire_format(classification.wire_format).stream_reader(classification, headers)
        if reader is None:
            return WholeBodyReader(partial(self.usage, classification, headers))
        if self._bills_reasoning_apart(classification):
            return Counted(reader, partial(self.billed_usage, classification))
        return reader

    def billed_usage(self, classification: Classification, usage: Usage) -> Usage:
        """`usage` as its format's reader read it (an answer's, a translation's, a roll-up
        summarizer's), counted as this provider bills it: where its answers report reasoning beside
        the output its format counts (`reasoning_in_completion` false), both are output."""
        if self._bills_reasoning_apart(classification):
            return wire_format(classification.wire_format).with_reasoning(usage)
        return usage

    def _bills_reasoning_apart(self, classification: Classification) -> bool:
        if self.reasoning_in_completion:
            return False
        return classification.endpoint in wire_format(classification.wire_format).reasoning_beside


class ModelsPrefixed(Cost):
    """Google's: a resource names its model `models/<id>` (cachedContents, batches), the table `<id>`."""

    __slots__ = ()

    def priced_model(self, model: str) -> str:
        return model.removeprefix("models/")
