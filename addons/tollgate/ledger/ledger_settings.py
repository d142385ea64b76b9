"""The ledger's settings (`ledger:` in tollgate.yaml): which store keeps the counters and the calls'
rows, what a store's failure does to a call, what a call whose size is unknown reserves, and the
secret that keys the names a shared store keeps of people."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from tollgate.common.config_base import Count, Strict

LEDGER_FILE = "ledger.sqlite"  # the SQLite store beside the audit log, when `store` names none
# The least length of `secret`: 32 characters, as other secrets of Tollgate's own shared by replicas.
MIN_SECRET = 32


class LedgerConfig(Strict):
    """`ledger:` where the counters of the limits and the record of every call's usage are kept."""

    # sqlite:///relative/path, sqlite:////absolute/path, or redis://[:password@]host[:port][/db]
    # (rediss:// over TLS). Default: a SQLite file beside the audit log.
    store: str | None = Field(default=None, repr=False)  # a Redis URL may hold a password
    on_store_error: Literal["deny", "allow"] = "deny"
    # What a call that sets no max_tokens reserves for its answer, until its real usage settles it.
    reserve_output_tokens: Count = 4096
    # What a call whose input is partly held by the provider (a previous response, a conversation, a
    # stored prompt, a Realtime session) reserves as its input where its model's context window is
    # unknown: 128k, the window of most current chat models.
    reserve_input_tokens: Count = 128_000
    # What every process sharing a Redis store holds and Redis does not (`${NAME}`): the names of the
    # quarantines kept there are keyed with it (HMAC-SHA256), so that whoever reads Redis cannot tell
    # by hashing a list of people whom a quarantine holds. Required with `agents`' quarantine on a
    # Redis store (`Config`); the same in every process, or they do not find each other's.
    secret: str | None = Field(default=None, repr=False)

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_SECRET:
            raise ValueError(
                f"a secret of {MIN_SECRET} characters or more, the same for every process sharing the store (${{NAME}})"
            )
        return value

    @property
    def on_redis(self) -> bool:
        """Whether the store is Redis, which every process of a fleet shares."""
        return self.store is not None and urlsplit(self.store).scheme in ("redis", "rediss")

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "sqlite":
            if parts.netloc or not parts.path.removeprefix("/"):
                raise ValueError("a SQLite store is sqlite:///relative/path or sqlite:////absolute/path")
            return value
        if parts.scheme in ("redis", "rediss"):
            try:
                _ = parts.port
            except ValueError as e:
                raise ValueError(f"bad port: {e}") from None
            if not parts.hostname:
                raise ValueError("a Redis store is redis://host[:port][/db]")
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ValueError("a Redis store's database is a number: redis://host:port/0")
            return value
        raise ValueError("must be sqlite:///path or redis://host:port/db")
