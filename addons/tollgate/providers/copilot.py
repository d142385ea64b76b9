"""GitHub Copilot: its API hosts, which Copilot's clients (VS Code's Copilot Chat, the Copilot CLI,
other editors) call with the user's own Copilot token. Three formats on one host: OpenAI's chat
(`/chat/completions`), Responses (`/responses`) and embeddings (`/embeddings`), and Anthropic's
Messages (`/v1/messages`); on its inline completions hosts (`proxy.<plan>.githubcopilot.com`, and
the older `copilot-proxy.githubusercontent.com` that older editor plugins still call), OpenAI's
legacy Completions (`/v1/engines/{model}/completions`); every other path (`/models`,
`/_ping`, agents, telemetry) is the service's own, audited with no model. Tollgate holds no
credential for it: every call goes with its user's token (auth `subscription`), never swapped.

Each plan has its host (`api.individual.githubcopilot.com`, `.business.`, `.enterprise.`), which
names the call's plan; `api.githubcopilot.com` and the older completions host serve them all, and
there the plan is the one the Copilot token's own fields name
(`proxy-ep=proxy.<plan>.githubcopilot.com`), read WITHOUT verifying its signature (GitHub verifies
it: Tollgate only reads which plan it claims, to refuse a plan the company does not allow). A token
that cannot be read names nothing, never an error."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from tollgate.formats import ANTHROPIC_MESSAGES, OPENAI_API
from tollgate.formats.anthropic_messages import read_facts
from tollgate.formats.bodies.exact import Unreadable, check_case, path_segments, request_model, words
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.providers.base import Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement, UpstreamCredentials
from tollgate.providers.openai import classify_request
from tollgate.providers.plans import NO_ACCOUNT, PlanAccount, PlanReader, PlanSettings, TenantId
from tollgate.providers.service_calls import ServiceCalls

# Each plan's host, and the host that serves every plan (whose calls' plan only a token may name).
PLAN_HOSTS = {
    "api.individual.githubcopilot.com": "individual",
    "api.business.githubcopilot.com": "business",
    "api.enterprise.githubcopilot.com": "enterprise",
    # Each plan's inline completions host (the one its tokens name in `proxy-ep`).
    "proxy.individual.githubcopilot.com": "individual",
    "proxy.business.githubcopilot.com": "business",
    "proxy.enterprise.githubcopilot.com": "enterprise",
}
SHARED_HOST = "api.githubcopilot.com"
# The older inline completions host, which serves every plan as the shared host does.
LEGACY_HOST = "copilot-proxy.githubusercontent.com"
# The hosts whose calls' plan only their token may name.
TOKEN_PLAN_HOSTS = frozenset((SHARED_HOST, LEGACY_HOST))
PLANS = frozenset(PLAN_HOSTS.values())
# The OpenAI-format calls, by their path's first word; Copilot takes them with or without `/v1`.
OPENAI_CALLS = frozenset(("chat", "responses", "embeddings"))
# Anthropic's Messages, and its token count (with or without `/v1`).
MESSAGES = {("messages",): "messages", ("messages", "count_tokens"): "messages.count_tokens"}
# The inline completions' legacy Completions, by the model (engine) in their path.
ENGINES = "engines"
WORDS = words("v1", "chat", "completions", "responses", "embeddings", "messages", "count_tokens", "models", ENGINES)
_WORD = re.compile(r"^[a-z_]+$")  # a fixed path word; anything else is an id, left out of a name
# A Copilot token (v2) is `key=value;key=value;…:mac`; `proxy-ep` names its plan's completions host.
PROXY_FIELD = "proxy-ep="
MAX_TOKEN = 4096  # a Copilot token is a few hundred characters: a longer one is not read


def token_plan(token: str) -> str | None:
    """The plan a Copilot token's `proxy-ep` field names (`proxy.<plan>.githubcopilot.com`), else None
    (a GitHub OAuth or personal access token, which names none)."""
    if len(token) > MAX_TOKEN or PROXY_FIELD not in token:
        return None
    fields = token.partition(":")[0].split(";")
    for field in fields:
        if field.startswith(PROXY_FIELD):
            labels = field.removeprefix(PROXY_FIELD).lower().split(".")
            if len(labels) == 4 and labels[0] == "proxy" and labels[2:] == ["githubcopilot", "com"]:
                return labels[1] if labels[1] in PLANS else None
    return None


def copilot_plan(token: str, host: str) -> PlanAccount:
    """A Copilot call's plan: its host's, or on a host serving every plan the token's. Copilot's
    tokens name no account Tollgate could match (`tid` is a tracking id), nor the enterprise."""
    plan = PLAN_HOSTS.get(host) or (token_plan(token) if host in TOKEN_PLAN_HOSTS else None)
    return NO_ACCOUNT if plan is None else PlanAccount(plan=plan)


# The plans Copilot's hosts serve, each its own host (`api.<plan>.githubcopilot.com`).
CopilotPlan = Literal["individual", "business", "enterprise"]
# The most enterprises GitHub reads in `sec-GitHub-allowed-enterprise`.
MAX_ENTERPRISES = 20


class CopilotSubscriptions(PlanSettings):
    """`subscriptions.copilot`: GitHub Copilot, on its API hosts."""

    # The company's GitHub enterprises (their ids): every request to Copilot's hosts carries them
    # in `sec-GitHub-allowed-enterprise`, and GitHub refuses an account of another enterprise.
    enterprises: tuple[TenantId, ...] = Field(default=(), max_length=MAX_ENTERPRISES)
    # The plans whose hosts the company's people may call: a call to another plan's host is refused.
    plans: tuple[CopilotPlan, ...] = ()
    # false: its hosts are tunnelled untouched, not decrypted nor governed.
    govern: bool = True

    def tenants(self) -> tuple[str, ...]:
        return self.enterprises

    def outside(self, tenant: str | None, plan: str | None) -> str | None:
        """A call whose plan cannot be told (api.githubcopilot.com, a token that does not say) is
        refused where plans are set: it may be any plan's."""
        if not self.plans or plan in self.plans:
            return None
        if plan is None:
            return (
                "the Copilot call names no plan (neither its host nor its token),"
                " and subscriptions.copilot.plans are set"
            )
        return f"Copilot plan {plan} is not one of subscriptions.copilot.plans"


