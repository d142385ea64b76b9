"""A plan call: the plan's token found in its request and read once (`plan_call`: the token
(`found_plan`), what the request tells of its account (`read_plan`), and what the call keeps of the
token for the steps after it, `PlanToken`: never the token itself, which goes upstream as it
came); who makes it (`plan_caller`); and the `subscriptions:` settings (`Subscriptions`: whether
plan calls are allowed, and each vendor's, `subscriptions.<name>`, the settings its plan reader
declares, `PlanReader.settings`, found in the providers' registry). Plain logic, no mitmproxy; it
names no vendor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr, create_model

from tollgate.common.config_base import Strict
from tollgate.common.fingerprint import fingerprint
from tollgate.formats.request_facts import Classification
from tollgate.governance.identity.clients import Identified, KnownCaller, Rejected
from tollgate.governance.subscriptions.asked_accounts import token_key
from tollgate.providers import PROVIDERS
from tollgate.providers.base import Provider
from tollgate.providers.credentials import Presented
from tollgate.providers.plans import PLAN_ONLY_REASON, ForeignAccount, PlanAccount, PlanSettings

if TYPE_CHECKING:
    from tollgate.governance.identity.clients import Directory

ANONYMOUS_PLAN_REASON = "a plan's token names no caller, and anonymous callers are not allowed"
ANONYMOUS_PLAN_MESSAGE = (
    "Tollgate: a call made with a plan's token must say who calls here: log in at the proxy, or use the"
    " virtual key Tollgate's operator gave you."
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a plan call tells of the plan (None where the vendor's token does not say): the policy's
    `input.subscription`, the audit's `account`, `plan` and `tenant`."""

    vendor: str
    account: str | None = None
    email: str | None = None
    plan: str | None = None
    tenant: str | None = None

    @classmethod
    def of(cls, vendor: str, account: PlanAccount) -> Subscription:
        """A vendor's plan call, by what its request says of the account (`PlanReader.account`)."""
        return cls(vendor, account.account, account.email, account.plan, account.tenant)

    def with_asked_account(self, email: str | None, plan: str | None, tenant: str | None) -> Subscription:
        """A plan call whose token's account was asked about (`PlanReader.asks_account`): the
        account's e-mail (also its account), the plan last named for it, and the tenant its body
        names (`PlanReader.tenant_in_body`)."""
        return replace(self, account=email, email=email, plan=plan, tenant=tenant)

    def policy_input(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "account": self.account,
            "email": self.email,
            "plan": self.plan,
            "tenant": self.tenant,
        }


@dataclass(frozen=True, slots=True)
class PlanToken:
    """What a call keeps of the plan's token it was found with, for the steps after the one that
    found it: its fingerprint (the audit's `upstream_key` once it goes upstream) and, where the
    token's account is asked about (`PlanReader.asks_account`), its SHA-256 (what its account and
    plan are kept by, `token_key`)."""

    upstream_key: str
    sha256: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, token: str, asked: bool) -> PlanToken:
        return cls(fingerprint(token), token_key(token) if asked else None)


@dataclass(frozen=True, slots=True)
class PlanCall:
    """A plan's token found in a call's request, read once: what the request tells of the plan,
    why it names two accounts (refused) or None, what the call keeps of the token (`kept`), and
    whether the token is the only credential the request presents, a bearer in its Authorization
    header (`alone`: a path only a plan's own token takes goes with nothing else). The token itself
    stays with the step that read it (which asks of the token's account where its reader says to), never on the
    call."""

    token: str = field(repr=False)
    subscription: Subscription
    foreign: str | None
    kept: PlanToken
    alone: bool = False


def plan_call(
    provider: Provider,
    presented: list[Presented],
    headers: Mapping[bytes, bytes],
    host: str,
    directory: Directory,
) -> PlanCall | None:
    """A call made with a plan's token (`found_plan`), read: None for any other call."""
    token = found_plan(provider, presented, directory)
    if token is None:
        return None
    subscription, foreign = read_plan(provider, token.value, headers, host)
    asked = provider.plan is not None and provider.plan.asks_account
    alone = len(presented) == 1 and token.position == "authorization" and token.bearer
    return PlanCall(token.value, subscription, foreign, PlanToken.of(token.value, asked), alone)


