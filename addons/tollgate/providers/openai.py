"""OpenAI: api.openai.com and its data-residency hosts (eu.api.openai.com, …), and the OpenAI wire
format other providers also speak."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import unquote_plus

from ..call import Batch, Classification, McpServer, RequestFacts
from ..exact_reading import (
    ASSISTANT,
    SESSION_UPDATES,
    STORED_PROMPT,
    UNREAD_BODY,
    UNREAD_MODEL,
    Unreadable,
    as_int,
    check_case,
    count,
    largest,
    path_segments,
    request_count,
    request_flag,
    request_int,
    request_model,
    request_text,
    words,
)
from ..json_codec import parse_json
from ..translate.formats import OPENAI_CHAT
from ..usage import Usage
from ..usage_readers import SSEReader, UsageReader, add_totals, is_event_stream
from .base import (
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    BUDGET_EXCEEDED,
    HEADERS_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_SIGNATURE,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    MISCONFIGURED,
    NO_UPSTREAM_CREDENTIAL,
    POLICY_DENIED,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    ChatLeg,
    Headers,
    Provider,
    Refusal,
)
from .openai_format import OPENAI_FORMAT

REALTIME = "realtime"  # a WebSocket session (GET /v1/realtime?model=…, upgraded)
RESPONSES = "responses"
# Path segments (after the version prefix) → endpoint kind; a path under one of these is that kind.
# No prefix begins another, so a path matches one at most and the order does not matter.
_ENDPOINTS = (
    (("chat", "completions"), "chat.completions"),
    (("responses",), "responses"),
    (("embeddings",), "embeddings"),
    (("completions",), "completions"),
    (("moderations",), "moderations"),
    (("images", "generations"), "images.generations"),
    (("images", "edits"), "images.edits"),
    (("images", "variations"), "images.variations"),
    (("audio", "speech"), "audio.speech"),
    (("audio", "transcriptions"), "audio.transcriptions"),
    (("audio", "translations"), "audio.translations"),
    (("models",), "models"),
)
# Endpoints that take files or audio (multipart or raw bytes): their bodies stream upstream unread.
# None stands for an id.
_UPLOADS = (
    ("files",),
    ("uploads", None, "parts"),
    ("audio", "transcriptions"),
    ("audio", "translations"),
    ("images", "edits"),
    ("images", "variations"),
    ("containers", None, "files"),
    ("videos",),
)
_UPLOAD_FIRST = frozenset(shape[0] for shape in _UPLOADS)
# OpenAI's fixed path words are lower case; ids may not be.
WORDS = words(
    *{w for prefix, _ in _ENDPOINTS for w in prefix},
    *{w for prefix in _UPLOADS for w in prefix if w},
    "v1", "assistants", "threads", "runs", "steps", "messages", "vector_stores", "file_batches",
    "batches", "fine_tuning", "jobs", "checkpoints", "events", "content", "cancel", "sessions",
    "client_secrets", "calls", "conversations", "items", "input_items", "evals", "organization",
    "traces", "ingest", "complete", "remix",
)  # fmt: skip
_NON_ID = re.compile(r"^[a-z_]+$")


def endpoint_of(segments: Sequence[str]) -> str | None:
    """Endpoint kind from the path's segments after `/v1/`."""
    check_case(segments, WORDS)
    for prefix, kind in _ENDPOINTS:
        if tuple(segments[: len(prefix)]) == prefix:
            return kind
    # Other endpoints are named by their fixed segments (ids left out): files, batches, …
    named = [s for s in segments if _NON_ID.match(s)]
    return ".".join(named) or None


# Calls that generate with a model their body need not name, the provider taking it from elsewhere:
# a batch's uploaded file, an Assistant (a run, or the run its tool outputs continue), a stored
# prompt (Responses), or its default (moderations, images). None stands for an id.
_MODEL_FROM_ELSEWHERE = (
    ("batches",),
    ("threads", "runs"),
    ("threads", None, "runs"),
    ("threads", None, "runs", None, "submit_tool_outputs"),
    ("responses",),
    ("moderations",),
    ("images", "generations"),
)


