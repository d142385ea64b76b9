"""How a caller and an amount of money are shown to a person, one way in every output: the
console line, mitmweb's comment, `tollgate usage` and `tollgate inventory`, the console's CSV
exports. Records and JSON keep their data as it is (a caller with no name is `null` there)."""

from __future__ import annotations

from decimal import Decimal

# An anonymous caller (no client named it): the parentheses keep it apart from any client's name.
ANONYMOUS = "(anonymous)"
NANO = Decimal("1e-9")


def caller_name(client: str | None) -> str:
    """A client's name, or `(anonymous)` for a caller no client names."""
    return ANONYMOUS if client is None else client


def usd_text(amount: Decimal | float) -> str:
    """US dollars as a plain decimal, never an exponent: every digit there is (a call costs
    fractions of a cent, and costs are exact to the nano-dollar), at least cents. 0 is `0.00`,
    8.035e-05 is `0.00008035`. A float is read as its shortest text, the decimal it was written as."""
    exact = amount if isinstance(amount, Decimal) else Decimal(repr(float(amount)))
    whole, _, fraction = format(exact, "f").partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def nano_usd_text(nano: int) -> str:
    """Nano-dollars (what Tollgate counts in) as `usd_text` shows them, with the dollar sign of a
    line read by a person: `$0.000006975`."""
    return "$" + usd_text(nano * NANO)