class CopilotPlans(PlanReader):
    """Every credential on Copilot's hosts is a user's (a Copilot token `tid=…`, a GitHub OAuth or
    personal access token): Copilot takes no API key, and every call presenting one is a plan's.
    GitHub refuses an account of an enterprise the tenant header does not list."""

    def __init__(self) -> None:
        super().__init__("", tenant_header=b"sec-github-allowed-enterprise", settings=CopilotSubscriptions)

    def account(self, token: str, headers: Mapping[bytes, bytes], host: str = "") -> PlanAccount:
        return copilot_plan(token, host)


class Copilot(Provider):
    name = "copilot"
    semconv_name = "github.copilot"
    host_globs = (SHARED_HOST, *PLAN_HOSTS, LEGACY_HOST)
    # A plan's token goes as it came: a side header is only removed.
    credentials = Credentials(
        CallerKeys("X-Copilot-Token", ("authorization",), any_scheme=True),
        KeyPlacement("authorization"),
        UpstreamCredentials("none: its calls go with their user's own Copilot token"),
    )
    # `cost_usd`: what the same tokens cost at Copilot's list price, else at the model's vendor's.
    cost = Cost("github-copilot", price_fallbacks=("openai", "anthropic", "google"))
    error_format = OPENAI_API
    plan = CopilotPlans()
    # What Copilot's clients call beside their model calls: the models list, the model an auto
    # session picks, a model's policy accepted, the health check, telemetry. Any other path (its
    # agents, an agent's chat) may answer with model text.
    services = ServiceCalls(frozenset(("models", "models.session", "models.policy", "_ping", "telemetry")))

    def error_format_at(self, path: str) -> str:
        return ANTHROPIC_MESSAGES if _is_messages(path) else OPENAI_API

    def may_ask_usage(self, classification: Classification, index: Mapping[bytes, bytes]) -> bool:
        # A plan's call goes as it came: its streams are not asked for usage they were not asked for.
        return False

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path)
        check_case(segments, WORDS)
        rest = segments[1:] if segments[0] == "v1" and len(segments) > 1 else segments
        if rest[0] in OPENAI_CALLS:
            return classify_request(method, rest, data, query)
        if len(rest) == 3 and rest[0] == ENGINES and rest[2] == "completions":
            return _inline_completions(method, rest[1], data, query)
        messages = MESSAGES.get(tuple(rest))
        if messages is not None and method == "POST":
            if data is None:
                return Classification(endpoint=messages, wire_format=ANTHROPIC_MESSAGES)
            try:
                facts = RequestFacts()
                read_facts(data, facts)
                return Classification(messages, request_model(data), facts, ANTHROPIC_MESSAGES)
            except Unreadable as e:
                raise e.at(messages) from None
        named = [s for s in segments if _WORD.match(s)]
        return Classification(endpoint=".".join(named) or None, service=True, wire_format=OPENAI_API)


def _inline_completions(method: str, engine: str, data: dict[str, Any] | None, query: str) -> Classification:
    """An inline completion (`/v1/engines/{model}/completions`): OpenAI's legacy Completions, its
    model the one the path names. A body that names another is refused: which of the two the
    service runs, Tollgate cannot tell, and policy and limits would read the other."""
    classification = classify_request(method, ["completions"], data, query)
    if classification.model not in (None, engine):
        raise Unreadable(f"the body names the model '{classification.model}', the path '{engine}'")
    classification.model = engine
    return classification


def _is_messages(path: str) -> bool:
    """Whether a path is Anthropic's Messages' (with or without `/v1`), whose refusals are in its shape."""
    rest = path.removeprefix("/v1")
    return rest == "/messages" or rest.startswith("/messages/")
