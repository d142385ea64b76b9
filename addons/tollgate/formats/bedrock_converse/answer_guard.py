"""Bedrock's answers read by the answer guardrails (`governance/guardrails/answer.py`):
ConverseStream's and InvokeModelWithResponseStream's AWS event stream frames, Converse's JSON, and
InvokeModel's JSON in each model family's own body (Titan, Llama, Mistral, Nova, Cohere, AI21, the
OpenAI format of OpenAI's open-weight models…). Claude's answers are read by Claude's own format:
where the model id names Claude (`answer_formats`), and where it names no family (an application
inference profile's), as the answer itself shows (`bedrock_invoke/answer_guard.py`).

Every format is read by where its text sits, not by which family wrote it (`leaves`): the strings
of the text fields (`text`, `outputText`, `generation`, `content`…; a Bedrock guardrail's trace of
the answer too) and of the tool-call arguments (`input`, `arguments`, `parameters`, `json`,
`partial_json`: JSON text, or an object read as the JSON it is), one channel per path, told apart
by the `index` or `contentBlockIndex` beside them. A frame with nothing held goes on byte for byte;
a frame whose text is held waits whole with those after it; a frame is written anew, its CRCs
recomputed, only where a value is replaced. Reasoning (`reasoningContent`, Claude's `thinking`) may
be signed, and a stream tells so only at its block's end: a value in streamed reasoning, or in a
signed one of a JSON answer, is denied. At a value to deny, what is known goes on, then an
exception frame boto3 raises on while iterating, and nothing more."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tollgate.formats.answer_reading.channels import ChannelState
from tollgate.formats.answer_reading.events import EventGuard
from tollgate.formats.answer_reading.logprob_tokens import chat_spells, completions_spells
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, scan_whole, signed_detectors
from tollgate.formats.answer_reading.string_places import (
    NOT_TEXT,
    Place,
    answer_json,
    carries_text,
    read_places,
    strings_in,
)
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.bedrock_converse.fields import EVENT_STREAM
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing import EventStreamFrame, EventStreamFramer, event_frame

# The fields whose strings are text (the answer's, the reasoning's), and those whose strings (or
# objects) are a tool call's JSON.
_ANSWER_TEXT = ("text", "outputText", "generation", "completion", "content", "message", "refusal", "match")
TEXT_KEYS = frozenset((*_ANSWER_TEXT, "reasoning_content", "reasoning", "thinking"))
# Lists of text: a Bedrock guardrail's trace of what the model wrote (its matches are `match`).
TEXT_LISTS = frozenset(("modelOutput",))
JSON_KEYS = frozenset(("input", "arguments", "parameters", "json", "partial_json"))
# Not read: counts, the reasoning's signature and its encrypted form, Bedrock's padding.
SKIPPED_KEYS = frozenset(("amazon-bedrock-invocationMetrics", "usage", "metrics", "signature", "redactedContent", "p"))
INDEX_KEYS = ("contentBlockIndex", "index")
# Not read whole, at the places Bedrock defines them (docs/guardrails.md, "Opaque places"): at an
# event's or an answer's top, its counts, padding and encrypted data; in reasoning, its signature
# and encrypted form; anywhere, what `leaves` reads with its text (log probabilities, Cohere's token
# likelihoods). Every other string is read, ids (a tool use's `toolUseId`) and kinds too.
TOP_SKIPPED = frozenset(("amazon-bedrock-invocationMetrics", "usage", "metrics", "p")) | NOT_TEXT
REASONING_SKIPPED = frozenset(("signature", "redactedContent"))
REASONING_HOLDERS = frozenset(("reasoningContent", "reasoningText"))
WITH_TEXT = frozenset(("logprobs", "token_likelihoods"))
# Log probabilities: their tokens are the text as it came (left out where it is written anew), read
# with it where they spell it exactly; any others stop the answer as unreadable.
LOGPROBS = "logprobs"
# Cohere Command's token likelihoods: its text again, token by token (left out where it is written
# anew, as log probabilities are).
LIKELIHOODS = "token_likelihoods"
# Reasoning, which may be signed: Converse's and Nova's; a family's `thinking` (Claude's own is read
# by Claude's format, `bedrock_invoke/answer_guard.py`).
REASONING = frozenset(("reasoningContent", "thinking"))
# The exception a denied stream ends with: one of ConverseStream's and InvokeModelWithResponseStream's
# own, which botocore raises as `EventStreamError` with its message (one it does not know, such as
# accessDeniedException, it raises with neither name nor message).
DENIED_EXCEPTION = "validationException"
DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."
EVENT = {":content-type": "application/json", ":message-type": "event"}
# ConverseStream's events, and the members of a block's delta: another (newer than this reader)
# that carries text is not let through unread.
CONVERSE_EVENTS = frozenset(
    ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata")
)
CONVERSE_DELTAS = frozenset(("text", "toolUse", "toolResult", "reasoningContent", "citation", "image"))
# The members of a content block of Converse's whole answer (Nova's InvokeModel answer too).
CONVERSE_BLOCKS = frozenset(
    ("text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent", "cachePoint",
     "reasoningContent", "citationsContent", "searchResult")
)  # fmt: skip
_HEADERS_KEPT = 64
# The headers of an event stream's frame that the format defines, read by their value where it is
# one of theirs (`header_places`).
KNOWN_HEADERS: dict[str, frozenset[str]] = {
    ":message-type": frozenset(("event", "exception", "error")),
    ":content-type": frozenset(("application/json",)),
}

Part = str | int | tuple[str, int]  # a key, a list's item (its place, or "[]": named by its index), an index
Path = tuple[Part, ...]


def denied_frame(kind: str) -> bytes:
    """The exception frame a denied stream ends with."""
    headers = {":exception-type": DENIED_EXCEPTION, ":content-type": "application/json", ":message-type": "exception"}
    return event_frame(headers, encode_json({"message": DENIED_MESSAGE.format(kind=kind)}))


@dataclass(frozen=True, slots=True)
class Leaf:
    """A string (or a tool call's JSON object) read: where it is, and how it is read."""

    path: Path
    holder: Any  # the object or list it is in
    key: str | int
    is_json: bool
    reasoning: bool


def leaves(value: Any, path: Path = (), reasoning: bool = False) -> Iterator[Leaf]:
    """The text and tool-call arguments in a JSON value, in order."""
    if isinstance(value, dict):
        for marker in INDEX_KEYS:
            index = value.get(marker)
            if type(index) is int:
                path = (*path, (marker, index))
                break
        for key, item in value.items():
            if key in SKIPPED_KEYS:
                continue
            if key == LOGPROBS and item:
                if not logprobs_spelled(value, item):
                    raise ValueError("log probabilities whose tokens spell other text than their own")
                continue  # its tokens are its holder's text, read there
            inner = reasoning or key in REASONING
            if key in JSON_KEYS and (isinstance(item, (dict, list)) or (isinstance(item, str) and item)):
                yield Leaf((*path, key), value, key, True, inner)
            elif key in TEXT_KEYS and isinstance(item, str) and item:
                yield Leaf((*path, key), value, key, False, inner)
            elif isinstance(item, (dict, list)):
                yield from leaves(item, (*path, key), inner)
    elif isinstance(value, list):
        texts = bool(path) and path[-1] in TEXT_LISTS
        for place, item in enumerate(value):
            if texts and isinstance(item, str) and item:
                yield Leaf((*path, place), value, place, False, reasoning)
                continue
            named = isinstance(item, dict) and any(type(item.get(m)) is int for m in INDEX_KEYS)
            yield from leaves(item, (*path, "[]" if named else place), reasoning)


def logprobs_spelled(holder: dict[str, Any], logprobs: Any) -> bool:
    """Whether log probabilities spell exactly their holder's text (`logprob_tokens.py`): an OpenAI
    chat choice's (its delta's or message's) or a Completions choice's `text`. Those of any other
    family cannot be read: they do not."""
    if "delta" in holder or "message" in holder:
        return chat_spells(logprobs, holder.get("delta") if "delta" in holder else holder.get("message"))
    if "text" in holder:
        return completions_spells(logprobs, holder.get("text"))
    return False


def rebuilt(path: Path, text: str) -> Any:
    """The smallest JSON value that holds `text` where `path` says (a frame for held text alone)."""
    node: Any = text
    for part in reversed(path):
        if isinstance(part, tuple):
            node[part[0]] = part[1]
        elif isinstance(part, int) or part == "[]":
            node = [node]
        else:
            node = {part: node}
    return node


def read_whole(compiled: Scanners, leaf: Leaf, signed: bool) -> tuple[Any, str | None, Counter[str]]:
    """One leaf read whole: its value as it goes on, the kind of a value to deny, the counts."""
    value = leaf.holder[leaf.key]
    text = value if isinstance(value, str) else encode_json(value).decode()
    read = scan_whole(signed_detectors(compiled) if signed else compiled, text, leaf.is_json)
    if read.denied is not None or read.text == text:
        return value, read.denied, read.counts
    return (read.text if isinstance(value, str) else json.loads(read.text)), None, read.counts


def rest_of(obj: Any, found: list[Leaf]) -> list[Place]:
    """Every string of an answer's object that its leaves do not hold (a tool's name, a stop
    reason, a member not known), keys too, each to be read whole."""
    taken = {(id(leaf.holder), leaf.key) for leaf in found}
    if not isinstance(obj, dict):
        return list(strings_in([obj], 0, WITH_TEXT, taken))
    places: list[Place] = []
    for key in obj:
        if key in TOP_SKIPPED or key in WITH_TEXT:
            continue
        places.append((obj, key, True))
        places += _rest_at(obj, key, taken)
    return places


def _rest_at(holder: Any, key: Any, taken: set[tuple[int, Any]]) -> Iterator[Place]:
    """The strings of `holder[key]` as `rest_of` reads them, its objects' keys too."""
    stack: list[tuple[Any, Any, Any]] = [(holder, key, key)]
    while stack:
        at, name, member = stack.pop()
        if (id(at), name) in taken:
            continue
        value = at[name]
        if type(value) is str:
            if value:
                yield at, name, False
        elif type(value) is dict:
            skipped = WITH_TEXT | REASONING_SKIPPED if member in REASONING_HOLDERS else WITH_TEXT
            for k, v in value.items():
                if k not in skipped:
                    yield value, k, True
                    if type(v) in (str, dict, list):
                        stack.append((value, k, k))
        elif type(value) is list:
            stack.extend((value, i, member) for i, v in enumerate(value) if type(v) in (str, dict, list))


def guard_bedrock_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole answer read (Converse's, or InvokeModel's in its model family's own body): the body
    as it goes on (redacted, or as it came where nothing is), the kind of a value to deny, and the
    counts. All of it is read: Converse's `output`, and its guardrail `trace` and
    `additionalModelResponseFields` too."""
    obj = parse_json(body)
    if obj is None:
        return body, None, {}
    if _unknown_blocks(obj):
        return body, UNREAD, {}
    counts: Counter[str] = Counter()
    changed = False
    try:
        read = list(leaves(obj))
    except ValueError:
        return body, UNREAD, {}  # tokens that spell other text than their own
    changed, denied = read_places(compiled, rest_of(obj, read), counts, set())
    if denied is not None:
        return body, denied, dict(counts)
    for leaf in read:
        signed = leaf.reasoning and "signature" in leaf.holder
        value, denied, found = read_whole(compiled, leaf, signed)
        counts.update(found)
        if denied is not None:
            return body, denied, dict(counts)
        if value is not leaf.holder[leaf.key]:
            leaf.holder[leaf.key] = value
            changed = True
    if not changed:
        return body, None, dict(counts)
    without_logprobs(obj)
    return encode_json(obj), None, dict(counts)


def _unknown_blocks(obj: dict[str, Any]) -> bool:
    """Whether a Converse answer's content holds a block member newer than this reader that
    carries text (its text would go on unread)."""
    output = obj.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and carries_text(
            [v for k, v in block.items() if k not in CONVERSE_BLOCKS], SKIPPED_KEYS
        ):
            return True
    return False


def without_logprobs(value: Any) -> None:
    """Log probabilities (a family's `logprobs`, OpenAI's on Bedrock) set to null in a body written
    anew: their tokens are the text as it came, value and all."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in (LOGPROBS, LIKELIHOODS) and item:
                value[key] = None
            elif isinstance(item, (dict, list)):
                without_logprobs(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                without_logprobs(item)


def header_places(headers: dict[str, object]) -> list[Place]:
    """The strings of a frame's headers, each a place read as a key is (a header is not written
    anew: a value in one is denied): every name and value but the format's own names and the
    values they define. A frame's event type is read as any value (it names its event)."""
    places: list[Place] = []
    for name, value in headers.items():
        if name not in KNOWN_HEADERS and name not in (":event-type", ":exception-type"):
            places.append((None, name, True))
        if isinstance(value, str) and value and value not in KNOWN_HEADERS.get(name, ()):
            places.append((None, value, True))
    return places


@dataclass(slots=True)
class Framed(Pending):
    """A frame not yet gone on: its bytes as they came, the frame, its object, its text."""

    frame: EventStreamFrame | None = None


class FramesAnswerGuard(EventGuard):
    """A streamed Bedrock answer's frames, read and rewritten (`feed` each piece, `flush` at its
    end). `denied`: the kind that stopped it (the caller then closes the upstream). What cannot be
    read (a broken frame, a stream ended inside one, a payload that is no JSON object, text in an
    event this reader does not know) stops the answer before it as `unread`: none of it goes on,
    then the exception frame a denied answer ends with."""

    def __init__(self, compiled: Scanners) -> None:
        super().__init__(compiled)
        # Headers read once for each way they are written: a stream's frames repeat a few.
        self._framer = EventStreamFramer(read_headers=False)
        self._headers: dict[bytes, dict[str, object]] = {}
        self._headers_read: set[bytes] = set()  # headers whose strings were read, found clean

    # What a format says of its frames.

    def read(self, frame: EventStreamFrame) -> Any:
        """The JSON value whose text a frame carries (None: none); raises ValueError where it
        cannot be read."""
        if not frame.payload:
            return None
        obj = answer_json(frame.payload)
        if obj is None:
            raise ValueError("an event that is no JSON object")
        return obj

    def written(self, pending: Framed) -> bytes:
        """A frame with its object changed."""
        assert pending.frame is not None
        return event_frame(pending.frame.raw_headers, encode_json(pending.obj))

    def ended(self, frame: EventStreamFrame, obj: Any) -> Path | None:
        """The channels whose text ends at this frame (those whose path begins so), or None."""
        return None

    def orphan(self, channel: Path, text: str) -> bytes:
        """A frame for text known that no frame waiting carries."""
        event, *rest = channel
        return event_frame({":event-type": str(event), **EVENT}, encode_json(rebuilt(tuple(rest), text)))

    # The stream.

    def _units(self, chunk: bytes) -> list[Any]:
        return self._framer.feed(chunk)

    def _unit(self, unit: Any) -> bytes:
        try:
            frame = self._with_headers(unit)
        except ValueError:
            return self._unread()  # headers that cannot be read: none of it goes on
        if frame.raw_headers not in self._headers_read:
            denied = read_places(self._compiled, header_places(frame.headers), self._spent, self._clean)[1]
            if denied is not None:
                return self._stop_before(None, denied)  # a header holds a value: the frame never goes
            if len(self._headers_read) < _HEADERS_KEPT:
                self._headers_read.add(frame.raw_headers)
        return self._frame(frame)

    def _read_each(self, units: list[Any]) -> bytes:
        out = super()._read_each(units)
        if self._framer.error is not None and self.denied is None and not self._closed:
            out += self._unread()  # a broken frame: nothing from it on goes
        return out

    def _rewritten(self, pending: Pending) -> bytes:
        assert isinstance(pending, Framed)
        without_logprobs(pending.obj)
        return self.written(pending)

    def _orphan(self, channel: Path, text: str) -> bytes:
        return self.orphan(channel, text)

    def _denied_end(self, kind: str) -> bytes:
        return denied_frame(kind)

    def flush(self) -> bytes:
        if self.denied is not None or self._closed:
            return b""
        if self._framer.held:
            return self._unread()  # the stream ended inside a frame: none of it goes on
        return super().flush()

    def _with_headers(self, frame: EventStreamFrame) -> EventStreamFrame:
        headers = self._headers.get(frame.raw_headers)
        if headers is None:
            read = self._framer.with_headers(frame)
            if read is None:
                raise ValueError(self._framer.error)
            headers = read.headers
            if len(self._headers) < _HEADERS_KEPT:
                self._headers[frame.raw_headers] = headers
        return EventStreamFrame(headers, frame.payload, frame.raw_headers)

    def _frame(self, frame: EventStreamFrame) -> bytes:
        pending = Framed(event_frame(frame.raw_headers, frame.payload), frame=frame)
        if frame.headers.get(":message-type") != "event":
            # The upstream's exception ends the stream: what is held is read as its end, then it.
            self._closed = True
            self._ended(())
            return self._cut() if self.denied is not None else self._drained() + self._orphans() + pending.whole
        self._pending.append(pending)
        try:
            obj = self.read(frame)
            if obj is None:
                return self._drained()
            event = frame.headers.get(":event-type")
            found = list(leaves(obj, (event if isinstance(event, str) else "",)))
        except ValueError:  # no JSON object, text not read, tokens that spell other text
            return self._unread(pending)  # none of it goes on, nor anything after it
        pending.obj = obj
        denied = self._read_places(pending, obj, rest_of(obj, found))
        if denied is not None:
            return self._stop_before(pending, denied)  # it carries the value whole: it never goes
        for i, leaf in enumerate(found):
            self._leaf(pending, leaf)
            if self.denied is not None:
                for after in found[i + 1 :]:  # not read: none of it goes on
                    after.holder[after.key] = "" if isinstance(after.holder[after.key], str) else {}
                pending.changed = True
                return self._cut()
        ends = self.ended(frame, obj)
        if ends is None:
            return self._drained()
        self._pending.pop()
        self._ended(ends)
        if self.denied is not None:
            return self._cut()
        out = self._drained() + self._orphans()
        self._pending.append(pending)
        return out + self._drained()

    def _leaf(self, pending: Pending, leaf: Leaf) -> None:
        value = leaf.holder[leaf.key]
        if not isinstance(value, str):
            # A tool call's input as a JSON object: read whole where it is.
            value, denied, found = read_whole(self._compiled, leaf, leaf.reasoning)
            self._spent.update(found)
            if denied is not None:
                self.denied = denied
            elif value is not leaf.holder[leaf.key]:
                leaf.holder[leaf.key] = value
                pending.changed = True
            return
        state = self._channels.states.get(leaf.path)
        if state is None:
            state = self._channels.states[leaf.path] = ChannelState(None)
        if state.scanner is None:
            compiled = signed_detectors(self._compiled) if leaf.reasoning else self._compiled
            state.scanner = compiled.scanner(leaf.is_json)
        self._fed(pending, leaf.path, leaf.holder, leaf.key, value)

    def _ended(self, prefix: Path) -> None:
        """The scanners of the channels under `prefix` flushed, now that their text has ended."""
        self._ended_where(lambda channel: channel[: len(prefix)] == prefix)


class ConverseAnswerGuard(FramesAnswerGuard):
    """ConverseStream: each event's payload read; a block's text ends at its `contentBlockStop`,
    all of it at `messageStop`. An event, or a delta's member, newer than this reader that carries
    text cannot be read: it stops the stream."""

    def read(self, frame: EventStreamFrame) -> Any:
        obj = super().read(frame)
        event = frame.headers.get(":event-type")
        if event not in CONVERSE_EVENTS:
            unknown: Any = obj
        else:
            delta = obj.get("delta") if event == "contentBlockDelta" and isinstance(obj, dict) else None
            unknown = [v for k, v in delta.items() if k not in CONVERSE_DELTAS] if isinstance(delta, dict) else None
        if carries_text(unknown, SKIPPED_KEYS):
            raise ValueError("an event whose text is not read")
        return obj

    def ended(self, frame: EventStreamFrame, obj: Any) -> Path | None:
        event = frame.headers.get(":event-type")
        if event == "messageStop":
            return ()
        index = obj.get("contentBlockIndex") if isinstance(obj, dict) else None
        if event == "contentBlockStop" and type(index) is int:
            return ("contentBlockDelta", ("contentBlockIndex", index))
        return None


ANSWER = AnswerFormat(ConverseAnswerGuard, guard_bedrock_json, denied_frame, frozenset((EVENT_STREAM,)))
