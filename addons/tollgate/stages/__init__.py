"""The mitmproxy addons, one per concern, in the order they run (see `chain`)."""

from __future__ import annotations

from .audit import Audit
from .classify import Classify
from .credential import Credential
from .decide import Decide
from .identify import Identify
from .override import Override
from .redact import Redact
from .route import Route
from .settings import Settings
from .shared import Shared
from .stream_tap import StreamTap
from .upstream_watch import UpstreamWatch


def chain() -> list[object]:
    """The addons mitmdump loads, sharing one `Shared` (the loaded configuration)."""
    shared = Shared()
    return [
        Settings(shared),
        Classify(shared),
        Identify(shared),
        Override(shared),
        Route(shared),
        Decide(shared),
        Credential(shared),
        UpstreamWatch(shared),
        StreamTap(shared),
        Redact(shared),
        Audit(shared),
    ]
