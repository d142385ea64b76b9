"""What reading usage from a stream costs, in process: each stream format's reader, fed a bulk stream
of bench/stream.py in pieces as mitmproxy hands them over, through the same `UsageTap` the proxy
uses. No proxy, no network: the figure to set beside mitmdump's own work per piece (its CPU per MB
in bench/stream.py), steady where a whole proxy's ratios are not.

    .venv/bin/python bench/readers.py                     # every format x 256 B, 64 KiB, 1 MiB events (~1 min)
    .venv/bin/python bench/readers.py --piece-kib 16,64 --format bedrock-invoke
    .venv/bin/python bench/readers.py --format openai-chat --hide-usage   # as `stream_usage: inject` rewrites it

Each cell is the best of `--repeat` passes over a `--size-mb` stream, the pieces and the read at
the stream's end (the tail framed, usage parsed) timed apart; the usage the reader reports must be
what the stream carries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "addons"))
sys.path.insert(0, str(BENCH))

from stream import MB, MiB, Scenario  # noqa: E402
from stream_wires import FORMATS  # noqa: E402
from tollgate.formats.openai_chat.asked_usage import asked_usage_hidden  # noqa: E402
from tollgate.formats.usage_reading import UsageReader  # noqa: E402
from tollgate.providers import provider_for  # noqa: E402
from tollgate.proxy.stages.upstream.stream_tap import UsageTap  # noqa: E402

READ_FORMATS = [name for name, fmt in FORMATS.items() if not fmt.routed]
# mitmproxy reads up to 64 KiB from the socket; h11 splits that at the stream's HTTP chunks
# (bench/stream.py writes 64-KiB ones): pieces of some 32 KiB on average in bench/stream.py's runs.
PIECE_KIB = "32"


def reader_for(name: str) -> UsageReader:
    """The reader the provider picks for this format's request and answer headers."""
    fmt = FORMATS[name]
    provider = provider_for(fmt.request.host)
    assert provider is not None
    path, _, query = fmt.request.path.partition("?")
    classification = provider.classify("POST", path, None, query)
    return provider.cost.usage_reader(classification, {"content-type": fmt.stream.content_type})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", default=",".join(READ_FORMATS), help="comma-separated stream formats")
    parser.add_argument("--event-bytes", default="256,65536,1048576", help="comma-separated event sizes")
    parser.add_argument("--piece-kib", default=PIECE_KIB, help="comma-separated piece sizes in KiB")
    parser.add_argument("--size-mb", type=int, default=64, help="stream size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="passes per cell; the best counts")
    parser.add_argument(
        "--hide-usage",
        action="store_true",
        help="an OpenAI chat stream also rewritten as for a client that did not ask for usage"
        " (`audit.stream_usage: inject`: each chunk's usage null and the usage chunk hidden)",
    )
    args = parser.parse_args()
    print(f"{'format':<18} {'event':>7} {'piece':>7} {'µs/piece':>9} {'µs/MB':>8} {'ms at end':>8}  usage")
    for name in args.format.split(","):
        for event_bytes in map(int, args.event_bytes.split(",")):
            scenario = Scenario.bulk(FORMATS[name], event_bytes, args.size_mb * MiB)
            body = scenario.head + scenario.block * scenario.blocks + scenario.tail
            for kib in map(int, args.piece_kib.split(",")):
                pieces = [body[i : i + kib * 1024] for i in range(0, len(body), kib * 1024)]
                best = best_end = float("inf")
                for _ in range(args.repeat):
                    reader = reader_for(name)
                    rewrite = asked_usage_hidden() if args.hide_usage and name == "openai-chat" else None
                    tap = UsageTap(reader, None, lambda _reader: None, rewrite)
                    start = time.perf_counter_ns()
                    for piece in pieces:
                        tap(piece)
                    tap(b"")
                    best = min(best, time.perf_counter_ns() - start)
                    start = time.perf_counter_ns()
                    usage = reader.result()
                    best_end = min(best_end, time.perf_counter_ns() - start)
                expected = (scenario.counts.input_tokens, scenario.counts.output_tokens)
                exact = (usage.input_tokens, usage.output_tokens) == expected and reader.error is None
                print(
                    f"{name:<18} {event_bytes:>7} {kib:>5}Ki {best / 1e3 / len(pieces):9.2f} "
                    f"{best / 1e3 / (len(body) / MB):8.1f} {best_end / 1e6:8.2f}  {'exact' if exact else f'WRONG: {usage} {reader.error}'}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
