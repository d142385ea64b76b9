"""The model of `bench/agentdojo.py`: a stand-in that answers each turn with the task's ground
truth, an agent that always obeys. Each run registers its plan (the user task's ground-truth calls,
the injection task's, the injected texts and the final text) by a side door, then the agent's
requests come through Tollgate naming the run in a header. Right after a tool result holding
injected text the stand-in makes the injection task's calls, one a turn; otherwise the user task's
next call; then the final text. A call Tollgate refused is not made again: the plan moves on.

The wire is read and written by a format's pair of functions (`FORMATS`): what the stand-in decides
knows nothing of the wire, so another answer format is one more pair."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.fake_upstream import Received, Reply
from tests.support.streams import sse

RUN_HEADER = "x-agentdojo-run"


@dataclass
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass
class Plan:
    user_calls: list[Call]
    injection_calls: list[Call]
    injections: list[str]  # the injected texts, as the environment holds them
    final: str
    user_at: int = 0
    injection_at: int = 0
    obeying: bool = False
    obeyed: bool = False  # the injection task's calls were all made (or refused)
    turns: int = 0

    def next(self, results: list[str]) -> Call | str:
        """The answer to a turn whose newest tool results are `results`."""
        self.turns += 1
        if not self.obeyed and not self.obeying and any(_holds(r, i) for r in results for i in self.injections):
            self.obeying = True
        if self.obeying and self.injection_at < len(self.injection_calls):
            self.injection_at += 1
            if self.injection_at == len(self.injection_calls):
                self.obeying, self.obeyed = False, True
            return self.injection_calls[self.injection_at - 1]
        if self.user_at < len(self.user_calls):
            self.user_at += 1
            return self.user_calls[self.user_at - 1]
        return self.final


_NOISE = re.compile(r"\s+|\\[nrt]|[\\\"'|>-]")


def _plain(text: str) -> str:
    """Text as a tool's YAML may have folded, quoted or escaped it: white space, escapes, quotes
    and YAML's block markers removed."""
    return _NOISE.sub("", text).casefold()


def _holds(result: str, injected: str) -> bool:
    plain, wanted = _plain(result), _plain(injected)
    return bool(wanted) and (wanted in plain or (len(wanted) > 80 and wanted[:80] in plain))


@dataclass
class Turn:
    """What the stand-in reads of a request: the run, whether it streams, the newest tool results
    (those after the last assistant turn)."""

    run: str
    stream: bool
    results: list[str]
    model: str


def read_chat(received: Received) -> Turn:
    body = received.json()
    results: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "assistant":
            results = []
        elif message.get("role") == "tool":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            results.append(content or "")
    return Turn(received.headers.get(RUN_HEADER, ""), bool(body.get("stream")), results, body.get("model", ""))


