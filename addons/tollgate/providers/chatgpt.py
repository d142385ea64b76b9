"""ChatGPT: chatgpt.com, where Codex signed in with ChatGPT calls its models. Its calls are a plan's
(auth `subscription`): the user's access token goes upstream as it came. Only Codex's paths are read
(`/backend-api/codex/…` and `/backend-api/wham/…`): `codex/responses` is the Responses API (over
HTTP with server-sent events, or a WebSocket, as on api.openai.com), `codex/responses/compact` a
model call that compacts a conversation, every other path there a service call (Codex's models,
analytics, usage, settings, environments and cloud tasks); the rest of the host is ChatGPT's web
app, which goes on unread and is not a call (`governs_path`).

Whose a call is, is read without a network call from the access token's claims, decoded WITHOUT
verifying its signature (OpenAI verifies it: Tollgate only reads whose it is, to name the caller
and refuse what it can see is outside the company's workspaces), and from the `ChatGPT-Account-ID`
header. A token that cannot be read names nothing, never an error."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import orjson

from tollgate.formats import OPENAI_API
from tollgate.formats.bodies.exact import Unreadable, path_segments
from tollgate.formats.openai_responses import COMPACT
from tollgate.formats.request_facts import Classification
from tollgate.providers.base import Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.openai import classify_request
from tollgate.providers.plans import NO_ACCOUNT, ForeignAccount, PlanAccount, PlanReader, PlanSettings, TenantId
from tollgate.providers.service_calls import ServiceCalls

CODEX_PREFIX = "/backend-api/codex/"
# Where Codex signed in with ChatGPT asks for its usage, settings, environments and cloud tasks.
WHAM_PREFIX = "/backend-api/wham/"
PREFIXES = {CODEX_PREFIX: "codex", WHAM_PREFIX: "wham"}  # each prefix → the first word of its endpoints
# The paths whose segments after these words are names, not endpoint words (an environment found by
# its GitHub repository: `environments/by-repo/github/{owner}/{repo}`).
NAMED_AFTER = (("environments", "by-repo", "github"),)
# A fixed path word (`models`, `analytics-events`): letters joined by `_` or `-`. Anything else (a
# task's or an environment's id holds digits) is an id, left out of a name.
_WORD = re.compile(r"^[a-z]+(?:[-_][a-z]+)*$")
# Where OpenAI's access tokens hold the ChatGPT account (the workspace the token acts in) and the
# plan, and the person's e-mail (an id token holds `email` at the top).
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
ACCOUNT_HEADER = b"chatgpt-account-id"  # the account Codex names beside its token
MAX_PAYLOAD = 16 * 1024  # a token's payload is well under a KiB: a larger one is not read
FOREIGN = "the ChatGPT-Account-ID header names another account than the access token"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def token_claims(token: str) -> PlanAccount:
    """The account id (also its tenant, the workspace), e-mail and plan type a JWT's payload holds;
    NO_ACCOUNT where it is no JWT, its payload is not base64url JSON, or it holds none of them."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > MAX_PAYLOAD:
        return NO_ACCOUNT
    payload = parts[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):  # orjson's JSONDecodeError is a ValueError
        return NO_ACCOUNT
    if not isinstance(claims, dict):
        return NO_ACCOUNT
    auth = claims.get(AUTH_CLAIM)
    auth = auth if isinstance(auth, dict) else {}
    profile = claims.get(PROFILE_CLAIM)
    profile = profile if isinstance(profile, dict) else {}
    account = _text(auth.get("chatgpt_account_id"))
    email = _text(profile.get("email")) or _text(claims.get("email"))
    return PlanAccount(account, email, _text(auth.get("chatgpt_plan_type")), account)


def chatgpt_account(token: str, header: bytes | None) -> PlanAccount:
    """A ChatGPT plan call's account, e-mail, plan and tenant, from the token's claims and the
    `ChatGPT-Account-ID` header (None when absent), which names the account where the token does
    not. ForeignAccount when both name one and they differ."""
    claims = token_claims(token)
    named = header.decode("utf-8", "surrogateescape").strip() if header is not None else ""
    if claims.account is not None:
        if named and named != claims.account:
            raise ForeignAccount(claims, FOREIGN)
        return claims
    if not named:
        return claims
    return PlanAccount(named, claims.email, claims.plan, named)


