"""What Tollgate's stream tap costs inside the proxy: loaded after addons/gateway.py by
`bench/stream.py --time-tap`, it times every piece of every streamed answer through `UsageTap`
(reading usage, and rewriting where a stream is rewritten) and, as each stream ends, appends one
JSON line to the file `tap_timer_file` names: the stream's pieces, bytes and nanoseconds in the tap.

In the proxy the tap's code runs between mitmproxy's own work, its objects out of the CPU's caches,
at two to three times what bench/readers.py times in a loop; timed here, it is a share of the
proxy's CPU per MB that the noise of a shared machine does not hide. The clock is the thread's CPU
time, not the wall clock: on a busy machine the proxy is often descheduled, and one such pause in a
stream would weigh more than all its pieces. Reading that clock takes a system call, some 1 µs (next
to a piece's 150-250 µs in mitmproxy); what two reads in a row measure is taken off every piece.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from weakref import WeakKeyDictionary

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader

from tollgate.proxy.stages.upstream.stream_tap import UsageTap


class TapTimer:
    def __init__(self) -> None:
        self._untimed = UsageTap.__call__
        # Each tap's [pieces, bytes, ns], let go with the tap (a stream that broke off has no end piece)
        self._streams: WeakKeyDictionary[UsageTap, list[int]] = WeakKeyDictionary()

    def load(self, loader: Loader) -> None:
        loader.add_option("tap_timer_file", str, "", "where each stream's time in the tap is appended (JSON lines)")

    def running(self) -> None:
        untimed, streams = self._untimed, self._streams
        path = Path(ctx.options.tap_timer_file)
        clock = time.thread_time_ns
        pairs = sorted(-clock() + clock() for _ in range(1001))
        reading = pairs[len(pairs) // 2]  # what the clock's reads alone measure

        def timed(tap: UsageTap, chunk: bytes) -> bytes | list[bytes]:
            start = clock()
            out = untimed(tap, chunk)
            took = clock() - start - reading
            totals = streams.setdefault(tap, [0, 0, 0])
            if chunk:
                totals[0] += 1
                totals[1] += len(chunk)
            totals[2] += took
            if not chunk:  # the stream's end
                del streams[tap]
                with path.open("a") as out_file:
                    out_file.write(json.dumps({"pieces": totals[0], "bytes": totals[1], "ns": totals[2]}) + "\n")
            return out

        UsageTap.__call__ = timed  # type: ignore[method-assign]

    def done(self) -> None:
        UsageTap.__call__ = self._untimed  # type: ignore[method-assign]


addons = [TapTimer()]
