"""A policy evaluated in a child process, so that an evaluation can be held to a time limit and
nothing OPA's engine does can take the proxy down.

OPA's engine, loaded through ctypes, gives no way to stop an evaluation from Python, and a rule can
loop over what the input holds (`every`, comprehensions, `walk`) for as long as it likes. A thread
stuck in it can be neither stopped nor reclaimed; a process can be killed: the proxy sends each
input document to a worker process and waits for the answer at most the time limit; a worker that
exceeds it is killed and a new one started. The engine's Go runtime lives in that process, never in
the proxy's, and so does whatever it might crash with.

Over the worker's standard input and a copy of its standard output, one JSON value per line: the
first line holds the policy's sources, answered "ready" once they compile; each line after it is
a deny rule and an input document, `[rule, document]`, answered by the decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tollgate.governance.policy.policy_builtins import check_builtins
from tollgate.governance.policy.policy_engine import CALL_RULE, POLICY_ERROR, Decision, PolicyError, Rules

logger = logging.getLogger(__name__)

START_LIMIT = 30.0  # seconds for a new worker to start and compile the policy
EXIT_LIMIT = 5.0  # seconds to wait for a killed worker to exit, where one waits
ANSWER_LIMIT = 1 << 24  # bytes in one answer line (asyncio's default is 64 KiB)
READY = b'"ready"\n'


# The worker imports Tollgate from where the proxy did: mitmproxy puts addons/ on sys.path itself.
def _command(main: str) -> tuple[str, ...]:
    code = f"import sys; sys.path.insert(0, sys.argv[1]); import {__name__} as w; w.{main}()"
    return (sys.executable, "-c", code, str(Path(__file__).resolve().parents[3]))


_COMMAND = _command("serve")
# The same process compiling a policy once, answering {"error": null} or OPA's report.
CHECK_COMMAND = _command("check")


class WorkerUnavailable(Exception):
    """No worker process could be started; the message says why."""


class PolicyWorker:
    """The worker process of one policy: one evaluation at a time, each within the time limit.
    Needs a running event loop, the same one throughout."""

    def __init__(self, sources: Mapping[str, str], timeout: float) -> None:
        self.timeout = timeout
        self._setup = _line({"modules": dict(sources)})
        self._process: asyncio.subprocess.Process | None = None
        self._killed: asyncio.subprocess.Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._busy = 0  # evaluations (and early starts) waiting or under way
        self._closed = False
        self._starting: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The worker process's id while there is one."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def evaluate(self, document: Any, rule: str = CALL_RULE) -> Decision:
        """The decision of a deny rule (`data.tollgate.deny`, an LLM call's; another kind's) on an
        input document; raises WorkerUnavailable when no worker starts."""
        line = _line([rule, document])
        self._bind(asyncio.get_running_loop())
        self._busy += 1
        try:
            async with self._lock:
                process = await self._ready()
                return await self._exchange(process, line)
        finally:
            self._leave()

    def start(self) -> None:
        """Start the worker process now, if an event loop runs, so that the next evaluation does
        not wait for it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._closed:
            self._bind(loop)
            task = loop.create_task(self._start_early())
            if not task.done():
                self._starting.add(task)
                task.add_done_callback(self._starting.discard)

    def close(self) -> None:
        """Stop the worker process; at once, or when the evaluations under way have ended."""
        self._closed = True
        if not self._busy:
            self._kill()

    async def aclose(self) -> None:
        """Stop the worker process at once (an evaluation under way is denied) and wait for it to
        exit: at shutdown, before the event loop ends."""
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        self._kill()
        process = self._killed
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), EXIT_LIMIT)
            except TimeoutError:
                pass

    async def _start_early(self) -> None:
        self._busy += 1
        try:
            async with self._lock:
                if not self._closed:
                    await self._ready()
        except WorkerUnavailable as e:
            if not self._closed:
                logger.error(f"Tollgate: {e}")
        finally:
            self._leave()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # A process (and a lock) belongs to the event loop it was made in: tests and the command
        # line may run one loop after another.
        if loop is not self._loop:
            self._kill()
            self._loop, self._lock = loop, asyncio.Lock()

    def _leave(self) -> None:
        self._busy -= 1
        if self._closed and not self._busy:
            self._kill()

    async def _ready(self) -> asyncio.subprocess.Process:
        process = self._process
        if process is not None and process.returncode is None:
            return process
        try:
            process = await asyncio.create_subprocess_exec(
                *_COMMAND, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=ANSWER_LIMIT
            )
        except OSError as e:
            raise WorkerUnavailable(f"policy evaluation failed: the policy worker did not start: {e}") from None
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self._setup)
        try:
            answer = await asyncio.wait_for(process.stdout.readline(), START_LIMIT)
        except TimeoutError:
            self._kill()
            raise WorkerUnavailable(
                f"policy evaluation failed: the policy worker did not start within {START_LIMIT:g} s"
            ) from None
        except BaseException:
            self._kill()
            raise
        if answer != READY:
            self._kill()
            raise WorkerUnavailable(f"policy evaluation failed: the policy worker did not start: {_failure(answer)}")
        return process

    async def _exchange(self, process: asyncio.subprocess.Process, line: bytes) -> Decision:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(line)
            answer = await asyncio.wait_for(process.stdout.readline(), self.timeout)
        except TimeoutError:
            self._replace()
            return Decision((POLICY_ERROR,), f"policy evaluation exceeded its time limit of {self.timeout:g} s")
        except BaseException:
            # Cancelled, or the pipe failed: a late answer would be taken for the next document's.
            self._replace()
            raise
        try:
            found = json.loads(answer)
            return Decision(tuple(found["deny"]), found["error"])
        except (ValueError, TypeError, KeyError):
            if self._closed and not answer:
                return Decision((POLICY_ERROR,), "policy evaluation stopped: the policy worker was shut down")
            self._replace()
            return Decision((POLICY_ERROR,), f"policy evaluation failed: {_failure(answer)}")

    def _replace(self) -> None:
        self._kill()
        self.start()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            self._killed = process
            try:
                process.kill()
            except ProcessLookupError:
                pass


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _failure(answer: bytes) -> str:
    if not answer:
        return "the policy worker exited"
    try:
        return str(json.loads(answer)["error"])
    except (ValueError, TypeError, KeyError):
        return "the policy worker gave no decision"


