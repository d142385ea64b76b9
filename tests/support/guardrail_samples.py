"""Values of the shapes the guardrails' detectors find, made at run time (so that this checkout's
own source holds none of them, and the clean-corpus figure reads it too), and near misses."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_rng = random.Random(53)
ALNUM = string.ascii_letters + string.digits
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def base62(value: int, width: int = 6) -> str:
    out = ""
    while value:
        value, digit = divmod(value, 62)
        out = BASE62[digit] + out
    return out.rjust(width, "0")


def crc_token(prefix: str) -> str:
    """A GitHub- or npm-shaped token whose checksum holds."""
    entropy = rand(ALNUM, 30)
    return prefix + entropy + base62(zlib.crc32(entropy.encode()))


def bad_crc_token(prefix: str) -> str:
    token = crc_token(prefix)
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


def luhn_complete(partial: str) -> str:
    """`partial` and the check digit that makes it Luhn-valid."""
    for d in "0123456789":
        digits = [int(c) for c in partial + d][::-1]
        total = sum(x if i % 2 == 0 else (x * 2 - 9 if x > 4 else x * 2) for i, x in enumerate(digits))
        if total % 10 == 0:
            return partial + d
    raise AssertionError


def iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    return f"{country}{check:02d}{bban}"


def pem(kind: str = "rsa") -> str:
    if kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
    if kind == "openssh":
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def b64url_json(value: Any) -> str:
    """A JSON value as a JSON Web Token's part: base64url, its padding left off."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()


def jwt(header: Any = None, signature: str | None = None) -> str:
    """A made-up JSON Web Token: an HS256 header (or `header`), claims, a random signature."""
    head = b64url_json({"alg": "HS256", "typ": "JWT"} if header is None else header)
    claims = b64url_json({"sub": "user-4821", "iat": 1764288000})
    return f"{head}.{claims}.{rand(ALNUM + '_-', 43) if signature is None else signature}"


AWS_KEY_ID = "AKIA" + "Z7QK3M2XW4NB5RTE"
AWS_SECRET = "k9Xz" + "Qw3/Lm8+Rt5Yp2Vb7Nc4Hs6Jd1Fg0Ae9Ui8O"
EMAIL = "jane.doe" + "@" + "acme-corp.com"

# One value of every built-in kind, with the text it stands in (a pair's other half beside it).
SAMPLES: dict[str, tuple[str, str]] = {
    # kind: (value, context where {} is the value)
    "secrets.aws_access_key_id": (AWS_KEY_ID, "AWS_ACCESS_KEY_ID={}\n"),
    "secrets.aws_secret_access_key": (AWS_SECRET, "aws_secret_access_key = {}\n"),
    "secrets.github_token": (crc_token("gh" + "p_"), "GITHUB_TOKEN={}\n"),
    "secrets.gitlab_token": ("gl" + "pat-" + rand(ALNUM + "_-", 20), "token: {}\n"),
    "secrets.slack_token": ("xo" + "xb-263594206564-4817029365140-" + rand(ALNUM, 24), "SLACK_BOT_TOKEN={}\n"),
    "secrets.slack_webhook": (
        "https://hooks.slack.com/services/T"
        + rand(string.ascii_uppercase + string.digits, 9)
        + "/B"
        + rand(string.ascii_uppercase + string.digits, 10)
        + "/"
        + rand(ALNUM, 24),
        "webhook: {}\n",
    ),
    "secrets.stripe_key": ("sk_" + "live_" + rand(ALNUM, 24), "stripe.api_key = '{}'\n"),
    "secrets.openai_api_key": (
        "sk-" + "proj-" + rand(ALNUM + "_-", 74) + "T3Blbk" + "FJ" + rand(ALNUM + "_-", 74),
        "OPENAI_API_KEY={}\n",
    ),
    "secrets.anthropic_api_key": ("sk-" + "ant-api03-" + rand(ALNUM + "_-", 93) + "AA", "ANTHROPIC_API_KEY={}\n"),
    "secrets.google_api_key": ("AI" + "za" + rand(ALNUM + "_-", 35), "key={}\n"),
    "secrets.google_oauth_client_secret": ("GOC" + "SPX-" + rand(ALNUM + "_-", 28), "client_secret: {}\n"),
    "secrets.url_password": ("s3cr3t-Pa55", "DATABASE_URL=postgres://app:{}@db.internal:5432/app\n"),
    "secrets.npm_token": (crc_token("np" + "m_"), "//registry.npmjs.org/:_authToken={}\n"),
    "secrets.pypi_token": ("py" + "pi-AgEIcHlwaS5vcmc" + rand(ALNUM + "_-", 60), "password = {}\n"),
    "secrets.dockerhub_token": ("dc" + "kr_pat_" + rand(ALNUM + "_-", 27), "DOCKER_TOKEN={}\n"),
    "secrets.azure_storage_key": (
        rand(ALNUM + "+/", 86) + "==",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net\n",
    ),
    "secrets.sendgrid_api_key": ("S" + "G." + rand(ALNUM + "_-", 22) + "." + rand(ALNUM + "_-", 43), "SENDGRID={}\n"),
    "secrets.huggingface_token": ("h" + "f_" + rand(string.ascii_letters, 34), "HF_TOKEN={}\n"),
    "secrets.groq_api_key": ("gs" + "k_" + rand(ALNUM, 52), "GROQ_API_KEY={}\n"),
    "secrets.xai_api_key": ("xa" + "i-" + rand(ALNUM, 80), "XAI_API_KEY={}\n"),
    "secrets.jwt": (jwt(), "Authorization: Bearer {}\n"),
    "pii.email": (EMAIL, "Contact: {}, any time.\n"),
    "pii.phone": ("+1 415 " + "555 2671", "Call me on {} tomorrow.\n"),
    "pii.payment_card": ("4111 1111 " + "1111 1111", "card: {} exp 12/29\n"),
    "pii.iban": (iban("DE", "370400440532013000"), "IBAN {} (Commerzbank)\n"),
    "pii.us_ssn": ("123-45-" + "6789", "SSN: {}\n"),
}


