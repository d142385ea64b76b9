"""How fast the answer scanner (`governance/guardrails/answer.py`) reads an answer's text, in
process on one core, with the default detectors (`secrets` and `pii`, redacted) and a few of
Tollgate's own keys: MB/s of text fed, for clean text and for text with candidates, in pieces of
the sizes a stream brings them in, and how many bytes it held after each piece (median, worst).

    .venv/bin/python bench/answer_scan.py                 # every text x 8 B, 32 B, 256 B, 64 KiB pieces (~1 min)
    .venv/bin/python bench/answer_scan.py --mb 8 --pieces 65536 --repeat 5

Texts:
- prose: English sentences without digits, addresses or keys (ending a piece anywhere);
- code: source with identifiers, numbers, strings and operators (Python of this checkout);
- candidates: prose with, every 2 KB, a phone number, an e-mail address, a card-shaped number
  failing its checksum, dates and amounts (held while they may become a match; none is one);
- values: prose with a real value of several kinds every 2 KB (each redacted);
- digits: the prose `bench/answer_stream.py` streams (one word in four a number, no value).
Each cell is the best of `--repeat` passes of the thread's CPU time. After each text, `anchors`: the
one pass over it that finds every detector's anchors (Hyperscan's), alone, in ns a byte: the least
an answer's reading can cost, whatever is built around it."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT / "tests"))

sys.path.insert(0, str(BENCH))

from answer_stream import prose_with_digits  # noqa: E402
from support.guardrail_samples import AWS_KEY_ID, EMAIL, crc_token  # noqa: E402
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402

RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact", "on": ["answer"]})]
OWN_KEYS = [f"sk-upstream-{i:02d}-" + "x" * 40 for i in range(4)]
SENTENCE = (
    "the model reads a file and answers with what it found there while the agent waits for "
    "its next turn and a reviewer looks at the change before it is merged into the main branch"
)
WORDS = SENTENCE.split()


def prose(size: int, rng: random.Random) -> bytes:
    out: list[str] = []
    n = 0
    while n < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + ". "
        out.append(sentence)
        n += len(sentence)
    return "".join(out).encode()[:size]


def code(size: int) -> bytes:
    files = sorted((ROOT / "addons" / "tollgate" / "proxy").rglob("*.py"))
    data = b"".join(f.read_bytes() for f in files)
    return (data * (size // max(1, len(data)) + 1))[:size]


def sprinkled(size: int, rng: random.Random, items: list[str]) -> bytes:
    out: list[bytes] = []
    n = 0
    while n < size:
        chunk = prose(2000, rng) + b" " + rng.choice(items).encode() + b" "
        out.append(chunk)
        n += len(chunk)
    return b"".join(out)[:size]


def texts(size: int) -> dict[str, bytes]:
    rng = random.Random(7)
    # Written in parts: this file, read as text by the clean-corpus test, holds none of them whole.
    near = ["+1 212 " + "555", "alice at example dot com", "4111 1111 " + "1111 1112", "on 2024-03-07 at 12:30"]
    near += ["$1,234.56", "call (415) 555-0100", "order 1234567" + "890123", "ref AB12 CD34"]
    values = [EMAIL, crc_token("gh" + "p_"), AWS_KEY_ID, "+1 415 " + "555 2671", "4111 1111 " + "1111 1111"]
    return {
        "prose": prose(size, rng),
        "code": code(size),
        "candidates": sprinkled(size, rng, near),
        "values": sprinkled(size, rng, values),
        "digits": prose_with_digits(rng, size).encode(),
    }


def run(data: bytes, piece: int, repeat: int, guardrails: Guardrails) -> tuple[float, int, int, int]:
    compiled = guardrails.answer("openai", "m", None, ())
    assert compiled is not None
    best = float("inf")
    helds: list[int] = []
    out = 0
    for _ in range(repeat):
        scanner = compiled.scanner()
        helds = []
        out = 0
        start = time.thread_time()
        for at in range(0, len(data), piece):
            out += len(scanner.feed(data[at : at + piece]).text)
            helds.append(scanner.held)
        out += len(scanner.flush().text)
        best = min(best, time.thread_time() - start)
    return len(data) / best / 1e6, int(statistics.median(helds)), max(helds), out


def anchors_pass(data: bytes, repeat: int, guardrails: Guardrails) -> float:
    """ns a byte of the anchors' one pass over `data`, alone (the best of `repeat`)."""
    compiled = guardrails.answer("openai", "m", None, ())
    assert compiled is not None
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        compiled.engine.anchors(data)
        best = min(best, time.thread_time() - start)
    return best * 1e9 / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=4.0, help="text size in MB (default 4)")
    parser.add_argument("--pieces", type=int, nargs="*", default=[8, 32, 256, 65536])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    guardrails = Guardrails(RULES, OWN_KEYS)
    size = int(args.mb * 1e6)
    print(f"answer scan, secrets+pii redacted, {len(OWN_KEYS)} own keys, hyperscan={guardrails.uses_hyperscan}")
    print(f"{'text':<12}{'piece':>8}{'MB/s':>10}{'held median':>14}{'held worst':>12}{'out/in':>9}")
    for name, data in texts(size).items():
        for piece in args.pieces:
            # Small pieces: a smaller text (the figure is per byte; the pieces' count is what costs).
            sample = data if piece >= 4096 else data[: max(200_000, piece * 20_000) // 4]
            mbs, median, worst, out = run(sample, piece, args.repeat, guardrails)
            print(f"{name:<12}{piece:>8}{mbs:>10.1f}{median:>14}{worst:>12}{out / len(sample):>9.3f}")
        print(f"{name:<12}{'anchors':>8}{anchors_pass(data, args.repeat, guardrails):>10.2f} ns/B")


if __name__ == "__main__":
    main()