# --- the worker process -------------------------------------------------------------------------


def serve() -> None:
    """The worker process's main loop: compile the policy, then decide each document read."""
    # The proxy stops its worker; Ctrl-C in a terminal reaches both, and must not stop it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what the engine may print goes to standard error, not among the answers
    documents = sys.stdin.buffer
    try:
        rules = Rules(json.loads(documents.readline())["modules"])
    except (PolicyError, ValueError, KeyError, TypeError) as e:
        _send(answers, _line({"error": str(e)}))
        return
    _send(answers, READY)
    for line in documents:
        rule, document = json.loads(line)
        decision = rules.evaluate(document, rule)
        _send(answers, _line({"deny": decision.deny_reasons, "error": decision.error}))


def check() -> None:
    """Compile the policy on standard input (`{"modules": …, "network": bool}`) and say whether it
    compiled and calls no built-in it may not (`policy_builtins`)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        asked = json.loads(sys.stdin.buffer.read())
        sources = asked["modules"]
        check_builtins(Rules(sources), sources, network=bool(asked.get("network")))
    except PolicyError as e:
        _send(answers, _line({"error": str(e)}))
        return
    except (ValueError, KeyError, TypeError) as e:
        _send(answers, _line({"error": f"the policy could not be read: {e}"}))
        return
    _send(answers, _line({"error": None}))


def _send(answers: IO[bytes], line: bytes) -> None:
    answers.write(line)
    answers.flush()


def _die_with_parent() -> None:
    """On Linux, be killed when the proxy dies, even while evaluating (when no read of standard
    input would notice the proxy gone)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
