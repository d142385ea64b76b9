"""The mitmproxy addon Tollgate is: one stage per concern, run in order (see `chain`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from mitmproxy import addonmanager, hooks, log  # noqa: F401 - importing them declares their hooks
from mitmproxy.proxy import layers, server_hooks  # noqa: F401 - likewise

from .audit import Audit, AuditGate
from .classify import Classify
from .credential import Credential
from .decide import Decide
from .identify import Identify
from .override import Override
from .redact import Redact
from .route import Route
from .settings import Settings
from .shared import CallStage, Shared, run_call_stages
from .stream_tap import AskForUsage, StreamTap
from .upstream_watch import UpstreamWatch
from .websocket import WebSocket


class Gateway:
    """The one addon mitmproxy sees: each hook runs through the stages that define it, in order.

    Each stage is written as a mitmproxy addon, but mitmproxy dispatches every hook to every addon
    through generic machinery (a walk of the addon tree, the argument list rebuilt per addon, an
    awaitable check); for eleven addons that cost more per call than the stages' own work
    (docs/performance.md). Here a hook is a loop over bound methods collected once, and
    consecutive call stages (`CallStage`) share one lookup of the call record.
    A stage that raises stops the hook's later stages, as mitmproxy does for a script's addons.
    A stage that returns an awaitable (the decide stage, waiting for the policy's worker) makes the
    hook return one that awaits it and then runs the later stages: mitmproxy awaits it, serving
    other flows meanwhile. Otherwise the hook returns None, as it would without this."""

    def __init__(self, stages: Sequence[object]) -> None:
        self.stages = tuple(stages)
        for name in hooks.all_hooks:
            handlers = tuple(h for stage in self.stages if callable(h := getattr(stage, name, None)))
            if handlers:
                setattr(self, name, _in_order(_with_call_stages_fused(name, handlers)))


def _with_call_stages_fused(
    name: str, handlers: tuple[Callable[..., object], ...]
) -> tuple[Callable[..., object], ...]:
    """The handlers, each run of consecutive call stages' own request hooks made one."""
    at_headers = {"requestheaders": True, "request": False}.get(name)
    if at_headers is None:
        return handlers
    inherited = getattr(CallStage, name)
    fused: list[Callable[..., object]] = []
    run: list[Callable[..., object]] = []
    for handler in (*handlers, None):
        if handler is not None and getattr(handler, "__func__", None) is inherited:
            run.append(handler)
            continue
        if len(run) > 1:
            fused.append(partial(run_call_stages, tuple(h.__self__ for h in run), at_headers))  # type: ignore[attr-defined]
        else:
            fused.extend(run)
        run = []
        if handler is not None:
            fused.append(handler)
    return tuple(fused)


def _in_order(handlers: tuple[Callable[..., object], ...]) -> Callable[..., Awaitable[None] | None]:
    def hook(*args: object) -> Awaitable[None] | None:
        for handler in handlers:
            pending = handler(*args)
            if pending is not None:
                return _then_in_order(pending, handlers[handlers.index(handler) + 1 :], args)  # type: ignore[arg-type]
        return None

    return hook


async def _then_in_order(pending: Awaitable[None], handlers: tuple[Callable[..., object], ...], args: tuple) -> None:
    await pending
    for handler in handlers:
        pending = handler(*args)  # type: ignore[assignment]
        if pending is not None:
            await pending


def chain() -> Gateway:
    """Tollgate's stages, sharing one `Shared` (the loaded configuration), as one addon."""
    shared = Shared()
    return Gateway(
        [
            Settings(shared),
            Classify(shared),
            AuditGate(shared),
            WebSocket(shared),
            Identify(shared),
            Override(shared),
            Route(shared),
            Decide(shared),
            AskForUsage(shared),
            Credential(shared),
            UpstreamWatch(shared),
            StreamTap(shared),
            Redact(shared),
            Audit(shared),
        ]
    )
