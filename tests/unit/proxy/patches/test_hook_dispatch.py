"""mitmproxy's hook dispatch as Tollgate patches it (`patches.dispatch`): cheaper, and the same in
what it does with each addon's hook and each addon's failure."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from mitmproxy import addonmanager, connection, exceptions, hooks
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from tollgate.proxy.patches import cheaper_hook_dispatch
from tollgate.proxy.patches.dispatch import SafeCall

cheaper_hook_dispatch()


class Seen:
    def __init__(self, name: str, seen: list[str], raises: BaseException | None = None) -> None:
        self.name, self.seen, self.raises = name, seen, raises

    def running(self) -> None:
        self.seen.append(self.name)
        if self.raises is not None:
            raise self.raises

    async def client_connected(self, client: connection.Client) -> None:
        self.seen.append(f"{self.name} {client.peername[1]}")
        if self.raises is not None:
            raise self.raises


def test_the_patch_is_in_place() -> None:
    assert isinstance(addonmanager.safecall, SafeCall)
    assert hooks.Hook.args.__module__ == "tollgate.proxy.patches.dispatch"


def test_an_addons_error_is_logged_with_its_traceback_cut_and_the_next_addon_runs(caplog) -> None:
    seen: list[str] = []
    with taddons.context() as tctx:
        tctx.master.addons.add(Seen("a", seen, ValueError("broken")), Seen("b", seen))
        with caplog.at_level(logging.ERROR, logger="mitmproxy.addonmanager"):
            tctx.master.addons.trigger(hooks.RunningHook())
            client = connection.Client(peername=("127.0.0.1", 4321), sockname=("127.0.0.1", 8080), timestamp_start=1.0)
            asyncio.run(tctx.master.addons.trigger_event(server_hooks.ClientConnectedHook(client)))
    assert seen == ["a", "b", "a 4321", "b 4321"]
    errors = [r for r in caplog.records if r.getMessage() == "Addon error: broken"]
    assert len(errors) == 2
    for record in errors:
        assert record.exc_info is not None and record.exc_info[0] is ValueError
        frames = []
        tb = record.exc_info[2]
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        assert "invoke_addon" not in frames and "invoke_addon_sync" not in frames
        assert frames[-1] in ("running", "client_connected")


@pytest.mark.parametrize("stop", [exceptions.AddonHalt(), exceptions.OptionsError("bad option")])
def test_addon_halt_and_options_errors_go_on_to_the_caller(stop: Exception) -> None:
    seen: list[str] = []
    with taddons.context() as tctx:
        tctx.master.addons.add(Seen("a", seen, stop), Seen("b", seen))
        if isinstance(stop, exceptions.AddonHalt):
            tctx.master.addons.trigger(hooks.RunningHook())  # the chain stops, quietly
        else:
            with pytest.raises(exceptions.OptionsError, match="bad option"):
                tctx.master.addons.trigger(hooks.RunningHook())
    assert seen == ["a"]


def test_a_cancellation_is_not_swallowed() -> None:
    with pytest.raises(asyncio.CancelledError), addonmanager.safecall():
        raise asyncio.CancelledError


def test_hook_arguments_are_each_hooks_fields_in_order() -> None:
    flow = tflow.tflow(resp=True)
    client = flow.client_conn
    examples = [
        hooks.all_hooks["request"](flow),
        hooks.all_hooks["http_connect"](flow),
        server_hooks.ClientConnectedHook(client),
        server_hooks.ServerConnectHook(server_hooks.ServerConnectionHookData(flow.server_conn, client)),
        hooks.RunningHook(),
        hooks.all_hooks["configure"]({"a", "b"}),
    ]
    for hook in examples:
        expected = [getattr(hook, f.name) for f in dataclasses.fields(hook)]  # type: ignore[arg-type]
        assert hook.args() == expected
        assert hook.args() == expected  # the names cached: the same again
