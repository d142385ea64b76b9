"""Ending the processes a test starts."""

from __future__ import annotations

import os
import signal
import subprocess


def terminate(process: subprocess.Popen) -> None:
    """`process` ended as an operator ends it (SIGTERM), killed if it is not gone within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def communicate_within(process: subprocess.Popen, timeout: float) -> tuple[str, str, bool]:
    """What `process` (started in a session of its own) wrote to standard output and error, and
    whether it ended within `timeout` seconds: one that did not is killed with its whole session
    (SIGKILL, as a process that hangs may ignore SIGTERM)."""
    try:
        out, err = process.communicate(timeout=timeout)
        return out, err, True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return out, err, False
