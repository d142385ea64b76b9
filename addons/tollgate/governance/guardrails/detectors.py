"""The built-in detectors, each a format as precise as it is published: its prefix, length and
alphabet, and its checksum or registry where it has one. A detector reads the text the scan gives
it (`text.py`): a body's bytes, its escaped strings decoded where that matters. Where JSON escapes
stay in what it reads (`\\n` before a token, a PEM key's lines), its patterns read them as the
separators they stand for.

Every detector names `anchors`: expressions (in the syntax Python's `re` and Hyperscan share) of
which one matches inside each of its matches, within `reach` bytes of the match's start and end.
The scan finds the anchors in one pass (`engine.py`) and runs the exact pattern only around them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from tollgate.governance.guardrails import checks
from tollgate.governance.guardrails.credential_kinds import NAMED, PREFIXED, SHAPED, VENDOR_NAMED
from tollgate.governance.guardrails.detector_types import (
    Base64PairDetector,
    Detector,
    EmailDetector,
)


def left(chars: bytes) -> bytes:
    """A match's start: not inside a run of `chars`, nor just after a backslash (an escape's letter),
    unless that backslash begins a whitespace escape (`\\n`, `\\t`, …), which separates as the
    character it stands for does, or after a non-ASCII character's `\\uXXXX` (`text.py` leaves
    those as they are written)."""
    return rb"(?:(?<![\\" + chars + rb"])|(?<=\\[nrtbf])|(?<=\\u[0-9a-fA-F]{4}))"


# An anchor's end for a shape a run can repeat at every byte (digits, capitals and digits): where
# the run ends, so that a run is one anchor, not one at each of its bytes. (A class before an
# anchor would do the same at its start, but Hyperscan reads a body several times slower so.)
_RUN_END = rb"(?:[^0-9]|$)"
_WORD_END = rb"(?:[^A-Za-z0-9_]|$)"


TOKEN_START = left(rb"A-Za-z0-9")
TOKEN_END = rb"(?![A-Za-z0-9])"
DASHED_END = rb"(?![A-Za-z0-9_-])"


def detector(
    kind: str,
    pattern: bytes,
    anchors: Iterable[bytes],
    reach: int,
    check: Callable[[bytes], bool] | None = None,
    at_anchor: bool = False,
    fit: Callable[[bytes], int] | None = None,
    overlaps: bool = False,
) -> Detector:
    return Detector(kind, re.compile(pattern), tuple(anchors), reach, check, at_anchor, fit, overlaps)


def token(
    kind: str,
    prefix: bytes,
    rest: bytes,
    reach: int,
    check: Callable[[bytes], bool] | None = None,
    dashed: bool = False,
) -> Detector:
    """A token that begins with `prefix` (its anchor), not inside a longer word (of letters and
    digits; also of `_` and `-` where it is `dashed`)."""
    end = DASHED_END if dashed else TOKEN_END
    return detector(kind, TOKEN_START + prefix + rest + end, (prefix,), reach, check, at_anchor=True)


def _crc_tail(token: bytes) -> bool:
    return checks.base62_crc32_tail(token, 4)


# A GitHub token's 30 random characters hold at least this many distinct ones but for a chance of
# about 1e-12; a placeholder (`ghp_xxxx…`, `ghp_XXXX…`) far fewer.
_TOKEN_DISTINCT = 10


def _github(token: bytes) -> bool:
    """A GitHub token: its 30 random characters and their CRC-32 (`_crc_tail`), or written without
    its checksum (cut off, or not the token's own): the 30 characters are the secret, whose checksum
    anyone computes anew. Any 30 to 36 characters but a placeholder's."""
    return _crc_tail(token) or len(set(token[4:])) >= _TOKEN_DISTINCT


_AWS_KEY_ID = detector(
    "secrets.aws_access_key_id", TOKEN_START + rb"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}" + TOKEN_END,
    (rb"AKIA", rb"ASIA", rb"ABIA", rb"ACCA"), 20,
    at_anchor=True,
)  # fmt: skip
_B64_40 = rb"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
_QUOTE = rb"(?:\\?[\"'])?"
# Space as a body writes it: itself, or escaped (\n, or a control character's \u00XX).
_ESCAPED_SPACE = rb"\\+[nrt]|\\u00[01][0-9a-fA-F]"
_SPACE = rb"(?:\s|" + _ESCAPED_SPACE + rb")*"
_AWS_SECRET_DISTANCE = 256
_AWS_SECRET_NAME = rb"(?i)secret[_-]?access[_-]?key"

# Placeholders a URL's password is written as in examples and templates: not secrets.
_PLACEHOLDER_PASSWORDS = frozenset(
    (
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"pw",
        b"secret",
        b"token",
        b"redacted",
        b"changeme",
        b"xxx",
        b"xxxx",
        b"xxxxx",
        b"...",
        b"***",
    )
)


# A character of a URL's user or password: not a separator, and a non-ASCII one as it is escaped.
_URL_PART = rb"(?:[^\s:/?#@\"'\\<>\[\]{}|^`]|\\u(?!00[01])[0-9a-fA-F]{4})"


def _url_password(value: bytes) -> bool:
    lowered = value.lower()
    return (
        lowered not in _PLACEHOLDER_PASSWORDS
        and not value.startswith((b"$", b"%"))
        and value.strip(b"*x.") != b""
        and not lowered.startswith(b"your")
    )


def _private_key(block: bytes) -> bool:
    """A key's body, not a placeholder: some 64 base64 characters between its armour lines."""
    head_end = block.find(b"-----", 10) + 5
    body = re.sub(_ESCAPED_SPACE + rb"|\s", b"", block[head_end:].split(b"-----END")[0])
    return len(body) >= 64 and re.fullmatch(rb"[A-Za-z0-9+/=]+", body) is not None


_PEM = (
    rb"-----BEGIN[A-Z0-9 ]{0,20} PRIVATE KEY(?: BLOCK)?-----"
    rb"(?:[A-Za-z0-9+/=\s]|" + _ESCAPED_SPACE + rb"){0,16384}"
    rb"(?:-----END[A-Z0-9 ]{0,20} PRIVATE KEY(?: BLOCK)?-----)?"
)

# Addresses reserved for examples and tests (RFC 2606, RFC 6761), and file names with an @ (icon@2x.png).
_RESERVED_DOMAINS = (b"example.com", b"example.org", b"example.net")
_RESERVED_TLDS = (b"example", b"test", b"invalid", b"localhost", b"local", b"internal")
# SSH's extension names are written name@domain (chacha20-poly1305@openssh.com).
_PROTOCOL_NAMES = (b"openssh.com", b"libssh.org")
_FILE_SUFFIXES = frozenset(
    b"png jpg jpeg gif svg webp ico bmp pdf js mjs ts tsx jsx css scss html htm py pyc md txt json yaml yml"
    b" toml xml csv lock zip gz tar whl so dll exe".split()
)


def _email(address: bytes) -> bool:
    local, _, domain = address.rpartition(b"@")
    domain = domain.lower()
    tld = domain.rsplit(b".", 1)[-1]
    return (
        not domain.endswith(_RESERVED_DOMAINS + _PROTOCOL_NAMES)
        and tld not in _RESERVED_TLDS
        and tld not in _FILE_SUFFIXES
        and local.lower() != b"git"
    )


def _nanp(number: bytes) -> bool:
    """One separator throughout, and not 555-0100 to 555-0199 (kept for fiction and examples)."""
    separators = re.sub(rb"[0-9() ]", b"", number)
    digits = re.sub(rb"[^0-9]", b"", number)
    return len(set(separators)) <= 1 and not digits[3:8].startswith(b"55501")


# One anchor for numbers written in three groups: US phone numbers (3-3-4) and SSNs (3-2-4), each
# of which ends a run of digits.
_DIGIT_GROUPS = rb"[0-9]{3}[-.][0-9]{2,3}[-.][0-9]{4}" + _RUN_END
# An SSN written with spaces (`078 05 1120`).
_SPACED_SSN = rb"[0-9]{3} [0-9]{2} [0-9]{4}" + _RUN_END
# Not after a digit's `.`: the digits of a decimal fraction (0.4111…) are no card.
_CARD_START = left(rb"A-Za-z0-9_-") + rb"(?<![0-9]\.)"
# The first digits of a brand's numbers (`checks.payment_card` has each range exactly): a body of
# digits in groups holds a shape at every group, and most are no brand's.
_CARD_BRAND = rb"(?=4|5[0-58]|2[2-7]|3|6|1[0-9]{14}(?![0-9]))"
# Compact, or in groups of four apart by spaces (its print form) or by dashes.
_IBAN = (
    rb"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?"
    rb"|(?:-[A-Z0-9]{4}){2,7}(?:-[A-Z0-9]{1,3})?)"
)
_CARD_END = rb"(?![0-9A-Za-z_]|[.-][0-9])"


def named(kind: str, name: bytes, value: bytes) -> Detector:
    """A secret known by the name it is given, in any letter case: `NAME=value`, `NAME: value`,
    `"NAME": "value"` (in a JSON string too)."""
    pattern = (
        rb"(?i:" + name + rb")" + _QUOTE + _SPACE + rb"[:=]" + _SPACE + _QUOTE + rb"(?P<v>" + value + rb")" + DASHED_END
    )
    return detector(kind, pattern, (rb"(?i)" + name,), 0, at_anchor=True)


# What may stand between a vendor's name and its credential's value, as code and configuration
# write it: the rest of the name (`etsy_api_token`, `EtsyToken`), a closing quote, a type (`var
# etsyToken string = …`), then an assignment or an argument's separator (`=`, `:`, `:=`, `::=`,
# `?=`, `.=`, `=>`, `,`, `||`, an XML element's `>`), and an opening quote or backtick.
_VENDOR_NAME_REST = rb"[A-Za-z0-9_.-]{0,30}" + _QUOTE + rb"(?:[ \t]{1,4}[A-Za-z]{1,10})?"
# A few spaces at most (a line end and an indent): bounded, so that an answer's reader holds back
# no more than a name, its value and what stands between them (`answer.py`).
_FEW_SPACES = rb"(?:\s|\\{1,3}[nrt]|\\u00[01][0-9a-fA-F]){0,16}"
_ASSIGNED = _FEW_SPACES + rb"(?:[:?.]{0,3}=>?|:|,|>|\|\|)" + _FEW_SPACES + rb"(?:\\?[\"'`])?"


# A vendor's name begins a part of the name it is in: a word (`etsy_token`, `$etsyToken`) or a
# camel-case part (`myEtsyToken`); not inside a word (`SetSysctl`, `betsy`). What a pattern begins
# with where its match begins with its anchor, the vendor's name (`answer.py` looks for the names).
NAME_PART = rb"(?:" + TOKEN_START + rb"|(?<=[a-z0-9])(?=[A-Z]))"


def vendor_named(kind: str, vendor: bytes, value: bytes) -> Detector:
    """A credential of `VENDOR_NAMED`: its value after a name that holds the vendor's (any letter
    case), assigned or passed as code and configuration write it."""
    pattern = (
        NAME_PART + rb"(?i:" + vendor + rb")" + _VENDOR_NAME_REST + _ASSIGNED + rb"(?P<v>" + value + rb")" + DASHED_END
    )
    return detector(kind, pattern, (rb"(?i)" + vendor,), 0, at_anchor=True)


def shaped(kind: str, pattern: bytes, anchor: bytes) -> Detector:
    """A credential of `SHAPED`: tried around its anchor, as far as its longest match reaches."""
    return detector(kind, left(rb"A-Za-z0-9_-") + pattern + DASHED_END, (anchor,), 200)


def prefixed(kind: str, prefix: bytes, rest: bytes) -> Detector:
    """A token of `PREFIXED`: dashed (not inside a word of `_` and `-` either) where its
    alphabet holds them."""
    found = token(kind, prefix, rest, 0, dashed=b"_" in rest or b"-" in rest)
    return Detector(found.kind, found.pattern, (_lead(prefix, rest),), 0, at_anchor=True)


_FIRST_REPEAT = re.compile(rb"\{([0-9]+)(?:,[0-9]*)?\}")


def _lead(prefix: bytes, rest: bytes) -> bytes:
    """A prefixed token's anchor: its prefix and the first characters of the rest, up to its first
    repeat (at most 12 of it), so that a short prefix common in text (`re_`, `sk-`, `pat`) is
    found only where a token of its shape goes on."""
    repeat = _FIRST_REPEAT.search(rest)
    if repeat is None or b"(" in rest[: repeat.start()]:
        return prefix
    return prefix + rest[: repeat.start()] + b"{%d}" % min(int(repeat.group(1)), 12)


# A JSON Web Token: its header (a JSON object, so `eyJ`, base64url's `{"`), payload and signature
# (empty for an unsecured token), or a JWE's five parts; `checks.jwt` decodes its header. Each part
# a whole run (possessive: read to its end once); not followed by one more part.
_B64URL = rb"[A-Za-z0-9_-]"
_JWT = (
    rb"eyJ" + _B64URL + rb"{12,8000}+\." + _B64URL + rb"{0,24000}+\." + _B64URL + rb"{0,2000}+"
    rb"(?:\." + _B64URL + rb"{1,24000}+\." + _B64URL + rb"{1,100}+)?"
)
_JWT_END = rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9_-])"
# The same token in base64 once more (`eyJ` so encoded is `ZXlK`), padded or not; `checks.jwt_base64`
# decodes it and checks the token it holds.
_JWT_BASE64 = rb"ZXlK[A-Za-z0-9+/_-]{40,48000}+={0,2}(?![A-Za-z0-9+/=_-])"


