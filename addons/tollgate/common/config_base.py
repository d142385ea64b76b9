"""The settings every provider takes under `providers.<name>` in tollgate.yaml, and the pydantic
base of every configuration model and the types they share (`Strict`, `Count`, `Money`,
`base_url`): what each concern's settings, `configuration/config.py` and the provider modules build on."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tollgate.common.host_globs import host_glob


class ConfigError(Exception):
    """A configuration problem, its message naming the file and the field (here, below the models
    and the providers, so that a command that only reports one imports neither)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        # In YAML `clients:` with nothing after it is null: it means "none", not an error.
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].default is None}


# `${NAME}` in the file: the environment variable's value (`config.expand_env`).
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def unexpanded(value: str) -> bool:
    """Whether a value still holds a `${NAME}`: its variable unset, left as written by a read-only
    command (`config.parse_config`)."""
    return VARIABLE.search(value) is not None


# A count of something (requests, tokens): a whole number, never negative.
Count = Annotated[int, Field(ge=0)]
# Prices and amounts of money: exact decimals, never negative.
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


def http_url(value: str, otherwise: str) -> SplitResult:
    """An http(s) URL's parts, its host and port checked; ValueError `otherwise` where it has no
    http(s) scheme or no host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(otherwise)
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError as e:
        raise ValueError(f"bad port: {e}") from None
    return parts


def base_url(value: str | None) -> str | None:
    """An upstream: scheme://host[:port], nothing more."""
    if value is None:
        return None
    parts = http_url(value, "must look like scheme://host[:port], e.g. https://api.openai.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://host[:port] without a path or query")
    return value.rstrip("/")


# What a retry may be made on (`providers.<name>.retry.when`): these statuses, any 5xx, a failed
# connection (or an upstream that closed before its answer's headers), an attempt's timeout.
RETRY_STATUSES = (408, 409, 429, 529)
RETRY_KINDS = ("5xx", "connect", "timeout")


class RetryConfig(Strict):
    """`providers.<name>.retry`: a call that fails before its answer begins goes again, on the next
    pooled key that is not resting, at most `attempts` times in all."""

    attempts: int = Field(default=2, ge=1, le=10)
    when: tuple[int | str, ...] = (429, 529, "5xx", "connect", "timeout")
    max_wait_s: float = Field(default=10.0, ge=0, le=300)

    @field_validator("when")
    @classmethod
    def _known_conditions(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for item in value:
            if isinstance(item, bool) or (
                item not in (*RETRY_STATUSES, *RETRY_KINDS) and not (isinstance(item, int) and 500 <= item <= 599)
            ):
                known = ", ".join(str(k) for k in (*RETRY_STATUSES, *RETRY_KINDS))
                raise ValueError(f"{item!r} is not a condition to retry on; use {known} or a 5xx status")
        return value


class CircuitConfig(Strict):
    """`providers.<name>.circuit`: a key, or an upstream called with no pooled key, that failed
    `failures` calls in a row (as `retry.when` says, else on 429, 529, 5xx, connect and timeout)
    rests `rest_s` seconds: for every model on 429 and a failed connection, else for the model
    whose calls failed; after it, one more failure rests it again."""

    failures: int = Field(default=5, ge=1, le=1000)
    rest_s: float = Field(default=30.0, gt=0, le=3600)


def keys_not_blank(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Upstream keys as configured: none of them empty (an unset variable, say)."""
    if any(not k.strip() for k in keys):
        raise ValueError("a key is empty")
    return keys


class ProviderConfig(Strict):
    """`providers.<name>`: where its calls go, Tollgate's keys for it, how long it may take, and the
    hosts it has besides its own (private endpoints, a company's own names for them). A provider
    that takes more settings subclasses this (`Provider.settings_model`)."""

    upstream: str | None = None
    keys: tuple[str, ...] = ()
    timeout: float = Field(default=120.0, gt=0)
    hosts: tuple[str, ...] = ()
    retry: RetryConfig | None = None  # off unless set
    circuit: CircuitConfig | None = None  # off unless set
    # Whether a call that mints a credential usable without Tollgate (a Realtime client secret, a
    # Gemini ephemeral token) may go: `refuse` (403 mints_credential), or `allow`, which no token
    # or USD limit that applies to the provider may stand beside (`Config`).
    ephemeral_credentials: Literal["refuse", "allow"] = "refuse"

    _upstream = field_validator("upstream")(classmethod(lambda cls, value: base_url(value)))

    @field_validator("hosts")
    @classmethod
    def _host_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(host_glob(glob) for glob in value)

    _keys = field_validator("keys")(classmethod(lambda cls, value: keys_not_blank(value)))


class AwsCredentials(Strict):
    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1)
    session_token: str | None = None
