"""streamGenerateContent's stream, read: as server-sent events (alt=sse) or as one JSON array
written element by element (no alt=sse), each element a GenerateContentResponse. Two readers: the
fast usage tail the audit counts a stream by (`GenerateStreamReader`, `GenerateArrayReader`: they
keep the stream's tail and parse only its last elements), and the full event reader a translation
reads every chunk with (`GeminiStreamReader`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from tollgate.formats import chat, fields, framing
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import (
    JSONArrayFramer,
    LeadingBom,
    SSEFramer,
    StreamTail,
    array_elements_backward,
    array_separator,
    parse_sse_block,
)
from tollgate.formats.gemini_generate.answer import (
    call_id_prefix,
    candidate_index,
    chat_usage,
    created_seconds,
    finish_of,
    usage_from_object,
)
from tollgate.formats.gemini_generate.errors import error_of
from tollgate.formats.gemini_generate.fields import NAME
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import SSEReader, UsageReader

# ---------------------------------------------------------------------------------------------
# The usage tail

_COLON = re.compile(rb"\s*:")


def has_key(element: bytes, key: bytes) -> bool:
    """Whether `element` has the JSON key `key` (quoted), found from its end: Gemini writes
    finishReason and usageMetadata after the text, which a search from the start reads whole."""
    end = len(element)
    while (i := element.rfind(key, 0, end)) >= 0:
        if _COLON.match(element, i + len(key)):
            return True
        end = i
    return False


def usage_from_frames(
    usage: bytes | None, finish: bytes | None, parse: Callable[[bytes | None], dict[str, Any] | None]
) -> Usage:
    """The usage of the last element that reports one, the finish reason of the last that does
    (parsed once where they are the same element, as a stream's last one usually is)."""
    usage_data = parse(usage) or {}
    result = usage_from_object(usage_data)
    finish_data = usage_data if finish is usage else parse(finish) or {}
    result.finish_reason = usage_from_object(finish_data).finish_reason or result.finish_reason
    return result


class GenerateStreamReader(SSEReader):
    """streamGenerateContent as server-sent events (alt=sse): each event a GenerateContentResponse;
    the last usageMetadata counts, and the last finishReason (in the last events, which the window
    keeps)."""

    wanted = (b'"usageMetadata"', b'"finishReason"')

    def __init__(self) -> None:
        super().__init__()
        self._usage: bytes | None = None
        self._finish: bytes | None = None

    def keep(self, block: bytes) -> None:
        if self._usage is None and has_key(block, b'"usageMetadata"'):
            self._usage = block
        if self._finish is None and has_key(block, b'"finishReason"'):
            self._finish = block

    def has_all(self) -> bool:
        return self._usage is not None and self._finish is not None

    def read(self) -> Usage:
        return usage_from_frames(self._usage, self._finish, self.data)


class GenerateArrayReader(UsageReader):
    """streamGenerateContent as one JSON array written element by element (no alt=sse). As for
    server-sent events, nothing is framed while the stream flows: the reader keeps its tail
    (`StreamTail`, cut where a line starts with a comma, the separator Gemini writes between its
    indented elements; an array written otherwise is kept up to 16 MiB and a window), and frames
    it at the end: a stream kept whole is framed from its start (`JSONArrayFramer`), any other read
    backward from the array's closing `]` (exact whatever was cut off), or, if the stream broke off
    before that `]`, from the separator the tail begins at."""

    WINDOW = 64 * 1024

    def __init__(self) -> None:
        self._tail = StreamTail(self.WINDOW, limit=framing.bounds.MAX_FRAME + self.WINDOW)
        self._line_ended = False  # the stream's last byte so far is a line end

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        separator = array_separator(chunk)
        if separator < 0 and self._line_ended and chunk.startswith(b","):
            separator = 0  # the separator's line end came in the piece before
        self._tail.add(chunk, separator if separator >= 0 else None)
        self._line_ended = chunk.endswith(b"\n")

    def result(self) -> Usage:
        usage = finish = None
        for element in self._elements_newest_first():
            if usage is None and has_key(element, b'"usageMetadata"'):
                usage = element
            if finish is None and has_key(element, b'"finishReason"'):
                finish = element
            if usage is not None and finish is not None:
                break
        return usage_from_frames(usage, finish, parse_json)

    def _elements_newest_first(self) -> Iterable[bytes]:
        """The tail's elements, newest first (read backward lazily where the array ended)."""
        data = self._tail.data()
        if self._tail.cut == 0:
            return reversed(self._framed(JSONArrayFramer(), data))
        if data.rstrip(b" \t\r\n").endswith(b"]"):
            return array_elements_backward(data)
        if self._tail.cut_at_start:  # it broke off: framed from the separator the tail begins at
            return reversed(self._framed(JSONArrayFramer.between_elements(), data))
        self.error = "the JSON array broke off, and its tail does not begin between elements"
        return []

    def _framed(self, framer: JSONArrayFramer, data: bytes) -> list[bytes]:
        elements = framer.feed(data)
        self.error = framer.error
        return elements


# ---------------------------------------------------------------------------------------------
# Every event, for a translation


class GeminiStreamReader:
    """streamGenerateContent as server-sent events (alt=sse) or as a JSON array, told apart by the
    first byte that is not white space: each element is a GenerateContentResponse chunk."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._framer: SSEFramer | JSONArrayFramer | None = None
        self._bom = LeadingBom()
        self._started = False
        self._prefix = ""
        self._calls: dict[int, int] = {}  # tool calls so far, by candidate

    def feed(self, chunk: bytes) -> list[chat.StreamEvent]:
        if self.error is not None:
            return []
        if self._framer is None:
            chunk = self._bom.feed(chunk).lstrip()  # a byte order mark before the first item: read past
            if not chunk:
                return []
            self._framer = JSONArrayFramer() if chunk.startswith(b"[") else SSEFramer()
        return self._frames(self._framer.feed(chunk))

    def end(self) -> list[chat.StreamEvent]:
        if self.error is not None or not isinstance(self._framer, SSEFramer):
            return []
        return self._frames(self._framer.feed(b"\n\n"))  # a last event with no blank line after it

    def _frames(self, frames: list[bytes]) -> list[chat.StreamEvent]:
        events: list[chat.StreamEvent] = []
        for frame in frames:
            if isinstance(self._framer, SSEFramer):
                event = parse_sse_block(frame)
                if event is None:
                    continue
                data = parse_json(event.data.encode())
            else:
                data = parse_json(frame)
            if data is None:
                self.error = "a stream element is not a JSON object"
                return events
            events.extend(self._chunk(data))
        if self._framer is not None and self._framer.error is not None:
            self.error = self._framer.error
        return events

    def _chunk(self, data: dict[str, Any]) -> list[chat.StreamEvent]:
        if "error" in data:
            return [chat.Failed(error_of(data["error"], None))]
        events: list[chat.StreamEvent] = []
        if not self._started:
            self._started = True
            self._prefix = call_id_prefix(data.get("responseId"))
            events.append(
                chat.Started(
                    fields.str_or_none(data.get("responseId")),
                    fields.str_or_none(data.get("modelVersion")),
                    created_seconds(data.get("createTime")),
                )
            )
        candidates = data.get("candidates")
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
            if isinstance(candidate, dict):
                events.extend(self._candidate(candidate, candidate_index(candidate, position)))
        feedback = data.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            events.append(chat.Finished("content_filter", 0))
        if isinstance(data.get("usageMetadata"), dict):
            events.append(chat.UsageReported(chat_usage(data["usageMetadata"])))
        return events

    def _candidate(self, candidate: dict[str, Any], choice: int) -> list[chat.StreamEvent]:
        events: list[chat.StreamEvent] = []
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict):
                events.extend(self._part(part, choice))
        finish = finish_of(candidate.get("finishReason"), self._calls.get(choice, 0) > 0)
        if finish is not None:
            events.append(chat.Finished(finish, choice))
        return events

    def _part(self, part: dict[str, Any], choice: int) -> list[chat.StreamEvent]:
        signature = fields.str_or_none(part.get("thoughtSignature"))
        origin = NAME if signature is not None else None
        text = part.get("text")
        if part.get("thought") is True and isinstance(text, str):
            return [chat.ThinkingDelta(text, signature, choice=choice, origin=origin)]
        events: list[chat.StreamEvent] = []
        if signature is not None:
            events.append(chat.ThinkingDelta("", signature, choice=choice, origin=origin))
        call = part.get("functionCall")
        if isinstance(text, str) and text:
            events.append(chat.TextDelta(text, choice))
        elif isinstance(call, dict) and isinstance(call.get("name"), str):
            index = self._calls.get(choice, 0)
            self._calls[choice] = index + 1
            args = call.get("args")
            call_id = fields.str_or_none(call.get("id")) or f"call_{self._prefix}_{choice}_{index}"
            events.append(chat.ToolCallStarted(index, call_id, call["name"], choice))
            events.append(chat.ToolCallDelta(index, chat.json_text(args if isinstance(args, dict) else {}), choice))
        return events
