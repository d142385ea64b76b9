"""`tollgate console` stopped by ^C while more ^C come: a terminal's ^C reaches every process of
`./run.sh demo`, and the demo passes one on to its console too. The first stops it; those after
it, while it saves its index and closes, must not end it in a traceback."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.support.cli import console_process
from tests.support.proxy import free_port

SIGNALS = 2000  # at most, one every millisecond: the close's every step is hit
STOP_S = 10.0


def test_a_second_interrupt_while_it_closes_is_no_traceback(tmp_path: Path) -> None:
    records = [
        {"event": "llm_call", "ts": f"2026-11-29T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z", "client": f"c{i % 50}",
         "provider": "openai", "model": "gpt-4o-mini", "decision": "allow", "status": 200, "seq": i + 1}
        for i in range(5000)
    ]  # fmt: skip
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "tollgate.yaml"
    config.write_text("audit: {path: audit.jsonl}\n")
    process, line = console_process(config, "--listen", f"127.0.0.1:{free_port()}")
    try:
        assert line.startswith("Tollgate console: http://127.0.0.1:"), line
        deadline = time.monotonic() + STOP_S
        for _ in range(SIGNALS):
            if process.poll() is not None or time.monotonic() > deadline:
                break
            process.send_signal(signal.SIGINT)
            time.sleep(0.001)
        _, err = process.communicate(timeout=STOP_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert process.returncode == 0, err