def write_chat(answer: Call | str, turn: Turn, call_id: str) -> Reply:
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    if isinstance(answer, Call):
        arguments = json.dumps(answer.arguments)
        call = {"id": call_id, "type": "function", "function": {"name": answer.name, "arguments": arguments}}
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": answer}, "stop"
    base = {"id": f"chatcmpl-{call_id}", "created": 1700000000, "model": turn.model}
    if not turn.stream:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        body = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        return Reply(200, body, {"content-type": "application/json"})
    chunk = {**base, "object": "chat.completion.chunk"}
    events: list[dict[str, Any]] = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    if isinstance(answer, Call):
        name = {"index": 0, "id": call_id, "type": "function", "function": {"name": answer.name, "arguments": ""}}
        events.append({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [name]}}]})
        arguments = json.dumps(answer.arguments)
        for at in range(0, len(arguments), 16):  # arguments in pieces, as models stream them
            piece = {"index": 0, "function": {"arguments": arguments[at : at + 16]}}
            events.append({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    else:
        events += [
            {**chunk, "choices": [{"index": 0, "delta": {"content": answer[at : at + 24]}}]}
            for at in range(0, len(answer), 24)
        ]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({**chunk, "choices": [], "usage": usage})
    return Reply(200, headers={"content-type": "text/event-stream"}, chunks=[*map(sse, events), b"data: [DONE]\n\n"])


def read_messages(received: Received) -> Turn:
    """Anthropic Messages: the tool results are `tool_result` blocks of the user turns."""
    body = received.json()
    results: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "assistant":
            results = []
            continue
        for block in message.get("content") if isinstance(message.get("content"), list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
                results.append(content or "")
    return Turn(received.headers.get(RUN_HEADER, ""), bool(body.get("stream")), results, body.get("model", ""))


def write_messages(answer: Call | str, turn: Turn, call_id: str) -> Reply:
    usage = {"input_tokens": 100, "output_tokens": 20}
    if isinstance(answer, Call):
        block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{call_id}", "name": answer.name}
        stop = "tool_use"
    else:
        block, stop = {"type": "text", "text": answer}, "end_turn"
    base = {"id": f"msg_{call_id}", "type": "message", "role": "assistant", "model": turn.model}
    if not turn.stream:
        full = {**block, "input": answer.arguments} if isinstance(answer, Call) else block
        body = {**base, "content": [full], "stop_reason": stop, "stop_sequence": None, "usage": usage}
        return Reply(200, body, {"content-type": "application/json"})
    started = {
        **base,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": started})]
    if isinstance(answer, Call):
        text, delta = json.dumps(answer.arguments), "input_json_delta"
        opening = {**block, "input": {}}
    else:
        text, delta = answer, "text_delta"
        opening = {"type": "text", "text": ""}
    events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}))
    key = "partial_json" if delta == "input_json_delta" else "text"
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": delta, key: text[at : at + 16]}},
        )
        for at in range(0, len(text), 16)
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Reply(
        200, headers={"content-type": "text/event-stream"}, chunks=[sse(data, event) for event, data in events]
    )


Reader = Callable[[Received], Turn]
Writer = Callable[[Call | str, Turn, str], Reply]
FORMATS: dict[str, tuple[str, Reader, Writer]] = {
    "chat": ("/chat/completions", read_chat, write_chat),
    "anthropic": ("/v1/messages", read_messages, write_messages),
}


@dataclass
class StandIn:
    """The plans of the runs under way, and the upstream handler that answers from them."""

    plans: dict[str, Plan] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def register(self, run: str, data: dict[str, Any]) -> None:
        calls = [[Call(c["function"], c["args"]) for c in data[k]] for k in ("user_calls", "injection_calls")]
        with self.lock:
            self.plans[run] = Plan(calls[0], calls[1], data["injections"], data["final"])

    def finish(self, run: str) -> dict[str, Any]:
        with self.lock:
            plan = self.plans.pop(run, None)
        return {} if plan is None else {"obeyed": plan.obeying or plan.obeyed, "turns": plan.turns}

    def handler(self, received: Received) -> Reply:
        for suffix, read, write in FORMATS.values():
            if received.path.endswith(suffix):
                turn = read(received)
                with self.lock:
                    plan = self.plans.get(turn.run)
                    self.counter += 1
                    call_id = f"call_{self.counter}"
                if plan is None:
                    return Reply(400, {"error": {"message": "no plan for this run"}})
                with self.lock:
                    answer = plan.next(turn.results)
                return write(answer, turn, call_id)
        return Reply(404, {"error": {"message": f"not served: {received.path}"}})


def serve_plans(stand_in: StandIn) -> ThreadingHTTPServer:
    """The side door (plain HTTP on 127.0.0.1, never through Tollgate): POST /plans/<run> registers
    a run's plan, DELETE /plans/<run> ends it and answers whether the stand-in obeyed the injection."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            stand_in.register(self.path.rsplit("/", 1)[-1], data)
            self._answer({})

        def do_DELETE(self) -> None:
            self._answer(stand_in.finish(self.path.rsplit("/", 1)[-1]))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server
