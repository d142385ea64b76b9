"""What `agents` adds to an agent's turn: the same call through bare mitmdump, Tollgate without
`agents` and Tollgate with it, in one run.

The call is an agent's turn as an OpenAI chat completion: four tools declared, the user's request,
the assistant's call of `read_inbox` and its result (twenty e-mails as JSON, about 7 KB of outside
content, different at each call), non-streamed. The fake upstream answers with a call of `send_money` whose arguments come
from the user's own text: `agents` reads the request (the taint index, the injection signals),
reads the answer whole and lets the call through. Every mode sends the same bytes; the answer must
hold the call (a refusal would be a different answer and fails the run).

Modes (one kept-alive connection each, the client and fake upstream of bench/overhead.py):
  direct          straight to the fake upstream;
  bare            plain mitmdump, only --map-remote to the fake;
  tollgate        Tollgate with bench/overhead.py's configuration (keys, override, policy, limits);
  tollgate-agents the same configuration plus `agents` (its defaults).

Each of --rounds rounds runs --calls calls per mode, interleaved in blocks; a round's added time of
a mode is its p50 minus direct's. Printed: each round's figures, and the median over the rounds of
(agents - direct) / (tollgate - direct) (target <= 1.10) and of (tollgate - direct) / (bare - direct);
and each proxy's CPU time per call (its threads', from /proc: less swayed by a busy machine than
the latency), with the median of agents / tollgate.

With `--results N` each request holds N calls of `read_inbox` and their results, the last new at
each call and the earlier ones the same at every call, as an agent sends them again at each turn
(`agents` reads a result it has kept once).

    .venv/bin/python bench/agents_overhead.py
    .venv/bin/python bench/agents_overhead.py --rounds 5 --calls 200
    .venv/bin/python bench/agents_overhead.py --rounds 5 --calls 200 --results 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import yaml  # noqa: E402

from overhead import (  # noqa: E402
    OVERRIDDEN_MODEL,
    PATH,
    REQUESTED_MODEL,
    ROOT,
    ChatFake,
    Conn,
    Target,
    Trust,
    bare_args,
    chat_completion,
    tollgate_config,
)
from stream import API_HOST, Proxy, cpu_ns, loadavg, percentile  # noqa: E402

TARGET_AGENTS_RATIO = 1.10  # (agents - direct) / (tollgate - direct), p50, median of the rounds

IBAN = "GB29NWBK60161331926819"
TURNS = 1000


def _tool(name: str, description: str, properties: dict) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


TOOLS = [
    _tool("read_inbox", "Reads the user's inbox.", {"folder": {"type": "string"}}),
    _tool(
        "send_money",
        "Sends money.",
        {"recipient": {"type": "string"}, "amount": {"type": "number"}, "subject": {"type": "string"}},
    ),
    _tool(
        "send_email",
        "Sends an e-mail.",
        {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
    ),
    _tool("search_files", "Searches the user's files.", {"query": {"type": "string"}}),
]


def inbox(turn: int) -> str:
    """Twenty e-mails as a tool returns them: the turn's outside content, new at each turn."""
    mails = [
        {
            "id": f"{turn}-{100 + i}",
            "sender": f"colleague{i}@example.com",
            "recipients": ["me@example.com"],
            "subject": f"Quarterly planning, part {i}",
            "body": (
                f"Hi, here are my notes for part {i} of the planning. The budget review moves to "
                f"Thursday at 10:00 in room {200 + i}; please bring the figures for the Q{i % 4 + 1} "
                "forecast and the list of open hiring requests. Thanks, and see you there."
            ),
            "timestamp": f"2026-05-{i + 1:02d}T09:{i:02d}:00",
            "read": i % 3 == 0,
        }
        for i in range(20)
    ]
    return json.dumps(mails)