def _is_shaped(segments: Sequence[str], shapes: Sequence[tuple[str | None, ...]]) -> bool:
    """Whether the segments are one of the shapes, each None standing for any one segment."""
    return any(
        len(shape) == len(segments) and all(w is None or w == s for w, s in zip(shape, segments, strict=True))
        for shape in shapes
    )


# Asynchronous jobs, each started by a POST here (None stands for an id): how many requests each
# starts where known. None of them can be bounded: a batch's requests and a fine-tuning's data are
# in a file, an Assistant's run or an eval's run calls the model as often as it takes, a video is
# not counted in tokens.
_JOBS: tuple[tuple[tuple[str | None, ...], Batch], ...] = (
    (("batches",), Batch(None)),
    (("fine_tuning", "jobs"), Batch(None)),
    (("threads", "runs"), Batch(None)),
    (("threads", None, "runs"), Batch(None)),
    (("threads", None, "runs", None, "submit_tool_outputs"), Batch(None)),
    (("evals", None, "runs"), Batch(None)),
    (("videos",), Batch(1)),
    (("videos", None, "remix"), Batch(1)),
)
_JOB_FIRST = frozenset(shape[0] for shape, _ in _JOBS)


def job_of(method: str, segments: Sequence[str]) -> Batch | None:
    """The asynchronous job a POST to this OpenAI-format path starts, if it starts one."""
    if method != "POST" or segments[0] not in _JOB_FIRST:
        return None
    return next((job for shape, job in _JOBS if _is_shaped(segments, (shape,))), None)


def is_upload(method: str, segments: Sequence[str]) -> bool:
    """Whether an OpenAI-format path (segments after `/v1/`) takes a file or audio."""
    return method == "POST" and segments[0] in _UPLOAD_FIRST and _is_shaped(segments, _UPLOADS)


# An Assistant's run, and the run its tool outputs continue: the Assistant (its tools, its
# instructions) is kept by OpenAI, where Tollgate cannot read it.
_RUNS = (
    ("threads", "runs"),
    ("threads", None, "runs"),
    ("threads", None, "runs", None, "submit_tool_outputs"),
)


def classify_request(method: str, segments: Sequence[str], data: dict[str, Any] | None, query: str) -> Classification:
    """An OpenAI-format request, from its path's segments after the version prefix."""
    if not segments:
        raise Unreadable("the path names no endpoint")
    endpoint = endpoint_of(segments)
    job = job_of(method, segments)
    if is_upload(method, segments):
        facts = RequestFacts(batch=job)
        return Classification(endpoint=endpoint, facts=facts, wire_format=OPENAI_FORMAT, unread=UNREAD_BODY)
    if endpoint == RESPONSES and method == "GET" and len(segments) == 1:
        # The Responses API's WebSocket mode: no call of its own, each response.create on it is one.
        return Classification(RESPONSES, facts=RequestFacts(stream=True), wire_format=OPENAI_FORMAT, session=True)
    try:
        if endpoint == REALTIME and method == "GET":
            facts = RequestFacts(stream=True)
            facts.unseen(SESSION_UPDATES)  # its tools and instructions come in its events, after the decision
            return Classification(REALTIME, realtime_model(query), facts, OPENAI_FORMAT)
        classification = classify_body(endpoint, method, data)
        classification.facts.batch = job
        if method == "POST" and _is_shaped(segments, _MODEL_FROM_ELSEWHERE):
            if _is_shaped(segments, _RUNS):
                classification.facts.unseen(ASSISTANT)
            if classification.model is None:
                classification.unread = UNREAD_MODEL  # never taken for a call with no model
        return classification
    except Unreadable as e:
        raise e.at(endpoint) from None


