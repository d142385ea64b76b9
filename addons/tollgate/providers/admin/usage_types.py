"""What a vendor's admin API says of an organisation's usage, in one shape whatever the vendor."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# A hint's hidden middle: OpenAI's `sk-abc...def`, Anthropic's `sk-ant-api03-R2D...igAA`, or stars.
_HIDDEN = re.compile(r"\.{3}|…|\*{3,}")


@dataclass(frozen=True)
class VendorKey:
    """A key of the organisation: its id, name, project (or workspace) and the hint the vendor
    gives of it (a prefix and a suffix of the key, its middle hidden)."""

    id: str
    name: str | None
    project: str | None
    hint: str | None

    def fits(self, key: str) -> bool:
        """Whether `key` begins and ends as the hint says."""
        if not self.hint:
            return False
        parts = _HIDDEN.split(self.hint, maxsplit=1)
        if len(parts) != 2 or not (parts[0] or parts[1]):
            return False
        prefix, suffix = parts[0].rstrip("*"), parts[1].lstrip("*")
        return len(key) > len(prefix) + len(suffix) and key.startswith(prefix) and key.endswith(suffix)


@dataclass
class VendorUsage:
    """A day's usage on one key and model, as the vendor counts it: `input_tokens` every input
    token (cache reads and writes among them), `cached_input_tokens` those read from a cache."""

    day: date
    key_id: str | None
    project: str | None
    model: str | None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    requests: int | None = None  # None: the vendor does not count requests


@dataclass
class VendorReport:
    """What a vendor said for the days asked: its keys, its usage, its own cost per day (per
    project or workspace, summed), and the parts of its answers that were not understood (named,
    the rest read)."""

    keys: list[VendorKey] = field(default_factory=list)
    usage: list[VendorUsage] = field(default_factory=list)
    billed: dict[date, Decimal] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def count(result: dict[str, Any], name: str) -> int:
    """A token count of a result; ValueError naming it when it is not one."""
    value = result.get(name, 0)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is {type(value).__name__}, not a count")
    return value


def text(result: dict[str, Any], name: str) -> str | None:
    value = result.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} is {type(value).__name__}, not a string")
    return value


def day_of_epoch(value: Any) -> date:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"start_time is {type(value).__name__}, not a time")
    return datetime.fromtimestamp(value, UTC).date()


def day_of_iso(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError(f"starting_at is {type(value).__name__}, not a time")
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def amount_of(value: Any, name: str) -> Decimal:
    """A finite amount of money, as a vendor's JSON gives it (a number or its text); ValueError
    naming it when it is not one."""
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise ValueError(f"{name} is not a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{name} is not a finite number")
    return amount
