"""E-mail addresses as Tollgate compares them: letter case folded in ASCII only. Unicode's own
folding (`str.lower`, `casefold`) would make another address of one: KELVIN SIGN (U+212A) lowers
to `k`, so `\u212aate@example.com` would be `kate@example.com`. An address whose characters Unicode
NFKC would change is no address a person should be known by: sign-in refuses it (`changed_by_nfkc`)."""

from __future__ import annotations

import string
import unicodedata

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def email_key(address: str) -> str:
    """`address` as it is compared: A-Z lowered, every other character as written."""
    return address.translate(_ASCII_LOWER)


def changed_by_nfkc(address: str) -> list[str]:
    """What of `address` NFKC changes: its characters that NFKC changes alone (as U+XXXX), else
    (a letter and a combining mark NFKC joins) the characters outside ASCII; none when NFKC leaves
    the address as it is."""
    if unicodedata.normalize("NFKC", address) == address:
        return []
    alone = [c for c in dict.fromkeys(address) if unicodedata.normalize("NFKC", c) != c]
    return [f"U+{ord(c):04X}" for c in alone or [c for c in dict.fromkeys(address) if not c.isascii()]]


def non_ascii_capitals(address: str) -> list[str]:
    """The capitals outside ASCII in `address` (as U+XXXX): each matched its small letter once, when
    e-mails were folded with Unicode's rules, and matches only itself now."""
    return [f"U+{ord(c):04X}" for c in dict.fromkeys(address) if not c.isascii() and c.lower() != c]
