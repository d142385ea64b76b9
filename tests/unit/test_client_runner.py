"""The end-to-end tests' SDK runner: a client that hangs is ended, and what it reported still counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.clients import run_client


@pytest.mark.slow
def test_a_client_that_hangs_after_reporting_is_ended_and_its_report_kept(tmp_path: Path) -> None:
    code = """
        import threading, time
        report(seen=1)
        waiting = threading.Thread(target=time.sleep, args=(120,))
        waiting.start()
        waiting.join()  # as a library's close that waits on a socket that never closes
    """
    # The watchdog fires 5 s before the time limit, after 1 s at the least: a 6 s limit waits 1 s.
    with pytest.warns(UserWarning, match="the client hung after 1 s") as warned:
        assert run_client(code, "http://127.0.0.1:9", tmp_path / "ca.pem", timeout=6) == {"seen": 1}
    assert "Thread" in str(warned[0].message)  # where it hung, every thread's stack


@pytest.mark.slow
def test_a_client_that_hangs_before_reporting_fails_with_its_stack(tmp_path: Path) -> None:
    with pytest.warns(UserWarning), pytest.raises(AssertionError, match="client reported nothing"):
        run_client("import time\ntime.sleep(120)", "http://127.0.0.1:9", tmp_path / "ca.pem", timeout=6)
