"""What the end-to-end tests of the answer guardrails share: the values they plant, a gateway whose
fake upstreams all answer through one handler, the pace of a denied stream's upstream (to see it
closed), and the answer metrics as the metrics endpoint gives them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.support import guardrail_samples as samples
from tests.support.fake_upstream import Received, Reply
from tests.support.metrics import scrape

# The values planted in answers: an AWS key in the text, a card number in a tool call's arguments.
AWS = samples.AWS_KEY_ID
CARD = samples.SAMPLES["pii.payment_card"][0]
TEXT = f"Here is the key from the file: {AWS} and nothing else."
ARGS = json.dumps({"card": CARD, "note": "pay it"})
KINDS = ["secrets.aws_access_key_id", "pii.payment_card"]
REDACTED_TEXT = TEXT.replace(AWS, "[REDACTED:secrets.aws_access_key_id]")
FILLERS = 100  # events the upstream would send after a denied value, were it not closed
FILLER_GAP = 0.02  # between two of them

# The answer metrics' families: findings by provider, kind and action; answers cut by kind.
ANSWER_FAMILIES = ("tollgate_guardrail_answer_findings_total", "tollgate_guardrail_answers_cut_total")


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# A client's lines that define `counted()`: one more event read, the count written to `count`.
COUNTING = """
n = 0
def counted():
    global n
    n += 1
    with open({count!r}, "w") as f:
        f.write(str(n))
"""


@dataclasses.dataclass
class Pace:
    """A stream paced by its client: the client's lines that count what it reads, and whether
    each event after the first waited for it (True) or for 10 s in vain (False)."""

    counting: str
    waited: list[bool] = dataclasses.field(default_factory=list)


class AnswerUpstream:
    """A fake upstream's answers (a subclass's `__call__`, each fake's handler); the denied
    stream's reply kept to see where it stopped; `gate` for a clean stream's events."""

    def __init__(self) -> None:
        self.denied: Reply | None = None
        self.denied_at = 0  # the event the value to deny begins in
        self.gate: Callable[[int], None] | None = None

    def __call__(self, received: Received) -> Reply:
        raise NotImplementedError

    @contextlib.contextmanager
    def paced_by(self, count: Path) -> Iterator[Pace]:
        """While inside, a stream's event i goes only once the client has read i (it writes how
        many it has read to the file `count`, as `Pace.counting`'s `counted()` does), waiting
        10 s at most."""
        pace = Pace(COUNTING.format(count=str(count)))
        waited = pace.waited

        def until_the_client_has(i: int) -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if count.exists() and int(count.read_text() or 0) >= i:
                    waited.append(True)
                    return
                time.sleep(0.01)
            waited.append(False)

        self.gate = until_the_client_has
        try:
            yield pace
        finally:
            self.gate = None

    def paced_run(self, gateway: Any, count: Path, code: str) -> tuple[Any, list[bool]]:
        """The client `code` (it calls `counted()` on each event it reads) run through `gateway`
        with this upstream's streams paced by it: what it reported, and what each event waited."""
        with self.paced_by(count) as pace:
            result = gateway.run(pace.counting + textwrap.dedent(code))
        return result, pace.waited

    def denied_stream(self, chunks: list[bytes], first: int, headers: dict[str, str] | None = None) -> Reply:
        """A stream whose value to deny begins in event `first`: the events after it (FILLERS of
        them) sent FILLER_GAP apart, as long as the connection lets them."""
        self.denied_at = first
        gate = lambda i: time.sleep(FILLER_GAP if i > first else 0)  # noqa: E731
        self.denied = Reply(200, chunks=chunks, headers=headers or {}, gate=gate)
        return self.denied

    def stopped_soon(self, started: float, slack: int) -> None:
        """Once the fillers would all have been sent (a second more), the upstream had stopped
        within `slack` events of the value: a write or some into the closed connection's buffers,
        more on a busy machine."""
        time.sleep(max(0.0, started + FILLERS * FILLER_GAP + 1.0 - time.monotonic()))
        assert self.denied is not None, "the denied stream was asked for"
        assert len(self.denied.sent_at) < self.denied_at + slack


def answered_by(gateway: Any, upstream: Callable[[Received], Reply]) -> Any:
    """The gateway, each of its fake upstreams answering through `upstream`."""
    for fake in gateway.fakes.values():
        fake.handler = upstream
    return gateway


def answer_samples(listen: str) -> dict[tuple[str, ...], float]:
    """The answer metrics the endpoint at `listen` gives now: (family, provider, kind[, action]) →
    value. Its server opens once the configuration has loaded: waited for, up to 10 s."""
    text = scrape(listen)
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ANSWER_FAMILIES:
                labels = sample.labels
                action = (labels["action"],) if "action" in labels else ()
                found[(sample.name, labels["provider"], labels["kind"], *action)] = sample.value
    return found


def gemini_item(*parts: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict:
    """A Gemini answer, or one item of its stream: `parts` in its one candidate, with its finish
    and its usage where given."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    if usage:
        out["usageMetadata"] = usage
    return out