def realtime_model(query: str) -> str:
    """The model a Realtime session asks for: the query's one `model` parameter, decoded as servers
    decode a query string. Unreadable (saying what is wrong, never what was sent) where that is not
    exactly one printable name, or where servers could read the query differently."""
    if ";" in query:  # some servers split parameters at ";" as well as at "&"
        raise Unreadable("a Realtime session's query holds a ';'")
    models = []
    for parameter in query.split("&"):
        name, _, value = parameter.partition("=")
        name = unquote_plus(name, errors="replace")
        if name.lower() == "model":
            if name != "model":
                raise Unreadable("a Realtime session's query names its model in another case")
            models.append(value)
    if len(models) != 1:
        raise Unreadable("a Realtime session names exactly one model in its query (?model=…)")
    try:
        model = unquote_plus(models[0], errors="strict")
    except UnicodeDecodeError:
        raise Unreadable("a Realtime session's model is not UTF-8") from None
    if not model or not model.isprintable():
        raise Unreadable("a Realtime session's model is empty or not printable")
    return model


def classify_body(endpoint: str | None, method: str, data: dict[str, Any] | None) -> Classification:
    """Model and request facts from an OpenAI-format request body (its JSON object)."""
    if data is None or method != "POST":
        return Classification(endpoint=endpoint, wire_format=OPENAI_FORMAT)
    facts = RequestFacts(
        stream=request_flag(data.get("stream"), "stream"),
        service_tier=request_text(data.get("service_tier"), "service_tier"),
    )
    if endpoint == "chat.completions":
        messages = data.get("messages")
        facts.message_count = count(messages)
        facts.has_system = _has_system_message(messages)
        # `functions` is the older form of tools; `web_search_options` (even `{}`) has a search
        # model search the web.
        facts.has_tools = bool(data.get("tools") or data.get("functions")) or data.get("web_search_options") is not None
        facts.max_tokens = largest(
            request_int(data.get("max_completion_tokens"), "max_completion_tokens"),
            request_int(data.get("max_tokens"), "max_tokens"),
        )
        facts.answers = request_count(data.get("n"), "n")
    elif endpoint == "responses":
        inputs = data.get("input")
        facts.message_count = 1 if isinstance(inputs, str) else count(inputs)
        facts.has_system = bool(data.get("instructions")) or _has_system_message(inputs)
        read_tools(data, facts)
        facts.max_tokens = request_int(data.get("max_output_tokens"), "max_output_tokens")
    elif endpoint == "completions":
        facts.max_tokens = request_int(data.get("max_tokens"), "max_tokens")
        # best_of completions are generated (and billed), n of them returned: n <= best_of.
        facts.answers = max(request_count(data.get("n"), "n"), request_count(data.get("best_of"), "best_of"))
    elif endpoint == "images.generations":
        facts.answers = request_count(data.get("n"), "n")
    session = data.get("session")
    if endpoint is not None and endpoint.startswith("realtime."):
        # A Realtime session's settings, the body's own or its `session`'s (a client secret's): its
        # holder then calls OpenAI directly, with the tools and instructions they give.
        settings = session if isinstance(session, dict) else data
        facts.has_system = bool(settings.get("instructions"))
        read_tools(settings, facts)
        if isinstance(session, dict) and "model" in session:
            # A Realtime client secret names the model of the session it opens: the policy decides
            # on that model.
            return Classification(endpoint, request_model(session), facts, OPENAI_FORMAT)
    return Classification(endpoint, request_model(data), facts, OPENAI_FORMAT)


def read_tools(data: dict[str, Any], facts: RequestFacts) -> None:
    """The tools a Responses body (or a Realtime session's settings) gives the model: every type in
    `tools` (functions, web and file search, code interpreter, computer use, shells, MCP servers…),
    and a stored prompt (`prompt: {id}`), which may hold tools and instructions Tollgate cannot read."""
    tools = data.get("tools")
    facts.has_tools = bool(tools)
    if isinstance(tools, list):
        facts.grants(tuple(_mcp_server(t, f"tools[{i}]") for i, t in enumerate(tools) if _is_mcp(t, f"tools[{i}]")))
    if data.get("prompt") is not None:
        facts.unseen(STORED_PROMPT)