def _builtin() -> tuple[Detector, ...]:
    aws_secret_named = detector(
        "secrets.aws_secret_access_key",
        _AWS_SECRET_NAME + _QUOTE + _SPACE + rb"[:=]" + _SPACE + _QUOTE + _B64_40,
        (_AWS_SECRET_NAME,),
        120,
        at_anchor=True,
    )
    aws_secret_pair = Base64PairDetector(
        "secrets.aws_secret_access_key",
        # Every run of base64 once (possessive: a run is read to its end and not again).
        re.compile(rb"[A-Za-z0-9/+]{40,}+"),
        _AWS_KEY_ID.anchors,
        _AWS_SECRET_DISTANCE + 64,
        checks.mixed_base64,
        partner=_AWS_KEY_ID,
        distance=_AWS_SECRET_DISTANCE,
        length=40,
    )
    gitlab = rb"gl(?:pat|dt|rt|ptt|soat|cbt|oas|ft|imt|ffct|agent)-"
    slack = rb"xox(?:[abposr]|e(?:\.xox[bp])?)-"
    return (
        _AWS_KEY_ID,
        aws_secret_named,
        aws_secret_pair,
        # With its checksum or without (`_github`); a fine-grained token's last six characters too.
        token("secrets.github_token", rb"gh[pousr]_", rb"[A-Za-z0-9]{30,36}", 40, _github),
        token("secrets.github_token", rb"github_pat_", rb"[A-Za-z0-9]{22}_[A-Za-z0-9]{53,59}", 93),
        token(
            # A routable token ends in `.`, its version's two characters and its CRC's seven or more.
            "secrets.gitlab_token", gitlab, rb"[A-Za-z0-9_-]{20,300}(?:\.[0-9a-z]{2}\.?[0-9a-z]{7,10})?", 330,
            dashed=True,
        ),
        token("secrets.gitlab_token", rb"GR1348941", rb"[A-Za-z0-9_-]{20}", 30, dashed=True),
        token(
            "secrets.slack_token", slack, rb"[0-9]{1,15}(?:-[0-9A-Za-z]{1,200}){1,4}", 840,
            lambda value: len(value) >= 30, dashed=True,
        ),
        token("secrets.slack_token", rb"xapp-", rb"[0-9]-[A-Z0-9]{8,14}-[0-9]{8,16}-[a-f0-9]{32,80}", 130),
        detector(
            "secrets.slack_webhook",
            rb"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/[A-Z0-9]{8,14}/"
            rb"(?:[0-9]+/)?[A-Za-z0-9]{20,40}" + TOKEN_END,
            (rb"hooks\.slack\.com/",), 140,
        ),
        detector(
            "secrets.stripe_key", TOKEN_START + rb"(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{24,247}" + TOKEN_END,
            (rb"[sr]k_live_", rb"[sr]k_test_", rb"[sr]k_prod_"), 260, at_anchor=True,
        ),
        token("secrets.stripe_key", rb"whsec_", rb"[A-Za-z0-9]{32,64}", 72),
        detector(
            "secrets.openai_api_key",
            TOKEN_START + rb"sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,200}T3BlbkFJ[A-Za-z0-9_-]{20,200}"
            + DASHED_END,
            (rb"T3BlbkFJ",), 420,
        ),
        token(
            "secrets.anthropic_api_key", rb"sk-ant-", rb"(?:api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{93}AA", 120,
            dashed=True,
        ),
        token("secrets.google_api_key", rb"AIza", rb"[0-9A-Za-z_-]{35}", 40, dashed=True),
        token("secrets.google_oauth_client_secret", rb"GOCSPX-", rb"[A-Za-z0-9_-]{28}", 40, dashed=True),
        detector(
            "secrets.private_key", _PEM, (rb"-----BEGIN[A-Z0-9 ]{0,20} PRIVATE KEY",), 16600, _private_key,
            at_anchor=True,
        ),
        detector(
            "secrets.url_password",
            # From its ://: the scheme before it says nothing more. The user and the password are
            # each a whole run of their characters (`:` and `@` are none of them): possessive, so
            # that a URL without them is read once, not again from each shorter run.
            rb"://" + _URL_PART + rb"{0,128}+:(?P<v>" + _URL_PART + rb"{1,256}+)@[A-Za-z0-9]",
            (rb"://",), 400, _url_password, at_anchor=True,
        ),
        token("secrets.npm_token", rb"npm_", rb"[A-Za-z0-9]{36}", 40, _crc_tail),
        token(
            "secrets.pypi_token", rb"pypi-AgE", rb"(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,1000}", 1040,
            dashed=True,
        ),
        token("secrets.dockerhub_token", rb"dckr_(?:pat|oat)_", rb"[A-Za-z0-9_-]{27,64}", 80, dashed=True),
        detector(
            "secrets.azure_storage_key", rb"AccountKey=(?P<v>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])",
            (rb"AccountKey=",), 110, at_anchor=True,
        ),
        token("secrets.sendgrid_api_key", rb"SG\.", rb"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", 75, dashed=True),
        token("secrets.huggingface_token", rb"hf_", rb"[A-Za-z]{34}", 40),
        token("secrets.groq_api_key", rb"gsk_", rb"[A-Za-z0-9]{52}", 60),
        token("secrets.xai_api_key", rb"xai-", rb"[A-Za-z0-9]{80}", 90),
        detector(
            "secrets.jwt", left(rb"A-Za-z0-9_-") + _JWT + _JWT_END, (rb"eyJ" + _B64URL + rb"{12}",), 0, checks.jwt,
            at_anchor=True,
        ),
        detector(
            "secrets.jwt", left(rb"A-Za-z0-9+/_-") + _JWT_BASE64, (rb"ZXlK[A-Za-z0-9+/_-]{16}",), 0, checks.jwt_base64,
            at_anchor=True,
        ),
        *(prefixed(kind, prefix, rest) for kind, prefix, rest in PREFIXED),
        *(named(kind, name, value) for kind, name, value in NAMED),
        *(vendor_named(kind, vendor, value) for kind, vendor, value in VENDOR_NAMED),
        *(shaped(kind, pattern, anchor) for kind, pattern, anchor in SHAPED),
        detector(
            "secrets.azure_devops_token", TOKEN_START + rb"[A-Za-z0-9]{52}AZDO[A-Za-z0-9]{4}" + TOKEN_END,
            (rb"AZDO[A-Za-z0-9]{4}",), 64,
        ),
        EmailDetector(
            "pii.email",
            # Not after `/`, nor after a URL's `scheme://user:` (`around`): a URL's userinfo is no address.
            re.compile(
                left(rb"A-Za-z0-9_%+/-") + rb"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}"
                rb"(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59})(?![A-Za-z0-9-])"
            ),
            (rb"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.[A-Za-z]{2}",), 600, _email,
        ),
        detector(
            "pii.phone",
            left(rb"A-Za-z0-9+_-") + rb"(?<![0-9]\.)\+[1-9](?:[ .-]?[0-9]|[ .-]?\([0-9]{1,4}\)){7,14}"
            rb"(?![0-9A-Za-z_]|[.-][0-9])",
            (rb"\+[1-9][0-9 ().-]{7}",), 40, lambda number: checks.phone_digits(number, 8, 15),
        ),
        detector(
            "pii.phone",
            left(rb"A-Za-z0-9+_-") + rb"(?<![0-9]\.)(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-.])[2-9][0-9]{2}[-.][0-9]{4}"
            rb"(?![A-Za-z0-9_-]|\.[0-9])",
            (_DIGIT_GROUPS, rb"\([2-9][0-9]{2}\) ?[0-9]{3}-"), 20, _nanp,
        ),
        detector(
            "pii.payment_card",
            _CARD_BRAND + _CARD_START + rb"(?:[0-9]{13,19}|[0-9]{4}(?P<s1>[ -])[0-9]{4}(?P=s1)[0-9]{4}(?P=s1)[0-9]{1,4}"
            rb"(?:(?P=s1)[0-9]{3})?|[0-9]{4}(?P<s2>[ -])[0-9]{6}(?P=s2)[0-9]{4,5})" + _CARD_END,
            # Written whole, a number is a whole run of digits: 14 to 19 of them, or Visa's 13 from a
            # 4 (a timestamp in milliseconds has 13 from a 1). Hyperscan reads a run of any digits
            # fastest: an anchor that begins with a class of some digits (`[2-6]`) or with the digit
            # 1 reads a body some 15 to 30 % slower.
            (
                rb"[0-9]{14,19}" + _RUN_END, rb"4[0-9]{12}" + _RUN_END,
                rb"[2-6][0-9]{3}[ -][0-9]{4,6}[ -][0-9]{4}",
            ),
            25, checks.payment_card, overlaps=True,
        ),
        detector(
            "pii.iban",
            left(rb"A-Za-z0-9_") + _IBAN + rb"(?![A-Za-z0-9_])",
            (_IBAN + _WORD_END,), 45, fit=checks.iban_prefix,
        ),
        detector(
            # Its three groups with one separator throughout: dashes, dots or spaces. Spaced, not
            # a part of a longer run of spaced groups (a phone's, an account's).
            "pii.us_ssn",
            _CARD_START + rb"[0-9]{3}(?:-[0-9]{2}-[0-9]{4}(?![0-9A-Za-z_]|-[0-9])"
            rb"|\.[0-9]{2}\.[0-9]{4}(?![0-9A-Za-z_]|\.[0-9])"
            rb"|(?<![0-9] [0-9]{3}) [0-9]{2} [0-9]{4}(?![0-9A-Za-z_]| [0-9]))",
            (_DIGIT_GROUPS, _SPACED_SSN), 12, checks.us_ssn,
        ),
    )  # fmt: skip


