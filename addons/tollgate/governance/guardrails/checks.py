"""The checksums and tables that make a detector precise: a match of a format's shape counts only
when its check digits, checksum or registry entry agree. Each takes the matched bytes."""

from __future__ import annotations

import base64
import json
import re
import zlib

_BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_VALUE = {c: i for i, c in enumerate(_BASE62)}


def base62_crc32_tail(token: bytes, prefix_length: int) -> bool:
    """GitHub's and npm's token format: after the prefix, 30 random characters and six that are
    the CRC-32 of those 30, in base 62 (0-9, A-Z, a-z), left-padded with zeros."""
    entropy, tail = token[prefix_length:-6], token[-6:]
    value = 0
    for c in tail:
        digit = _BASE62_VALUE.get(c)
        if digit is None:
            return False
        value = value * 62 + digit
    return value == zlib.crc32(entropy)


# Each ASCII digit as Luhn's doubling makes it (its digits' sum), kept an ASCII digit.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn(digits: bytes) -> bool:
    """The Luhn check digit (ASCII digits only). In C's loops (`translate`, `sum`): a body of
    digits holds many candidates."""
    backwards = digits[::-1]
    kept, doubled = backwards[0::2], backwards[1::2].translate(_LUHN_DOUBLED)
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


# A card's brand by its first digits (IIN ranges) and the lengths it issues; a number of another
# prefix or length is no card however its check digit falls.
_CARD_RANGES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (13, 16, 19)),  # Visa
    (51, 55, (16,)),  # Mastercard
    (2221, 2720, (16,)),  # Mastercard's 2-series
    (34, 34, (15,)),  # American Express
    (37, 37, (15,)),
    (6011, 6011, (16, 17, 18, 19)),  # Discover
    (644, 649, (16, 17, 18, 19)),
    (65, 65, (16, 17, 18, 19)),
    (3528, 3589, (16, 17, 18, 19)),  # JCB
    (300, 305, (14, 15, 16, 17, 18, 19)),  # Diners Club
    (36, 36, (14, 15, 16, 17, 18, 19)),
    (38, 39, (16, 17, 18, 19)),
    (62, 62, (16, 17, 18, 19)),  # UnionPay
    (5019, 5019, (16,)),  # Dankort
    (5018, 5018, (16, 17, 18, 19)),  # Maestro (issued from 12 digits; read from 16, as written whole)
    (5020, 5020, (16, 17, 18, 19)),
    (5038, 5038, (16, 17, 18, 19)),
    (5893, 5893, (16, 17, 18, 19)),
    (6304, 6304, (16, 17, 18, 19)),
    (6759, 6759, (16, 17, 18, 19)),
    (6761, 6763, (16, 17, 18, 19)),
    (1, 1, (15,)),  # UATP, the airlines' card: written whole (`payment_card`)
)


def _card_lengths() -> dict[bytes, frozenset[int]]:
    """The lengths issued under each four first digits: one look-up a candidate."""
    lengths: dict[bytes, set[int]] = {}
    for low, high, issued in _CARD_RANGES:
        width = len(str(low))
        for prefix in range(1000, 10000):
            if low <= prefix // 10 ** (4 - width) <= high:
                lengths.setdefault(str(prefix).encode(), set()).update(issued)
    return {prefix: frozenset(n) for prefix, n in lengths.items()}


_CARD_LENGTHS = _card_lengths()


def payment_card(number: bytes) -> bool:
    """A card number as written (digits, and single spaces or dashes between its groups): a known
    brand's prefix and length, and a valid Luhn digit. A UATP number (15 digits from a 1) is read
    written whole only: in groups, it is a table's figures as often as a card."""
    digits = number.replace(b" ", b"").replace(b"-", b"")
    if not digits.isdigit() or (digits[:1] == b"1" and len(digits) != len(number)):
        return False
    return len(digits) in _CARD_LENGTHS.get(digits[:4], ()) and luhn(digits)


# Each country's IBAN length (the ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban(text: bytes) -> bool:
    """An IBAN as written (compact, or in groups of four apart by spaces or dashes): its country's
    length, and mod 97 = 1."""
    compact = text.replace(b" ", b"").replace(b"-", b"").decode("ascii", "replace")
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def iban_prefix(text: bytes) -> int:
    """The length of the IBAN `text` is or begins with, 0 if none. Written compact, it is the whole
    of `text`; written in groups of four, a word of a group's shape may follow it (`… 7034 BIC`):
    it ends where its country's length does, at the end of a group."""
    length = IBAN_LENGTHS.get(text[:2].decode("ascii", "replace"))
    if length is None:
        return 0
    separator = text[4] if len(text) > 4 and text[4] in b" -" else None
    if separator is None:
        return len(text) if iban(text) else 0
    n = length + (length - 1) // 4  # its characters and the separators between its groups
    if n > len(text) or (n < len(text) and text[n] != separator):
        return 0
    return n if iban(text[:n]) else 0