@dataclass(frozen=True, slots=True)
class PlanCaller:
    """Who makes a plan call (auth `subscription`), and what becomes of it: `caller`, Identified
    (anonymous where it names no client) or Rejected (401: no one may make it); `refusal`: why it
    is refused whoever makes it (403 tenant_denied: the audit's deny reason, what the caller is
    told), or None."""

    caller: Identified | Rejected
    refusal: tuple[str, str] | None = None


def plan_caller_named(
    plan: Subscription, login: str | Identified | Rejected | None, directory: Directory
) -> Identified | Rejected:
    """Who makes a plan call: the proxy login (`login`: its user name, or what the JWT it carries
    named where Tollgate judges logins), else the client whose `accounts` names its account or
    e-mail, else anonymous where anonymous callers are allowed; else no one may (401)."""
    if isinstance(login, str):
        caller = directory.identify(login, ())
        assert isinstance(caller, KnownCaller)  # a login names its caller
        return Identified(caller.name, caller.groups, "subscription")
    if login is not None:
        return replace(login, auth="subscription") if isinstance(login, Identified) else login
    if (holder := directory.account_holder(plan.account, plan.email)) is not None:
        return Identified(holder.name, holder.groups, "subscription")
    if directory.anonymous_allowed:
        return Identified(None, (), "subscription")
    return Rejected(ANONYMOUS_PLAN_REASON, ANONYMOUS_PLAN_MESSAGE)


def plan_caller(
    plan: Subscription,
    foreign: str | None,
    login: str | Identified | Rejected | None,
    directory: Directory,
    subscriptions: Subscriptions,
) -> PlanCaller:
    """A plan call's caller (`plan_caller_named`) and its refusal whoever makes it: with
    `subscriptions.allow: false`, where its request names two accounts (`foreign`: why), or a tenant
    outside the company's (`subscriptions.<vendor>`). A refused call's caller stays unnamed where
    none is: a 401 would ask for a login that could not let it through."""
    caller = plan_caller_named(plan, login, directory)
    refusal = subscriptions.refusal(plan, foreign)
    if refusal is not None and isinstance(caller, Rejected):
        caller = Identified(None, (), "subscription")
    return PlanCaller(caller, refusal)


def plan_only_refusal(provider: Provider, classification: Classification, plan: PlanCall | None) -> str | None:
    """Why a call to a path only a plan's own token takes (`Classification.plan_only`: a
    vendor's paths Tollgate does not know, its provider says which) is refused, as the plan call read once tells: it
    presents no plan's token, or one beside another credential or in another scheme than Bearer.
    A key of Tollgate's must not reach what Tollgate does not know. None where it goes."""
    if not classification.plan_only or (plan is not None and plan.alone):
        return None
    why = provider.plan.plan_only if provider.plan is not None else PLAN_ONLY_REASON
    return f"{classification.endpoint} {why}"


def plan_token(presented: Iterable[Presented], prefix: str) -> Presented | None:
    """The first credential presented that is a plan's token (it starts with `prefix`,
    `PlanReader.token_prefix`)."""
    for p in presented:
        if p.value.startswith(prefix):
            return p
    return None


def found_plan(provider: Provider, presented: list[Presented], directory: Directory) -> Presented | None:
    """The plan's token a call presents, where its provider takes plans and no virtual key stands
    beside it (which then names the caller of a call made with Tollgate's keys, every credential
    the client sent taken out)."""
    plan = provider.plan  # one check on a keyed call: its provider takes no plans
    if plan is None:
        return None
    token = plan_token(presented, plan.token_prefix)
    if token is None or any(directory.is_virtual_key(p.value) for p in presented):
        return None
    return token


