"""A streamed answer read by the answer guardrails as its client gets it (`StreamTap`'s rewrite)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tollgate.calls.call import Call
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerGuard
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.answer_links import Detectors

logger = logging.getLogger(__name__)


class GuardedAnswer:
    """A streamed answer read by the answer guardrails as its client gets it: after
    `inner` (a translation, the usage Tollgate asked for hidden). Events with nothing held or
    replaced go on as they came. A value to deny stops it (`stopped`): the call is recorded as cut
    (`content_denied`). What cannot be read (an encoding undone wrongly, a fault) stops it too,
    with the format's own end: where the format may stream one JSON array (`array_end`), the
    answer's first byte tells whether it does (`array`, until then: what its headers said)."""

    def __init__(
        self,
        guard: AnswerGuard,
        denied_end: Callable[[str], bytes],
        call: Call,
        inner: Rewrite | None,
        detectors: Detectors | None = None,
        array_end: Callable[[str, bool], bytes] | None = None,
        array: bool = False,
    ) -> None:
        self._guard, self._denied_end, self._call, self._inner = guard, denied_end, call, inner
        self._detectors = detectors
        self._array_end, self._array = array_end, array
        self._form_told = array_end is None  # whether the answer's first byte has told its form
        self._opened = False  # some of an array went to the client (its `[` with it)
        self.stopped = False
        call.answer.findings = {}

    def feed(self, chunk: bytes) -> bytes:
        return self._read(lambda: self._inner.feed(chunk) if self._inner is not None else chunk)

    def at_end(self) -> bytes:
        """What the inner rewrite lets go as the stream ends, before its calls are decided
        (`held_events.HeldEvents.at_end`), read."""
        at_end = getattr(self._inner, "at_end", None)
        return self._read(at_end) if at_end is not None else b""

    def _read(self, inner: Callable[[], bytes]) -> bytes:
        """What the inner rewrite gives (`inner`), read as the client gets it."""
        if self.stopped:
            return b""
        try:
            data = inner()
            if not self._form_told:
                self._tell_form(data)
            out = self._guard.feed(data) if data else b""
        except Exception:
            logger.exception("Tollgate: reading an answer for its guardrails failed")
            return self.fail()
        if out and self._array and not self._opened:
            self._opened = bool(out.strip())
        if self._guard.denied is not None:
            self._stop()
        return out

    def reads_at_once(self, chunk: bytes) -> bool:
        """Whether a piece (as it came) is cheap to read on the event loop whatever its size: small
        events its guard passes by their template (OpenAI chat's)."""
        at_once = getattr(self._guard, "reads_at_once", None)
        return self._inner is None and at_once is not None and bool(at_once(chunk))

    def _tell_form(self, data: bytes) -> None:
        """The answer's first byte that is not white space: a JSON array's `[`, or another form."""
        start = data.lstrip()
        if start:
            self._array, self._form_told = start.startswith(b"["), True

    def flush(self) -> bytes:
        if self.stopped:
            return b""
        try:
            data = self._inner.flush() if self._inner is not None else b""
            out = (self._guard.feed(data) if data else b"") + self._guard.flush()
        except Exception:
            logger.exception("Tollgate: reading an answer for its guardrails failed")
            return self.fail()
        if self._guard.denied is not None:
            self._stop()
        self.note()
        return out

    def fail(self) -> bytes:
        """The answer cannot be read: it stops here, with what a denied answer in its form ends
        with (a JSON array's error item and its `]`)."""
        self._stop()
        if self._array and self._array_end is not None:
            return self._array_end(UNREAD, self._opened)
        return self._denied_end(UNREAD)

    def note(self) -> None:
        """The findings so far, recorded on the call."""
        answer = self._call.answer
        answer.findings = self._guard.counts
        if self._detectors is not None:
            answer.finding_actions = self._detectors.by_action(answer.findings)

    def _stop(self) -> None:
        self.stopped = True
        self.note()
        answer = self._call.answer
        answer.error = answer.refused = CONTENT_DENIED
        answer.cut = self._guard.denied or UNREAD
