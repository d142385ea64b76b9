"""The events of a streamed answer held while their text is not known (`formats/answer_reading/
waiting_events.py`), with the channels' scanners of the answer guardrails (`channels.py`): an
event goes on as it came once its text is known to be what came, is written anew where a value is
replaced in it, and text no waiting event carries goes on in an event of its own."""

from __future__ import annotations

from collections import Counter
from typing import Any

from support.guardrail_samples import EMAIL
from tollgate.formats.answer_reading.channels import Channels
from tollgate.formats.answer_reading.waiting_events import Pending, WaitingEvents
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import compiled_for

REDACT = compiled_for(dict.fromkeys(detectors.KINDS, "redact"))


def _reader() -> tuple[Channels, WaitingEvents, list[str]]:
    channels = Channels(REDACT, lambda channel: REDACT.scanner(), Counter())
    orphans: list[str] = []

    def orphan(channel: Any, text: str) -> bytes:
        orphans.append(text)
        return b"<" + text.encode() + b">"

    def rewritten(pending: Pending) -> bytes:
        return b"[" + pending.obj["text"].encode() + b"]"

    return channels, WaitingEvents(channels, rewritten, orphan, lambda pending: None), orphans


def _event(channels: Channels, waiting: WaitingEvents, text: str) -> Pending:
    obj = {"text": text}
    pending = Pending(b"{" + text.encode() + b"}", obj)
    waiting.queue.append(pending)
    assert channels.fed(pending.pieces, "c", obj, "text", text, False) is None
    return pending


def test_an_event_whose_text_is_held_waits_then_goes_as_it_came() -> None:
    channels, waiting, _ = _reader()
    _event(channels, waiting, "write to " + EMAIL[:3])
    assert waiting.drain() == (b"", None)  # the address may begin here: held
    _event(channels, waiting, " no more.")
    assert channels.end(channels.states["c"]) is None  # its text ends: all of it known
    assert waiting.drain() == (b"{write to " + EMAIL[:3].encode() + b"}{ no more.}", None)
    assert not waiting.queue


def test_an_event_with_a_value_replaced_is_written_anew_carrying_what_is_owed() -> None:
    channels, waiting, _ = _reader()
    _event(channels, waiting, "write to " + EMAIL[:3])
    _event(channels, waiting, EMAIL[3:] + " today.")
    assert channels.end(channels.states["c"]) is None
    out, unsent = waiting.drain()
    assert unsent is None
    # The first carries all that is owed: no text after it comes as it came.
    assert out == b"[write to [REDACTED:pii.email] today.][]"


def test_text_known_that_no_event_carries_goes_in_an_orphan() -> None:
    channels, waiting, orphans = _reader()
    _event(channels, waiting, "write to " + EMAIL[:3])
    out, _ = waiting.drain(every=True)  # it goes on with what is known of it
    assert out == b"[write to ]"
    assert channels.end(channels.states["c"]) is None  # what was held is known now
    assert waiting.orphans() == b"<" + EMAIL[:3].encode() + b">"
    assert orphans == [EMAIL[:3]]
