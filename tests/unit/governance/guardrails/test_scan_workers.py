"""Where a body is scanned (`ScanWorkers`): a small one at once, with no thread started; a large one
in a worker thread started at the first, with the same findings; the threads gone once closed,
and a body scanned at once after. A body under the size whose scans find more candidates than a
common body has (a hostile body) is scanned in a worker thread too. One configuration's detectors scanned from several threads at
once find what each would alone (each thread has Hyperscan scratch of its own)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.support import guardrail_samples as samples

from tollgate.governance.guardrails import engine
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.rules import Guardrails, Scan
from tollgate.governance.guardrails.workers import OFF_LOOP_BYTES, ON_LOOP_CANDIDATES, ScanWorkers

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


def content_of(size: int, unit: str) -> bytes:
    """A chat body of about `size` bytes (under it) whose content is `unit` repeated."""
    empty = len(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": ""}]}))
    content = unit * ((size - empty) // len(json.dumps(unit)[1:-1]))
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode()


_RNG = random.Random(59)
# Bodies under `OFF_LOOP_BYTES` whose every few bytes are a candidate: a detector's window each.
HOSTILE = {
    "digits in groups of four": " ".join(f"{_RNG.randrange(10_000):04d}" for _ in range(4)) + " ",
    "SSNs": "123-45-6789 ",
    "addresses": "ab@cd.ef ",
    "AWS key ids": "AKIAIOSFODNN7EXAMPL3 ",
    "phone numbers": "+1 415 555 0123 ",
    "URL passwords": "http://a:b@c ",
}


@pytest.mark.parametrize("unit", HOSTILE.values(), ids=list(HOSTILE))
@pytest.mark.parametrize("size", [2_000, OFF_LOOP_BYTES - 1])
@pytest.mark.slow
def test_a_small_hostile_body_is_scanned_in_a_thread(unit: str, size: int) -> None:
    guardrails = Guardrails(RULES)
    workers = ScanWorkers()
    body = content_of(size, unit)
    assert len(body) < OFF_LOOP_BYTES

    async def scanned() -> Scan:
        scanning = workers.scan(guardrails, body, "openai", "gpt-4o", None, ())
        assert not isinstance(scanning, Scan)  # its pass found too many candidates: not on the loop
        return await scanning

    try:
        scan = asyncio.run(scanned())
    finally:
        workers.close()
    assert scan == guardrails.scan(body, "openai", "gpt-4o", None, ())  # all of it read, in the thread
    assert scan.findings


def test_a_common_body_just_under_the_size_is_scanned_at_once() -> None:
    guardrails = Guardrails(RULES)
    workers = ScanWorkers()
    # Code, an .env's pair and a few addresses and numbers: a coding agent's turn.
    code = "def f(x):\n    return x * 2  # 2026-11-27, v1.2.3, id 7f3a9c\n" * 150
    body = content_of(OFF_LOOP_BYTES - 1, PAIR + code + "mail bob@acme.io, +1 415 555 0123\n")
    scan = workers.scan(guardrails, body, "openai", "gpt-4o", None, ())
    assert isinstance(scan, Scan)
    assert scan.counts()["pii.email"] == body.count(b"bob@acme.io") > 3
    assert not workers.started


@pytest.mark.parametrize("use_hyperscan", [True, False] if engine.HYPERSCAN else [False])
def test_a_bounded_scan_stops_past_its_candidates(use_hyperscan: bool) -> None:
    guardrails = Guardrails(RULES, use_hyperscan=use_hyperscan)
    few = content_of(3_000, "ab@cd.ef ")
    n = few.count(b"@")
    assert 300 < n < 400
    with engine.candidates_at_most(400):
        assert guardrails.scan(few, "openai", "gpt-4o", None, ()).counts() == {"pii.email": n}
    with pytest.raises(engine.TooManyCandidates), engine.candidates_at_most(ON_LOOP_CANDIDATES):
        guardrails.scan(few, "openai", "gpt-4o", None, ())
    # The bound is of the context's scans together, and gone after it.
    with pytest.raises(engine.TooManyCandidates), engine.candidates_at_most(500):
        guardrails.scan(few, "openai", "gpt-4o", None, ())
        guardrails.scan(few, "openai", "gpt-4o", None, ())
    assert guardrails.scan(few, "openai", "gpt-4o", None, ()).counts() == {"pii.email": n}


def test_the_collector_is_paused_and_the_switch_interval_short_while_a_thread_reads() -> None:
    import gc
    import sys

    from tollgate.governance.guardrails.workers import READING_SWITCH_INTERVAL

    workers = ScanWorkers()
    interval = sys.getswitchinterval()
    assert gc.isenabled() and interval > READING_SWITCH_INTERVAL

    def state() -> tuple[bool, float]:
        return gc.isenabled(), sys.getswitchinterval()

    async def both() -> tuple[tuple[bool, float], tuple[bool, float]]:
        started, release = threading.Event(), threading.Event()

        def held() -> tuple[bool, float]:
            started.set()
            release.wait(10)
            return state()

        first = workers.run(OFF_LOOP_BYTES, held)
        assert not isinstance(first, tuple)
        assert await asyncio.to_thread(started.wait, 10)
        second = workers.run(OFF_LOOP_BYTES, state)  # ends while the first still reads
        assert not isinstance(second, tuple)
        during = await second
        release.set()
        return during, await first

    try:
        reading = (False, READING_SWITCH_INTERVAL)
        assert asyncio.run(both()) == (reading, reading)
        assert state() == (True, interval)  # as they were, once the last has ended
        assert workers.run(1, state) == (True, interval)  # a small body's reading leaves them alone
    finally:
        workers.close()
        gc.enable()
        sys.setswitchinterval(interval)


def test_an_answer_rule_set_not_compiled_at_load_is_compiled_in_a_thread_before_the_answer() -> None:
    # Six answer rules, each for one model: only each alone and all of them are compiled at load.
    rules = [
        GuardrailRule.model_validate(
            {"match": {"model": f"*{i}*"}, "detect": ["pii.email"], "action": "redact", "on": ["answer"]}
        )
        for i in range(6)
    ]
    guardrails = Guardrails(rules)
    assert guardrails.answer_to_compile("openai", "x1", None, ()) is None  # compiled at load
    compile_ = guardrails.answer_to_compile("openai", "x12", None, ())  # two of them: not compiled
    assert compile_ is not None
    workers = ScanWorkers()
    compiled_in: list[int] = []

    def compiling() -> object:
        compiled_in.append(threading.get_ident())
        return compile_()

    async def ready() -> object:
        compiled = workers.off_loop(compiling)
        assert not compiled_in or compiled_in[0] != threading.get_ident()
        return await compiled  # type: ignore[misc]

    try:
        detectors = asyncio.run(asyncio.wait_for(ready(), 30))
    finally:
        workers.close()
    assert compiled_in and compiled_in[0] != threading.get_ident()
    # The answer reads those compiled: none compiled on the event loop at its first bytes.
    assert guardrails.answer_to_compile("openai", "x12", None, ()) is None
    assert guardrails.answer("openai", "x12", None, ()) is detectors
