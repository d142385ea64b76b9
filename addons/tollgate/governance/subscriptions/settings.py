"""The `subscriptions:` settings: whether plan calls are allowed, and each vendor's
(`subscriptions.<name>`: the settings its plan reader declares, `PlanReader.settings`, found in the
providers' registry): its tenants, the tenant header pinned to its requests, what it refuses,
whether its hosts are governed. Plain logic, no mitmproxy; it names no vendor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr, create_model

from tollgate.common.config_base import Strict
from tollgate.providers import PROVIDERS
from tollgate.providers.plans import PlanSettings

if TYPE_CHECKING:
    from tollgate.governance.subscriptions.plan import Subscription

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


class PlanCalls(Strict):
    """`subscriptions:`: calls made with a person's plan (auth `subscription`); each vendor's
    settings are fields of `Subscriptions`, which extends this with one per `VENDOR_SETTINGS`."""

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
        certificate is checked with (a `PlanReader.google_account` vendor's settings)."""
        return self._vendors[vendor].account_endpoint()

    def ungoverned(self) -> frozenset[str]:
        """The vendors whose hosts are left tunnelled untouched (`subscriptions.<vendor>.govern: false`)."""
        return frozenset(name for name, settings in self._vendors.items() if not settings.govern)


if TYPE_CHECKING:
    Subscriptions = PlanCalls
else:
    Subscriptions = create_model(
        "Subscriptions",
        __base__=PlanCalls,
        __module__=__name__,
        **{name: (settings, settings()) for name, settings in VENDOR_SETTINGS.items()},
    )


def tenant_pins(subscriptions: PlanCalls, headers: Mapping[str, bytes | None]) -> dict[str, tuple[bytes, bytes]]:
    """The tenant header each provider's requests carry, by provider name: (name, value). `headers`:
    each provider's plan reader's `tenant_header`, its tenants those of its `subscriptions.<name>` settings."""
    pins = {}
    for name, header in headers.items():
        settings = subscriptions.vendor(name)
        if header is not None and settings is not None and settings.tenants():
            pins[name] = (header, ",".join(settings.tenants()).encode())
    return pins
