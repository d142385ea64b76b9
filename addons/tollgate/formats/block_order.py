"""A stream's events put in the order of a format whose content blocks follow one another (Anthropic
Messages, Bedrock Converse, Gemini's whole function calls): each block's events together.

OpenAI's chat streams may interleave parallel tool calls (deltas of call 0, then 1, then 0 again),
which is legal there; a format of sequential blocks cannot add to a block it has stopped. So a tool
call's block stays open until its arguments are one whole JSON value (or its choice finishes), and
what comes meanwhile for a later block (another call, text, thinking) is held, only that, until the
block before it ends; then it goes on, each block's events together. A stream whose calls come one
after the other is not held at all. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tollgate.formats import chat

_WHITE = " \t\r\n"
# The most text a choice's held blocks may hold (characters): a stream that would hold more, waiting
# for a call whose arguments never end, breaks off instead (streams stay streams).
HELD_AT_MOST = 1 << 20
_NOT_WHITE = re.compile(r"[^ \t\r\n]")
_IN_STRING = re.compile(r'[\\"]')
_STRUCTURE = re.compile(r'["{}\[\]]')


class JsonEnd:
    """Whether a JSON text fed in pieces is whole: one object or array, closed, with nothing but
    white space after it. What begins otherwise, or goes on after its end, is never whole. Only
    the characters that matter are visited (a regex finds them), not each one."""

    __slots__ = ("_depth", "_escaped", "_in_string", "_state")

    _BEGUN, _INSIDE, _WHOLE, _NEVER = range(4)

    def __init__(self) -> None:
        self._state = self._BEGUN
        self._depth = 0
        self._in_string = False
        self._escaped = False  # the piece before ended in a string's backslash

    @property
    def whole(self) -> bool:
        return self._state == self._WHOLE

    def feed(self, text: str) -> None:
        position = 0
        if self._escaped and text:
            self._escaped, position = False, 1  # the character escaped
        while position < len(text) and self._state != self._NEVER:
            if self._state != self._INSIDE:
                position = self._outside(text, position)
            elif self._in_string:
                position = self._string(text, position)
            else:
                position = self._structure(text, position)

    def _outside(self, text: str, position: int) -> int:
        """Before the value or after its end: white space only, or the value's first character."""
        found = _NOT_WHITE.search(text, position)
        if found is None:
            return len(text)
        if self._state == self._BEGUN and found.group() in "{[":
            self._state, self._depth = self._INSIDE, 1
        else:
            self._state = self._NEVER
        return found.end()

    def _string(self, text: str, position: int) -> int:
        found = _IN_STRING.search(text, position)
        if found is None:
            return len(text)
        if found.group() == '"':
            self._in_string = False
            return found.end()
        if found.end() == len(text):  # a backslash last: the next piece's first character is escaped
            self._escaped = True
        return found.end() + 1

    def _structure(self, text: str, position: int) -> int:
        found = _STRUCTURE.search(text, position)
        if found is None:
            return len(text)
        char = found.group()
        if char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        else:
            self._depth -= 1
            if self._depth == 0:
                self._state = self._WHOLE
        return found.end()


@dataclass(slots=True)
class _OpenCall:
    index: int
    arguments: JsonEnd = field(default_factory=JsonEnd)


@dataclass(slots=True)
class _Choice:
    """One choice's blocks: the tool call open and not yet whole, the later blocks held (each its
    events in order), and the calls whose block has ended."""

    open: _OpenCall | None = None
    held: list[list[chat.StreamEvent]] = field(default_factory=list)
    held_calls: dict[int, list[chat.StreamEvent]] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    held_size: int = 0  # the text of the events held

    @property
    def growing(self) -> bool:
        """The open call's arguments may still grow: a later block waits."""
        return self.open is not None and not self.open.arguments.whole

    @property
    def blocked(self) -> bool:
        return bool(self.held) or self.growing

    def end_open(self) -> None:
        if self.open is not None:
            self.ended.add(self.open.index)
            self.open = None