def kinds_of(found: Iterable[Detector]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Every kind of these detectors, and each group's (`secrets` and `pii` name all of theirs)."""
    kinds = tuple(dict.fromkeys(d.kind for d in found))
    return kinds, {group: tuple(k for k in kinds if k.startswith(f"{group}.")) for group in ("secrets", "pii")}


# Secrets whose value may hold what `checks.placeholder` reads as filling: a password (chosen by
# hand), and base64 of binary data, whose zero bytes are runs of `A` (a PEM key, AWS's session
# tokens, Fly.io's macaroons, a Twitter bearer token's 22 leading `A`s, Dropbox's long-lived
# tokens' ten).
_ANY_FILLING = frozenset(
    (
        "secrets.private_key",
        "secrets.url_password",
        "secrets.aws_session_token",
        "secrets.flyio_token",
        "secrets.twitter_bearer_token",
        "secrets.dropbox_token",
    )
)


def _no_placeholder(found: Detector) -> Detector:
    """A secret's detector that does not find its shape filled as examples fill it
    (`checks.placeholder`), where its issuer's part is random."""
    if not found.kind.startswith("secrets.") or found.kind in _ANY_FILLING:
        return found
    check = found.check
    if check is None:
        return replace(found, check=lambda value: not checks.placeholder(value))
    return replace(found, check=lambda value: not checks.placeholder(value) and check(value))


BUILTIN: tuple[Detector, ...] = tuple(_no_placeholder(d) for d in _builtin())
# Every built-in kind, by group.
KINDS, GROUPS = kinds_of(BUILTIN)
OWN_KEYS = "tollgate_keys"
# Strings shorter than this are not looked for as Tollgate's keys: they would be found in ordinary text.
OWN_KEY_MIN = 12
# `tollgate key new`'s keys: what a key Tollgate knows only by its SHA-256 looks like.
_VIRTUAL_KEY = rb"tg-[A-Za-z0-9_-]{43}"


def builtin(kinds: Iterable[str]) -> tuple[Detector, ...]:
    wanted = set(kinds)
    return tuple(d for d in BUILTIN if d.kind in wanted)


def custom_regex(name: str, pattern: re.Pattern[bytes]) -> Detector:
    """A `{name, regex}` detector: its regex read over the whole text (it has no anchors)."""
    return Detector(name, pattern, (), 0)


def custom_terms(name: str, terms: Iterable[str]) -> Detector:
    """A `{name, terms}` detector: each term, in any letter case, as a whole word."""
    escaped = sorted((re.escape(t.encode()) for t in terms), key=len, reverse=True)
    pattern = rb"(?i)(?<![A-Za-z0-9_])(?:" + b"|".join(escaped) + rb")(?![A-Za-z0-9_])"
    return Detector(name, re.compile(pattern), tuple(rb"(?i)" + t for t in escaped), max(map(len, escaped)) + 2)


def _common_prefix(words: list[bytes]) -> bytes:
    first, last = min(words), max(words)  # the sorted first and last differ first where any do
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def own_keys(exact: Iterable[str], digests: Iterable[str]) -> tuple[Detector, ...]:
    """`tollgate_keys`: each of Tollgate's own secrets exactly, and a virtual key known only by its
    SHA-256 (hex) wherever a key of `tollgate key new`'s shape hashes to one of them."""
    keys = sorted({k.encode() for k in exact if len(k) >= OWN_KEY_MIN}, key=len, reverse=True)
    found: list[Detector] = []
    if keys:
        # Keys of one kind share a prefix (`sk-proj-`, `tg-`): one anchor each, the fewer passes
        # where Python's re finds them.
        groups: dict[bytes, list[bytes]] = {}
        for key in keys:
            groups.setdefault(key[:4], []).append(key)
        anchors = tuple(re.escape(_common_prefix(group)) for group in groups.values())
        pattern = re.compile(b"|".join(re.escape(k) for k in keys))
        found.append(Detector(OWN_KEYS, pattern, anchors, len(keys[0]), at_anchor=True))
    hashed = frozenset(digests)
    if hashed:
        found.append(
            Detector(
                OWN_KEYS, re.compile(left(rb"A-Za-z0-9_-") + _VIRTUAL_KEY + DASHED_END), (rb"tg-",), 50,
                lambda key: hashlib.sha256(key).hexdigest() in hashed,
            )
        )  # fmt: skip
    return tuple(found)
