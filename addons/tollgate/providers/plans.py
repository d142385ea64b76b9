"""The optional part of a provider that reads a vendor's plan tokens (a person's plan, not a key):
how they start, which account one names, the header that pins plans to a company's tenants, and
where a token whose request does not name its account is asked about. Plain Python that knows nothing of mitmproxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator

from tollgate.common.config_base import Strict


@dataclass(frozen=True, slots=True)
class PlanAccount:
    """What a plan call's request says of the account it is made with (None where it does not):
    the account, the person's e-mail, the plan, and the tenant (the vendor's workspace or
    organization the account acts in)."""

    account: str | None = None
    email: str | None = None
    plan: str | None = None
    tenant: str | None = None


NO_ACCOUNT = PlanAccount()


class ForeignAccount(Exception):
    """A plan call's request names two different accounts (a header and its token): refused."""

    def __init__(self, account: PlanAccount, reason: str) -> None:
        super().__init__(reason)
        self.account = account  # the token's, as the audit records it


def _tenant_id(value: str) -> str:
    """One entry of a comma-separated header: no comma, no space, no control character."""
    if not value or any(c == "," or c.isspace() or not c.isprintable() for c in value):
        raise ValueError("an identifier must be non-empty and hold no comma, space or control character")
    return value


TenantId = Annotated[str, AfterValidator(_tenant_id)]


class PlanSettings(Strict):
    """`subscriptions.<name>`: a vendor's plans as the company has them. A vendor's own settings
    (its tenants, what it refuses) extend these, declared by its reader (`PlanReader.settings`)."""

    # false: the vendor's hosts are tunnelled untouched, not decrypted nor governed.
    govern: bool = True

    def tenants(self) -> tuple[str, ...]:
        """What the vendor's tenant header lists (`PlanReader.tenant_header`)."""
        return ()

    def outside(self, tenant: str | None, plan: str | None) -> str | None:
        """Why a plan call whose request names this tenant and plan is outside the company's (the
        audit's deny reason), or None. Default: no call is."""
        return None

    def account_endpoint(self) -> tuple[str, str | None]:
        """Where the account of a `PlanReader.asks_account` token is asked for, and the CA file
        that endpoint's certificate is checked with (None: the system's roots)."""
        raise NotImplementedError(f"{type(self).__name__} names no account endpoint")


# What a call to a path only a plan's own token takes is told, after its endpoint, by default.
PLAN_ONLY_REASON = "takes only a plan's own token, never a key"


@dataclass(frozen=True, slots=True)
class PlanReader:
    """A vendor's plan tokens: a provider that takes plans declares one as its `plan`.

    `token_prefix`: how a user token starts in the provider's credential positions (a call
    presenting one is a subscription call, `governance/subscriptions/`). `tenant_header`: the
    header a company's inspecting proxy adds to every request to the vendor's hosts to pin its
    plans to the company's tenants (`subscriptions.<name>`'s); None: the vendor has none.
    `asks_account`: the token's account (its e-mail) is asked of a token information endpoint (its
    settings' `account_endpoint`, `governance/subscriptions/asked_accounts.py`), its plan and tenant
    read by `plan_in_answer` and `tenant_in_body`; `tier_endpoint`: the service endpoint whose answer
    names the token's tier (its plan). `plan_only`: what a call to a path only
    a plan's own token takes (`Classification.plan_only`) is told, after its endpoint, when it
    comes with any other credential. `settings`: what `subscriptions.<name>` holds for it."""

    token_prefix: str
    tenant_header: bytes | None = None
    asks_account: bool = False
    tier_endpoint: str | None = None
    plan_only: str = PLAN_ONLY_REASON
    settings: type[PlanSettings] = PlanSettings  # its `subscriptions.<name>` settings

    def account(self, token: str, headers: Mapping[bytes, bytes], host: str = "") -> PlanAccount:
        """What a plan call presenting `token` tells of its account, from the token, the request's
        headers (lower-case names) and the host it is made to (lower case, no trailing dot), read
        without a network call. Raises ForeignAccount where they name different accounts.
        Default: nothing (an Anthropic plan's token names no account)."""
        return NO_ACCOUNT

    def plan_in_answer(self, body: bytes | None) -> str | None:
        """The plan (tier) an answer of `tier_endpoint` names for the token, or None. Default: none."""
        return None

    def tenant_in_body(self, body: Mapping[str, Any] | None, service: bool) -> str | None:
        """The tenant an `asks_account` call's JSON body names (`service`: a service endpoint's
        call), or None. Default: none."""
        return None
