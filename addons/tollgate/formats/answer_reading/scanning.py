"""What an answer format's guard is handed to read text with, and what it gives back. The scanning
itself (the detectors, the engine, what is held) is the guardrails' (`governance/guardrails/
answer.py`); a format says only which strings of an answer are text, where they are, and how they
are written back. So the formats know the scanners by these protocols alone.

One rule for text in every format: a string is read as it is. Its characters go to the scanner
as UTF-8 with `surrogatepass`, so a lone UTF-16 surrogate (which JSON may escape) is scanned and
goes on as it came: never an exception, never dropped."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from weakref import WeakKeyDictionary

# What a value redacted is replaced with, its kind named.
PLACEHOLDER = "[REDACTED:{kind}]"
# A piece of an answer the answer guardrails read (a stream's read, an MCP result, a WebSocket
# message) this large or larger is read in a worker thread: its reading (about 0.3 ms for 32 KiB)
# is then more than the hop to the thread and back costs (docs/guardrails.md). But for a read of
# chat events whose template passes them (`chat_template.TemplatePass.light`), the first smaller.
READ_APART_BYTES = 32 * 1024
# The media type of a JSON answer.
JSON_TYPE = "application/json"


class Release(Protocol):
    """What goes on now (`text`), and the kind of a value to deny where the text stops (`denied`)."""

    @property
    def text(self) -> bytes: ...

    @property
    def denied(self) -> str | None: ...


class Scanner(Protocol):
    """One channel of one answer, read as it comes: `feed` each piece, then `flush`."""

    counts: Counter[str]

    @property
    def held(self) -> int: ...

    def copy(self) -> Scanner: ...

    def feed(self, piece: bytes) -> Release: ...

    def flush(self) -> Release: ...

    def read_whole(self, text: bytes) -> Release: ...


class MatchEngine(Protocol):
    def scan(self, body: bytes, is_json: bool = True) -> tuple[Any, Iterable[tuple[str, int, int]]]: ...


class Scanners(Protocol):
    """The detectors compiled for answers, as a format's guard is handed them: a scanner per
    channel, what each kind does (`deny`, `redact`, `audit`), whether anything is ever held."""

    actions: dict[str, str]
    holds: bool

    @property
    def engine(self) -> MatchEngine: ...

    def scanner(self, is_json: bool = False) -> Scanner: ...


class AnswerGuard(Protocol):
    """A streamed answer, read and rewritten: `feed` each piece as it comes, `flush` at its end.
    `denied`: the kind of a value that stopped it (the caller then closes the upstream);
    `counts`: what was found so far, kind → count."""

    denied: str | None

    @property
    def counts(self) -> dict[str, int]: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


# A whole answer read: the body as it goes on (redacted, or as it came where nothing is), the kind
# of a value to deny (the answer is then refused), and the counts.
# What a stream ends with, or a whole answer is refused for, where its text cannot be read.
UNREAD = "unread"


class Unpaired(ValueError):
    """A JSON string holds a UTF-16 surrogate not paired (`\\ud800` alone): no text, it can be
    neither read nor written as UTF-8. Its event is unread."""


WholeGuard = Callable[[Any, bytes], tuple[bytes, str | None, dict[str, int]]]


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """One format's readers: `stream` makes a streamed answer's guard, `whole` reads a JSON
    answer, `denied_end(kind)` is what a stream ends with at a value to deny (or `unread`).
    `stream_types`: the media types of its streamed answers; `application/json` among them (a
    streamed JSON array, as Gemini's) is a stream only where the call asked for one. `saved`:
    whether a saved answer is in this format, by its first message (`first_message`; `tollgate
    scan --answer` without `--format`). `denied_inside`: a value to deny replaces the message it
    is in (MCP's JSON-RPC error), the answer going on. `array_end(kind, opened)`: what a stream
    written as one JSON array (Gemini's without alt=sse) ends with where it cannot be read, its
    error item and the array closed (`opened`: its `[` went already); None: no such stream."""

    stream: Callable[[Any], AnswerGuard]
    whole: WholeGuard
    denied_end: Callable[[str], bytes]
    stream_types: frozenset[str] = frozenset(("text/event-stream",))
    saved: Callable[[Any], bool] | None = None
    denied_inside: bool = False
    array_end: Callable[[str, bool], bytes] | None = None

    def read_whole(self, compiled: Any, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
        """A JSON answer read whole (`whole`); one whose text cannot be read is `UNREAD`, its body
        as it came, in every format alike."""
        try:
            return self.whole(compiled, body)
        except Unpaired:
            return body, UNREAD, {}

    def streams(self, content_type: str, asked: bool = False) -> bool:
        """Whether an answer of this `Content-Type` is streamed (else read whole); `asked`: whether
        the call asked for a stream."""
        media = content_type.split(";", maxsplit=1)[0].strip().lower()
        return media in self.stream_types and (asked or media != JSON_TYPE)


@dataclass(frozen=True, slots=True)
class Scanned:
    """A whole string read: as it goes on, the kind of a value to deny, what was found."""

    text: str
    denied: str | None
    counts: Counter[str]


def scan_whole(compiled: Scanners, value: str, is_json: bool = False) -> Scanned:
    """One string read whole: fed, flushed unless a value to deny stopped it, joined. A string
    that is not text (a lone surrogate, which JSON may escape and Python's reader keeps) raises
    `Unpaired`, in every format alike: its answer is refused unread."""
    try:
        encoded = value.encode()
    except UnicodeEncodeError:
        raise Unpaired("a string with a surrogate not paired") from None
    scanner = compiled.scanner(is_json)
    first = scanner.feed(encoded)
    if first.denied is not None:
        return Scanned(first.text.decode(), first.denied, scanner.counts)
    rest = scanner.flush()
    return Scanned((first.text + rest.text).decode(), rest.denied, scanner.counts)


def whole_object(body: bytes) -> dict[str, Any] | None:
    """A whole answer's JSON object; None where it is no JSON, or JSON but no object."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def counter_copy(counts: Counter[str]) -> Counter[str]:
    """A copy of counts, made in C (`Counter.copy` adds them one by one in Python)."""
    copied: Counter[str] = Counter.__new__(Counter)
    dict.update(copied, counts)
    return copied


_SIGNED: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def signed_detectors[S: Scanners](compiled: S) -> S:
    """The detectors as signed reasoning reads them: a value to redact there is denied (changed,
    the reasoning's signature would no longer hold)."""
    found = _SIGNED.get(compiled)
    if found is None:
        found = copy.copy(compiled)
        found.actions = {k: "deny" if a == "redact" else a for k, a in compiled.actions.items()}
        _SIGNED[compiled] = found
    return found


def arguments_detectors[S: Scanners](compiled: S) -> S:
    """The detectors as a tool call's arguments given as an object are read: as its streamed JSON
    text is, without what rewrites only the text an answer shows (`agents.links`, its
    `arguments`)."""
    found = getattr(compiled, "arguments", None)
    return found if found is not None else compiled
