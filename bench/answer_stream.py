"""Answer guardrails at stream speed: an OpenAI chat answer streamed through bare mitmdump, through
Tollgate without answer guardrails and through Tollgate with them (`secrets` and `pii` redacted on
`answer`), all in one run; and how long the text they hold waits.

Run from the checkout:

    .venv/bin/python bench/answer_stream.py                        # 200 MiB, 256 B / 4 KiB / 64 KiB events (~10 min)
    .venv/bin/python bench/answer_stream.py --size-mb 32 --event-bytes 65536 --bulk-rounds 3   # quick
    .venv/bin/python bench/answer_stream.py --held-only            # only the held text's delay (in process, ~20 s)

It reuses bench/stream.py: the TLS fake upstream, the raw-socket client that checks every byte
(length and CRC-32), the mitmdumps and their bulk and paced phases. The answer is prose with digits
(versions, years, counts, amounts; no value a detector finds), so it must come through each proxy
byte for byte, with the guardrails on too. Modes:

  bare      plain mitmdump, made to stream (as in bench/stream.py);
  tollgate  Tollgate with no answer guardrail (its `audit.path`, the providers' upstream the fake);
  guarded   a second Tollgate, the same configuration plus one rule
            `{detect: [secrets, pii], action: redact, on: [answer]}` and four keys of its own.

Bulk phase: `--bulk-rounds` rounds of one `--size-mb` stream per mode and event size, the modes'
order alternating; MB/s of the upstream's bytes, and each proxy over bare mitmdump as the median
of the rounds' ratios; guarded over tollgate likewise (the target: at least 0.9). CPU µs/MB: each
proxy process's CPU time (every thread) per upstream MB, median round; tg/gd, the median of the
rounds' Tollgate CPU over guarded CPU: the throughput ratio where each proxy is bound by one core,
steadier than the MB/s of a shared machine. Latency phase:
paced events (`--delay-ms` apart), the time each takes through each proxy.

Held text (in process, the scanner and the chat guard of `governance/guardrails/`): three answers
— prose with digits, prose with e-mail addresses (each redacted), code — cut in deltas as a model
streams them (a word or a symbol, 1 to 12 bytes), fed one event at a time to the chat guard. For
each byte of text: how many bytes came after it before it went on (median, worst), and so how long
it waited at `--tokens-per-s` deltas a second (median, worst); an event's own cost in the guard is
added, measured (the thread's CPU time)."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _p in (ROOT, ROOT / "addons", BENCH, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import yaml  # noqa: E402

import stream as S  # noqa: E402
from stream_wires import CHAT_REQUEST, Format, OpenAIChat  # noqa: E402
from tollgate.formats.openai_chat.answer_guard import ChatAnswerGuard  # noqa: E402
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402
from tollgate.proxy.certs import ensure_bundle  # noqa: E402

MiB = 1024 * 1024
MB = 1_000_000
TARGET = 0.9  # guarded / tollgate throughput
RULE = {"detect": ["secrets", "pii"], "action": "redact", "on": ["answer"]}
OWN_KEYS = [f"sk-bench-own-{i:02d}-" + "q" * 40 for i in range(4)]
GUARDED = "guarded"
S.LABELS[GUARDED] = "Tollgate, answer guardrails on"

_SENTENCE = "the build took minutes and the team shipped releases with fixes while tests ran on nodes for each "
_SENTENCE += "change of the service its latency fell by percent over weeks and the queue held jobs at peak"
WORDS = _SENTENCE.split()
YEARS = ("2019", "2021", "2023", "2024", "2025")


def number(rng: random.Random) -> str:
    """A number as prose writes one: a count, a year, a version, an amount, a percentage."""
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randint(1, 999))
    if kind == 1:
        return rng.choice(YEARS)
    if kind == 2:
        return f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    if kind == 3:
        return f"${rng.randint(1, 99)}.{rng.randint(10, 99)}"
    return f"{rng.randint(1, 99)}%"


def prose_with_digits(rng: random.Random, size: int) -> str:
    """Sentences of words and numbers (one word in four a number), no value a detector finds."""
    out: list[str] = []
    n = 0
    while n < size:
        words = [number(rng) if rng.random() < 0.25 else rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        sentence = " ".join(words).capitalize() + ". "
        out.append(sentence)
        n += len(sentence)
    return "".join(out)[:size]


class ProseChat(OpenAIChat):
    """OpenAI chat events whose text is prose with digits: each event's text its own words (a
    whole stream is made of them, each ending with a space)."""

    @staticmethod
    def text_of(seq: int, length: int) -> str:
        if length <= 1:
            return " "
        return prose_with_digits(random.Random(seq), length - 1).ljust(length - 1, "x") + " "


PROSE_CHAT = Format("openai-chat", CHAT_REQUEST, ProseChat())


class GuardedBench(S.Bench):
    """bench/stream.py's bench with a third mitmdump: Tollgate with answer guardrails on."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        args.control = args.unread = args.time_tap = False
        super().__init__(args, workdir)
        self.modes = ("direct", "bare", "tollgate", GUARDED)

    def setup(self) -> None:
        super().setup()
        config = yaml.safe_load((self.workdir / "tollgate.yaml").read_text())
        config["guardrails"] = [RULE]
        config["providers"]["openai"]["keys"] = [*config["providers"]["openai"]["keys"], *OWN_KEYS]
        config["audit"] = {"path": str(self.workdir / "audit-guarded.jsonl")}
        path = self.workdir / "tollgate-guarded.yaml"
        path.write_text(yaml.safe_dump(config))
        tollgate = self.proxies["tollgate"]
        args = [a if not a.startswith("tollgate_config=") else f"tollgate_config={path}" for a in tollgate.args]
        start = args.index("-s")  # what follows mitmdump's own listening options
        proxy = S.Proxy(GUARDED, args[start:], self.workdir)
        self.proxies[GUARDED] = proxy
        proxy.wait_ready(self.start_timeout)
        assert self.fake is not None
        bundle = ensure_bundle(self.workdir / "confdir")  # made by the setup above: the mitmdumps' CA
        self.targets[GUARDED] = S.Target(GUARDED, self.fake, None, bundle, proxy.port)  # type: ignore[arg-type]