class BlockOrder:
    """Events in, the same events out, each content block's together (see the module): `feed` gives
    what may go on now, `end` what was still held when the stream ended."""

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}

    def feed(self, event: chat.StreamEvent) -> list[chat.StreamEvent]:
        """Raises Untranslatable where a call's arguments go on after its block ended, its JSON whole."""
        if not isinstance(
            event, chat.TextDelta | chat.ThinkingDelta | chat.ToolCallStarted | chat.ToolCallDelta | chat.Finished
        ):
            return [event]
        choice = self._choices.setdefault(event.choice, _Choice())
        if isinstance(event, chat.Finished):
            return [*self._release(choice), event]
        if isinstance(event, chat.ToolCallDelta):
            return self._delta(choice, event)
        if choice.blocked:
            self._hold(choice, event)
            return []
        choice.end_open()
        if isinstance(event, chat.ToolCallStarted):
            choice.open = _OpenCall(event.index)
        return [event]

    def end(self) -> list[chat.StreamEvent]:
        return [event for index in sorted(self._choices) for event in self._release(self._choices[index])]

    def _delta(self, choice: _Choice, event: chat.ToolCallDelta) -> list[chat.StreamEvent]:
        if choice.open is not None and choice.open.index == event.index:
            choice.open.arguments.feed(event.arguments)
            return [event, *self._advance(choice)]
        held = choice.held_calls.get(event.index)
        if held is not None:
            self._count(choice, len(event.arguments))
            held.append(event)
            return []
        if event.index in choice.ended:
            if event.arguments.strip(_WHITE):
                raise chat.Untranslatable("a tool call's arguments went on after they were whole")
            return []  # white space after the whole JSON changes nothing
        return [event]  # a call never started: its writer passes it by

    @staticmethod
    def _count(choice: _Choice, size: int) -> None:
        choice.held_size += size
        if choice.held_size > HELD_AT_MOST:
            raise chat.Untranslatable(f"more than {HELD_AT_MOST} characters waited for a tool call's arguments to end")

    def _hold(self, choice: _Choice, event: chat.TextDelta | chat.ThinkingDelta | chat.ToolCallStarted) -> None:
        self._count(choice, len(event.name) if isinstance(event, chat.ToolCallStarted) else len(event.text or ""))
        if isinstance(event, chat.ToolCallStarted):
            choice.held.append([event])
            choice.held_calls[event.index] = choice.held[-1]
            return
        last = choice.held[-1][-1] if choice.held else None
        if last is not None and type(last) is type(event):  # more of the same text or thinking
            choice.held[-1].append(event)
        else:
            choice.held.append([event])

    def _advance(self, choice: _Choice) -> list[chat.StreamEvent]:
        """The open call's arguments are whole: its block ends, and the blocks held go on, each
        whole, up to one that may still grow."""
        out: list[chat.StreamEvent] = []
        while choice.held and not choice.growing:
            choice.end_open()
            events = choice.held.pop(0)
            choice.held_size -= sum(_size(event) for event in events)
            out += events
            first = events[0]
            if isinstance(first, chat.ToolCallStarted):
                del choice.held_calls[first.index]
                choice.open = _OpenCall(first.index)
                for delta in events[1:]:
                    assert isinstance(delta, chat.ToolCallDelta)
                    choice.open.arguments.feed(delta.arguments)
        return out

    @staticmethod
    def _release(choice: _Choice) -> list[chat.StreamEvent]:
        """The choice finished (or the stream ended): every block held goes on, in order."""
        choice.end_open()
        out = [event for events in choice.held for event in events]
        choice.ended.update(choice.held_calls)
        choice.held.clear()
        choice.held_calls.clear()
        choice.held_size = 0
        return out


def _size(event: chat.StreamEvent) -> int:
    """The text of a held event, as `_hold` and `_delta` count it."""
    if isinstance(event, chat.ToolCallStarted):
        return len(event.name)
    if isinstance(event, chat.ToolCallDelta):
        return len(event.arguments)
    return len(getattr(event, "text", "") or "")
