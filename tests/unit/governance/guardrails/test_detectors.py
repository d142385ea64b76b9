"""Each built-in detector's edges: what may stand before and after a match (punctuation, space,
line ends, JSON escapes) leaves it found at the same span, and a letter or digit that extends a
token leaves no match of that span. On both engines, in plain text and in a JSON body."""

from __future__ import annotations

import base64
import json
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.guardrail_samples import (
    ALNUM,
    AWS_KEY_ID,
    NAMED_KINDS,
    SAMPLES,
    VENDOR_KINDS,
    b64url_json,
    bad_crc_token,
    crc_token,
    from_pattern,
    jwt,
    rand,
    table_samples,
)
from tollgate.governance.guardrails.credential_kinds import PREFIXED, VENDOR_NAMED
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.rules import Guardrails

ENGINES = [False, *([True] if HYPERSCAN else [])]
RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})]
GUARDRAILS = {hs: Guardrails(RULES, use_hyperscan=hs) for hs in ENGINES}

# What a text may hold just before or after a value: punctuation, space and line ends, and (in
# plain text that quotes JSON) an escaped line end or tab.
SEPARATORS = [*",;:.!?()[]{}<>\"'`=", " ", "\t", "\n", "\r\n", "\\n", "\\t", ""]
# Values whose neighbours their format fixes: a URL's password (inside its URL), Azure's key (after
# `AccountKey=`); and what may not follow a base64 secret (`=` is its padding: a longer value).
FIXED_BEFORE = {"secrets.azure_storage_key": "AccountKey="} | {
    kind: SAMPLES[kind][1].split("{}")[0] for kind in NAMED_KINDS
}
NOT_AFTER = {"secrets.aws_secret_access_key": "=", "secrets.azure_storage_key": "="}
KINDS = sorted(k for k in SAMPLES if k != "secrets.url_password")
# A URL begins with its scheme, whatever is written before it.
URLS = {"secrets.slack_webhook"}


def written(kind: str, before: str, value: str, after: str) -> str:
    partner = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n" if kind == "secrets.aws_secret_access_key" else ""
    return f"{partner}text {FIXED_BEFORE.get(kind, before)}{value}{after} more"


def spans(engine: bool, kind: str, content: str, as_json: bool) -> tuple[bytes, list[tuple[int, int]]]:
    body = (
        json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}).encode()
        if as_json
        else content.encode()
    )
    scan = GUARDRAILS[engine].scan_all(body, is_json=as_json)
    return body, [(f.start, f.end) for f in scan.findings if f.kind == kind]


def where(body: bytes, value: str, as_json: bool) -> tuple[int, int]:
    encoded = json.dumps(value)[1:-1].encode() if as_json else value.encode()
    start = body.index(encoded, body.index(b"text "))
    return start, start + len(encoded)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    before=st.sampled_from(SEPARATORS),
    after=st.sampled_from(SEPARATORS),
    as_json=st.booleans(),
)
@pytest.mark.slow
def test_separators_around_a_value_leave_it_found_whole(
    engine: bool, kind: str, before: str, after: str, as_json: bool
) -> None:
    value = SAMPLES[kind][0]
    if after == NOT_AFTER.get(kind) or (after[:1] in ("=", ".", "~") and after[:1] in value):
        after = ""  # a character of its own alphabet: a longer value
    body, found = spans(engine, kind, written(kind, before, value, after), as_json)
    start, end = where(body, value, as_json)
    # `.`, `~` and `=` are of some formats' alphabets (Azure's secrets, base64's padding): the value goes on.
    allowed = {(start, end)} | ({(start, end + 1)} if after[:1] in (".", "~", "=") else set())
    assert allowed & set(found), (before, after)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    extra=st.sampled_from(["7", "Q", "x", "0"]),
    at_end=st.booleans(),
    as_json=st.booleans(),
)
@pytest.mark.slow
def test_a_letter_or_digit_that_extends_a_value_leaves_no_match_of_its_span(
    engine: bool, kind: str, extra: str, at_end: bool, as_json: bool
) -> None:
    value = SAMPLES[kind][0]
    if (kind in FIXED_BEFORE or kind in URLS) and not at_end:
        return  # its start is fixed by the name before it, or its scheme
    before, after = ("", extra) if at_end else (extra, "")
    body, found = spans(engine, kind, written(kind, " ", before + value + after, " "), as_json)
    start, end = where(body, before + value + after, as_json)
    plain = (start + len(before), end - len(after))
    assert plain not in found


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("content", "kind", "count"),
    [
        ("Card: 4111 1111 1111 " + "1111, exp 12/29", "pii.payment_card", 1),
        ("alice,41111111" + "11111111,12/29", "pii.payment_card", 1),
        ('["41111111' + '11111111", "x"]', "pii.payment_card", 1),
        ("[41111111" + "11111111, 55000000" + "00000004]", "pii.payment_card", 2),
        ("Email:jane.doe" + "@acme-corp.com", "pii.email", 1),
        ("mail jane" + "@xn--bcher-kva.xn--p1ai today", "pii.email", 1),
        ("BE68 5390 " + "0754 7034 BIC GKCCBEBB", "pii.iban", 1),
        ("a decimal 0.41111111" + "11111111", "pii.payment_card", 0),
        ("https://user:Pw4-" + "x9Qz@host.example.org/ x", "pii.email", 0),
    ],
)
def test_the_cases_reported(engine: bool, content: str, kind: str, count: int) -> None:
    for as_json in (False, True):
        _, found = spans(engine, kind, content, as_json)
        assert len(found) == count, as_json


