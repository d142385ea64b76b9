"""The usage Tollgate asked a chat stream for (`audit.stream_usage: inject`), hidden from a client
that did not ask: with `stream_options.include_usage`, OpenAI adds `"usage":null` to every chunk
and one chunk more, with no choices and the usage. Without it, chunks have no `usage` member at
all. The client gets each chunk as it would have come without the option: the member taken out
where it stands, every other byte as it came, and the usage-only chunk dropped."""

from __future__ import annotations

import re

from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import SSEEventFilter, parse_sse_block

USAGE = b'"usage"'  # in every chunk of a stream asked for usage; in none of one that was not
# A usage member that is null, and the delimiter after it. Within a JSON string every `"` is
# escaped, so the key's bytes after a `,` or a `{` can only be a member's name.
_NULL_USAGE = re.compile(rb'"usage"[ \t]*:[ \t]*null[ \t]*([,}])')
_COMPACT = b',"usage":null'  # as OpenAI writes it: never the first member, no spaces
_LAST = _COMPACT + b"}\n\n"  # the last member: the chunk's object ends after it
_OBFUSCATION = b',"obfuscation":"'  # what OpenAI adds last to each chunk (a string of random letters)
_BEFORE_OBFUSCATION = _COMPACT + _OBFUSCATION
_BLANK = b" \t"
_COMMA, _OPEN = ord(","), ord("{")


def without_asked_usage(event: bytes) -> bytes:
    """The event as the stream would have carried it had usage not been asked for: each
    `"usage":null` member taken out, or nothing for the usage-only chunk."""
    if event.endswith(_LAST):  # OpenAI's: the chunk's last member (the object's end follows it)
        return event[: -len(_LAST)] + b"}\n\n"
    at = event.find(USAGE)
    while at >= 0:
        m = _NULL_USAGE.match(event, at)
        if m is None:
            if is_usage_only_chunk(event):
                return b""
            at = event.find(USAGE, at + len(USAGE))
            continue
        start = at
        while start and event[start - 1] in _BLANK:
            start -= 1
        before = event[start - 1] if start else -1
        if before == _COMMA:  # `…,"usage":null}` or `…,"usage":null,…`: the comma before it goes too
            event = event[: start - 1] + event[m.start(1) :]
            at = event.find(USAGE, start - 1)
        elif before == _OPEN:  # the first member: the comma after it goes too, if one follows
            event = event[:at] + event[m.end() if m[1] == b"," else m.start(1) :]
            at = event.find(USAGE, at)
        else:
            at = event.find(USAGE, m.end())
    return event


def without_asked_usage_all(events: bytes) -> bytes | None:
    """`without_asked_usage` over complete events (LF-only lines) at once, where each is a chunk
    as OpenAI writes it: its usage the last member, or the one before its obfuscation; else None."""
    if events.find(b"\n") == len(events) - 2:  # one chunk (a stream's piece, most often): one memchr
        return without_asked_usage(events)
    lines = events.count(b"\n")  # each chunk one line and a blank one: two LFs (a count, not a search)
    if events.count(_LAST) * 2 == lines:
        return events.replace(_LAST, b"}\n\n")
    if events.count(_BEFORE_OBFUSCATION) * 2 == lines and events.endswith(b'"}\n\n'):
        return events.replace(_BEFORE_OBFUSCATION, _OBFUSCATION)
    return None


def is_usage_only_chunk(event: bytes) -> bool:
    """The chunk `include_usage` adds: no choices, only usage."""
    if USAGE not in event or b'"choices"' not in event:
        return False
    parsed = parse_sse_block(event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip(b"\n"))
    data = parse_json(parsed.data.encode()) if parsed else None
    return data is not None and data.get("choices") == [] and isinstance(data.get("usage"), dict)


def asked_usage_hidden() -> SSEEventFilter:
    """The rewrite of a chat stream asked for usage its client did not ask for."""
    return SSEEventFilter(without_asked_usage, needle=USAGE, edit_all=without_asked_usage_all)