def agent_request_body(turn: int = 0, results: int = 1) -> bytes:
    """The turn's request: `results` calls of `read_inbox` with their results, the last one new at
    each turn and the earlier ones the same at every turn (an agent sends them all again)."""
    messages: list[dict] = [
        {"role": "system", "content": "You are a helpful assistant with access to the user's tools."},
        {"role": "user", "content": f"Check my inbox, then pay my rent of 1100 to my landlord's IBAN {IBAN}."},
    ]
    for k in range(results):
        call_id = f"call_inbox{k + 1:04d}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "read_inbox", "arguments": '{"folder": "inbox"}'},
                    }
                ],
            }
        )
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": inbox(turn if k == results - 1 else -1 - k)}
        )
    return json.dumps(
        {"model": REQUESTED_MODEL, "messages": messages, "tools": TOOLS, "max_tokens": 256}, separators=(",", ":")
    ).encode()


class AgentFake(ChatFake):
    """bench/overhead.py's fake upstream, answering a call of `send_money` from the user's own text."""

    def _completion(self, model: str) -> dict:
        arguments = json.dumps({"recipient": IBAN, "amount": 1100, "subject": "Rent"})
        call = {"id": "call_pay0001", "type": "function", "function": {"name": "send_money", "arguments": arguments}}
        usage = {"prompt_tokens": 2100, "completion_tokens": 31, "total_tokens": 2131}
        return chat_completion(
            "chatcmpl-bench-agents000000000000000", model, None, "tool_calls", usage, tool_calls=[call]
        )


@dataclass
class AgentTarget(Target):
    """A Target whose request is an agent's turn, its last tool result new at each of `TURNS` turns
    (what Tollgate read of it helps no other turn); its answer must hold the call let through."""

    results: int = 1  # tool results in each request

    def __post_init__(self) -> None:
        self.distinct = TURNS
        super().__post_init__()
        self.answer_marker = b'"send_money"'

    def _bodies(self) -> list[bytes]:
        return [agent_request_body(turn, self.results) for turn in range(TURNS)]


