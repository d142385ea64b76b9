"""Where a body is scanned (`ScanWorkers`): a small one at once, with no thread started; a large one
in a worker thread started at the first, with the same findings; the threads gone once closed,
and a body scanned at once after. One configuration's detectors scanned from several threads at
once find what each would alone (each thread has Hyperscan scratch of its own)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

from tests.support import guardrail_samples as samples

from tollgate.governance.guardrails import engine
from tollgate.governance.guardrails.rules import Guardrails, Scan
from tollgate.governance.guardrails.settings import GuardrailRule
from tollgate.governance.guardrails.workers import OFF_LOOP_BYTES, ScanWorkers

RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})]
PAIR = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"


def body_of(size: int) -> bytes:
    text = PAIR + "x = 1  # padding\n" * (size // 17)
    return f'{{"model":"gpt-4o","messages":[{{"role":"user","content":{text!r}}}]}}'.replace("'", '"').encode()


def scanning_threads(other_than: Collection[threading.Thread] = ()) -> set[threading.Thread]:
    """The scanning threads alive, but for `other_than` (another test's, still ending)."""
    return {t for t in threading.enumerate() if t.name.startswith("tollgate-scan")} - set(other_than)


def wait_gone(other_than: set[threading.Thread], timeout: float = 10.0) -> set[threading.Thread]:
    deadline = time.monotonic() + timeout
    while scanning_threads(other_than) and time.monotonic() < deadline:
        time.sleep(0.01)
    return scanning_threads(other_than)


def test_a_small_body_is_scanned_at_once_and_starts_no_thread() -> None:
    others = scanning_threads()
    guardrails = Guardrails(RULES)
    workers = ScanWorkers()
    body = body_of(OFF_LOOP_BYTES // 2)
    scan = workers.scan(guardrails, body, "openai", "gpt-4o", None, ())
    assert isinstance(scan, Scan)
    assert scan.counts() == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}
    assert not workers.started and not scanning_threads(others)


def test_a_large_body_is_scanned_in_a_thread_started_then_and_ended_at_close() -> None:
    others = scanning_threads()
    guardrails = Guardrails(RULES)
    workers = ScanWorkers()
    body = body_of(OFF_LOOP_BYTES * 4)

    async def scanned() -> tuple[Scan, str]:
        scanning = workers.scan(guardrails, body, "openai", "gpt-4o", None, ())
        assert not isinstance(scanning, Scan)
        return await scanning, threading.current_thread().name

    scan, awaited_on = asyncio.run(scanned())
    assert awaited_on == "MainThread"  # its result is given to the event loop's thread
    assert scan == guardrails.scan(body, "openai", "gpt-4o", None, ())
    assert scan.counts() == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}
    assert workers.started and len(scanning_threads(others)) == 1
    workers.close()
    assert not workers.started
    assert wait_gone(others) == set()
    # Once closed, a body of any size is scanned at once, and no thread starts again.
    assert isinstance(workers.scan(guardrails, body, "openai", "gpt-4o", None, ()), Scan)
    assert not workers.started and not scanning_threads(others)


def test_closing_workers_that_never_started_is_nothing() -> None:
    others = scanning_threads()
    workers = ScanWorkers()
    workers.close()
    workers.close()
    assert not workers.started and not scanning_threads(others)


def test_a_scan_under_way_at_close_ends_with_its_findings() -> None:
    others = scanning_threads()
    guardrails = Guardrails(RULES)
    workers = ScanWorkers(off_loop_bytes=1)
    body = body_of(2_000_000)

    async def closed_while_scanning() -> Scan:
        scanning = workers.scan(guardrails, body, "openai", "gpt-4o", None, ())
        assert not isinstance(scanning, Scan)
        workers.close()
        return await asyncio.wait_for(scanning, 30)

    assert asyncio.run(closed_while_scanning()).counts() == {
        "secrets.aws_access_key_id": 1,
        "secrets.aws_secret_access_key": 1,
    }
    assert wait_gone(others) == set()


def test_one_configurations_detectors_scan_in_many_threads_at_once() -> None:
    # The event loop scans small bodies while worker threads scan large ones, with the same
    # compiled detectors: Hyperscan's scratch serves one scan at a time, so each thread has its own.
    guardrails = Guardrails(RULES)
    assert guardrails.uses_hyperscan == engine.HYPERSCAN
    body = body_of(200_000)
    alone = guardrails.scan(body, "openai", "gpt-4o", None, ())
    with ThreadPoolExecutor(4) as pool:
        scans = list(pool.map(lambda _: guardrails.scan(body, "openai", "gpt-4o", None, ()), range(32)))
    assert all(scan == alone for scan in scans)