def read_plan(
    provider: Provider, token: str, headers: Mapping[bytes, bytes], host: str
) -> tuple[Subscription, str | None]:
    """What a plan call's request tells of its plan (`PlanReader.account`, no network call), and
    why it names two accounts (refused), or None."""
    assert provider.plan is not None  # a plan call's provider takes plans
    try:
        return Subscription.of(provider.name, provider.plan.account(token, headers, host)), None
    except ForeignAccount as e:
        return Subscription.of(provider.name, e.account), str(e)


# A plan call refused by `subscriptions.allow: false`: the audit's deny reason, what the caller is told.
PLANS_REFUSED_REASON = "calls made with a plan are not allowed (subscriptions.allow)"
PLANS_REFUSED_MESSAGE = (
    "Tollgate: calls made with a personal or team plan are not allowed here; use the virtual key"
    " Tollgate's operator gave you."
)

# Each vendor's settings, by the name of the provider whose plans they are.
VENDOR_SETTINGS: dict[str, type[PlanSettings]] = {
    name: p.plan.settings for name, p in PROVIDERS.items() if p.plan is not None
}


class Subscriptions(Strict):
    """`subscriptions:`: calls made with a person's plan (auth `subscription`). Each vendor's
    settings are a field of their own, one per `VENDOR_SETTINGS`, added below from the providers'
    registry (governance names no vendor): read through `vendor`."""

    allow: bool = True  # false: every call made with a plan's token is refused (403 tenant_denied)
    _vendors: dict[str, PlanSettings] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._vendors = {name: value for name, value in self if isinstance(value, PlanSettings)}

    def vendor(self, name: str) -> PlanSettings | None:
        """`subscriptions.<name>`: a vendor's settings, None for a provider that takes no plans."""
        return self._vendors.get(name)

    def outside(self, plan: Subscription) -> str | None:
        """Why a plan call is outside the company's tenants, as far as its request shows (the
        audit's deny reason), or None: by its vendor's settings."""
        settings = self._vendors.get(plan.vendor)
        return settings.outside(plan.tenant, plan.plan) if settings is not None else None

    def refusal(self, plan: Subscription, foreign: str | None) -> tuple[str, str] | None:
        """Why a plan call is refused whoever makes it (the audit's deny reason), and what its caller
        is told; None if it is not. `foreign`: why its request names two accounts."""
        if not self.allow:
            return PLANS_REFUSED_REASON, PLANS_REFUSED_MESSAGE
        outside = foreign or self.outside(plan)
        if outside is not None:
            return outside, f"Tollgate: {outside}; sign in to the company's account."
        return None

    def account_endpoint(self, vendor: str) -> tuple[str, str | None]:
        """Where the account of a vendor's plan token is asked for, and the CA file that endpoint's
        certificate is checked with (a `PlanReader.asks_account` vendor's settings)."""
        return self._vendors[vendor].account_endpoint()

    def ungoverned(self) -> frozenset[str]:
        """The vendors whose hosts are left tunnelled untouched (`subscriptions.<vendor>.govern: false`)."""
        return frozenset(name for name, settings in self._vendors.items() if not settings.govern)


if not TYPE_CHECKING:  # the same class with the vendors' fields: a type checker knows the fields above
    Subscriptions = create_model(
        "Subscriptions",
        __base__=Subscriptions,
        __module__=__name__,
        **{name: (settings, settings()) for name, settings in VENDOR_SETTINGS.items()},
    )


def tenant_pins(subscriptions: Subscriptions, headers: Mapping[str, bytes | None]) -> dict[str, tuple[bytes, bytes]]:
    """The tenant header each provider's requests carry, by provider name: (name, value). `headers`:
    each provider's plan reader's `tenant_header`, its tenants those of its `subscriptions.<name>` settings."""
    pins = {}
    for name, header in headers.items():
        settings = subscriptions.vendor(name)
        if header is not None and settings is not None and settings.tenants():
            pins[name] = (header, ",".join(settings.tenants()).encode())
    return pins