def clean(text: str) -> bool:
    """Whether the guardrails leave this text as it is (none of its bytes replaced)."""
    compiled = Guardrails([GuardrailRule.model_validate(RULE)], OWN_KEYS).answer("openai", "m", None, ())
    assert compiled is not None
    scanner = compiled.scanner()
    data = text.encode()
    return scanner.feed(data).text + scanner.flush().text == data


# -- held text, in process ------------------------------------------------------------------------


def deltas(text: str) -> list[str]:
    """The text cut as a model streams it: a word with the space before it, or a symbol, 1 to 12
    bytes (longer words in pieces)."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch.isalnum() or ch == "_":
            if word and not (word[-1].isalnum() or word[-1] in " _"):
                out.append(word)
                word = ""
            word += ch
        else:
            if word:
                out.append(word)
            word = ch
        if len(word) >= 12:
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


def with_emails(rng: random.Random, size: int) -> str:
    names = ("alice", "bob.smith", "ops-team", "j.doe", "billing")
    hosts = ("example.com", "mail.example.org", "corp.example.net")
    out: list[str] = []
    n = 0
    while n < size:
        sentence = prose_with_digits(rng, rng.randint(60, 160)).rstrip(". ")
        sentence += f", write to {rng.choice(names)}@{rng.choice(hosts)} for more. "
        out.append(sentence)
        n += len(sentence)
    return "".join(out)[:size]


def code_text(size: int) -> str:
    files = sorted((ROOT / "addons" / "tollgate" / "proxy" / "stages").glob("*.py"))
    data = "".join(f.read_text() for f in files)
    return (data * (size // len(data) + 1))[:size]


def chat_event(text: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunk["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def held_delays(text: str, tokens_per_s: float) -> dict[str, float]:
    """Each byte's wait (bytes after it before it went on, and ms at `tokens_per_s`), fed to the
    chat guard one event a delta; its released text read back from its events."""
    compiled = Guardrails([GuardrailRule.model_validate(RULE)], OWN_KEYS).answer("openai", "m", None, ())
    assert compiled is not None
    guard = ChatAnswerGuard(compiled)
    pieces = [d.encode() for d in deltas(text)]
    interval_ms = 1000 / tokens_per_s
    fed = 0
    arrival: list[tuple[int, int]] = []  # (end of the piece in the text, its event's index)
    released_through = 0  # the text's bytes whose fate is decided (gone on, or replaced)
    waits_bytes: list[int] = []
    waits_ms: list[float] = []
    cost_ms: list[float] = []
    start_piece = 0
    for i, piece in enumerate(pieces):
        start = time.thread_time()
        guard.feed(chat_event(piece.decode()))
        cost_ms.append((time.thread_time() - start) * 1000)
        fed += len(piece)
        arrival.append((fed, i))
        state = guard._channels.get((0, "content", -1))
        held = state.scanner.held if state is not None and state.scanner is not None else 0
        # The events wait whole: an event goes on once all of its text is known.
        now = fed - held
        while start_piece < len(arrival) and arrival[start_piece][0] <= now:
            end, j = arrival[start_piece]
            begin = arrival[start_piece - 1][0] if start_piece else 0
            for position in range(max(begin, released_through), end):
                waits_bytes.append(fed - position - 1)
                waits_ms.append((i - j) * interval_ms + cost_ms[-1])
            released_through = end
            start_piece += 1
    guard.flush()
    ordered = sorted(waits_ms)
    return {
        "bytes": len(text.encode()),
        "events": len(pieces),
        "bytes_p50": statistics.median(waits_bytes),
        "bytes_max": max(waits_bytes),
        "ms_p50": statistics.median(ordered),
        "ms_max": ordered[-1],
        "event_us_p50": statistics.median(cost_ms) * 1000,
    }


def held_report(tokens_per_s: float, size: int) -> list[tuple[str, dict[str, float]]]:
    rng = random.Random(11)
    texts = {
        "prose with digits": prose_with_digits(rng, size),
        "prose with e-mail addresses": with_emails(rng, size),
        "code": code_text(size),
    }
    rows = [(name, held_delays(text, tokens_per_s)) for name, text in texts.items()]
    print(
        f"\nheld text: one event a delta (1-12 bytes), {tokens_per_s:g} deltas/s; a byte's wait from its "
        f"event's arrival to its event going on (bytes that came after it; ms at that pace, plus the guard's time)"
    )
    print(
        f"{'text':<30}{'bytes':>9}{'events':>8}{'wait B p50':>11}{'B worst':>9}{'ms p50':>9}{'ms worst':>10}{'µs/event':>10}"
    )
    for name, r in rows:
        print(
            f"{name:<30}{r['bytes']:>9}{r['events']:>8}{r['bytes_p50']:>11.0f}{r['bytes_max']:>9.0f}"
            f"{r['ms_p50']:>9.1f}{r['ms_max']:>10.1f}{r['event_us_p50']:>10.1f}"
        )
    return rows


# -- through mitmdump ------------------------------------------------------------------------------


def through_proxies(args: argparse.Namespace) -> bool:
    sample = "".join(ProseChat.text_of(seq, 4000) for seq in range(64))
    if not clean(sample):
        raise SystemExit("the bench's prose holds a value the guardrails replace: it would not come through as sent")
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-answer-bench-"))
    bench = GuardedBench(args, workdir)
    ok = True
    try:
        bench.setup()
        print("commands:")
        for proxy in bench.proxies.values():
            print(f"  {proxy.name}: {proxy.command_line()}")
        print(f"\n{args.bulk_rounds} x {args.size_mb} MiB of OpenAI chat events, prose with digits, every byte checked")
        print(f"{'event':>8}{'bare MB/s':>11}{'tollgate':>10}{'guarded':>10}{'tg/bare':>9}{'gd/bare':>9}{'gd/tg':>8}"
              f"{'CPU µs/MB tg':>14}{'gd':>7}{'tg/gd':>7}{'paced p50 ms tg':>17}{'gd':>7}{'p99 tg':>8}{'gd':>7}")  # fmt: skip
        for event_bytes in args.event_bytes:
            cell = S.Cell(PROSE_CHAT, event_bytes)
            bench.warm_up(cell)
            lat = bench.latency(cell)
            bulk = bench.bulk(cell)
            tg, gd = bulk["tollgate"]["ratios"], bulk[GUARDED]["ratios"]
            over = statistics.median(g / t for g, t in zip(gd, tg, strict=True))
            ok &= over >= TARGET
            # Each round's CPU per MB, Tollgate's over the guarded one's: the throughput the guard
            # leaves where the proxy has a core to itself and no more.
            cpu_tg, cpu_gd = bulk["tollgate"]["cpu_ratios"], bulk[GUARDED]["cpu_ratios"]
            cpu_over = statistics.median(t / g for g, t in zip(cpu_gd, cpu_tg, strict=True))
            print(
                f"{S.size_label(event_bytes):>8}{bulk['bare']['mbps']:>11.1f}{bulk['tollgate']['mbps']:>10.1f}"
                f"{bulk[GUARDED]['mbps']:>10.1f}{statistics.median(tg):>9.2f}{statistics.median(gd):>9.2f}"
                f"{over:>8.2f}{bulk['tollgate']['cpu_us_per_mb']:>14.0f}{bulk[GUARDED]['cpu_us_per_mb']:>7.0f}"
                f"{cpu_over:>7.2f}{lat['tollgate']['delay_p50']:>17.2f}{lat[GUARDED]['delay_p50']:>7.2f}"
                f"{lat['tollgate']['delay_p99']:>8.2f}{lat[GUARDED]['delay_p99']:>7.2f}",
                flush=True,
            )
        print(f"target: guarded / tollgate >= {TARGET} ({'met' if ok else 'missed'}); load average {S.loadavg()}")
    finally:
        bench.stop()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="bulk stream size in MiB")
    parser.add_argument("--event-bytes", type=int, nargs="*", default=[256, 4096, 65536])
    parser.add_argument("--bulk-rounds", type=int, default=3)
    parser.add_argument("--bulk-timeout", type=float, default=0.0, help="seconds for one bulk call (0: 60 + 2 s/MiB)")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="pause between paced events")
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-samples", type=int, default=200)
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="the pace of the held-text figures")
    parser.add_argument("--held-bytes", type=int, default=200_000, help="each held-text answer's size")
    parser.add_argument("--held-only", action="store_true", help="only the held text's delay, in process")
    args = parser.parse_args()
    args.quiet_proxies = True
    args.bulk_timeout = args.bulk_timeout or 60 + 2 * args.size_mb
    held_report(args.tokens_per_s, args.held_bytes)
    if args.held_only:
        return 0
    return 0 if through_proxies(args) else 1


if __name__ == "__main__":
    sys.exit(main())
