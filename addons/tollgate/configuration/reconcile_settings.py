"""`reconcile:` what `tollgate reconcile` reads of the vendors' admin APIs, and how closely their
counts must agree with Tollgate's.

A vendor's admin key reads the whole organisation's usage and more: the file holds only the name of
the variable that holds it (`${OPENAI_ADMIN_KEY}`), left as written when the file is read
(`resolved_later`), so that the proxy and the console start without it and no configuration object
ever holds it. `tollgate reconcile` alone reads the variable (`VendorAdmin.admin_key_value`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator

from tollgate.common.config_base import VARIABLE, Strict, base_url

# The one place of each vendor's settings whose `${NAME}` is read by `tollgate reconcile` alone.
_ADMIN_KEY_PLACE = re.compile(r"reconcile\.[a-z][a-z0-9_-]*\.admin_key")


def resolved_later(where: str) -> bool:
    """Whether a place of the file keeps its `${NAME}` as written when the file is read: a vendor's
    admin key under `reconcile:`."""
    return _ADMIN_KEY_PLACE.fullmatch(where) is not None


class VendorAdmin(Strict):
    """`reconcile.<vendor>`: its admin key's variable, and where its admin API answers."""

    admin_key: str = Field(repr=False)  # `${NAME}`: the variable, never the key
    base_url: str | None = None  # None: the vendor's own (`https://api.openai.com`, …)
    # The roots its certificate is checked against (None: the system's); read by `tollgate reconcile`
    # alone, so that the proxy's pods, which share the file, need not have it.
    ca_file: Path | None = None

    @field_validator("admin_key")
    @classmethod
    def _a_variable(cls, value: str) -> str:
        if VARIABLE.fullmatch(value.strip()) is None:
            # Never the value in the message: it may be the key itself, written in the file.
            raise ValueError(
                "must be one ${NAME} alone, e.g. ${OPENAI_ADMIN_KEY}: the file never holds an admin key, and only"
                " `tollgate reconcile` reads the variable"
            )
        return value.strip()

    _base_url = field_validator("base_url")(classmethod(lambda cls, value: base_url(value)))

    @property
    def variable(self) -> str:
        """The name of the variable that holds the admin key."""
        found = VARIABLE.fullmatch(self.admin_key)
        assert found is not None  # checked when read
        return found.group(1)

    def admin_key_value(self, env: Mapping[str, str] | None = None) -> str:
        """The admin key, from its variable; ValueError naming the variable (never a value) when it
        is unset or empty."""
        value = (os.environ if env is None else env).get(self.variable, "").strip()
        if not value:
            raise ValueError(f"environment variable {self.variable} is not set")
        return value


class Tolerance(Strict):
    """`reconcile.tolerance`: a held key's tokens may differ by the larger of these."""

    share: float = Field(default=0.01, ge=0, le=1, allow_inf_nan=False)
    tokens: int = Field(default=100, ge=0)

    def allows(self, ours: int, theirs: int) -> bool:
        return abs(ours - theirs) <= max(self.tokens, self.share * max(ours, theirs))


class ReconcileConfig(Strict):
    """`reconcile:` the vendors read (only those named), the window a run compares by default, and
    the tolerance. The fields are the vendors whose admin APIs Tollgate reads."""

    openai: VendorAdmin | None = None
    anthropic: VendorAdmin | None = None
    days: int = Field(default=7, ge=1, le=366)
    tolerance: Tolerance = Tolerance()

    def vendors(self) -> dict[str, VendorAdmin]:
        """The vendors named, by provider name."""
        named = {name: getattr(self, name) for name in type(self).model_fields if name not in ("days", "tolerance")}
        return {name: settings for name, settings in named.items() if settings is not None}