# -- time linear in the body ------------------------------------------------------------------------------------


def _cpu(engine: bool, body: bytes) -> float:
    """The best of two scans' CPU time: a shared machine's other work left out."""
    best = float("inf")
    for _ in range(2):
        started = time.process_time()
        GUARDRAILS[engine].scan_all(body)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.skipif(not HYPERSCAN, reason="the proxy's engine: Hyperscan")
@pytest.mark.slow
def test_hostile_bodies_scan_in_time_of_a_normal_body() -> None:
    """5 MB of one character class (digits, digits in dashed groups, `@`, hex, base64's alphabet)
    scans within a generous multiple of 5 MB of prose and code: no shape makes a detector try a
    candidate at every byte of a run."""
    size = 5_000_000
    rng = random.Random(59)
    docs = Path(__file__).resolve().parents[4] / "docs"
    prose = "".join(p.read_text() for p in sorted(docs.glob("*.md")))
    shapes = {
        "digits": "".join(rng.choices(string.digits, k=size)),
        "dashed digits": "-".join("".join(rng.choices(string.digits, k=3)) for _ in range(size // 4)),
        "@": "@" * size,
        "hex": "".join(rng.choices(string.hexdigits.lower()[:16], k=size)),
        "base64": "".join(rng.choices(string.ascii_letters + string.digits + "+/", k=size)),
    }

    def body(content: str) -> bytes:
        return json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}).encode()

    engine = True
    normal = _cpu(engine, body((prose * (size // len(prose) + 1))[:size]))
    for name, content in shapes.items():
        took = _cpu(engine, body(content))
        assert took <= 30 * normal + 0.05, (name, took, normal)


# -- the table's kinds: each found as written, and its near miss not ------------------------------------------

TABLE_KINDS = sorted(set(table_samples()))


def _near_miss(kind: str) -> str:
    """The sample with the first character of its prefix (or its name) changed: a word that only
    looks like the format."""
    value, context = SAMPLES[kind]
    if kind in VENDOR_KINDS:  # another vendor's name
        return " Q" + context[2:].format(value)
    if kind in NAMED_KINDS:
        name = context.split("=")[0]
        return f"{name[:-1]}Q={value}\n"
    if kind == "secrets.azure_devops_token":  # its marker is inside it
        return "token: " + value.replace("AZDO", "AZD0") + "\n"
    if kind == "secrets.azure_ad_client_secret":  # its marker is inside it
        return "token: " + value.replace("Q~", "QQ") + "\n"
    if kind == "secrets.maxmind_license_key":  # its marker ends it
        return "token: " + value.replace("_mmk", "_mmq") + "\n"
    return "token: " + ("Q" if value[0] != "Q" else "Z") + value[1:] + "\n"


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize("kind", TABLE_KINDS)
def test_each_table_kind_is_found_and_its_near_miss_is_not(engine: bool, kind: str) -> None:
    value, context = SAMPLES[kind]
    _, found = spans(engine, kind, "text " + context.format(value), True)
    assert len(found) == 1
    _, missed = spans(engine, kind, "text " + _near_miss(kind), True)
    assert missed == []


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("secrets.slack_token", "xoxe.xo" + "xp-1-" + "Mi0yLTM0MTQwNDE0MDE3Ni0zNjU5NDY0Njg2MTc" * 4),
        ("secrets.slack_token", "xox" + "e-1-" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 4),
        ("secrets.aws_access_key_id", "AB" + "IAZ7QK3M2XW4NB5RTE"),
        ("secrets.aws_access_key_id", "AC" + "CAZ7QK3M2XW4NB5RTE"),
        ("secrets.stripe_key", "sk_" + "prod_" + "4eC39HqLyjWDarjtT1zdp7dc"),
        ("secrets.stripe_key", "rk_" + "prod_" + "4eC39HqLyjWDarjtT1zdp7dc"),
        ("secrets.gitlab_token", "gl" + "pat-" + "xq3Rt7Yp2Vb7Nc4Hs6Jd"),
        ("secrets.google_api_key", "AI" + "zaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
        ("secrets.linear_api_key", "lin_" + "api_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc"),
        ("secrets.notion_token", "nt" + "n_" + "45102583615" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3Oy"),
        ("secrets.shopify_token", "shp" + "at_" + "a1b2c3d4e5f60718293a4b5c6d7e8f90"),
        ("secrets.replicate_api_token", "r8" + "_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb"),
        ("secrets.perplexity_api_key", "pp" + "lx-" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4Q"),
        ("secrets.openrouter_api_key", "sk-" + "or-v1-" + "3f9a1c7e5b2d8406" * 4),
        ("secrets.digitalocean_token", "do" + "p_v1_" + "3f9a1c7e5b2d8406" * 4),
        ("secrets.tavily_api_key", "tv" + "ly-dev-" + "4Kq7Zt-" + "Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4Q"),
        ("secrets.render_api_key", "rn" + "d_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0A"),
        ("secrets.together_api_key", "tg" + "p_v1_" + "Kq7Zt3Wm9X_2Rv8Ln4Hs6Jd1-g0Ae5Ui3OyTb7Cc2Vn"),
        (
            "secrets.pinecone_api_key",
            "pc" + "sk_" + "4Kq7Zt_" + "Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4QaZ3Wm9Xp2Rv8Ln4Hs6Jd1",
        ),
        ("secrets.fireworks_api_key", "fw" + "_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3"),
        (
            "secrets.gitlab_token",
            "gl" + "pat-" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4QaZ3Wm9Xp2Rv8Ln4Hs6" + ".01.0w0q8h2l2",
        ),
        ("secrets.gitlab_token", "gl" + "rt-t1_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0" + ".01" + "1a2b3c4d5"),
        (
            "secrets.harness_token",
            "sa" + "t." + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6J" + ".Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1" + ".Kq7Zt3Wm9Xp2Rv8Ln4Hs",
        ),
        ("secrets.telegram_bot_token", "7130429" + "865:AA" + "Hq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3"),
        ("secrets.mailchimp_api_key", "3f9a1c7e5b2d8406" * 2 + "-us" + "21"),
    ],
)
def test_formats_as_their_issuers_write_them(engine: bool, kind: str, value: str) -> None:
    for as_json in (False, True):
        body, found = spans(engine, kind, f"text KEY={value}, more", as_json)
        assert found == [where(body, value, as_json)]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
def test_a_secret_beside_its_key_id_is_a_whole_run(engine: bool) -> None:
    secret = SAMPLES["secrets.aws_secret_access_key"][0]
    pair = f"id={AWS_KEY_ID}\n"
    for text, count in [
        (f"{pair}s={secret}\n", 1),
        (f"{pair}s=\\n{secret}\\n", 1),  # after an escaped line end, in plain text quoting JSON
        (f"{pair}s={secret}Q\n", 0),  # 41 long
        (f"{pair}s=Q{secret}\n", 0),
        (f"{pair}s={secret}=\n", 0),  # padded: a longer value's
        (f"{pair}{'x' * 230}{secret}{'y' * 40}\n", 0),  # inside a run the window cuts
    ]:
        _, found = spans(engine, "secrets.aws_secret_access_key", text, False)
        assert len(found) == count, text


# The LLM vendors' keys as their issuers document them (2026-11): Groq's `gsk_` and 52 letters and
# digits (56 in all), xAI's `xai-` and 80, Replicate's "40-character strings that always start with
# r8_", OpenRouter's `sk-or-v1-` and 64 hex digits, DeepSeek's `sk-` and 32, LangSmith's personal
# (`lsv2_pt_`) and service (`lsv2_sk_`) keys, Langfuse's secret key (`sk-lf-` and a UUID; its
# `pk-lf-` public key is no secret), e2b's `e2b_` and 40 hex digits (its SDK's format check).
_ALNUM = "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4QaZ3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4Qa"
_HEX = "3f9a1c7e5b2d8406" * 5
VENDOR_KEYS = {
    "secrets.groq_api_key": "gs" + "k_" + _ALNUM[:52],
    "secrets.xai_api_key": "xa" + "i-" + _ALNUM[:80],
    "secrets.replicate_api_token": "r8" + "_" + _ALNUM[:37],
    "secrets.openrouter_api_key": "sk-" + "or-v1-" + _HEX[:64],
    "secrets.deepseek_api_key": "sk" + "-" + _HEX[:32],
    "secrets.langsmith_api_key": "lsv2" + "_pt_" + _HEX[:32] + "_" + _HEX[:10],
    "secrets.langfuse_secret_key": "sk-" + "lf-" + "8a6121c0-69a1-4bc7-b124-26c2004d05af",
    "secrets.e2b_api_key": "e2" + "b_" + _HEX[:40],
}


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize("kind", sorted(VENDOR_KEYS))
def test_llm_vendors_keys_are_found_at_their_documented_length_only(engine: bool, kind: str) -> None:
    value = VENDOR_KEYS[kind]
    body, found = spans(engine, kind, f"text KEY={value}, more", True)
    assert found == [where(body, value, True)]
    if kind == "secrets.langsmith_api_key":
        service = value.replace("_pt_", "_sk_")
        body, found = spans(engine, kind, f"text KEY={service}, more", True)
        assert found == [where(body, service, True)]
    shorter = value[:-2] + value[-1]  # one character fewer
    assert spans(engine, kind, f"text KEY={shorter}, more", True)[1] == []
    longer = value[:-1] + ("7" if value[-1] != "7" else "8") + value[-1]  # one more
    assert spans(engine, kind, f"text KEY={longer}, more", True)[1] == []


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize("prefix", ["gh" + "p_", "gh" + "o_", "gh" + "u_", "gh" + "s_", "gh" + "r_"])
def test_a_github_token_without_its_checksum_is_found(engine: bool, prefix: str) -> None:
    """Its 30 random characters are the secret; whoever holds them computes the checksum anew. So a
    token whose checksum is not its own, or cut off (wholly or in part), is a token all the same."""
    token = crc_token(prefix)
    written = [
        bad_crc_token(prefix),  # its last six characters another's
        token[:-6],  # its checksum cut off
        token[:-1],
        prefix + "".join(reversed(token[len(prefix) :])),
    ]
    for value in written:
        _, found = spans(engine, "secrets.github_token", f"the token: {value}.", True)
        assert len(found) == 1, value


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
def test_a_fine_grained_github_token_without_its_checksum_is_found(engine: bool) -> None:
    fine = "github" + "_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)
    for value in (fine, fine[:-6], fine[:-3]):
        _, found = spans(engine, "secrets.github_token", f"GH_TOKEN={value}\n", True)
        assert len(found) == 1, value


ETSY = "m1ycyub24sg13xtjqdxq60x3"  # made up: 24 lower-case letters and digits


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f'etsy_api_token = "{ETSY}"', True),
        (f'var EtsyToken string = "{ETSY}"', True),
        (f"myEtsyToken := `{ETSY}`", True),
        (f'System.setProperty("ETSY_TOKEN", "{ETSY}")', True),
        (f'  "etsyToken" => "{ETSY}"', True),
        (f"<EtsyToken>\n    {ETSY}\n</EtsyToken>", True),
        (f'$etsyToken .= "{ETSY}"', True),
        (f"x\netsy_token: {ETSY}", True),
        (f'SetSysctl = "{ETSY}"', False),  # `etSy` inside a word: no vendor's name
        (f'betsy_token = "{ETSY}"', False),
        (f'etsy_token = "{ETSY}9"', False),  # 25 characters: another value
        (f"etsy_token is what {ETSY}", False),
    ],
)
def test_a_vendors_credential_is_found_after_a_name_that_begins_with_the_vendors(
    engine: bool, text: str, found: bool
) -> None:
    body, got = spans(engine, "secrets.etsy_access_token", text, True)
    assert [body[s:e].decode() for s, e in got] == ([ETSY] if found else [])


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("kind", "filled", "random"),
    [
        ("secrets.gitlab_token", "gl" + "pat-" + "x" * 20, "gl" + "pat-" + "xq3Rt7Yp2Vb7Nc4Hs6Jd"),
        ("secrets.github_token", "gh" + "p_" + "X" * 36, "gh" + "p_" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3Oy"),
        (
            "secrets.huggingface_token",
            "hf" + "_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "hf" + "_" + "KqZtWmXpRvLnHsJdFgAeUiOyTbCcVnMxQa",
        ),
        ("secrets.gitlab_token", "GR13" + "48941" + "12312312312312312312", "GR13" + "48941" + "x7Qe2Lr9Tn4Vb6Km1Zs3"),
        ("secrets.stripe_key", "sk_" + "live_" + "1" * 24, "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ],
)
def test_a_credentials_shape_filled_as_examples_fill_it_is_not_found(
    engine: bool, kind: str, filled: str, random: str
) -> None:
    """A run of eight of one character, eight in order, or a short unit repeated to the end: what
    examples and templates write, not what an issuer's random part holds."""
    assert spans(engine, kind, f"token: {filled}\n", True)[1] == []
    assert len(spans(engine, kind, f"token: {random}\n", True)[1]) == 1


# Made-up JSON Web Tokens: an HS256 token, an unsecured one (`alg` none, its signature empty), a
# JWE's five parts; and near misses of each.
JWT = jwt()
JWT_NONE = jwt({"alg": "none"}, signature="")
NOT_JSON = base64.urlsafe_b64encode(b'{"not json').rstrip(b"=").decode()
JWE = (
    b64url_json({"alg": "dir", "enc": "A256GCM"})
    + ".."
    + rand(ALNUM, 16)
    + "."
    + rand(ALNUM, 40)
    + "."
    + rand(ALNUM, 22)
)


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("value", "found"),
    [
        (JWT, True),
        (JWT_NONE, True),
        (JWE, True),
        (_base64(JWT), True),  # encoded once more (a Kubernetes secret's data)
        (_base64(JWT_NONE), True),
        (_base64(JWT).rstrip("="), True),
        (NOT_JSON + "." + JWT.split(".", 1)[1], False),  # a header that begins as JSON does, and is none
        (jwt({"typ": "JWT", "kid": "k1"}), False),  # a JSON header naming no `alg`
        (jwt(["alg", "HS256"]), False),  # a header that is no object
        (JWT.rsplit(".", 1)[0], False),  # two parts only
        (JWT.rsplit(".", 1)[0] + ".", False),  # its signature empty, though `alg` is HS256
        (JWT + "." + rand(ALNUM, 20), False),  # four parts
        (jwt(signature=rand(ALNUM, 41)), False),  # a signature of a length no base64 has
        (_base64(JWT.rsplit(".", 1)[0]), False),
        (_base64(jwt({"typ": "JWT"})), False),
    ],
)
def test_a_json_web_token_is_found_whole_and_its_near_misses_are_not(engine: bool, value: str, found: bool) -> None:
    for as_json in (False, True):
        body, got = spans(engine, "secrets.jwt", f"text Authorization: Bearer {value} more", as_json)
        assert got == ([where(body, value, as_json)] if found else []), value


# Every row of the tables, not only each kind's first (a kind of several rows: Heroku's prefixed
# keys and its older ones after its name; Lob's secret and publishable keys).
_ROWS = [
    *(
        (kind, from_pattern(value), from_pattern(vendor).replace("{", "{{") + '_api_token = "{}"\n')
        for kind, vendor, value in VENDOR_NAMED
    ),
    *((kind, from_pattern(prefix + rest), "token: {}\n") for kind, prefix, rest in PREFIXED),
]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(("kind", "value", "context"), _ROWS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(_ROWS)])
def test_each_row_of_the_tables_is_found(engine: bool, kind: str, value: str, context: str) -> None:
    body, found = spans(engine, kind, "text " + context.format(value), True)
    assert found == [where(body, value, True)]


SUMO_ID = "suDbJw97o9WVo0"  # made up: `su` and 12 letters and digits
SUMO_KEY = "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1Fg0Ae5Ui3OyTb7Cc2Vn8Mx4QaZ3Wm9Xp2Rv8Ln4H"  # made up: 64
RAPIDAPI = "4b2c9e1f0a" + "msh" + "5d8e7f6a9b0c1d2" + "p1a2b3c" + "jsn" + "9e8d7c6b5a4f"  # made up


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("secrets.sumologic_access_id", f'SumoLogicAccessId = "{SUMO_ID}"', SUMO_ID),
        ("secrets.sumologic_access_id", f"SUMO_ACCESS_ID={SUMO_ID}", SUMO_ID),
        ("secrets.sumologic_access_id", f"sumObj = {SUMO_ID}", None),  # `sumO…`: a sum, not Sumo
        ("secrets.sumologic_access_id", "sumOfExposures = sumOfExposures;", None),
        ("secrets.sumologic_access_id", "'sumofsquares', 'sumsandsquares',", None),  # a word's start
        ("secrets.sumologic_access_key", f"sumo_access_key: {SUMO_KEY}", SUMO_KEY),
        ("secrets.sumologic_access_key", "SUMO_ACCESS_KEY=" + "x" * 64, None),  # a placeholder: no digit
        ("secrets.rapidapi_key", f'"X-RapidAPI-Key": "{RAPIDAPI}"', RAPIDAPI),
        ("secrets.rapidapi_key", f'"X-RapidAPI-Key": "{RAPIDAPI.replace("jsn", "jsm")}"', None),
        ("secrets.sidekiq_credentials", "export BUNDLE_GEMS__CONTRIBSYS__COM=cafe1234:0badf00d;", "cafe1234:0badf00d"),
    ],
)
def test_a_vendors_credential_is_found_in_its_own_shape_only(
    engine: bool, kind: str, text: str, value: str | None
) -> None:
    body, got = spans(engine, kind, text, True)
    assert [body[s:e].decode() for s, e in got] == ([value] if value else [])


@pytest.mark.parametrize("engine", ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
def test_an_answer_holds_a_vendors_credential_however_it_is_split(engine: bool) -> None:
    """An answer cut anywhere, in either engine (Hyperscan or Python's `re` find the vendors'
    names, `answer._Names`): the value goes on redacted and the rest as it came."""
    from tollgate.governance.guardrails.answer import AnswerDetectors
    from tollgate.governance.guardrails.detectors import BUILTIN

    compiled = AnswerDetectors(BUILTIN, {d.kind: "redact" for d in BUILTIN}, use_hyperscan=engine)
    text = f'Prose first, then the config:\n  var myEtsyToken string = "{ETSY}"\nand more prose after it.'.encode()
    for cut in range(1, len(text)):
        scanner = compiled.scanner()
        out = scanner.feed(text[:cut]).text + scanner.feed(text[cut:]).text + scanner.flush().text
        assert out == text.replace(ETSY.encode(), b"[REDACTED:secrets.etsy_access_token]"), cut
