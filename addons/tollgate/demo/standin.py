"""The demo's stand-in provider: OpenAI-, Anthropic- and Gemini-shaped answers with usage, streamed
and not, over TLS on 127.0.0.1. It answers with the last user text it received, so that the demo
shows what reached the provider (a redacted prompt arrives redacted); asked for the deploy key, it
answers with one, which the demo's answer guardrail redacts. Plain asyncio, HTTP/1.1, one
request after another on each connection; it knows nothing of Tollgate."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
CREATED = 1_700_000_000
# Asked for "the deploy key", the stand-in answers with one: a made-up AWS access key id (put
# together here, so that the source holds none for a scan to find), for the demo's answer
# guardrail to redact on its way back.
KEY_QUESTION = "deploy key"
DEPLOY_KEY = "AKIA" + "DEMO" + "Q7K3M2XW4NB5"


@dataclass
class StandinAnswer:
    status: int
    body: bytes = b""  # JSON
    pieces: list[bytes] | None = None  # a stream's pieces, each sent in a chunk of its own
    content_type: str = "application/json"


def words(text: str) -> int:
    """The token count the stand-in reports: a word per token, at least one."""
    return max(1, len(text.split()))


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of text parts of any provider's shape."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text_of(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    """The last text a user sent: chat `messages`, Responses `input` or Gemini `contents`."""
    if isinstance(body.get("input"), str):
        return str(body["input"])
    turns = body.get("messages") or body.get("input") or body.get("contents") or []
    for turn in reversed(turns if isinstance(turns, list) else []):
        if isinstance(turn, dict) and turn.get("role", "user") == "user":
            return text_of(turn.get("content", turn.get("parts")))
    return ""


def reply_text(vendor: str, body: dict[str, Any]) -> str:
    said = last_user_text(body)
    if KEY_QUESTION in said.lower():
        return f"(stand-in {vendor}) The deploy key is {DEPLOY_KEY}."
    return f"(stand-in {vendor}) You said: {said}" if said else f"(stand-in {vendor}) Hello."


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def openai_chat(body: dict[str, Any]) -> StandinAnswer:
    model, text = str(body.get("model", "")), reply_text("OpenAI", body)
    usage = {
        "prompt_tokens": words(last_user_text(body)),
        "completion_tokens": words(text),
        "total_tokens": words(last_user_text(body)) + words(text),
    }
    if not body.get("stream"):
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return StandinAnswer(200, json.dumps(chat_object(model, "chat.completion", [choice], usage)).encode())
    with_usage = (body.get("stream_options") or {}).get("include_usage") is True

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(chat_object(model, "chat.completion.chunk", [choice], None if with_usage else ...))

    pieces = [chunk({"role": "assistant", "content": ""}), *(chunk({"content": p}) for p in pieces_of(text))]
    pieces.append(chunk({}, "stop"))
    if with_usage:
        pieces.append(sse(chat_object(model, "chat.completion.chunk", [], usage)))
    return StandinAnswer(200, pieces=[*pieces, sse("[DONE]")], content_type="text/event-stream")


def chat_object(model: str, kind: str, choices: list[Any], usage: Any) -> dict[str, Any]:
    """A chat completion or chunk; `usage` Ellipsis leaves the member out (a stream not asked for it)."""
    made = {"id": "chatcmpl-demo", "object": kind, "created": CREATED, "model": model, "choices": choices}
    if usage is not ...:
        made["usage"] = usage
    return made


def openai_responses(body: dict[str, Any]) -> StandinAnswer:
    text = reply_text("OpenAI", body)
    usage = {
        "input_tokens": words(last_user_text(body)),
        "output_tokens": words(text),
        "total_tokens": words(last_user_text(body)) + words(text),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    item = {"type": "output_text", "text": text, "annotations": []}
    message = {"type": "message", "id": "msg_demo", "status": "completed", "role": "assistant", "content": [item]}
    response = {
        "id": "resp_demo",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": str(body.get("model", "")),
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    if not body.get("stream"):
        return StandinAnswer(200, json.dumps(response).encode())
    started = {**response, "status": "in_progress", "output": []}
    del started["usage"]
    events = [sse({"type": "response.created", "sequence_number": 0, "response": started}, "response.created")]
    for n, piece in enumerate(pieces_of(text), 1):
        delta = {"item_id": "msg_demo", "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}
        kind = "response.output_text.delta"
        events.append(sse({"type": kind, "sequence_number": n, **delta}, kind))
    done = {"type": "response.completed", "sequence_number": len(events), "response": response}
    events.append(sse(done, "response.completed"))
    return StandinAnswer(200, pieces=events, content_type="text/event-stream")


def anthropic_messages(body: dict[str, Any]) -> StandinAnswer:
    text, model = reply_text("Anthropic", body), str(body.get("model", ""))
    prompt = words(last_user_text(body))
    usage = {"input_tokens": prompt, "output_tokens": words(text)}
    message = {
        "id": "msg_demo",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return StandinAnswer(200, json.dumps(message).encode())
    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    events = [sse({"type": "message_start", "message": start}, "message_start"), sse(block, "content_block_start")]
    for piece in pieces_of(text):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        events.append(sse(delta, "content_block_delta"))
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({**end, "usage": {"output_tokens": words(text)}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return StandinAnswer(200, pieces=events, content_type="text/event-stream")


def gemini_generate(body: dict[str, Any], model: str, streamed: bool, sse_asked: bool) -> StandinAnswer:
    text, prompt = reply_text("Gemini", body), words(last_user_text(body))

    def part(piece: str, out: int, finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    if not streamed:
        return StandinAnswer(200, json.dumps(part(text, words(text), True)).encode())
    pieces = list(pieces_of(text))
    objects = [part(p, words(" ".join(pieces[: i + 1])), i == len(pieces) - 1) for i, p in enumerate(pieces)]
    if sse_asked:
        return StandinAnswer(200, pieces=[sse(o) for o in objects], content_type="text/event-stream")
    texts = [json.dumps(o) for o in objects]  # a JSON array, an object a piece
    return StandinAnswer(
        200, pieces=[("[" if i == 0 else ",\r\n").encode() + t.encode() for i, t in enumerate(texts)] + [b"]"]
    )


def pieces_of(text: str) -> Iterator[str]:
    """A streamed answer's pieces: a word (and the space after it) each."""
    start = 0
    while start < len(text):
        end = text.find(" ", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> StandinAnswer:
    """What the stand-in answers a request: by its path, as the provider whose path it is."""
    path, _, query = target.partition("?")
    anthropic = "anthropic-version" in headers
    if method == "GET" and path == "/v1/models":
        models = ["claude-haiku-4-5", "claude-sonnet-4-5"] if anthropic else ["gpt-4o-mini", "gpt-4o"]
        return StandinAnswer(200, json.dumps({"object": "list", "data": [{"id": m} for m in models]}).encode())
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return error(anthropic, path, 400, "the body is not JSON")
    if method != "POST" or not isinstance(request, dict):
        return error(anthropic, path, 404, f"the stand-in provider does not serve {method} {path}")
    if path.endswith("/chat/completions"):
        return openai_chat(request)
    if path.endswith("/responses"):
        return openai_responses(request)
    if path == "/v1/messages":
        return anthropic_messages(request)
    model, _, verb = path.rpartition("/")[2].partition(":")
    if verb in ("generateContent", "streamGenerateContent"):
        return gemini_generate(request, model, verb == "streamGenerateContent", "alt=sse" in query.split("&"))
    return error(anthropic, path, 404, f"the stand-in provider does not serve {method} {path}")


def error(anthropic: bool, path: str, status: int, message: str) -> StandinAnswer:
    if anthropic:
        shaped: dict[str, Any] = {"type": "error", "error": {"type": "not_found_error", "message": message}}
    elif ":" in path:
        shaped = {"error": {"code": status, "message": message, "status": "NOT_FOUND"}}
    else:
        shaped = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return StandinAnswer(status, json.dumps(shaped).encode())


class StandIn:
    """The server: `await start()`, then `port`; `close()` stops it."""

    def __init__(self, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> None:
        self.context, self.host, self.port = context, host, port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, self.host, self.port, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    async def one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serves one request; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            return False
        line, *fields = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = {}
        for field in fields:
            name, colon, value = field.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        body = await read_body(reader, headers)
        answered = answer(method, target, headers, body)
        await send(writer, answered)
        return headers.get("connection", "").lower() != "close"


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            body += await reader.readexactly(size)
            await reader.readline()
            if len(body) > MAX_BODY:
                raise ValueError("body too large")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return body
    length = int(headers.get("content-length") or 0)
    if length > MAX_BODY:
        raise ValueError("body too large")
    return await reader.readexactly(length) if length else b""


async def send(writer: asyncio.StreamWriter, answered: StandinAnswer) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(answered.status, "")
    head = [f"HTTP/1.1 {answered.status} {reason}", f"content-type: {answered.content_type}"]
    if answered.pieces is None:
        head.append(f"content-length: {len(answered.body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + answered.body)
        await writer.drain()
        return
    # A stream, as the providers send one: chunked, each event in a chunk of its own.
    head.append("transfer-encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    for piece in answered.pieces:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