class ChatGPTSubscriptions(PlanSettings):
    """`subscriptions.chatgpt`: Codex signed in with ChatGPT, on chatgpt.com."""

    # The company's ChatGPT workspaces (account ids): a call whose token or `ChatGPT-Account-ID`
    # names another is refused, and every request to chatgpt.com carries them in
    # `ChatGPT-Allowed-Workspace-Id`.
    workspaces: tuple[TenantId, ...] = ()
    # False: chatgpt.com is tunnelled untouched, as a host that is no provider's (for machines whose
    # browsers reach ChatGPT through Tollgate without trusting its CA).
    govern: bool = True

    def tenants(self) -> tuple[str, ...]:
        return self.workspaces

    def outside(self, tenant: str | None, plan: str | None) -> str | None:
        if not self.workspaces or tenant in self.workspaces:
            return None
        if tenant is None:
            return "the ChatGPT token names no workspace, and subscriptions.chatgpt.workspaces are set"
        return f"ChatGPT workspace {tenant} is not one of subscriptions.chatgpt.workspaces"


class ChatGPTPlans(PlanReader):
    """Codex's ChatGPT access token is a JWT (`eyJ…`): a call presenting one is a plan's. OpenAI
    refuses a ChatGPT token of a workspace the tenant header does not list."""

    def __init__(self) -> None:
        super().__init__("eyJ", tenant_header=b"chatgpt-allowed-workspace-id", settings=ChatGPTSubscriptions)

    def account(self, token: str, headers: Mapping[bytes, bytes], host: str = "") -> PlanAccount:
        return chatgpt_account(token, headers.get(ACCOUNT_HEADER))


class ChatGPT(Provider):
    name = "chatgpt"
    semconv_name = "openai"
    host_globs = ("chatgpt.com",)
    # A plan's token goes as it came: a side header is only removed.
    credentials = Credentials(
        CallerKeys("X-ChatGPT-Token", ("authorization",), any_scheme=True), KeyPlacement("authorization")
    )
    cost = Cost("openai")  # `cost_usd`: what the same tokens cost with a key
    error_format = OPENAI_API
    plan = ChatGPTPlans()
    # What Codex calls beside its responses that answers with no model text: its models list and
    # analytics; its workspace's routing, usage and rate limits, settings, profile, managed
    # configuration, environments, signing keys and credits. Any other path (its cloud tasks, their
    # turns and diffs, a thread's usage by title, its remote control) may answer with what a model
    # wrote, or Tollgate does not know what it answers.
    services = ServiceCalls(
        frozenset(
            (
                *("codex.models", "codex.analytics-events.events"),
                *("wham.accounts.check", "wham.accounts.send_add_credits_nudge_email", "wham.usage"),
                *("wham.rate-limit-reset-credits", "wham.rate-limit-reset-credits.consume", "wham.settings.user"),
                *("wham.profiles.me", "wham.config.bundle", "wham.config.requirements", "wham.agent-identities.jwks"),
                *("wham.environments", "wham.environments.by-repo.github", "wham.workspace-messages"),
            )
        ),
        # A compaction asked otherwise than by POST is no model call Tollgate reads.
        {"codex.responses.compact": "a compacted conversation (Codex's responses/compact)"},
    )

    def governs_path(self, path: str) -> bool:
        # Read as loosely as a server might (percent-decoded, any case, `//` and `.` segments
        # collapsed): a path that could reach Codex's is governed, and `classify` refuses it unless
        # it is written canonically.
        loose = posixpath.normpath("/" + unquote(path).lower()).lstrip("/") + "/"
        return loose.startswith(tuple(prefix[1:] for prefix in PREFIXES))

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        first = next((word for prefix, word in PREFIXES.items() if path.startswith(prefix)), None)
        if first is None:
            raise Unreadable("ChatGPT's calls are under /backend-api/codex/ and /backend-api/wham/")
        rest = path_segments(path)[2:]
        if first == "codex" and rest == ["responses"]:
            return classify_request(method, rest, data, query)
        if first == "codex" and rest == ["responses", "compact"] and method == "POST":
            # A Responses body in; its answer, a compacted conversation, is read (`compaction_guard`).
            return replace(classify_request(method, rest[:1], data, query), endpoint=COMPACT)
        return Classification(endpoint=".".join([first, *endpoint_words(rest)]), service=True, wire_format=OPENAI_API)


def endpoint_words(segments: list[str]) -> list[str]:
    """A service path's words, ids left out, and names after the words of `NAMED_AFTER`."""
    for words in NAMED_AFTER:
        if tuple(segments[: len(words)]) == words:
            return list(words)
    return [s for s in segments if _WORD.match(s)]