MODES = ("direct", "bare", "tollgate", "tollgate-agents")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the ratios are their median)")
    parser.add_argument("--calls", type=int, default=200, help="calls per mode and round")
    parser.add_argument("--block", type=int, default=20, help="calls per mode in a row")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls per mode")
    parser.add_argument(
        "--results", type=int, default=1, help="tool results in each request, the last one new at each call"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-agents-bench-"))
    trust = Trust.made(workdir)
    real_key, virtual_key = "sk-proj-bench-agents-0123456789abcdef", "tg-bench-app-0123456789abcdef01"
    fake = AgentFake(trust.ca, real_key)
    proxy_ctx, common = trust.proxied, trust.common
    proxies: list[Proxy] = []
    targets: dict[str, AgentTarget] = {
        "direct": AgentTarget(
            "direct",
            "tls",
            fake.port,
            real_key,
            REQUESTED_MODEL,
            context=trust.direct,
            server_hostname="127.0.0.1",
            results=args.results,
        )
    }
    try:
        for mode in MODES[1:]:
            if mode == "bare":
                proxy_args, key, model = bare_args(fake.url, common), real_key, REQUESTED_MODEL
            else:
                config = tollgate_config(fake.url, real_key, virtual_key, workdir / f"audit-{mode}.jsonl")
                config["ledger"] = {"store": f"sqlite:///{workdir / f'ledger-{mode}.sqlite'}"}
                if mode == "tollgate-agents":
                    config["agents"] = {}
                path = workdir / f"{mode}.yaml"
                path.write_text(yaml.safe_dump(config, sort_keys=False))
                proxy_args = ["-s", str(ROOT / "addons" / "gateway.py"), "--set", f"tollgate_config={path}", *common]
                key, model = virtual_key, OVERRIDDEN_MODEL
            proxy = Proxy(mode, proxy_args, workdir)
            proxies.append(proxy)
            proxy.wait_ready()
            targets[mode] = AgentTarget(
                mode,
                "connect",
                proxy.port,
                key,
                model,
                context=proxy_ctx,
                server_hostname=API_HOST,
                results=args.results,
            )
        conns = {mode: Conn(target) for mode, target in targets.items()}
        for conn in conns.values():
            for _ in range(args.warmup):
                conn.call()
        print(
            f"agent turn: POST {PATH}, {len(agent_request_body(0, args.results))}-byte body (4 tools, "
            f"{args.results} tool result{'s' if args.results > 1 else ''}, the last new at each call), "
            f"non-streamed; answer {len(fake._payload(OVERRIDDEN_MODEL))} bytes, a call let through"
        )
        print(f"load average at start: {loadavg()}")
        print(
            f"{'round':>5}  "
            + "  ".join(f"{m + ' p50':>20}" for m in MODES)
            + "  agents/tollgate  tollgate/bare  cpu/call: bare tollgate agents (us)  agents/tollgate"
        )
        agents_ratios, tollgate_ratios, cpu_ratios = [], [], []
        pids = {proxy.name: proxy.pid for proxy in proxies}
        started = time.monotonic()
        for r in range(args.rounds):
            seq: dict[str, list[float]] = {m: [] for m in MODES}
            cpu = dict.fromkeys(pids, 0)  # the proxy's CPU time over its calls: less swayed by a busy machine
            left = args.calls
            while left > 0:
                block = min(args.block, left)
                left -= block
                order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
                for mode in order:
                    before = cpu_ns(pids[mode]) if mode in pids else 0
                    seq[mode].extend(conns[mode].call() / 1e6 for _ in range(block))
                    if mode in pids:
                        cpu[mode] += cpu_ns(pids[mode]) - before
            p50 = {m: percentile(seq[m], 50) for m in MODES}
            added = {m: p50[m] - p50["direct"] for m in MODES}
            agents_ratios.append(added["tollgate-agents"] / added["tollgate"])
            tollgate_ratios.append(added["tollgate"] / added["bare"])
            per_call = {m: cpu[m] / args.calls / 1000 for m in pids}
            cpu_ratios.append(per_call["tollgate-agents"] / per_call["tollgate"])
            print(
                f"{r + 1:>5}  "
                + "  ".join(f"{p50[m]:>9.3f} ({added[m]:+.3f})" for m in MODES)
                + f"  {agents_ratios[-1]:>15.3f}  {tollgate_ratios[-1]:>13.3f}  "
                + f"{per_call['bare']:>14.0f} {per_call['tollgate']:>8.0f} {per_call['tollgate-agents']:>6.0f}"
                + f"  {cpu_ratios[-1]:>20.3f}"
            )
        agents_median = statistics.median(agents_ratios)
        print(f"load average at end: {loadavg()}; {time.monotonic() - started:.0f} s")
        print(
            f"added p50, median of {args.rounds} rounds: agents / tollgate {agents_median:.3f}x "
            f"(target <= {TARGET_AGENTS_RATIO:.2f}x); tollgate / bare {statistics.median(tollgate_ratios):.3f}x"
        )
        print(
            f"proxy CPU per call, median of {args.rounds} rounds: agents / tollgate {statistics.median(cpu_ratios):.3f}x"
        )
        audit = workdir / "audit-tollgate-agents.jsonl"
        for proxy in proxies:
            proxy.stop()
        decisions = [
            json.loads(line).get("tool_calls")
            for line in audit.read_text().splitlines()
            if '"event":"llm_call"' in line or '"event": "llm_call"' in line
        ]
        allowed = sum(1 for d in decisions if d and d[0]["decision"] == "allow")
        print(f"tollgate-agents records: {len(decisions)}, each call let through: {allowed == len(decisions)}")
        return 0 if agents_median <= TARGET_AGENTS_RATIO and allowed == len(decisions) else 1
    finally:
        for proxy in proxies:
            proxy.stop()
        fake.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
