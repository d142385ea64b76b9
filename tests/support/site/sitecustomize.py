"""Python's start-up hook, on the PYTHONPATH of the test that runs the docs' commands as written
(tests/e2e/test_docs_commands.py): in a process that runs mitmproxy, support/resolve.py is one of
mitmproxy's own addons, so that a proxy started by `./run.sh` with no argument of the test's sends
the provider's host (TOLLGATE_TEST_RESOLVE) to a fake upstream on 127.0.0.1. Nothing else changes;
a Python without mitmproxy (the SDK clients') is left alone."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def _with_resolve() -> None:
    try:
        from mitmproxy import addons
    except ImportError:
        return
    spec = importlib.util.spec_from_file_location("tollgate_test_resolve", Path(__file__).parents[1] / "resolve.py")
    assert spec is not None and spec.loader is not None
    resolve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resolve)
    default_addons = addons.default_addons
    addons.default_addons = lambda: [*default_addons(), *resolve.addons]


if os.environ.get("TOLLGATE_TEST_RESOLVE"):
    _with_resolve()
