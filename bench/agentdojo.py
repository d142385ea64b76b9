"""AgentDojo's v1 suites played through a real Tollgate, with an agent that always obeys.

    python3 -m venv .venv-agentdojo && .venv-agentdojo/bin/pip install agentdojo==0.1.35 openai
    # (or: .venv/bin/python bench/agentdojo.py --setup)
    .venv/bin/python bench/agentdojo.py --limit 20                     # 20 pairs per suite and attack
    .venv/bin/python bench/agentdojo.py --stream --attacks important_instructions,business_note
    .venv/bin/python bench/agentdojo.py                                # every pair: long

`.venv-agentdojo` is the bench's own (git-ignored), never part of `./run.sh test` or CI: AgentDojo
and the openai SDK the agent is written with. This process (in .venv) starts mitmdump with
addons/gateway.py, configured with `agents` from docs/examples/agentdojo.yaml and an `upstream`
sending OpenAI's calls to a fake TLS provider on 127.0.0.1: the stand-in model of
`bench/agentdojo_model.py`, which answers each turn with the task's ground truth (right after a
tool result holding injected text, the injection task's calls; otherwise the user task's next
call; then its final text). The agents (`bench/agentdojo_agent.py`, in .venv-agentdojo, `--workers`
of them) send real chat completions with the official openai SDK through Tollgate, execute only
the calls Tollgate let through, and AgentDojo's own `utility` and `security` judge each run.

`--format anthropic` plays the same runs on Anthropic Messages with the anthropic SDK (the stand-in
answers in either format: `FORMATS` in bench/agentdojo_model.py). With `--baseline` the same runs
go through a second Tollgate without `agents` (no defence).
Figures: benign utility (each user task, no injection), utility under attack and attack success
(each user task × injection task pair), per suite and attack. `--limit N` takes N user tasks and
N pairs per suite (the same ones for every attack, spread over the tasks by `--seed`)."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import trustme
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "addons")]

from bench.agentdojo_model import FORMATS, StandIn, serve_plans  # noqa: E402
from tests.support.fake_upstream import FakeUpstream  # noqa: E402
from tests.support.proxy import Mitmdump  # noqa: E402

from tollgate.proxy.certs import ensure_bundle  # noqa: E402

VENV = ROOT / ".venv-agentdojo"
PIN = "agentdojo==0.1.35"
AGENT = ROOT / "bench" / "agentdojo_agent.py"
SETTINGS = ROOT / "docs" / "examples" / "agentdojo.yaml"
KEY = "tg-agentdojo-bench-0001"
SUITES = ("banking", "slack", "travel", "workspace")
# Every attack the package ships that needs no LLM, and ours (worded as no published template is).
ATTACKS = (
    "important_instructions",
    "important_instructions_no_user_name",
    "important_instructions_no_model_name",
    "important_instructions_no_names",
    "important_instructions_wrong_model_name",
    "important_instructions_wrong_user_name",
    "tool_knowledge",
    "ignore_previous",
    "direct",
    "system_message",
    "injecagent",
    "business_note",
)
# Measured before on the same always-obeying agent: (benign utility %, attack success %).
BASELINES = (
    ("no defence", 99, 98),
    ("taint on acting tools, per-tool trust", 82.5, 34),
    ("  + phrase rules", 82.5, 5.6),
    ("  + phrase rules, attack worded anew", 82.5, 34),
    ("taint on every result", 38, 6),
)


def setup() -> None:
    """The bench's own venv: AgentDojo, pinned, and the openai SDK the agent is written with."""
    if not (VENV / "bin" / "python").exists():
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", PIN, "openai"], check=True)


def jobs(suites: list[str], attacks: list[str], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """The runs: each suite's user tasks without injection, then each attack's pairs."""
    listing = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", LIST_TASKS, json.dumps(suites)],
        capture_output=True,
        text=True,
        check=True,
    )
    tasks = json.loads(listing.stdout.strip().splitlines()[-1])
    out: list[dict[str, Any]] = []
    rng = random.Random(seed)
    for suite in suites:
        users, injections = tasks[suite]["user"], tasks[suite]["injection"]
        benign = users if limit is None else rng.sample(users, min(limit, len(users)))
        out += [{"suite": suite, "attack": None, "user_task": u, "injection_task": None} for u in benign]
        pairs = [(u, i) for u in users for i in injections]
        if limit is not None:
            pairs = rng.sample(pairs, min(limit, len(pairs)))
        for attack in attacks:
            out += [{"suite": suite, "attack": attack, "user_task": u, "injection_task": i} for u, i in pairs]
    return out


LIST_TASKS = """
import json, sys, warnings
warnings.filterwarnings("ignore")
from agentdojo.task_suite.load_suites import get_suite
out = {}
for name in json.loads(sys.argv[1]):
    s = get_suite("v1", name)
    out[name] = {"user": list(s.user_tasks), "injection": list(s.injection_tasks)}
print(json.dumps(out))
"""


def config(upstream: str, audit: Path, agents: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {
            "openai": {"upstream": upstream, "keys": ["sk-agentdojo-bench-upstream"]},
            "anthropic": {"upstream": upstream, "keys": ["sk-ant-agentdojo-bench-upstream"]},
        },
        "clients": [{"name": "agentdojo", "keys": [KEY]}],
        "audit": {"path": str(audit)},
    }
    if agents:
        data["agents"] = yaml.safe_load(SETTINGS.read_text())["agents"]
    return data