def from_pattern(pattern: bytes, rng: random.Random = _rng) -> str:
    """A string of the shape a detector's pattern of the table reads (its literals, classes,
    repeats and alternatives; the longest repeat capped at 200): a format's true sample."""
    import re._parser as sre  # the standard library's own reader of its syntax

    def walk(items: Any) -> str:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "IN":
                out.append(rng.choice(_members(arg)))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = arg
                high = min(high, max(low, 200))
                out.extend(walk(sub) for _ in range(rng.randint(low, high)))
            elif name == "SUBPATTERN":
                out.append(walk(arg[-1]))
            elif name == "BRANCH":
                out.append(walk(rng.choice(arg[1])))
            elif name == "ATOMIC_GROUP":
                out.append(walk(arg))
        return "".join(out)

    def _members(arg: Any) -> list[str]:
        chars: list[str] = []
        for op, value in arg:
            if str(op) == "LITERAL":
                chars.append(chr(value))
            elif str(op) == "RANGE":
                chars.extend(chr(c) for c in range(value[0], value[1] + 1))
            elif str(op) == "CATEGORY" and "DIGIT" in str(value):
                chars.extend(string.digits)
        return chars

    return walk(sre.parse(pattern.decode()))


def table_samples() -> dict[str, tuple[str, str]]:
    """A true sample of each kind of the detector table's prefixed and named credentials, in the
    text it is written in."""
    from tollgate.governance.guardrails import credential_kinds

    out: dict[str, tuple[str, str]] = {}
    for kind, prefix, rest in credential_kinds.PREFIXED:
        out.setdefault(kind, (from_pattern(prefix + rest), "token: {}\n"))
    for kind, name, value in credential_kinds.NAMED:
        out.setdefault(kind, (from_pattern(value), from_pattern(name).replace("{", "{{") + "={}\n"))
    for kind, vendor, value in credential_kinds.VENDOR_NAMED:
        # After a space: the vendor's name begins a word (a letter before it would make another name).
        out.setdefault(
            kind, (from_pattern(value), " " + from_pattern(vendor).replace("{", "{{") + '_api_token = "{}"\n')
        )
    for kind, pattern, _ in credential_kinds.SHAPED:
        out.setdefault(kind, (from_pattern(pattern), "token: {}\n"))
    out.setdefault(
        "secrets.azure_devops_token", (from_pattern(rb"[A-Za-z0-9]{52}AZDO[A-Za-z0-9]{4}"), "AZURE_DEVOPS_PAT={}\n")
    )
    return out


# Every kind of the table too; those known by their name (written after it).
SAMPLES.update({k: v for k, v in table_samples().items() if k not in SAMPLES})
from tollgate.governance.guardrails.credential_kinds import NAMED, PREFIXED, VENDOR_NAMED  # noqa: E402

# Kinds known only by their name (a kind of both tables has its prefixed sample).
NAMED_KINDS = frozenset(kind for kind, _, _ in (*NAMED, *VENDOR_NAMED)) - {kind for kind, _, _ in PREFIXED}
# Kinds known by their vendor's name in theirs.
VENDOR_KINDS = frozenset(kind for kind, _, _ in VENDOR_NAMED) - {kind for kind, _, _ in PREFIXED}
