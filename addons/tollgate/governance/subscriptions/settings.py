"""The `subscriptions:` settings: whether plan calls are allowed, each vendor's tenants (the
company's workspaces, projects, domains, enterprises, plans), and the tenant header pinned to each
vendor's requests. Plain logic, no mitmproxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from tollgate.common.config_base import Strict
from tollgate.governance.subscriptions.plan import Subscription


def _tenant_id(value: str) -> str:
    """One entry of a comma-separated header: no comma, no space, no control character."""
    if not value or any(c == "," or c.isspace() or not c.isprintable() for c in value):
        raise ValueError("an identifier must be non-empty and hold no comma, space or control character")
    return value


TenantId = Annotated[str, AfterValidator(_tenant_id)]


class AnthropicPlans(Strict):
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
        """What the vendor's tenant header lists."""
        return self.organizations


class ChatGPTPlans(Strict):
    """`subscriptions.chatgpt`: Codex signed in with ChatGPT, on chatgpt.com."""

    # The company's ChatGPT workspaces (account ids): a call whose token or `ChatGPT-Account-ID`
    # names another is refused, and every request to chatgpt.com carries them in
    # `ChatGPT-Allowed-Workspace-Id`.
    workspaces: tuple[TenantId, ...] = ()
    # False: chatgpt.com is tunnelled untouched, as a host that is no provider's (for machines whose
    # browsers reach ChatGPT through Tollgate without trusting its CA).
    govern: bool = True

    def tenants(self) -> tuple[str, ...]:
        """What the vendor's tenant header lists."""
        return self.workspaces

    def outside(self, plan: Subscription) -> str | None:
        """Why a plan call's workspace is not one of the company's (the audit's deny reason), or None."""
        if not self.workspaces or plan.tenant in self.workspaces:
            return None
        if plan.tenant is None:
            return "the ChatGPT token names no workspace, and subscriptions.chatgpt.workspaces are set"
        return f"ChatGPT workspace {plan.tenant} is not one of subscriptions.chatgpt.workspaces"


# A plan call refused by `subscriptions.allow: false`: the audit's deny reason, what the caller is told.
PLANS_REFUSED_REASON = "calls made with a plan are not allowed (subscriptions.allow)"
PLANS_REFUSED_MESSAGE = (
    "Tollgate: calls made with a personal or team plan are not allowed here; use the virtual key"
    " Tollgate's operator gave you."
)


# Google's token information endpoint: a Google OAuth access token's account (its `email`).
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"


class CodeAssistPlans(Strict):
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
        """What the vendor's tenant header lists."""
        return self.domains

    def outside(self, plan: Subscription) -> str | None:
        """Why a plan call's project is not one of the company's (the audit's deny reason), or None.
        A call that names none (countTokens) is not: Google checks it against the tenant header."""
        if not self.projects or plan.tenant is None or plan.tenant in self.projects:
            return None
        return f"Google Cloud project {plan.tenant} is not one of subscriptions.code_assist.projects"


# The plans Copilot's hosts serve, each its own host (`api.<plan>.githubcopilot.com`).
CopilotPlan = Literal["individual", "business", "enterprise"]
# The most enterprises GitHub reads in `sec-GitHub-allowed-enterprise`.
MAX_ENTERPRISES = 20


class CopilotPlans(Strict):
    """`subscriptions.copilot`: GitHub Copilot, on its API hosts."""

    # The company's GitHub enterprises (their ids): every request to Copilot's hosts carries them
    # in `sec-GitHub-allowed-enterprise`, and GitHub refuses an account of another enterprise.
    enterprises: tuple[TenantId, ...] = Field(default=(), max_length=MAX_ENTERPRISES)
    # The plans whose hosts the company's people may call: a call to another plan's host is refused.
    plans: tuple[CopilotPlan, ...] = ()
    # false: its hosts are tunnelled untouched, not decrypted nor governed.
    govern: bool = True

    def tenants(self) -> tuple[str, ...]:
        """What the vendor's tenant header lists."""
        return self.enterprises

    def outside(self, plan: Subscription) -> str | None:
        """Why a Copilot call's plan is not one the company allows (the audit's deny reason), or None.
        A call whose plan cannot be told (api.githubcopilot.com, a token that does not say) is refused
        where plans are set: it may be any plan's."""
        if not self.plans or plan.plan in self.plans:
            return None
        if plan.plan is None:
            return (
                "the Copilot call names no plan (neither its host nor its token),"
                " and subscriptions.copilot.plans are set"
            )
        return f"Copilot plan {plan.plan} is not one of subscriptions.copilot.plans"


class Subscriptions(Strict):
    """`subscriptions:`: calls made with a person's plan (auth `subscription`)."""

    allow: bool = True  # false: every call made with a plan's token is refused (403 tenant_denied)
    anthropic: AnthropicPlans = AnthropicPlans()
    chatgpt: ChatGPTPlans = ChatGPTPlans()
    code_assist: CodeAssistPlans = CodeAssistPlans()
    copilot: CopilotPlans = CopilotPlans()

    def outside(self, plan: Subscription) -> str | None:
        """Why a plan call is outside the company's tenants, as far as its request shows (the
        audit's deny reason), or None: by its vendor's settings, where they check one."""
        outside = getattr(getattr(self, plan.vendor, None), "outside", None)
        return outside(plan) if outside is not None else None

    def refusal(self, plan: Subscription, foreign: str | None) -> tuple[str, str] | None:
        """Why a plan call is refused whoever makes it (the audit's deny reason), and what its caller
        is told; None if it is not. `foreign`: why its request names two accounts."""
        if not self.allow:
            return PLANS_REFUSED_REASON, PLANS_REFUSED_MESSAGE
        outside = foreign or self.outside(plan)
        if outside is not None:
            return outside, f"Tollgate: {outside}; sign in to the company's account."
        return None

    def tokeninfo(self, vendor: str) -> tuple[str, str | None]:
        """Where the account of a vendor's Google plan token is asked for, and the CA file that
        endpoint's certificate is checked with (a `PlanReader.google_account` vendor's settings)."""
        settings = getattr(self, vendor)
        return settings.tokeninfo, settings.ca_file

    def ungoverned(self) -> frozenset[str]:
        """The vendors whose hosts are left tunnelled untouched (`subscriptions.<vendor>.govern: false`)."""
        return frozenset(
            name for name in type(self).model_fields if getattr(getattr(self, name), "govern", True) is False
        )


def tenant_pins(subscriptions: Subscriptions, headers: Mapping[str, bytes | None]) -> dict[str, tuple[bytes, bytes]]:
    """The tenant header each provider's requests carry, by provider name: (name, value). `headers`:
    each provider's plan reader's `tenant_header`, its tenants those of its `subscriptions.<name>` settings."""
    pins = {}
    for name, header in headers.items():
        settings = getattr(subscriptions, name, None)
        if header is not None and settings is not None and settings.tenants():
            pins[name] = (header, ",".join(settings.tenants()).encode())
    return pins
