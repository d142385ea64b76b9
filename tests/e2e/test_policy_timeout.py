"""A policy evaluation that runs away (a rule looping for ever) is stopped at `policy.timeout`:
the call is denied and audited as such, reaches no upstream, and other calls are served meanwhile;
mitmdump still stops on SIGTERM while an evaluation hangs (once its drain's drain_s has passed)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from tests.support.runaway_policy import PATHOLOGICAL, RUNAWAY

ALICE = "tg-alice-research-1"
LIMIT = 0.5
EXCEEDED = f"policy evaluation exceeded its time limit of {LIMIT:g} s"


def configuration(policy_dir: Path, timeout: float, drain_s: float = 30):
    (policy_dir / "runaway.rego").write_text(RUNAWAY)
    return lambda urls: {
        "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-o"]}},
        "clients": [{"name": "alice", "keys": [ALICE], "groups": ["research"]}],
        "policy": {"rego": [str(policy_dir / "runaway.rego")], "timeout": timeout},
        "drain_s": drain_s,
    }


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    config = configuration(tmp_path_factory.mktemp("policy"), LIMIT)
    return start_gateway(config, "--set", "flow_detail=4", "--set", "termlog_verbosity=debug")


def started(record: dict) -> float:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def ended(record: dict) -> float:
    return started(record) + record["latency_ms"] / 1000


def test_a_runaway_evaluation_is_denied_at_the_time_limit_while_other_calls_are_served(gw):
    gw.reset()
    result = gw.run(f"""
        import threading, time
        import openai
        messages = [{{"role": "user", "content": "hi"}}]
        good = openai.OpenAI(api_key="{ALICE}", max_retries=0, timeout=60)
        bad = openai.OpenAI(api_key="{ALICE}", max_retries=0, timeout=60)
        good.chat.completions.create(model="gpt-4o", messages=messages)  # decided: cached from now on
        bad.chat.completions.create(model="gpt-4o-mini", messages=messages)  # its connection, open
        events = []

        def refused():
            try:
                bad.chat.completions.create(model="{PATHOLOGICAL}", messages=messages)
                events.append(["bad", "served"])
            except Exception as e:
                events.append(["bad", type(e).__name__, getattr(e, "status_code", None),
                               getattr(e, "code", None), str(e)])

        waiting = threading.Thread(target=refused)
        waiting.start()
        time.sleep(0.2)  # the bad call's evaluation is under way
        good.chat.completions.create(model="gpt-4o", messages=messages)
        events.append(["good", "served"])
        waiting.join(30)
        report(events=events)
    """)
    events = result["events"]
    assert [e[0] for e in events] == ["good", "bad"], events  # the cached call did not wait
    _, error, status, code, message = events[1]
    assert (error, status, code) == ("PermissionDeniedError", 403, "policy_denied")
    assert "Tollgate policy denied this call: policy error" in message

    # The upstream got the three allowed calls, nothing of the refused one.
    models = [r.json()["model"] for r in gw.fakes["openai"].received]
    assert models == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]
    records = gw.new_audit(4)
    good, bad = records[2], records[3]
    assert (good["model"], good["decision"], good["status"]) == ("gpt-4o", "allow", 200)
    assert (bad["model"], bad["decision"], bad["deny_reasons"], bad["error"], bad["status"]) == (
        PATHOLOGICAL,
        "deny",
        ["policy error"],
        EXCEEDED,
        403,
    )
    assert bad["upstream_key"] is None
    # As the proxy saw it: the cached call came while the evaluation hung, and was done before it.
    assert started(bad) < started(good) and ended(good) < ended(bad), (good, bad)
    console = gw.proxy.console()
    assert f"Tollgate: {EXCEEDED}" in console
    assert ALICE not in console

    # The worker was replaced: a call not decided before is evaluated afresh; the runaway one is
    # remembered and refused at once.
    result = gw.run(f"""
        import openai
        client = openai.OpenAI(api_key="{ALICE}", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{{"role": "user", "content": "hi"}}])
        try:
            client.chat.completions.create(model="{PATHOLOGICAL}", messages=[{{"role": "user", "content": "hi"}}])
            report(again="served")
        except openai.PermissionDeniedError as e:
            report(again=e.status_code)
    """)
    assert result == {"again": 403}
    fresh, again = gw.new_audit(2)
    assert (fresh["model"], fresh["decision"], fresh["status"]) == ("gpt-4o-2024-08-06", "allow", 200)
    assert (again["deny_reasons"], again["error"]) == (["policy error"], EXCEEDED)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_mitmdump_stops_on_sigterm_while_an_evaluation_hangs(start_gateway, tmp_path):
    # A limit the test never reaches; SIGTERM's drain waits for the call 1 s, then mitmdump stops.
    gw = start_gateway(configuration(tmp_path, 600, drain_s=1))
    outcome: dict = {}
    client = threading.Thread(
        target=lambda: outcome.update(
            gw.run(
                f"""
        import openai
        try:
            openai.OpenAI(api_key="{ALICE}", max_retries=0, timeout=60).chat.completions.create(
                model="{PATHOLOGICAL}", messages=[{{"role": "user", "content": "hi"}}])
            report(outcome="served")
        except Exception as e:
            report(outcome=type(e).__name__)
    """,
                timeout=90,
            )
        )
    )
    client.start()
    proxy = gw.proxy.process
    # The evaluation hangs once the worker burns CPU on it.
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while time.monotonic() < deadline:
        workers = children(proxy.pid)
        if any(cpu_seconds(w) > 0.5 for w in workers if running(w)):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"no worker evaluated: {workers}\n{gw.proxy.console()[-2000:]}")

    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=15)
    assert not any(running(w) for w in workers), "the worker outlived mitmdump"
    client.join(60)
    assert outcome.get("outcome") not in (None, "served"), outcome
    assert gw.fakes["openai"].received == []
    assert not [r for r in gw.audit() if r.get("decision") == "allow"], json.dumps(gw.audit())
