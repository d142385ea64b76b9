"""What each Tollgate stage costs per call, in process: no proxy, no network, no sockets.

The pipeline is loaded as mitmdump loads it (`tollgate.proxy.pipeline.gateway()`, configured through
mitmproxy's test context with the configuration bench/overhead.py uses: virtual keys, an override,
`model_allowlist.rego`, an audit file, Prometheus metrics served). Calls are made as mitmproxy makes them: a fresh flow per
call with an OpenAI SDK's request headers and a chat-completion body, then every hook in order
(`requestheaders`, `request`, `responseheaders`, the stream callable, `response`). Each step of
each hook is timed over all calls of a round, step by step (each call step on its own); the best
of the rounds is printed.

Use it to see where per-call time goes and whether a change helps: its figures are steadier than
bench/overhead.py's, which measures the whole proxy. Inside mitmdump the same work costs about
twice as much (colder caches between the proxy's own work); see docs/performance.md.

    .venv/bin/python bench/stages.py [--calls 3000] [--rounds 5] [--otlp] [--retry]

With --otlp the configuration also has metrics.otlp, to a collector stand-in of this process
(bench/overhead.py's OtlpCollector): each call's span is made in `Audit.response` (the audit tells
`Tracing.record`), and exported by the SDK's thread. With --retry the provider has `retry` (every
condition), as bench/overhead.py's `tollgate-retry`: what a call that needs no retry costs with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "addons"))

import yaml  # noqa: E402
from mitmproxy import http  # noqa: E402
from mitmproxy.addons import proxyserver  # noqa: E402
from mitmproxy.test import taddons, tflow, tutils  # noqa: E402

from overhead import BENCH_LIMITS, OtlpCollector, free_port  # noqa: E402
from tollgate.proxy.flows import call_of  # noqa: E402
from tollgate.proxy.pipeline import gateway as tollgate  # noqa: E402
from tollgate.proxy.runner import CallSteps  # noqa: E402

POLICY = BENCH.parent / "docs" / "examples" / "policies" / "model_allowlist.rego"
VIRTUAL_KEY = "tg-bench-app-0123456789abcdef"
BODY = json.dumps(
    {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello in five words."},
        ],
        "max_tokens": 64,
    },
    separators=(",", ":"),
).encode()
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how are you?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 7, "total_tokens": 31},
    }
).encode()
REQUEST_HEADERS = (
    ("host", "api.openai.com"),
    ("authorization", f"Bearer {VIRTUAL_KEY}"),
    ("content-type", "application/json"),
    ("accept", "application/json"),
    ("user-agent", "OpenAI/Python 2.0"),
    ("x-stainless-lang", "python"),
    ("content-length", str(len(BODY))),
)
# The hooks in the order mitmproxy calls them; "stream" is the response's stream callable.
HOOKS = ("requestheaders", "request", "responseheaders", "stream", "response")


RETRY = {"attempts": 3, "when": [429, 529, "5xx", "connect", "timeout"]}


def config(workdir: Path, metrics: bool = True, otlp: str | None = None, retry: bool = False) -> Path:
    path = workdir / "tollgate.yaml"
    openai = {"upstream": "https://127.0.0.1:9", "keys": ["sk-proj-bench"], "timeout": 60}
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {**openai, **({"retry": RETRY} if retry else {})}},
                "clients": [
                    {"name": "bench-app", "keys": [VIRTUAL_KEY], "groups": ["support"]},
                    {"name": "alice", "keys": ["tg-alice-7f3c9b2e41d8a0b6"], "groups": ["research"]},
                ],
                "allow_anonymous": False,
                "overrides": [
                    {"match": {"provider": "openai", "model": "gpt-4o", "group": "support"}, "model": "gpt-4o-mini"}
                ],
                "policy": {"rego": [str(POLICY)]},
                "limits": BENCH_LIMITS,
                "audit": {"path": str(workdir / "audit.jsonl")},
                "metrics": {
                    **({"listen": f"127.0.0.1:{free_port()}"} if metrics else {}),
                    **({"otlp": {"endpoint": otlp}} if otlp else {}),
                },
            }
        )
    )
    return path


def new_flow() -> http.HTTPFlow:
    flow = tflow.tflow()
    request = flow.request
    request.host, request.port, request.scheme = "api.openai.com", 443, "https"
    flow.client_conn.sni = "api.openai.com"  # as a client through the proxy names the host it calls
    request.method, request.path = "POST", "/v1/chat/completions"
    request.headers.fields = tuple((k.encode(), v.encode()) for k, v in REQUEST_HEADERS)
    request.raw_content = BODY
    flow.client_conn.sni = "api.openai.com"  # as the SDK's TLS connection names it
    flow.response = None
    return flow


def answer(flow: http.HTTPFlow) -> None:
    flow.response = tutils.tresp(status_code=200, content=b"")
    flow.response.headers.fields = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(ANSWER)).encode()),
    )


def stream_answer(flow: http.HTTPFlow) -> None:
    flow.response.stream(ANSWER)
    flow.response.stream(b"")  # the end


def label(step) -> str:
    owner = getattr(step, "__self__", None)
    return f"{type(owner).__name__}.{step.__name__}" if owner is not None else step.__name__


def timed_steps(hook: str, steps) -> list[tuple[str, object]]:
    """Each step of a hook, the call steps one by one (as `CallSteps` runs them: while unanswered)."""
    timed = []
    for step in steps:
        owner = getattr(step, "__self__", None)
        if not isinstance(owner, CallSteps):
            timed.append((label(step), step))
            continue
        if step.__name__ != "at_request":
            continue  # at_headers: only for uploads streamed unread, none here
        for call_step in owner.steps:

            def run(flow, call_step=call_step):
                return None if flow.response is not None else call_step(flow, call_of(flow))

            timed.append((f"{label(call_step)} ({hook})", run))
    return timed


async def one_round(gateway, calls: int) -> dict[str, float]:
    """µs per call for each step, run one step at a time over all flows. A step that returns an
    awaitable (the decide stage, for a decision not in the policy's cache) is awaited, as mitmproxy
    does, within its time."""
    flows = [new_flow() for _ in range(calls)]
    spent: dict[str, float] = {}

    async def timed(label: str, run) -> None:
        start = time.perf_counter()
        for flow in flows:
            pending = run(flow)
            if pending is not None:
                await pending
        spent[label] = (time.perf_counter() - start) / calls * 1e6

    for hook in HOOKS:
        if hook == "responseheaders":
            for flow in flows:
                assert flow.response is None, f"refused: {flow.response.content!r}"
                answer(flow)
        if hook == "stream":
            await timed("stream callable (answer + end)", stream_answer)
            continue
        for name, run in timed_steps(hook, gateway.steps.get(hook, ())):
            await timed(name, run)
    record = flows[-1].metadata["tollgate"]
    assert (record["model"], record["input_tokens"], record["decision"]) == ("gpt-4o-mini", 24, "allow"), record
    return spent


async def measure(args: argparse.Namespace) -> dict[str, float]:
    gateway = tollgate()
    collector = OtlpCollector() if args.otlp else None
    with tempfile.TemporaryDirectory() as work, taddons.context(proxyserver.Proxyserver(), gateway) as tctx:
        tctx.configure(
            gateway,
            tollgate_config=str(config(Path(work), args.metrics, collector.url if collector else None, args.retry)),
        )
        await one_round(gateway, min(args.calls, 300))  # warm-up
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for label, us in (await one_round(gateway, args.calls)).items():
                best[label] = min(best.get(label, us), us)
        # Audit's done() closes the audit file; Decide's stops its watcher and the policy's worker
        if (pending := gateway.done()) is not None:
            await pending
        if collector is not None:
            collector.close()
            print(f"OTLP stand-in: {collector.posts} exports, {collector.bytes / 1024:.0f} KiB of spans")
        return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000, help="flows per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best per stage is printed")
    parser.add_argument(
        "--metrics", action=argparse.BooleanOptionalAction, default=True, help="Prometheus metrics on (metrics.listen)"
    )
    parser.add_argument("--otlp", action="store_true", help="metrics.otlp on: a span per call, to a stand-in")
    parser.add_argument("--retry", action="store_true", help="providers.openai.retry on (every condition)")
    args = parser.parse_args()
    best = asyncio.run(measure(args))
    width = max(map(len, best))
    traces = (", OTLP traces on" if args.otlp else "") + (", retry configured" if args.retry else "")
    print(f"µs per call, best of {args.rounds} rounds of {args.calls} calls (Python {sys.version.split()[0]}){traces}")
    for label, us in sorted(best.items(), key=lambda item: -item[1]):
        if us >= 0.5:
            print(f"  {label:<{width}}  {us:6.1f}")
    print(f"  {'total':<{width}}  {sum(best.values()):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