def _is_mcp(tool: Any, where: str) -> bool:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str) or kind.lower() != "mcp":
        return False
    if kind != "mcp":
        raise Unreadable(f"{where}.type is not written 'mcp'")
    return True


_MCP_TARGETS = ("server_url", "connector_id", "tunnel_id")


def _mcp_server(tool: dict[str, Any], where: str) -> McpServer:
    """A Responses `mcp` tool: its `server_label` and where it goes, exactly one of `server_url`
    (the server's URL), `connector_id` (one of OpenAI's connectors) and `tunnel_id` (a tunnel to a
    private server); the last two have no URL the request shows. Anything else is refused: which
    server OpenAI would call is not Tollgate's to guess."""
    label = request_text(tool.get("server_label"), f"{where}.server_label")
    if label is None:
        raise Unreadable(f"{where} names no server_label")
    targets = {name: request_text(tool.get(name), f"{where}.{name}") for name in _MCP_TARGETS}
    given = [name for name, value in targets.items() if value is not None]
    if len(given) != 1:
        how_many = "more than one" if given else "none"
        raise Unreadable(f"{where} gives {how_many} of server_url, connector_id and tunnel_id")
    return McpServer(targets["server_url"], label)


_SYSTEM_ROLES = ("system", "developer")  # compared, not hashed: a role may be any JSON value


