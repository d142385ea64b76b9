"""Anthropic: api.anthropic.com, the Messages API (its format: `formats/anthropic_messages/`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from tollgate.formats import ANTHROPIC_MESSAGES, OPENAI_CHAT
from tollgate.formats.anthropic_messages import read_completion_facts, read_facts
from tollgate.formats.bodies.exact import (
    UNREAD_BODY,
    UNREAD_MODEL,
    Unreadable,
    check_case,
    path_segments,
    request_int,
    request_model,
    words,
)
from tollgate.formats.openai_api import classify_body
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.providers import openai
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.plans import PlanReader, PlanSettings, TenantId
from tollgate.providers.routing import Routing
from tollgate.providers.service_calls import ServiceCalls
from tollgate.providers.upstream import Upstream

_ENDPOINTS = {
    "messages": "messages",
    "messages/count_tokens": "messages.count_tokens",
    "messages/batches": "messages.batches",
    "complete": "completions",
    "models": "models",
}

# The calls Claude Code makes to Anthropic's own service beside the model API (its settings, limits,
# feature flags and event logging), each by its method and path after /api/ (`{id}` one segment of
# the form given), and the endpoint each is audited as. Any other /api/ path is refused: a key of
# Tollgate's must not reach what it does not know (an organisation's settings may be written).
SERVICE_ENDPOINTS = {
    ("GET", "claude_code/settings"): "api.claude_code.settings",
    ("GET", "claude_code/policy_limits"): "api.claude_code.policy_limits",
    ("GET", "claude_code/organizations/metrics_enabled"): "api.claude_code.organizations.metrics_enabled",
    ("GET", "claude_cli/bootstrap"): "api.claude_cli.bootstrap",
    ("GET", "claude_code_penguin_mode"): "api.claude_code_penguin_mode",
    ("POST", "event_logging/v2/batch"): "api.event_logging.batch",
    ("POST", "eval/sdk-{id}"): "api.eval",  # feature flags, by the client's SDK key
}
# Claude Code signed in with a Claude plan calls more of Anthropic's service with its OAuth token
# (`/api/oauth/profile`, its roles, usage, organizations…): any other /api/ path is a service call
# where only the plan's own token goes (`plan_only`), audited by its path's words. Where Anthropic
# would make an API key, the call mints a credential.
# Claude Code signed in with a Claude plan sends an OAuth token as a bearer: `sk-ant-oat01-…`
# (API keys start `sk-ant-api`, Admin API keys `sk-ant-admin`).
PLAN_TOKEN_PREFIX = "sk-ant-oat"
MINTING_SERVICE = frozenset((("POST", "oauth/claude_cli/create_api_key"),))
PLAN_ONLY = (
    "is not a path of Anthropic's service Tollgate knows: only a Claude plan's own token goes there, never a key"
)
_WORD = re.compile(r"^[a-z_]+$")  # a fixed path word; anything else is an id, left out of a name
# The service calls whose answers carry nothing a model wrote: the known ones, and those Claude
# Code makes with a Claude plan's token for its account (profile, roles, usage, settings). Any
# other /api/ path (a shared session's transcript, memory, files) may answer with model text.
NO_MODEL_TEXT = frozenset((
    *SERVICE_ENDPOINTS.values(), "api.oauth.profile", "api.oauth.claude_cli.roles", "api.oauth.usage",
    "api.oauth.account.settings", "api.claude_cli_profile",
))  # fmt: skip
# The MCP server registry Claude Code lists servers from: public, read without a credential.
MCP_REGISTRY = ("mcp-registry", "v0", "servers")

WORDS = words(
    "v1", "messages", "count_tokens", "batches", "results", "cancel", "complete", "models", "files",
    "content", "chat", "completions", "skills", "versions", "organizations", "api_keys",
)  # fmt: skip
# The Admin API's keys (`/v1/organizations/api_keys[/{id}]`).
KEY_ADMINISTRATION = ["organizations", "api_keys"]


def _is_upload(method: str, rest: list[str]) -> bool:
    """Files and skills are uploaded as multipart bodies: POST /v1/files, /v1/skills[/{id}/versions]."""
    return method == "POST" and (
        rest in (["files"], ["skills"]) or (len(rest) == 3 and rest[0] == "skills" and rest[2] == "versions")
    )


def _batch(data: dict[str, Any]) -> Classification:
    """A Message Batch: its requests' one model, which the policy decides on as a call's; where
    they name several (or the batch is not as Anthropic reads it), the model is unread. Every
    request is in the body, and each sets its `max_tokens` (a request without is one whose
    answer is bounded by its model's)."""
    requests = data.get("requests")
    facts = RequestFacts(batch=_batch_bound(requests))
    models = {_model_of(r) for r in requests} if isinstance(requests, list) else set()
    if len(models) == 1 and None not in models:
        return Classification("messages.batches", models.pop(), facts, ANTHROPIC_MESSAGES)
    return Classification("messages.batches", facts=facts, wire_format=ANTHROPIC_MESSAGES, unread=UNREAD_MODEL)


def _batch_bound(requests: Any) -> Batch:
    """What a Message Batch's requests may generate together; unbounded where they are not a list
    (which Anthropic refuses)."""
    if not isinstance(requests, list):
        return Batch(None)
    bounded = unbounded = 0
    for request in requests:
        params = request.get("params") if isinstance(request, dict) else None
        bound = request_int(params.get("max_tokens"), "max_tokens") if isinstance(params, dict) else None
        if bound is None:
            unbounded += 1
        else:
            bounded += max(bound, 0)
    return Batch(len(requests), bounded, unbounded)


def _model_of(request: Any) -> str | None:
    """The model one request of a batch names in its `params`."""
    params = request.get("params") if isinstance(request, dict) else None
    return request_model(params) if isinstance(params, dict) else None


class AnthropicSubscriptions(PlanSettings):
    """`subscriptions.anthropic`: Claude plans on Anthropic's API hosts."""

    # The company's Anthropic organizations: every request to Anthropic's hosts carries them in
    # `anthropic-allowed-org-ids`, whatever its credential.
    organizations: tuple[TenantId, ...] = ()
    # Anthropic's API hosts carry calls made with keys too: they cannot be left tunnelled, so its
    # plans are always governed.
    govern: bool = True

    @field_validator("govern")
    @classmethod
    def _always_governed(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "api.anthropic.com serves calls made with keys as well as with plans: its plan calls are"
                " always governed (leave govern out, or true)"
            )
        return value

    def tenants(self) -> tuple[str, ...]:
        return self.organizations


class Anthropic(Provider):
    name = semconv_name = "anthropic"
    host_globs = ("api.anthropic.com",)
    credentials = Credentials(
        CallerKeys("X-Anthropic-Key", ("x-api-key", "authorization"), any_scheme=True), KeyPlacement("x-api-key")
    )
    upstream = Upstream("api.anthropic.com")
    routing = Routing(
        openai_compatible_prefix="/v1/",
        openai_compatible_endpoints=frozenset(("chat.completions",)),
        chat_formats={"messages": ANTHROPIC_MESSAGES, "chat.completions": OPENAI_CHAT},
        target_headers=((b"anthropic-version", b"2023-06-01"),),
    )
    cost = Cost("anthropic", free_endpoints=frozenset(("files",)))
    error_format = ANTHROPIC_MESSAGES
    # Anthropic refuses a request whose key or token is of an organization the tenant header does
    # not list (`tenant_restriction_violation`).
    plan = PlanReader(
        PLAN_TOKEN_PREFIX,
        tenant_header=b"anthropic-allowed-org-ids",
        plan_only=PLAN_ONLY,
        settings=AnthropicSubscriptions,
    )
    services = ServiceCalls(NO_MODEL_TEXT)

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg("/v1/messages", ANTHROPIC_MESSAGES)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path)
        check_case(segments, WORDS)
        if segments[0] == "api":
            return service_call(method, segments[1:])
        if tuple(segments) == MCP_REGISTRY and method == "GET":
            return Classification(passthrough=True, wire_format=ANTHROPIC_MESSAGES)
        if segments[0] != "v1" or len(segments) == 1:
            raise Unreadable("Anthropic's paths start with /v1/ (or are a known /api/ path of Claude Code's)")
        rest = segments[1:]
        if rest == ["chat", "completions"]:  # Anthropic's OpenAI SDK compatibility layer
            return classify_body("chat.completions", method, data)
        if _is_upload(method, rest):
            upload = ".".join(w for w in rest if w in WORDS)
            return Classification(endpoint=upload, unread=UNREAD_BODY, wire_format=ANTHROPIC_MESSAGES)
        endpoint = _ENDPOINTS.get("/".join(rest)) or openai.endpoint_of(rest)
        if rest[:2] == KEY_ADMINISTRATION:
            # The Admin API's keys, whatever the method: an update (re)enables a lasting key.
            return Classification(
                endpoint, wire_format=ANTHROPIC_MESSAGES, mints_credential=True, administers_keys=True
            )
        if data is None or method != "POST":
            return Classification(endpoint=endpoint, wire_format=ANTHROPIC_MESSAGES)
        if rest == ["messages", "batches"]:
            try:
                return _batch(data)
            except Unreadable as e:
                raise e.at(endpoint) from None
        try:
            facts = RequestFacts()
            (read_completion_facts if rest == ["complete"] else read_facts)(data, facts)
            return Classification(endpoint, request_model(data), facts, ANTHROPIC_MESSAGES)
        except Unreadable as e:
            raise e.at(endpoint) from None

    def streams_unread(self, method: str, path: str) -> bool:
        return path.startswith("/v1/") and _is_upload(method, path[4:].split("/"))


def service_call(method: str, rest: list[str]) -> Classification:
    """A known call to Anthropic's own service (`SERVICE_ENDPOINTS`), else one only a plan's token
    may make (`plan_only`: Identify refuses it with any other credential, `plan_only_refusal`)."""
    key = "/".join(rest)
    if len(rest) == 2 and rest[0] == "eval" and rest[1].startswith("sdk-") and len(rest[1]) > 4:
        key = "eval/sdk-{id}"
    endpoint = SERVICE_ENDPOINTS.get((method, key))
    if endpoint is not None:
        return Classification(endpoint=endpoint, service=True, wire_format=ANTHROPIC_MESSAGES)
    named = ".".join(["api", *(s for s in rest if _WORD.match(s))])
    classification = Classification(endpoint=named, service=True, wire_format=ANTHROPIC_MESSAGES, plan_only=True)
    classification.mints_credential = (method, key) in MINTING_SERVICE
    return classification
