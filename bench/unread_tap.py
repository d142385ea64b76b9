"""Tollgate with its stream tap reading nothing: loaded after addons/gateway.py by
`bench/stream.py --unread`, every streamed answer passes through `UsageTap` as it does, rewrites
included, but no piece reaches the usage reader. What that Tollgate costs over bare mitmdump is
what it costs in a stream besides reading usage; what Tollgate costs over it is the reading, as
the proxy pays for it (cold caches and all, which no timer around the tap sees).

Its audit then holds no usage for the calls it streamed.
"""

from __future__ import annotations

from mitmproxy.addonmanager import Loader

from tollgate.proxy.stages.upstream.stream_tap import UsageTap


class UnreadTap:
    def __init__(self) -> None:
        self._reading = UsageTap.__call__

    def load(self, _loader: Loader) -> None:
        reading = self._reading

        def unread(tap: UsageTap, chunk: bytes) -> bytes | list[bytes]:
            tap._reading = False  # as after a reader's fault: pieces go on, rewritten where they are
            return reading(tap, chunk)

        UsageTap.__call__ = unread  # type: ignore[method-assign]

    def done(self) -> None:
        UsageTap.__call__ = self._reading  # type: ignore[method-assign]


addons = [UnreadTap()]