def _has_system_message(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    return any(isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES for m in messages)


def usage_of(endpoint: str | None, body: bytes | None) -> Usage:
    """Token usage and finish reason from a non-streamed OpenAI-format response."""
    data = parse_json(body)
    return usage_from_object(endpoint, data) if data is not None else Usage()


def usage_from_object(endpoint: str | None, data: dict[str, Any]) -> Usage:
    """From a response object: a whole answer, a Responses API `response`, or a stream chunk."""
    raw = data.get("usage")
    if not isinstance(raw, dict):
        raw = {}
    if endpoint == "responses":
        u = Usage(
            input_tokens=as_int(raw.get("input_tokens")),
            output_tokens=as_int(raw.get("output_tokens")),
            total_tokens=as_int(raw.get("total_tokens")),
            cached_tokens=as_int(_get(raw, "input_tokens_details", "cached_tokens")),
            reasoning_tokens=as_int(_get(raw, "output_tokens_details", "reasoning_tokens")),
        )
        status = data.get("status")
        reason = _get(data, "incomplete_details", "reason")
        u.finish_reason = reason if isinstance(reason, str) else status if isinstance(status, str) else None
        u.service_tier = _service_tier(data)
        return add_totals(u)
    u = Usage(
        input_tokens=as_int(raw.get("prompt_tokens")),
        output_tokens=as_int(raw.get("completion_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
        cached_tokens=as_int(_get(raw, "prompt_tokens_details", "cached_tokens")),
        reasoning_tokens=as_int(_get(raw, "completion_tokens_details", "reasoning_tokens")),
    )
    u.finish_reason = _finish_reason(data)
    u.service_tier = _service_tier(data)
    if endpoint == "embeddings" and u.input_tokens is not None and u.output_tokens is None:
        u.output_tokens = 0
    return add_totals(u)


def _service_tier(data: dict[str, Any]) -> str | None:
    tier = data.get("service_tier")
    return tier if isinstance(tier, str) else None


def _finish_reason(data: dict[str, Any]) -> str | None:
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                return choice["finish_reason"]
    return None


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')
_RESPONSE_DONE = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')


class ChatStreamReader(SSEReader):
    """Chat completions: usage comes in the last chunk (which may also carry choices)."""

    # Servers write compact JSON or one space after colons; `keep` checks each with a regex.
    wanted = (b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "', b'"error"')

    def __init__(self) -> None:
        super().__init__()
        self._usage: bytes | None = None
        self._finish: bytes | None = None

    def keep(self, block: bytes) -> None:
        if self._usage is None and _USAGE_OBJECT.search(block):
            self._usage = block
        if self._finish is None and _FINISH_REASON.search(block):
            self._finish = block
        if b'"error"' in block:
            error = (self.data(block) or {}).get("error")
            if isinstance(error, dict):
                kind = error.get("type") or error.get("code") or "unknown"
                self.error = f"the stream ended in an error: {kind}"

    def has_all(self) -> bool:
        return self._usage is not None and self._finish is not None

    def read(self) -> Usage:
        usage = usage_from_object("chat.completions", self.data(self._usage) or {})
        finish = self.data(self._finish)
        if finish is not None:
            usage.finish_reason = _finish_reason(finish)
        return usage


class ResponsesStreamReader(SSEReader):
    """Responses API: the final response.completed / incomplete / failed event has the usage."""

    wanted = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')

    def __init__(self) -> None:
        super().__init__()
        self._done: bytes | None = None

    def keep(self, block: bytes) -> None:
        if _RESPONSE_DONE.search(block):
            self._done = block

    def has_all(self) -> bool:
        return self._done is not None

    def read(self) -> Usage:
        event = self.data(self._done) or {}
        response = event.get("response")
        return usage_from_object("responses", response if isinstance(response, dict) else {})


def stream_reader(endpoint: str | None) -> UsageReader:
    return ResponsesStreamReader() if endpoint == "responses" else ChatStreamReader()


# A browser cannot set headers on a WebSocket: it sends its key as one of the offered subprotocols.
INSECURE_KEY_PREFIX = "openai-insecure-api-key."


def insecure_keys(subprotocols: str) -> tuple[list[str], str]:
    """The API keys among a WebSocket's offered subprotocols (`Sec-WebSocket-Protocol: realtime,
    openai-insecure-api-key.<key>, …`), and the header's value without them. Matched in any case: a
    key in any spelling is a key, never to be shown or forwarded."""
    keys, rest = [], []
    for offered in subprotocols.split(","):
        entry = offered.strip()
        if entry[: len(INSECURE_KEY_PREFIX)].lower() == INSECURE_KEY_PREFIX:
            keys.append(entry[len(INSECURE_KEY_PREFIX) :])
        elif entry:
            rest.append(entry)
    return keys, ", ".join(rest)


# The Responses API's WebSocket mode (`wss://api.openai.com/v1/responses`): each `response.create`
# message is a call, read as a POST /v1/responses body is (the body's fields at its top level), with
# `stream_id` (the lane it runs in, for responses run side by side) and `generate` (false: a warm-up
# that writes no answer). Codex acknowledges each answer it has read with `response.processed`,
# which asks for nothing. Every other message (`response.steer`, `response.inject`, …) may start a
# response no `response.create` asked for: refused.
RESPONSE_CREATE = "response.create"
SOCKET_ACKNOWLEDGEMENTS = frozenset(("response.processed",))


def socket_message_type(data: dict[str, Any]) -> str:
    kind = data.get("type")
    if type(kind) is not str:
        raise Unreadable("a message on the Responses WebSocket names no type")
    return kind


def classify_response_create(data: dict[str, Any]) -> Classification:
    """A `response.create` message, read as its body would be over HTTP; every answer over the
    WebSocket streams. `Unreadable` where it cannot be read exactly."""
    if "response" in data:  # the Realtime API's nesting: which fields the server reads is not known
        raise Unreadable("a response.create nests its fields under 'response'").at(RESPONSES)
    try:
        lane(data)
        generate = data.get("generate")
        generates = generate is None or request_flag(generate, "generate")
        classification = classify_body(RESPONSES, "POST", data)
    except Unreadable as e:
        raise e.at(RESPONSES) from None
    facts = classification.facts
    facts.stream = True
    if not generates:
        facts.answers = 0  # a warm-up: the request's state prepared, no answer written
    if classification.model is None:
        classification.unread = UNREAD_MODEL  # from a stored prompt, or the previous response's
    return classification


def lane(data: dict[str, Any]) -> str | None:
    """The WebSocket lane (`stream_id`) a message or event belongs to; None for the default one."""
    return request_text(data.get("stream_id"), "stream_id")


@dataclass(frozen=True, slots=True)
class SocketEvent:
    """What a server event of the Responses WebSocket tells of a response: it began (`created`),
    ended with its usage (`done`: completed, incomplete or failed), or its request failed
    (`error`)."""

    kind: Literal["created", "done", "error"]
    lane: str | None
    response_id: str | None = None
    usage: Usage | None = None
    status: int | None = None  # an error's HTTP status
    error: str | None = None  # what went wrong, in a few words (a code, never a message)


# Before an event is parsed: only these few are, every delta passes on a byte search.
_SOCKET_EVENT = re.compile(rb'"type"\s*:\s*"(?:response\.(?:created|completed|incomplete|failed)|error)"')
_DONE_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))


def socket_event(message: bytes) -> SocketEvent | None:
    """What a server message of the Responses WebSocket tells, if it is one of the events that
    begin or end a response."""
    if not _SOCKET_EVENT.search(message):
        return None
    event = parse_json(message)
    kind = event.get("type") if event is not None else None
    if event is None or not isinstance(kind, str):
        return None
    where = event.get("stream_id")
    where = where if isinstance(where, str) else None
    if kind == "error":
        error = event.get("error")
        error = error if isinstance(error, dict) else event  # flat, as over SSE
        status = event.get("status")
        code = error.get("code") or error.get("type")
        return SocketEvent(
            "error",
            where,
            status=status if type(status) is int else None,
            error=code if isinstance(code, str) else "unknown",
        )
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        return None
    if kind == "response.created":
        return SocketEvent("created", where, response["id"])
    if kind not in _DONE_EVENTS:
        return None
    error = None
    if kind == "response.failed":
        code = _get(response, "error", "code")
        error = f"the response failed: {code if isinstance(code, str) else 'unknown'}"
    return SocketEvent("done", where, response["id"], usage_from_object(RESPONSES, response), error=error)


def socket_error(status: int, body: dict[str, Any], headers: Mapping[str, str], where: str | None) -> dict[str, Any]:
    """Tollgate's refusal of a `response.create` as the Responses WebSocket's `error` event: the
    status and error object it would have had over HTTP, the headers inside it."""
    error = body.get("error")
    error = dict(error) if isinstance(error, dict) else {"message": str(error), "type": "server_error"}
    error["headers"] = dict(headers)
    event: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if where is not None:
        event["stream_id"] = where
    return event


_RESPONSE_DONE_EVENT = b'"response.done"'


def response_done_usage(message: bytes) -> Usage | None:
    """A response's usage and status from a Realtime server event, if it is `response.done`."""
    if _RESPONSE_DONE_EVENT not in message:  # the one test nearly every event needs
        return None
    event = parse_json(message)
    if event is None or event.get("type") != "response.done":
        return None
    response = event.get("response")
    if not isinstance(response, dict):
        response = {}
    raw = response.get("usage")
    if not isinstance(raw, dict):
        raw = {}
    u = Usage(
        input_tokens=as_int(raw.get("input_tokens")),
        output_tokens=as_int(raw.get("output_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
        cached_tokens=as_int(_get(raw, "input_token_details", "cached_tokens")),
        reasoning_tokens=as_int(_get(raw, "output_token_details", "reasoning_tokens")),
    )
    # As for the Responses API: why a response is incomplete (max_output_tokens, content_filter)
    # says more than that it is.
    status, reason = response.get("status"), _get(response, "status_details", "reason")
    u.finish_reason = (
        reason if status == "incomplete" and isinstance(reason, str) else (status if isinstance(status, str) else None)
    )
    return add_totals(u)


def summed(total: Usage | None, more: Usage) -> Usage:
    """A session's usage so far with one more response's: counts added where known, the finish
    reason the latest one given."""
    if total is None:
        return more
    return Usage(
        input_tokens=_plus(total.input_tokens, more.input_tokens),
        output_tokens=_plus(total.output_tokens, more.output_tokens),
        total_tokens=_plus(total.total_tokens, more.total_tokens),
        cached_tokens=_plus(total.cached_tokens, more.cached_tokens),
        cache_write_tokens=_plus(total.cache_write_tokens, more.cache_write_tokens),
        reasoning_tokens=_plus(total.reasoning_tokens, more.reasoning_tokens),
        finish_reason=more.finish_reason if more.finish_reason is not None else total.finish_reason,
    )


def _plus(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def _get(data: Any, outer: str, inner: str) -> Any:
    """data[outer][inner], or None where either is missing or not an object."""
    value = data.get(outer) if isinstance(data, dict) else None
    return value.get(inner) if isinstance(value, dict) else None


_ERROR_TYPES = {
    UNAUTHENTICATED: "invalid_request_error",
    POLICY_DENIED: "permission_denied",
    NO_UPSTREAM_CREDENTIAL: "server_error",
    MISCONFIGURED: "server_error",
    INVALID_SIGNATURE: "server_error",
    INTERNAL_ERROR: "server_error",
    UPSTREAM_UNREACHABLE: "server_error",
    UPSTREAM_TIMEOUT: "server_error",
    BAD_REQUEST: "invalid_request_error",
    AUDIT_UNAVAILABLE: "server_error",
    RATE_LIMITED: "requests",
    BUDGET_EXCEEDED: "insufficient_quota",
    LEDGER_UNAVAILABLE: "server_error",
    LIMIT_UNENFORCEABLE: "permission_denied",
    HEADERS_TOO_LARGE: "invalid_request_error",
}


# OpenAI's own codes where a reason has one; else the reason itself.
_ERROR_CODES = {
    UNAUTHENTICATED: "invalid_api_key",
    RATE_LIMITED: "rate_limit_exceeded",
    BUDGET_EXCEEDED: "insufficient_quota",
}


def refusal_body(reason: str, message: str) -> dict[str, Any]:
    code = _ERROR_CODES.get(reason, reason)
    return {"error": {"message": message, "type": _ERROR_TYPES[reason], "param": None, "code": code}}


class OpenAI(Provider):
    name = semconv_name = "openai"
    # Its data-residency hosts (eu., us.) and any other region's: a call to one goes there, and stays there.
    host_pattern = r"(?:[a-z0-9-]+\.)?api\.openai\.com"
    side_header = "X-OpenAI-Key"
    key_positions = positions = ("authorization",)
    billing_headers = frozenset((b"openai-organization", b"openai-project"))
    # And moderation, which OpenAI does not bill.
    free_endpoints = frozenset(
        ("files", "uploads", "uploads.parts", "uploads.complete", "uploads.cancel", "moderations")
    )
    key_header = "authorization"
    default_host = "api.openai.com"
    chat_formats: ClassVar[Mapping[str, str]] = {"chat.completions": OPENAI_CHAT}
    openai_compatible_source = True
    key_subprotocol = INSECURE_KEY_PREFIX
    price_table = "openai"

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg("/v1/chat/completions", OPENAI_CHAT)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path)
        check_case(segments[:1], WORDS)
        if segments[0] != "v1":
            raise Unreadable("OpenAI's paths start with /v1/")
        return classify_request(method, segments[1:], data, query)

    def streams_unread(self, method: str, path: str) -> bool:
        return path.startswith("/v1/") and is_upload(method, path[4:].split("/"))

    def refusal(self, reason: str, message: str) -> Refusal:
        return self._json_refusal(reason, refusal_body(reason, message))

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        return usage_of(classification.endpoint, body)

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        if is_event_stream(headers):
            return stream_reader(classification.endpoint)
        return super().usage_reader(classification, headers)
