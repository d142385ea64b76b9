"""Gemini Code Assist: cloudcode-pa.googleapis.com, which Gemini CLI signed in with Google (and Gemini
Code Assist Standard and Enterprise) calls with the user's Google OAuth token. Its model calls are
Gemini's generateContent inside an envelope (`formats/code_assist/`); every other `/v1internal`
method is the service's own (onboarding, quota, settings), audited with no model. Tollgate holds
no credential for it: every call goes with the user's token (auth `subscription`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import field_validator

from tollgate.formats import CODE_ASSIST, GEMINI_GENERATE
from tollgate.formats.bodies.exact import Unreadable, path_segments, words
from tollgate.formats.code_assist.envelope import COUNT_TOKENS, read_envelope
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.providers.base import Provider
from tollgate.providers.cost import ModelsPrefixed
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement, UpstreamCredentials
from tollgate.providers.gemini import check_request_overrides, check_system_parameters, system_parameters
from tollgate.providers.plans import PlanReader, PlanSettings, TenantId
from tollgate.providers.service_calls import ServiceCalls
from tollgate.providers.upstream import Upstream

VERSION = "v1internal"
STREAM = "streamGenerateContent"
# The methods that call a model.
MODEL_CALLS = ("generateContent", STREAM, COUNT_TOKENS)
_CALL_WORDS = words(VERSION, *MODEL_CALLS)
_METHOD = re.compile(r"[a-z][A-Za-z]*")
# The method that says the user's tier (`currentTier.id`), which the plan is read from.
LOAD_CODE_ASSIST = "loadCodeAssist"


# Google's token information endpoint: a Google OAuth access token's account (its `email`).
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"


class CodeAssistSubscriptions(PlanSettings):
    """`subscriptions.code_assist`: Gemini CLI signed in with Google, and Gemini Code Assist, on
    cloudcode-pa.googleapis.com."""

    # The company's Google Cloud projects: a call whose envelope names another is refused.
    projects: tuple[TenantId, ...] = ()
    # The company's Google Workspace domains: every request to Code Assist carries them in
    # `X-GeminiCodeAssist-Allowed-Domains`.
    domains: tuple[TenantId, ...] = ()
    # Where a token's account (its e-mail) is asked for, and the CA file that endpoint's
    # certificate is checked with (None: the system's roots).
    tokeninfo: str = GOOGLE_TOKENINFO
    ca_file: str | None = None
    # false: its host is tunnelled untouched, not decrypted nor governed.
    govern: bool = True

    @field_validator("tokeninfo")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the token information endpoint is called over https://")
        return value

    def tenants(self) -> tuple[str, ...]:
        return self.domains

    def outside(self, tenant: str | None, plan: str | None) -> str | None:
        """A call that names no project (countTokens) is not: Google checks it against the tenant header."""
        if not self.projects or tenant is None or tenant in self.projects:
            return None
        return f"Google Cloud project {tenant} is not one of subscriptions.code_assist.projects"

    def account_endpoint(self) -> tuple[str, str | None]:
        return self.tokeninfo, self.ca_file


class CodeAssistPlans(PlanReader):
    """A Google OAuth access token (Gemini CLI signed in with Google): `ya29.…`. Google refuses a
    request of an account outside the Google Workspace domains the tenant header lists. Its
    account (e-mail) is asked of Google's token information endpoint; its tier (the plan) is what
    the last `loadCodeAssist` answer named; its tenant the project its envelope names."""

    def __init__(self) -> None:
        super().__init__(
            "ya29.",
            tenant_header=b"x-geminicodeassist-allowed-domains",
            asks_account=True,
            tier_endpoint=LOAD_CODE_ASSIST,
            settings=CodeAssistSubscriptions,
        )

    def plan_in_answer(self, body: bytes | None) -> str | None:
        return current_tier(body)

    def tenant_in_body(self, body: Mapping[str, Any] | None, service: bool) -> str | None:
        return envelope_project(body, service)


def current_tier(body: bytes | None) -> str | None:
    """`currentTier.id` of a loadCodeAssist answer."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        return None
    tier = data.get("currentTier") if isinstance(data, dict) else None
    value = tier.get("id") if isinstance(tier, dict) else None
    return value if isinstance(value, str) and value else None


def envelope_project(body: Mapping[str, Any] | None, service: bool) -> str | None:
    """The Google Cloud project a Code Assist call's envelope names (its tenant); None for a
    service endpoint's call, whose body is no envelope."""
    project = body.get("project") if body is not None and not service else None
    return project if isinstance(project, str) else None


def is_event_stream_asked(query: str) -> bool:
    return any(name in ("alt", "$alt") and value.lower() == "sse" for name, value in system_parameters(query))


class CodeAssist(Provider):
    name = "code_assist"
    semconv_name = "gcp.gemini"
    host_globs = ("cloudcode-pa.googleapis.com",)
    # Google's front end also takes an OAuth token from query parameters, as `Authorization`.
    credentials = Credentials(
        CallerKeys(
            "X-Code-Assist-Key",
            ("authorization",),
            positions=("authorization", "query:access_token", "query:oauth_token"),
            any_scheme=True,
        ),
        KeyPlacement("authorization"),
        UpstreamCredentials("none: its calls go with their user's own Google token"),
    )
    upstream = Upstream("cloudcode-pa.googleapis.com")
    cost = ModelsPrefixed("google")
    error_format = GEMINI_GENERATE
    plan = CodeAssistPlans()
    # What Gemini CLI calls beside its model calls: its tier and project, onboarding and its
    # operation, quota, experiments, admin controls, its user's setting, its metrics. Any other
    # method (an IDE's code completion, generation or transformation) may answer with model text.
    services = ServiceCalls(
        frozenset((
            LOAD_CODE_ASSIST, "onboardUser", "operations", "retrieveUserQuota", "listExperiments",
            "fetchAdminControls", "getCodeAssistGlobalUserSetting", "setCodeAssistGlobalUserSetting",
            "recordCodeAssistMetrics",
        )),
        {"completeCode": "a code completion (Code Assist's completeCode)"},
    )  # fmt: skip

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        check_request_overrides(query)
        segments = path_segments(path)
        version, colon, action = segments[0].partition(":")
        if version.lower() == VERSION.lower() and version != VERSION:
            raise Unreadable(f"'{version}' is not written '{VERSION}'")
        if version != VERSION:
            raise Unreadable("Code Assist's paths start with /v1internal")
        if not colon:
            if len(segments) == 1:
                raise Unreadable("the path names no method")
            # A long-running operation (`/v1internal/operations/…`, onboarding's).
            return Classification(endpoint=segments[1], service=True, wire_format=CODE_ASSIST)
        if len(segments) != 1 or not _METHOD.fullmatch(action):
            raise Unreadable("the path's method is not one Code Assist names (e.g. :generateContent)")
        word = _CALL_WORDS.get(action.lower())
        if word is not None and word != action:
            raise Unreadable(f"'{action}' is not written '{word}'")
        if action not in MODEL_CALLS:
            return Classification(endpoint=action, service=True, wire_format=CODE_ASSIST)
        if method != "POST":
            raise Unreadable(f"{action} is called with POST")
        check_system_parameters(query)  # its answer is read for its usage
        if action == STREAM and not is_event_stream_asked(query):
            raise Unreadable("a Code Assist stream is read as server-sent events: call it with alt=sse")
        facts = RequestFacts(stream=action == STREAM)
        try:
            model, _ = read_envelope(action, data, facts)
        except Unreadable as e:
            raise e.at(action) from None
        return Classification(action, model, facts, CODE_ASSIST)