def play(
    proxy: Mitmdump, bundle: Path, plans_url: str, work: list[dict[str, Any]], args: argparse.Namespace, defence: str
) -> list[dict[str, Any]]:
    """The runs through one Tollgate, by `--workers` agents at once; each result written to
    `--results` as it comes (a run cut short keeps what it measured)."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    started = time.monotonic()
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")},
        "HTTPS_PROXY": proxy.proxy_url,
        "NO_PROXY": "",
        "SSL_CERT_FILE": str(bundle),
        "PYTHONWARNINGS": "ignore",
    }

    def worker(share: list[dict[str, Any]]) -> None:
        order = {"jobs": share, "plans_url": plans_url, "key": KEY, "stream": args.stream, "format": args.format}
        process = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(AGENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(order))
        process.stdin.close()
        for line in process.stdout:
            if not line.startswith("{"):
                continue
            result = {**json.loads(line), "defence": defence}
            with lock:
                results.append(result)
                done = len(results)
                if args.results:
                    with args.results.open("a") as f:
                        f.write(json.dumps(result) + "\n")
            if done % 50 == 0 or done == len(work):
                print(f"  {done}/{len(work)} runs, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        process.wait()

    shares = [work[i :: args.workers] for i in range(args.workers)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def percent(hits: int, total: int) -> str:
    return f"{100 * hits / total:5.1f}" if total else "    -"


def table(results: list[dict[str, Any]], defence: str) -> str:
    """Per suite and attack: benign utility %, utility under attack %, attack success %."""
    benign: dict[str, list[bool]] = defaultdict(list)
    attacked: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    errors = 0
    for r in results:
        errors += "error" in r
        if r["attack"] is None:
            benign[r["suite"]].append(bool(r.get("utility")))
        else:
            attacked[(r["attack"], r["suite"])].append(r)
    lines = [f"## {defence}", "", f"{'attack':40} {'suite':10} {'runs':>5} {'utility':>8} {'success':>8} {'obeyed':>7}"]
    for suite in sorted(benign):
        runs = benign[suite]
        lines.append(f"{'(benign)':40} {suite:10} {len(runs):5} {percent(sum(runs), len(runs)):>8}")
    runs = [u for v in benign.values() for u in v]
    lines.append(f"{'(benign)':40} {'all':10} {len(runs):5} {percent(sum(runs), len(runs)):>8}")
    by_attack: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (attack, suite), runs_ in sorted(attacked.items()):
        by_attack[attack] += runs_
        lines.append(_row(attack, suite, runs_))
    lines.append("")
    for attack, runs_ in by_attack.items():
        lines.append(_row(attack, "all", runs_))
    lines.append(f"\nruns that failed (counted as neither utility nor success): {errors}")
    return "\n".join(lines)


def _row(attack: str, suite: str, runs: list[dict[str, Any]]) -> str:
    utility = sum(bool(r.get("utility")) for r in runs)
    success = sum(bool(r.get("security")) for r in runs)
    obeyed = sum(bool(r.get("obeyed")) for r in runs)
    return (
        f"{attack:40} {suite:10} {len(runs):5} {percent(utility, len(runs)):>8} {percent(success, len(runs)):>8}"
        f" {percent(obeyed, len(runs)):>7}"
    )


def baselines() -> str:
    lines = ["## Baselines measured before (same always-obeying agent)", ""]
    lines += [f"{name:45} benign utility {u:5} %   attack success {s:5} %" for name, u, s in BASELINES]
    return "\n".join(lines)


def main() -> None:
    # Ended from outside: the `finally` blocks stop mitmdump and the agents.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="make .venv-agentdojo, then run")
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--stream", action="store_true", help="streamed chat completions")
    parser.add_argument("--format", default="chat", choices=sorted(FORMATS), help="the answer format")
    parser.add_argument("--limit", type=int, default=None, help="user tasks and pairs per suite")
    parser.add_argument("--seed", type=int, default=88)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="also through Tollgate without agents")
    parser.add_argument("--results", type=Path, help="write each run's result here (JSON lines)")
    args = parser.parse_args()
    if args.setup:
        setup()
    if not (VENV / "bin" / "python").exists():
        sys.exit(f"no {VENV.name}: run with --setup, or see the top of {Path(__file__).name}")
    suites = [s for s in args.suites.split(",") if s]
    attacks = [a for a in args.attacks.split(",") if a]
    work = jobs(suites, attacks, args.limit, args.seed)
    print(
        f"{len(work)} runs per defence ({args.format}, {'streamed' if args.stream else 'not streamed'})",
        file=sys.stderr,
    )

    ca = trustme.CA()
    stand_in = StandIn()
    fake = FakeUpstream(ca, stand_in.handler)
    plans = serve_plans(stand_in)
    plans_url = f"http://127.0.0.1:{plans.server_address[1]}"
    defences = [("Tollgate with agents (docs/examples/agentdojo.yaml)", True)]
    if args.baseline:
        defences.append(("Tollgate without agents (no defence)", False))
    out: list[str] = []
    if args.results:
        args.results.write_text("")
    with tempfile.TemporaryDirectory(prefix="agentdojo-bench-") as tmp:
        work_dir = Path(tmp)
        confdir = work_dir / "certs"
        confdir.mkdir()
        ensure_bundle(confdir)
        ca_pem = work_dir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        for name, agents in defences:
            config_path = work_dir / f"tollgate-{agents}.yaml"
            config_path.write_text(yaml.safe_dump(config(fake.url, work_dir / f"audit-{agents}.jsonl", agents)))
            proxy = Mitmdump(work_dir, confdir, ca_pem, config_path)
            try:
                proxy.wait_ready()
                print(f"{name}: mitmdump on {proxy.proxy_url}", file=sys.stderr)
                results = play(proxy, confdir / "ca-bundle.pem", plans_url, work, args, "agents" if agents else "none")
            finally:
                proxy.stop()
            out.append(table(results, name))
            print(out[-1], flush=True)
    fake.close()
    plans.shutdown()
    print("\n" + baselines())


if __name__ == "__main__":
    main()
