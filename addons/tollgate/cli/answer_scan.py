"""`tollgate scan --answer FILE`: a saved answer read as the proxy reads the answers its clients get
(`governance/guardrails/answer_formats.py`), by every guardrails rule on `answer` and
`tollgate_keys`: its format named (`--format`) or told from its first message, a stream of
server-sent events fed in pieces as the proxy's reads come, a JSON answer read whole. It prints
each kind found with its count and action (never a value), then what the client would get."""

from __future__ import annotations

import sys
from pathlib import Path

from tollgate.cli.scan import applied_text, scan_inputs
from tollgate.cli.words import plural
from tollgate.formats.framing.bom import BOM

# The size of the pieces a saved stream is fed in, as a proxy's reads would bring it.
READ_SIZE = 16 << 10
# The lines a stream of server-sent events begins with (a JSON answer begins with `{` or `[`).
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def scan_answer(source: str, format_name: str | None, config_path: Path | None) -> int:
    """Exit status 0 when the answer guardrails find nothing, 1 when they find something, 2 when
    the answer, its format or the configuration cannot be read."""
    from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, detected
    from tollgate.governance.guardrails.rules import Guardrails

    inputs = scan_inputs(config_path, source)
    if inputs is None:
        return 2
    config, found, unset, saved = inputs
    names = sorted(ANSWER_FORMATS)
    if format_name is None:
        told = detected(saved)
        if len(told) != 1:
            what = "looks like no format" if not told else f"looks like several ({', '.join(told)})"
            print(f"error: {source}: the answer {what} Tollgate reads: name one with --format"
                  f" ({', '.join(names)})", file=sys.stderr)  # fmt: skip
            return 2
        format_name = told[0]
    answer_format = ANSWER_FORMATS.get(format_name)
    if answer_format is None:
        print(f"error: --format {format_name}: not a format Tollgate reads ({', '.join(names)})", file=sys.stderr)
        return 2
    guardrails = Guardrails.of(config)
    print(applied_text(guardrails, found, unset, on_answer=True), file=sys.stderr)
    detectors = guardrails.answer_all()
    name = "(stdin)" if source == "-" else source
    streamed = is_stream(saved)
    if streamed:
        guard = answer_format.stream(detectors)
        pieces = [guard.feed(saved[i : i + READ_SIZE]) for i in range(0, len(saved), READ_SIZE)]
        sent = b"".join(pieces) + guard.flush()
        denied, counts = guard.denied, guard.counts
    elif not _json(saved):
        print(f"{name}: {format_name}, JSON ({plural(len(saved), 'byte')}): cannot be read: the proxy refuses"
              " it (403 content_denied)")  # fmt: skip
        return 2
    else:
        sent, denied, counts = answer_format.read_whole(detectors, saved)
    shape = "streamed" if streamed else "JSON"
    total = sum(counts.values())
    head = f"{name}: {format_name}, {shape} ({plural(len(saved), 'byte')})"
    nothing = "nothing found" if detectors.detectors else "nothing found: no rule or key applied"
    print(f"{head}: {plural(total, 'finding')}" if total else f"{head}: {nothing}")
    if counts:
        width = max(len(k) for k in counts)
        for kind, n in sorted(counts.items()):
            print(f"  {kind:<{width}}  {n:>4}  {detectors.actions.get(kind, 'audit')}")
    refused = denied is not None and not streamed and not answer_format.denied_inside
    print(outcome(denied, streamed, answer_format.denied_inside, sent != saved))
    if sent != saved and not refused:
        sys.stdout.flush()
        sys.stdout.buffer.write(sent)
        sys.stdout.buffer.flush()
    return 1 if total else 0


def outcome(denied: str | None, streamed: bool, inside: bool, changed: bool) -> str:
    """What the client would get, in words (the bytes follow where they are not the answer's own,
    but for a JSON answer refused)."""
    if denied is not None and inside:
        return f"denied ({denied}): its message is replaced by an error; the client gets:"
    if denied is not None and streamed:
        return f"denied ({denied}): cut before the value, then the format's error; the client gets:"
    if denied is not None:
        return f"denied ({denied}): refused 403 content_denied; the client gets none of it"
    return "redacted; the client gets:" if changed else "the client gets it as it came, byte for byte"


def is_stream(saved: bytes) -> bool:
    """Whether a saved answer is a stream of server-sent events (else a JSON answer)."""
    return saved.removeprefix(BOM).lstrip().startswith(_SSE_FIELDS)


def _json(saved: bytes) -> bool:
    """Whether a saved answer is JSON the proxy reads (no object repeats a key)."""
    from tollgate.formats.bodies.json_codec import loads_once

    try:
        loads_once(saved)
    except (ValueError, RecursionError):
        return False
    return True