def us_ssn(text: bytes) -> bool:
    """AAA-GG-SSSS as the SSA issues them (its groups apart by dashes, dots or spaces): no area
    000, 666 or 9xx, no group 00, no serial 0000, not the numbers printed in advertisements, nor
    groups of one repeated digit each."""
    area, group, serial = text[:3], text[4:6], text[7:]
    if all(len(set(part)) == 1 for part in (area, group, serial)):  # 111-22-3333: a form's example
        return False
    return (
        area not in (b"000", b"666")
        and not area.startswith(b"9")
        and group != b"00"
        and serial != b"0000"
        and area + group + serial not in (b"078051120", b"219099999")
    )


def phone_digits(text: bytes, low: int, high: int) -> bool:
    """Between `low` and `high` digits in all, as a number written for people holds."""
    count = sum(1 for c in text if 48 <= c <= 57)
    return low <= count <= high


def mixed_base64(text: bytes) -> bool:
    """A random base64 secret's look: upper- and lower-case letters and digits or symbols; a git
    SHA (lower-case hex), a word or a run of one character has not. (In C's loops: `upper` and
    `lower` change ASCII letters alone.)"""
    return (
        text.upper() != text and text.lower() != text and bool(text.translate(None, _LETTERS)) and len(set(text)) >= 16
    )


_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def placeholder(value: bytes) -> bool:
    """Whether a credential's shape is filled with what no issuer's random part holds: a run of eight
    of one character (`xxxxxxxx`, `XXXXXXXX`, `11111111`), eight in alphabetical or counting order
    (`abcdefgh`, `12345678`), or a short unit repeated to its end (`…123123123123`). Written in
    examples and templates (`glpat-xxxxxxxxxxxxxxxxxxxx`); in a random part of 64 hex digits, each
    is rarer than one in a million."""
    n = len(value) - 1
    if n >= 7:
        # Each byte against the one before it, all at once (big integers' XOR, in C; a loop over
        # the bytes in Python cost most of a match's check): a zero byte where it is the same, and
        # (after a byte apart) where it is the next in order (one less than itself, and a digit or
        # a letter). Seven zeros in a row are eight of a run; fewer zeros in all, none (`count` is
        # the quicker search).
        before = int.from_bytes(value[:-1])
        after = value[1:]
        same = (int.from_bytes(after) ^ before).to_bytes(n)
        step = int.from_bytes(after.translate(_ONE_LESS)) ^ before | int.from_bytes(after.translate(_UNORDERED))
        both = same + b"\x01" + step.to_bytes(n)
        if both.count(0) >= 7 and _SEVEN_ZEROS in both:
            return True
    # Twelve bytes of a unit of 1, 2, 3 or 4 repeated are twelve of period 3 or 4 (1 and 2 divide 4).
    tail = value[-12:]
    return len(tail) == 12 and (tail[3:] == tail[:9] or tail[4:] == tail[:8])


# The bytes counted in order: digits, and letters of either case; each byte as the one before it
# in order would be, and each as 0 where it is counted in order (1 elsewhere).
_ORDERED = tuple(chr(c).isascii() and chr(c).isalnum() for c in range(256))
_ONE_LESS = bytes((c - 1) % 256 for c in range(256))
_UNORDERED = bytes(0 if _ORDERED[c] else 1 for c in range(256))
_SEVEN_ZEROS = bytes(7)


def _base64url(part: bytes) -> bytes | None:
    """A part of a JSON Web Token decoded (base64url, its padding left off), or None where it is
    none: a length no encoding gives, or a character not of the alphabet."""
    if len(part) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except ValueError:
        return None


def jwt(token: bytes) -> bool:
    """A JSON Web Token (RFC 7519): a JWS's header, payload and signature, or a JWE's five parts,
    each base64url; its header a JSON object that names its `alg` (and a JWE's its `enc`). The
    signature is empty only where `alg` is `none` (an unsecured token), and only there."""
    parts = token.split(b".")
    # A JWE's second part (its encrypted key) is empty where the key is agreed directly (`dir`).
    if len(parts) not in (3, 5) or not parts[0] or not parts[1 if len(parts) == 3 else 2]:
        return False
    decoded = [_base64url(part) for part in parts]
    if any(d is None for d in decoded):
        return False
    try:
        header = json.loads(decoded[0])  # type: ignore[arg-type]
    except ValueError:
        return False
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return False
    if len(parts) == 5:
        return isinstance(header.get("enc"), str) and bool(parts[3]) and bool(parts[4])
    return (header["alg"] == "none") == (parts[2] == b"")


def jwt_base64(text: bytes) -> bool:
    """A JSON Web Token encoded in base64 once more (a Kubernetes secret's `data`, a header's
    value): decoded, a token `jwt` takes whole."""
    outer = text.rstrip(b"=").translate(_URLSAFE_TO_STANDARD)
    if len(outer) % 4 == 1:
        return False
    try:
        inner = base64.b64decode(outer + b"=" * (-len(outer) % 4), validate=True)
    except ValueError:
        return False
    return _JWT_TEXT.fullmatch(inner) is not None and jwt(inner)


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_JWT_TEXT = re.compile(rb"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]*")
