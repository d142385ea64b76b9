"""The strings of a Gemini item given whole in their part or candidate (a function call's name and
arguments, code and what it printed, grounding's queries and sources), each read alone at once and
replaced in place: the JSON stays the JSON it was. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from tollgate.formats.answer_reading.channels import replaced_kind
from tollgate.formats.answer_reading.scanning import UNREAD, Scanners, scan_whole
from tollgate.formats.answer_reading.waiting_events import Pending


class WholeValues:
    """Strings read whole, each alone, with `compiled`'s detectors; their counts gathered in
    `counts`. Each reading gives the kind of a value to deny (None: none)."""

    def __init__(self, compiled: Scanners, counts: Counter[str]) -> None:
        self._compiled = compiled
        self._counts = counts

    def read(self, item: Pending, holder: Any, names: Iterable[Any], signed: bool, exact: bool = False) -> str | None:
        """Each string in `holder[name]` for the names it has (nested in objects and arrays) read
        alone and replaced in place (`item` then written anew); in a signed part, or where `exact`
        (a path that names keys), a value to replace is denied. An object's keys are read too: a
        value in one is denied (a key replaced could meet another)."""
        for name in names:
            if isinstance(holder, dict) and name not in holder:
                continue
            inner = holder[name]
            denied = None
            if isinstance(inner, dict):
                denied = self.keys(inner)
                if denied is None:
                    denied = self.read(item, inner, list(inner), signed)
            elif isinstance(inner, list):
                denied = self.read(item, inner, range(len(inner)), signed)
            elif isinstance(inner, str) and inner:
                sent, denied = self._text(inner)
                if denied is None and sent != inner:
                    if signed or exact:
                        denied = replaced_kind(sent) or UNREAD
                    else:
                        holder[name] = sent
                        item.changed = True
            if denied is not None:
                return denied
        return None

    def keys(self, value: dict[str, Any]) -> str | None:
        """An object's keys read whole: a value found in one is denied."""
        for key in value:
            if not key:
                continue
            sent, denied = self._text(key)
            if denied is None and sent != key:
                denied = replaced_kind(sent) or UNREAD
            if denied is not None:
                return denied
        return None

    def segments(self, grounding: dict[str, Any]) -> str | None:
        """The segments of the answer's text the grounding supports repeat, read together: a value
        cut across two of them (each read alone) is denied."""
        supports = grounding.get("groundingSupports")
        texts = [
            s["segment"]["text"]
            for s in (supports if isinstance(supports, list) else ())
            if isinstance(s, dict) and isinstance(s.get("segment"), dict) and isinstance(s["segment"].get("text"), str)
        ]
        if len(texts) < 2:
            return None
        joined = "".join(texts)
        sent, denied = self._text(joined)
        if denied is None and sent != joined:
            denied = replaced_kind(sent) or UNREAD
        return denied

    def _text(self, text: str) -> tuple[str, str | None]:
        """A text read whole: what goes on of it, and the kind of a value to deny."""
        read = scan_whole(self._compiled, text)
        self._counts.update(read.counts)
        return read.text, read.denied
