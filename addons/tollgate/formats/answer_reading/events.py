"""What every streamed answer's guard shares (`governance/guardrails/answer.py` reads the text), whatever
its events: OpenAI chat's and Responses' server-sent events, Anthropic's, Gemini's items, Bedrock's
frames. One scanner per channel (a choice's text, a tool call's arguments…: `channels.Channels`);
the events kept in order, each with the pieces of its channels' text it carries, and going on as
their text is known (`waiting_events.WaitingEvents`). At a value to deny, the events before it go
on with what is known of them, then the format's end, and nothing after the value's event.

The events of one read are read together: each channel's scanner is fed once with what they carry
of it (a scanner's result does not depend on how its text is cut), which is what keeps small
events cheap. Should a value to deny be found in them, the read is read again event by event from
where it began, so that nothing after the value goes.

A format implements `_units` (a read cut into its events), `_unit` (one event read: it appends a
`Pending`, gives each piece of text to `_fed`, ends channels with `_ended_where`, and returns
`_drained()`, or `_cut()` at a deny), `_scanner` (a channel's scanner), `_rewritten` (an event
written anew once its pieces' holders say what goes on), `_orphan` (an event for text alone) and
`_denied_end` (what a denied stream ends with). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tollgate.formats.answer_reading.channels import Channels, ChannelState, Reread
from tollgate.formats.answer_reading.scanning import UNREAD, Scanner, Scanners, counter_copy
from tollgate.formats.answer_reading.string_places import Place, read_places
from tollgate.formats.answer_reading.waiting_events import Pending, WaitingEvents


class EventGuard:
    """A streamed answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: Scanners) -> None:
        self._compiled = compiled
        self._spent: Counter[str] = Counter()  # the counts of the scanners that have ended
        self._channels = Channels(compiled, self._scanner, self._spent)
        self._waiting = WaitingEvents(self._channels, self._rewritten, self._orphan, self._unsent)
        self._pending = self._waiting.queue  # the events not yet gone on
        self._closed = False  # the stream's end was read: nothing after it is
        self._denied_in: Any = None  # the channel a value to deny was found in (None: none)
        self._clean: set[str] = set()  # strings read whole and found clean (`CLEAN_KEPT`)
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._channels.counts())

    # -----------------------------------------------------------------------------------------
    # What a format says of its events

    def _units(self, chunk: bytes) -> list[Any]:
        """The events a read completes (what `_unit` reads)."""
        raise NotImplementedError

    def _unit(self, unit: Any) -> bytes:
        """One event read: what goes on now."""
        raise NotImplementedError

    def _scanner(self, channel: Any) -> Scanner:
        """A new scanner for a channel."""
        return self._compiled.scanner()

    def _rewritten(self, pending: Pending) -> bytes:
        """An event written anew, its pieces' holders saying what goes on of them."""
        raise NotImplementedError

    def _orphan(self, channel: Any, text: str) -> bytes:
        """An event for a channel's text known that no event waiting carries."""
        raise NotImplementedError

    def _denied_end(self, kind: str) -> bytes:
        """What a denied stream ends with."""
        raise NotImplementedError

    def _unsent(self, pending: Pending) -> str | None:
        """The kind of a value that keeps this event from going on as it must (signed text that
        would be changed): the stream stops before it. None: it may go."""
        return None

    # -----------------------------------------------------------------------------------------
    # Reading

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is not None or self._closed:
            return b""
        return self._read_units(self._units(chunk))

    def _read_units(self, units: list[Any]) -> bytes:
        """A read's events: read together, or one by one where there are fewer than two or a value
        to deny is among them. The events' objects are not kept as they were: reading them anew
        writes each piece of theirs that goes on."""
        if len(units) < 2:
            return self._read_each(units)
        saved, channels = self._saved(), self._channels.saved()
        waiting, spent = self._pending.copy(), counter_copy(self._spent)
        self._channels.together = True
        try:
            out = self._read_each(units)
            if self.denied is not None:
                raise Reread
            self._channels.commit()
            return out + self._waiting.drain()[0]
        except Reread:
            for name, value in saved.items():
                setattr(self, name, value)
            self._channels.restore(channels)
            self._waiting.restore(waiting)
            self._spent.clear()
            dict.update(self._spent, spent)
            self.denied = self._denied_in = None
        finally:
            self._channels.read_apart()
        return self._read_each(units)

    def flush(self) -> bytes:
        """What is held at the stream's end."""
        if self.denied is not None or self._closed:
            return b""
        self._ended_where(lambda channel: True)
        return self._cut() if self.denied is not None else self._drained() + self._orphans()

    def _read_each(self, units: list[Any]) -> bytes:
        """The events read in order, until a value to deny (or the stream's end) stops them."""
        out = []
        for unit in units:
            out.append(self._unit(unit))
            if self.denied is not None or self._closed:
                break
        return b"".join(out)

    def _saved(self) -> dict[str, Any]:
        """What reading events changes of the guard's own, by name, as it stands before a read (its
        events read together may have to be read again one by one): a format adds its own."""
        return {"_closed": self._closed}

    def _fed(self, pending: Pending, channel: Any, holder: Any, name: Any, value: str, signed: bool = False) -> None:
        """A piece of a channel's text, in the event `pending`, at `holder[name]`."""
        denied = self._channels.fed(pending.pieces, channel, holder, name, value, signed)
        if denied is not None:
            self.denied = denied
            self._denied_in = channel

    def _ended_where(self, ends: Callable[[Any], bool]) -> None:
        """The scanners of the channels that have ended flushed, now that their text has ended."""
        self._channels.commit()
        for channel, state in self._channels.states.items():
            if state.scanner is None or not ends(channel):
                continue
            self._end(channel, state)
            if self.denied is not None:
                return

    def _end(self, channel: Any, state: ChannelState) -> None:
        """One channel's scanner flushed."""
        denied = self._channels.end(state)
        if denied is not None:
            self.denied = denied
            self._denied_in = channel

    # -----------------------------------------------------------------------------------------
    # What goes on

    def _drained(self) -> bytes:
        """The events whose text is all known, in order (of a read read together: at its end)."""
        if self._channels.together:
            return b""
        out, unsent = self._waiting.drain()
        if unsent is None:
            return out
        self.denied = unsent
        self._pending.clear()
        return out + self._denied_end(unsent)

    def _orphans(self) -> bytes:
        """Events for text known that no event waiting carries, after the events known (of a read
        read together, not yet gone on)."""
        out = b""
        if self._channels.together:
            self._channels.commit()
            out = self._waiting.drain()[0]
        return out + self._waiting.orphans()

    def _cut(self) -> bytes:
        """At a value to deny: the events before it with what is known of them, nothing held and
        nothing after the value's event, then the format's end. (In a read read together, it is
        read again event by event.)"""
        if self._channels.together:
            raise Reread
        if self._denied_in is not None:
            self._waiting.after_value_dropped(self._denied_in)
        out, unsent = self._waiting.drain(every=True)
        if unsent is None:
            out += self._waiting.orphans()  # else it is never sent changed: nothing from it on goes
        self._pending.clear()
        return out + self._denied_end(self.denied or UNREAD)

    def _unread(self, pending: Pending | None = None) -> bytes:
        """What cannot be read (an event whose data is not what its format sends) stops the
        answer before it: none of it goes on, nor anything after it, as at a value to deny."""
        return self._stop_before(pending, UNREAD)

    def _stop_before(self, pending: Pending | None, kind: str) -> bytes:
        """The answer stopped before an event (a value to deny in what it carries whole): none of
        it goes on, nor anything after it."""
        if pending is not None and self._pending and self._pending[-1] is pending:
            self._pending.pop()
        self.denied = kind
        return self._cut()

    def _read_places(self, pending: Pending, obj: Any, places: Iterable[Place]) -> str | None:
        """Strings an event carries whole, each read whole: a value to redact replaced in place
        (the event, `obj`, then written anew); the kind of a value to deny (None: none). A value
        in an object's key cannot be replaced: it is denied whatever the rule's action. A string
        read clean once is not read again."""
        changed, denied = read_places(self._compiled, places, self._spent, self._clean)
        if changed:
            pending.obj, pending.changed = obj, True
        return denied


class UnreadStream:
    """An answer read whole only (an image generation's, a compacted conversation's) that came as a
    stream where none was asked (streamed ones are refused before they go): not read, it stops at
    its first piece."""

    def __init__(self, compiled: Scanners) -> None:
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {}

    def feed(self, chunk: bytes) -> bytes:
        self.denied = UNREAD
        return b""

    def flush(self) -> bytes:
        return b""
