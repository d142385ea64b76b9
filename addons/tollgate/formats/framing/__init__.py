"""Incremental framers for the stream formats LLM APIs answer in, one module per framing (server-sent
events, a streamed JSON array, AWS event stream), and the content encodings undone within a bound.
They take the bytes in whatever pieces the network delivers, return whole frames, and never raise:
a corrupt stream sets `error` and stops framing (the bytes themselves are forwarded by the caller
regardless)."""

from tollgate.formats.framing.bom import BOM, LeadingBom
from tollgate.formats.framing.bounds import MAX_FRAME
from tollgate.formats.framing.decoding import DecodedTooLarge, Decompressor, Undecodable, decode_whole
from tollgate.formats.framing.eventstream import (
    MAX_EVENT_HEADERS,
    MAX_EVENT_PAYLOAD,
    PRELUDE_SPAN,
    EventStreamFrame,
    EventStreamFramer,
    event_frame,
    eventstream_first_frame,
    eventstream_frame_at,
    eventstream_frame_length,
    eventstream_frame_start,
    eventstream_prelude_at,
)
from tollgate.formats.framing.json_array import JSONArrayFramer, array_elements_backward, array_separator
from tollgate.formats.framing.sse import (
    SSEEvent,
    SSEEventFilter,
    SSEFramer,
    StreamTail,
    lf_event_end,
    parse_sse_block,
    raw_event_spans,
    split_events,
    sse_event_end,
    sse_event_start,
)

__all__ = [
    "BOM",
    "MAX_EVENT_HEADERS",
    "MAX_EVENT_PAYLOAD",
    "MAX_FRAME",
    "PRELUDE_SPAN",
    "DecodedTooLarge",
    "Decompressor",
    "EventStreamFrame",
    "EventStreamFramer",
    "JSONArrayFramer",
    "LeadingBom",
    "SSEEvent",
    "SSEEventFilter",
    "SSEFramer",
    "StreamTail",
    "Undecodable",
    "array_elements_backward",
    "array_separator",
    "decode_whole",
    "event_frame",
    "eventstream_first_frame",
    "eventstream_frame_at",
    "eventstream_frame_length",
    "eventstream_frame_start",
    "eventstream_prelude_at",
    "lf_event_end",
    "parse_sse_block",
    "raw_event_spans",
    "split_events",
    "sse_event_end",
    "sse_event_start",
]
