"""A provider's real keys, used in turn, resting the ones the provider just refused, and skipping
those whose circuit is open (`providers.<name>.circuit`: they failed too often in a row), for every
model or for the one model whose calls failed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.errors import CredentialUnavailable

DEFAULT_REST = 60.0
MAX_REST = 86400.0
# delay-seconds is 1*DIGIT (RFC 9110); a fraction is read too, as OpenAI's SDK reads one. ASCII
# only: int() and float() would also read other scripts' digits, signs, exponents and "inf".
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), at most a day; 60 when
    absent or unreadable, as a provider that refused a key did not say when to try it again."""
    if not value:
        return DEFAULT_REST
    value = value.strip(" \t")
    if _SECONDS.fullmatch(value):
        return min(float(value), MAX_REST)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return DEFAULT_REST
    if when.tzinfo is None:  # an HTTP-date is GMT, and its asctime form names no zone
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), MAX_REST)


class CircuitOpen(CredentialUnavailable):
    """Every key of the pool has its circuit open; `rest_left`: until the first closes (seconds)."""

    def __init__(self, rest_left: float) -> None:
        super().__init__("every key failed too often in a row and rests")
        self.rest_left = rest_left


class KeyPool:
    def __init__(
        self,
        keys: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        fingerprint: Callable[[str], str] = fingerprint,
    ) -> None:
        self._fingerprint = fingerprint
        self._keys = list(keys)
        self._clock = clock
        self._next = 0
        self._resting_until: dict[str, float] = {}
        self._open_until: dict[str, float] = {}  # the keys whose circuit is open, until when
        # The keys whose circuit is open for one model (its calls failed), by key and model.
        self._model_open_until: dict[tuple[str, str], float] = {}

    def renewed(self, keys: Sequence[str]) -> KeyPool:
        """The pool of a reloaded configuration: this one when its keys are the same; else a pool
        of the new keys that shares this one's rests, so that a key resting stays resting, even
        when a call that took it from this pool is refused after the reload."""
        if list(keys) == self._keys:
            return self
        pool = KeyPool(keys, self._clock, self._fingerprint)
        for key in [k for k in self._resting_until if k not in pool._keys]:
            del self._resting_until[key]
        pool._resting_until = self._resting_until
        for key in [k for k in self._open_until if k not in pool._keys]:
            del self._open_until[key]
        pool._open_until = self._open_until
        for pair in [p for p in self._model_open_until if p[0] not in pool._keys]:
            del self._model_open_until[pair]
        pool._model_open_until = self._model_open_until
        return pool

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def resting(self, now: float | None = None) -> int:
        """How many keys rest now, refused or with their circuit open for every model (one open for
        one model still serves the others). Safe from another thread (a scrape): it only reads."""
        now = self._clock() if now is None else now
        refused = {k for k, until in list(self._resting_until.items()) if until > now}
        if not self._open_until:
            return len(refused)
        return len(refused | {k for k, until in list(self._open_until.items()) if until > now})

    def take(self, model: str | None = None) -> str | None:
        """The next key in turn that is not resting; if all rest, the one that is free soonest.
        Keys whose circuit is open, for every model or for `model`, are not taken: CircuitOpen when
        every key's is."""
        if not self._keys:
            return None
        if not self._resting_until and not self._open_until and not self._model_open_until:
            index = self._next % len(self._keys)  # the next in turn, without asking the clock
            self._next = index + 1
            return self._keys[index]
        now = self._clock()
        if self._open_until:
            for key, until in list(self._open_until.items()):
                if until <= now:
                    del self._open_until[key]  # it has rested: it is tried again
        open_ = self._open_until
        if self._model_open_until:
            for pair, until in list(self._model_open_until.items()):
                if until <= now:
                    del self._model_open_until[pair]
            if model is not None:
                for_model = [(k, u) for (k, m), u in self._model_open_until.items() if m == model]
                if for_model:
                    open_ = dict(open_)
                    for key, until in for_model:
                        open_[key] = max(until, open_.get(key, 0.0))
        for i in range(len(self._keys)):
            index = (self._next + i) % len(self._keys)
            key = self._keys[index]
            if key not in open_ and self._resting_until.get(key, 0.0) <= now:
                self._resting_until.pop(key, None)  # rested: so that the pool is seen resting no more
                self._next = index + 1
                return key
        usable = [k for k in self._keys if k not in open_]
        if not usable:
            raise CircuitOpen(min(open_.values()) - now)
        return min(usable, key=lambda k: self._resting_until[k])

    def rest_left(self, key: str) -> float:
        """How long the key rests still (0 when it does not)."""
        until = self._resting_until.get(key)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def rest(self, key: str, seconds: float) -> None:
        if key in self._keys:
            self._resting_until[key] = self._clock() + seconds

    def open_circuit(self, key: str, seconds: float, model: str | None = None) -> None:
        """The key failed too often in a row (its calls to `model`, or any when None): it is not
        taken for `seconds` (for `model`'s calls)."""
        if key not in self._keys:
            return
        until = self._clock() + seconds
        if model is None:
            self._open_until[key] = max(until, self._open_until.get(key, 0.0))
        else:
            self._model_open_until[key, model] = max(until, self._model_open_until.get((key, model), 0.0))

    def open_fingerprint(self, fingerprint: str, seconds: float, model: str | None = None) -> None:
        """Open the circuit of the key of this fingerprint (for `model`), if the pool has it: it
        failed too often in a row in another process."""
        for key in self._keys:
            if self._fingerprint(key) == fingerprint:
                self.open_circuit(key, seconds, model)

    def rest_fingerprint(self, fingerprint: str, seconds: float) -> None:
        """Rest the key of this fingerprint, if the pool has it: another process was refused it."""
        for key in self._keys:
            if self._fingerprint(key) == fingerprint:
                until = self._clock() + seconds
                if until > self._resting_until.get(key, 0.0):
                    self._resting_until[key] = until
