"""OpenAI: api.openai.com and its data-residency hosts (eu.api.openai.com, …), its paths and the
endpoints they are, and its jobs. Its wire format has its own home (`formats/openai_api/`, with
`openai_chat/`, `openai_responses/`, `openai_realtime/`), which other providers' OpenAI-compatible
endpoints speak too: they read their paths here (`classify_request`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tollgate.formats import OPENAI_API, OPENAI_CHAT
from tollgate.formats.bodies.exact import (
    ASSISTANT,
    SESSION_UPDATES,
    UNREAD_BODY,
    UNREAD_MODEL,
    Unreadable,
    check_case,
    path_segments,
    words,
)
from tollgate.formats.openai_api import classify_body
from tollgate.formats.openai_realtime import INSECURE_KEY_PREFIX, REALTIME, realtime_model
from tollgate.formats.openai_responses import RESPONSES
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.routing import Routing
from tollgate.providers.upstream import Upstream

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
    ("realtime", "calls"),  # a WebRTC offer: SDP, or a form of the SDP and the session
)
_UPLOAD_FIRST = frozenset(shape[0] for shape in _UPLOADS)
# OpenAI's fixed path words are lower case; ids may not be.
WORDS = words(
    *{w for prefix, _ in _ENDPOINTS for w in prefix},
    *{w for prefix in _UPLOADS for w in prefix if w},
    "v1", "assistants", "threads", "runs", "steps", "messages", "vector_stores", "file_batches",
    "batches", "fine_tuning", "jobs", "checkpoints", "events", "content", "cancel", "sessions",
    "client_secrets", "calls", "conversations", "items", "input_items", "evals", "organization",
    "traces", "ingest", "complete", "remix", "realtime", "transcription_sessions", "chatkit",
    "admin_api_keys", "projects", "service_accounts", "api_keys",
)  # fmt: skip
_NON_ID = re.compile(r"^[a-z_]+$")

# Endpoints that mint a credential usable without Tollgate, whatever the method they are called
# with (OpenAI may answer another than the documented one as it does POST): a Realtime client
# secret (`ek_…`) a browser or phone then calls OpenAI with directly, a ChatKit session's client
# secret; and a Realtime call's session, WebRTC's (the SDP answer lets the browser talk to OpenAI
# directly) or an accepted SIP call's (between OpenAI and the phone network), whose use Tollgate
# never sees either. None stands for an id.
_MINTING = (
    ("realtime", "client_secrets"),
    ("realtime", "sessions"),
    ("realtime", "transcription_sessions"),
    ("realtime", "calls"),
    ("realtime", "calls", None, "accept"),
    ("chatkit", "sessions"),
)
# The administration API's keys: admin keys, a project's service accounts (each made with its key)
# and a project's keys. Every path under these is refused, whatever the method: a lasting key is
# made, shown or (re)enabled there, and no call Tollgate governs needs one.
_KEY_ADMINISTRATION = (
    ("organization", "admin_api_keys"),
    ("organization", "projects", None, "service_accounts"),
    ("organization", "projects", None, "api_keys"),
)


def mints_credential(segments: Sequence[str]) -> bool:
    """Whether a call to this OpenAI-format path (segments after `/v1/`), by any method, mints a
    credential or manages keys."""
    return _is_shaped(segments, _MINTING) or administers_keys(segments)


def administers_keys(segments: Sequence[str]) -> bool:
    """Whether this OpenAI-format path (segments after `/v1/`) is under the administration API's keys."""
    return any(_is_shaped(segments[: len(shape)], (shape,)) for shape in _KEY_ADMINISTRATION)


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
        classification = Classification(endpoint=endpoint, facts=facts, wire_format=OPENAI_API, unread=UNREAD_BODY)
        classification.mints_credential = mints_credential(segments)
        return classification
    if endpoint == RESPONSES and method == "GET" and len(segments) == 1:
        # The Responses API's WebSocket mode: no call of its own, each response.create on it is one.
        return Classification(RESPONSES, facts=RequestFacts(stream=True), wire_format=OPENAI_API, session=True)
    try:
        if endpoint == REALTIME and method == "GET":
            facts = RequestFacts(stream=True)
            facts.unseen(SESSION_UPDATES)  # its tools and instructions come in its events, after the decision
            return Classification(REALTIME, realtime_model(query), facts, OPENAI_API)
        classification = classify_body(endpoint, method, data)
        classification.facts.batch = job
        classification.mints_credential = mints_credential(segments)
        classification.administers_keys = administers_keys(segments)
        if method == "POST" and _is_shaped(segments, _MODEL_FROM_ELSEWHERE):
            if _is_shaped(segments, _RUNS):
                classification.facts.unseen(ASSISTANT)
            if classification.model is None:
                classification.unread = UNREAD_MODEL  # never taken for a call with no model
        return classification
    except Unreadable as e:
        raise e.at(endpoint) from None


class OpenAI(Provider):
    name = semconv_name = "openai"
    # Its data-residency hosts (eu., us.) and any other region's: a call to one goes there, and stays there.
    host_globs = ("api.openai.com", "*.api.openai.com")
    credentials = Credentials(
        CallerKeys("X-OpenAI-Key", ("authorization",), key_subprotocol=INSECURE_KEY_PREFIX),
        KeyPlacement("authorization", billing_headers=frozenset((b"openai-organization", b"openai-project"))),
    )
    upstream = Upstream("api.openai.com")
    routing = Routing(chat_formats={"chat.completions": OPENAI_CHAT}, openai_compatible_source=True)
    # Uploads are free, and moderation, which OpenAI does not bill.
    cost = Cost(
        "openai",
        free_endpoints=frozenset(
            ("files", "uploads", "uploads.parts", "uploads.complete", "uploads.cancel", "moderations")
        ),
    )
    error_format = OPENAI_API

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
