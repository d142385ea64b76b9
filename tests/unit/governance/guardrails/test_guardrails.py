"""The guardrails' detectors, what they read of a body, redaction and the compiled rules, on both
engines (Hyperscan where installed, Python's re)."""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import (
    AWS_KEY_ID,
    AWS_SECRET,
    EMAIL,
    NAMED_KINDS,
    SAMPLES,
    bad_crc_token,
    crc_token,
    iban,
    luhn_complete,
    pem,
)
from tollgate.configuration.config import parse_config
from tollgate.governance.guardrails import detectors, text
from tollgate.governance.guardrails import engine as engine_module
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule, likely_detectors
from tollgate.governance.guardrails.rules import Guardrails, Scan, own_secrets

ENGINES = [False, *([True] if HYPERSCAN else [])]


def rules(*detect: Any, action: str = "redact", **extra: Any) -> list[GuardrailRule]:
    return [GuardrailRule.model_validate({"detect": list(detect), "action": action, **extra})]


@pytest.fixture(params=ENGINES, ids=lambda hs: "hyperscan" if hs else "python")
def engine(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def default(engine: bool) -> Guardrails:
    return Guardrails(rules("secrets", "pii"), use_hyperscan=engine)


def body_of(content: str, **dump: Any) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}, **dump).encode()


def kinds(scan: Scan) -> dict[str, int]:
    return scan.counts()


# -- every built-in kind, in the text it is written in --------------------------------------------------------


def test_every_builtin_kind_has_a_sample() -> None:
    assert set(SAMPLES) | {"secrets.private_key"} == set(detectors.KINDS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kind_is_found_at_its_value(default: Guardrails, kind: str) -> None:
    value, context = SAMPLES[kind]
    extra = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n" if kind == "secrets.aws_secret_access_key" else ""
    body = body_of("Here is the file:\n" + extra + context.format(value) + "That's all.")
    scan = default.scan_all(body)
    found = [f for f in scan.findings if f.kind == kind]
    assert len(found) == 1, scan.counts()
    assert json.loads(b'"' + body[found[0].start : found[0].end] + b'"') == value


@pytest.mark.parametrize("kind", ["rsa", "ec", "openssh"])
def test_private_keys_are_found_whole(default: Guardrails, kind: str) -> None:
    key = pem(kind)
    body = body_of(f"cat key.pem\n{key}\n")
    (finding,) = default.scan_all(body).findings
    assert finding.kind == "secrets.private_key"
    assert json.loads(b'"' + body[finding.start : finding.end] + b'"') == key.strip()


def test_a_service_account_files_key_is_found_in_a_tool_result(default: Guardrails) -> None:
    account = json.dumps({"type": "service_account", "project_id": "p", "private_key": pem(), "client_email": "x"})
    body = json.dumps({"messages": [{"role": "tool", "content": account}]}).encode()  # JSON in JSON: `\\n`
    assert kinds(default.scan_all(body)).get("secrets.private_key") == 1


def test_a_placeholder_private_key_is_not_found(default: Guardrails) -> None:
    body = body_of("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----")
    assert default.scan_all(body).findings == ()


# -- near misses ----------------------------------------------------------------------------------------------

NEAR_MISSES = {
    "an npm token with a wrong checksum": bad_crc_token("np" + "m_"),
    "a GitHub token's placeholder": "gh" + "p_" + "x" * 36,
    "a GitHub token's placeholder in capitals": "gh" + "o_" + "X" * 30,
    "a GitHub token too short to hold its 30 characters": crc_token("gh" + "p_")[:33],
    "an AWS key id one character long": AWS_KEY_ID + "Q",
    "an AWS key id in lower case": AWS_KEY_ID.lower(),
    "a UUID": "550e8400-e29b-41d4-a716-446655440000",
    "a git SHA": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "a base64 blob": "TWFuIGlzIGRpc3Rpbmd1aXNoZWQsIG5vdCBvbmx5IGJ5IGhpcyByZWFzb24sIGJ1dCBieSB0aGlz",
    "a card number with a wrong Luhn digit": "4111 1111 1111 1112",
    "digits of no card's brand": luhn_complete("123456789012345"),
    "a millisecond timestamp": "1764161234567",
    "an IBAN with wrong check digits": "DE00370400440532013000",
    "an IBAN of a wrong length": iban("DE", "3704004405320130001"),
    "an SSN of area 000": "000-12-3456",
    "an SSN of area 9xx": "912-34-5678",
    "an SSN of repeated digits": "111-22-3333",
    "a date": "2026-11-26",
    "an example address": "someone@example.com",
    "a file name with an @": "logo@2x.png",
    "a decorator": "@functools.cache",
    "a URL with a placeholder password": "postgres://user:password@localhost/db",
    "a URL with a redacted password": "https://user:REDACTED@host.internal/",
    "a URL with a port": "https://localhost:8443/path",
    "an expression": "x = i+12345678",
    "a version": "1.234.5678",
    "a ten-digit id": "4155552671",
    "a phone number kept for fiction": "(415) 555-0123",
    "an OpenAI-looking key without its marker": "sk-" + "proj-" + "a" * 150,
    "an Anthropic-looking key of a wrong length": "sk-" + "ant-api03-" + "a" * 90 + "AA",
}


@pytest.mark.parametrize("value", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_misses_are_not_found(default: Guardrails, value: str) -> None:
    assert default.scan_all(body_of(f"look: {value} ok")).findings == ()


def test_a_40_character_string_alone_is_no_aws_secret(default: Guardrails) -> None:
    assert default.scan_all(body_of(f"blob = '{AWS_SECRET}'")).findings == ()


def test_a_git_sha_beside_a_key_id_is_no_aws_secret(default: Guardrails) -> None:
    body = body_of(f"id={AWS_KEY_ID} commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3")
    assert kinds(default.scan_all(body)) == {"secrets.aws_access_key_id": 1}


def test_a_pair_counts_each_half(default: Guardrails) -> None:
    env = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
    assert kinds(default.scan_all(body_of(env))) == {
        "secrets.aws_access_key_id": 1,
        "secrets.aws_secret_access_key": 1,
    }
    short_names = f"KEY={AWS_KEY_ID}\nSECRET={AWS_SECRET}\n"
    assert kinds(default.scan_all(body_of(short_names))) == {
        "secrets.aws_access_key_id": 1,
        "secrets.aws_secret_access_key": 1,
    }
    # Beside its key id without a name saying what it is, in a credentials file's JSON.
    listed = json.dumps({"AccessKeyId": AWS_KEY_ID, "Secret": AWS_SECRET})
    assert kinds(default.scan_all(body_of(listed))) == {
        "secrets.aws_access_key_id": 1,
        "secrets.aws_secret_access_key": 1,
    }


# Written in two parts, as every value here: this file is part of the clean corpus (bench/guardrails.py).
@pytest.mark.parametrize(
    "number", ["(415) 555-" + "2671", "415-555-" + "2671", "415.555." + "2671", "+44 20 " + "7946 0958"]
)
def test_phone_numbers_as_people_write_them(default: Guardrails, number: str) -> None:
    assert kinds(default.scan_all(body_of(f"call {number} today"))) == {"pii.phone": 1}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("pii.payment_card", "5500-0000-" + "0000-0004"),
        ("pii.payment_card", "3782 822463 " + "10005"),
        ("pii.payment_card", "3782822463" + "10005"),
        ("pii.iban", "GB82 WEST 1234 " + "5698 7654 32"),
        ("pii.email", "mailto:ops.team+alerts" + "@corp-mail.io"),
    ],
)
def test_other_written_forms(default: Guardrails, kind: str, value: str) -> None:
    assert kinds(default.scan_all(body_of(f"see {value} here"))) == {kind: 1}


def test_counts_are_occurrences(default: Guardrails) -> None:
    body = body_of(f"{EMAIL} wrote to {EMAIL}, then {EMAIL} again")
    assert kinds(default.scan_all(body)) == {"pii.email": 3}


# -- what is read: escapes, offsets ---------------------------------------------------------------------------


def test_a_key_written_through_unicode_escapes_is_found(default: Guardrails) -> None:
    key = pem("ec")
    escaped = json.dumps(key).replace("-", "\\u002d").replace("M", "\\u004d")
    body = b'{"messages":[{"role":"user","content":' + escaped.encode() + b"}]}"
    (finding,) = default.scan_all(body).findings
    assert finding.kind == "secrets.private_key"
    assert body[finding.start : finding.start + 6] == b"\\u002d"
    assert json.loads(b'"' + body[finding.start : finding.end] + b'"') == key.strip()


def test_offsets_are_the_bytes_where_matches_begin(default: Guardrails) -> None:
    body = body_of(f"caf\u00e9 \u2603 {EMAIL} and {EMAIL}", ensure_ascii=False)
    scan = default.scan_all(body)
    assert [f.start for f in scan.findings] == [body.index(EMAIL.encode()), body.rindex(EMAIL.encode())]
    escaped = body_of(f"caf\u00e9 \u2603 {EMAIL}")  # \u00e9 written as an escape: the string is decoded
    (finding,) = default.scan_all(escaped).findings
    assert finding.start == escaped.index(EMAIL.encode())


def test_an_escaped_slash_is_read_as_a_slash(default: Guardrails) -> None:
    body = body_of("postgres://app:" + "hunter2-prod@db/app").replace(b"/", b"\\/")
    (finding,) = default.scan_all(body).findings
    assert (finding.kind, body[finding.start : finding.end]) == ("secrets.url_password", b"hunter2-prod")


def test_a_token_after_an_escaped_newline_is_found(default: Guardrails) -> None:
    token = crc_token("gh" + "p_")
    body = body_of(f"x\n{token}\nhf")
    (finding,) = default.scan_all(body).findings
    assert body[finding.start : finding.end] == token.encode()
    email = body_of(f"to:\n{EMAIL}")
    (finding,) = default.scan_all(email).findings
    assert body_of(EMAIL)[:0] == b"" and email[finding.start : finding.end] == EMAIL.encode()


def test_a_control_characters_escape_separates_as_the_character(default: Guardrails) -> None:
    token = crc_token("gh" + "p_")
    key = pem("ec")
    body = body_of(f"\x1b{token}\x1b[0m {EMAIL}\x00\n" + key.replace("\n", "\x0b"))
    assert b"\\u001b" in body and b"\\u000b" in body  # left as written: no copy of the body
    scan = default.scan_all(body)
    assert kinds(scan) == {"secrets.github_token": 1, "pii.email": 1, "secrets.private_key": 1}
    assert body[scan.findings[0].start : scan.findings[0].end] == token.encode()


def test_plain_text_is_read_as_it_is(default: Guardrails) -> None:
    body = f"a log line\n{EMAIL} \\u0041\n".encode()
    (finding,) = default.scan_all(body, is_json=False).findings
    assert finding.start == body.index(b"jane")


def test_numbers_outside_strings_are_not_read_and_keys_are(default: Guardrails) -> None:
    card = SAMPLES["pii.payment_card"][0].replace(" ", "")
    body = json.dumps({EMAIL: 1, "n": int(card), "list": [int(card)], "s": card}).encode()
    scan = default.scan_all(body)
    assert kinds(scan) == {"pii.email": 1, "pii.payment_card": 1}
    redacted, count = scan.redact(body)
    assert count == 2 and json.loads(redacted)["s"] == "[REDACTED:pii.payment_card]"
    assert default.scan_all(card.encode(), is_json=False).counts() == {"pii.payment_card": 1}


# -- redaction --------------------------------------------------------------------------------------------------


def test_redaction_replaces_each_occurrence(default: Guardrails) -> None:
    token = crc_token("gh" + "p_")
    body = body_of(f"token {token} by {EMAIL}; again {token}")
    scan = default.scan_all(body)
    redacted, count = scan.redact(body)
    assert count == 3
    assert json.loads(redacted)["messages"][0]["content"] == (
        "token [REDACTED:secrets.github_token] by [REDACTED:pii.email]; again [REDACTED:secrets.github_token]"
    )


def test_overlapping_findings_make_one_replacement(default: Guardrails) -> None:
    token = crc_token("gh" + "p_")
    body = body_of(f"git clone https://me:{token}@github.com/o/r")
    scan = default.scan_all(body)
    assert kinds(scan) == {"secrets.github_token": 1, "secrets.url_password": 1}
    redacted, count = scan.redact(body)
    assert count == 1
    assert token.encode() not in redacted
    json.loads(redacted)


def test_only_findings_to_redact_are_replaced(engine: bool) -> None:
    guard = Guardrails(
        [*rules("pii.email", action="audit"), *rules("secrets.github_token", action="redact")], use_hyperscan=engine
    )
    token = crc_token("gh" + "p_")
    body = body_of(f"{EMAIL} {token}")
    scan = guard.scan_all(body)
    assert {f.kind: f.action for f in scan.findings} == {"pii.email": "audit", "secrets.github_token": "redact"}
    redacted, count = scan.redact(body)
    assert count == 1 and EMAIL.encode() in redacted and token.encode() not in redacted


_FILLER = st.text(alphabet=string.ascii_lowercase + " ,.!?\n\t\u00e9\u2603", max_size=40)
_SEPARATORS = st.sampled_from([" ", "\n", "\t", '"', "(", ": ", "\u00a0", "\r\n"])
# The kinds whose value is found alone (not only after its name or beside its partner).
_PROPERTY_KINDS = sorted(
    set(SAMPLES) - {"secrets.aws_secret_access_key", "secrets.url_password", "secrets.azure_storage_key"} - NAMED_KINDS
)


def _encode(value: str, escape: list[bool]) -> str:
    """A JSON string of `value`, each character escaped as \\uXXXX where `escape` says."""
    out = []
    for i, c in enumerate(value):
        if escape[i % len(escape)] or c in '"\\' or ord(c) < 0x20:
            out.append("".join(f"\\u{u:04x}" for u in _utf16(c)))
        elif c == "/" and escape[(i + 1) % len(escape)]:
            out.append("\\/")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2]) for i in range(0, len(data), 2)]


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from([*_PROPERTY_KINDS, "secrets.private_key"]),
    before=_FILLER,
    after=_FILLER,
    left=_SEPARATORS,
    right=_SEPARATORS,
    at_start=st.booleans(),
    at_end=st.booleans(),
    escape=st.lists(st.booleans(), min_size=1, max_size=8),
    plain=st.booleans(),
    ensure_ascii=st.booleans(),
)
@pytest.mark.slow
def test_redaction_leaves_no_match_and_the_same_json(
    default: Guardrails,
    kind: str,
    before: str,
    after: str,
    left: str,
    right: str,
    at_start: bool,
    at_end: bool,
    escape: list[bool],
    plain: bool,
    ensure_ascii: bool,
) -> None:
    value = _KEY if kind == "secrets.private_key" else SAMPLES[kind][0]
    content = ("" if at_start else before + left) + value + ("" if at_end else right + after)
    # As an SDK writes it, or some characters as \uXXXX and some slashes as \/.
    encoded = json.dumps(content, ensure_ascii=ensure_ascii) if plain else _encode(content, escape)
    body = ('{"model":"m","messages":[{"role":"user","content":' + encoded + '}],"n":1}').encode()
    scan = default.scan_all(body)
    found = [f for f in scan.findings if f.kind == kind]
    assert len(found) == 1, scan.counts()
    assert json.loads(b'"' + body[found[0].start : found[0].end] + b'"') == value
    redacted, count = scan.redact(body)
    assert count == len({(f.start, f.end) for f in scan.findings}) >= 1
    parsed = json.loads(redacted)
    assert parsed["messages"][0]["content"] == content.replace(value, f"[REDACTED:{kind}]")
    assert parsed["n"] == 1
    assert default.scan_all(redacted).findings == ()


_KEY = pem("ec").strip()


def test_text_maps_decoded_spans_to_whole_escapes() -> None:
    body = b'{"a":"x\\u00e9\\ud83d\\ude00y\\/z\\u002d","b":"plain"}'
    ascii_only = text.read(body)  # what the built-in detectors need: ASCII characters' escapes
    assert ascii_only.data == b'{"a":"x\\u00e9\\ud83d\\ude00y/z-","b":"plain"}'
    dash = ascii_only.data.index(b"-")
    assert ascii_only.to_body(dash, dash + 1) == (body.index(b"\\u002d"), body.index(b'","b"'))
    read = text.read(body, every_escape=True)
    assert read.data == '{"a":"x\u00e9\U0001f600y/z-","b":"plain"}'.encode()
    start = read.data.index("\u00e9".encode())
    assert read.to_body(start, start + 2) == (body.index(b"\\u00e9"), body.index(b"\\ud83d"))
    emoji = read.data.index("\U0001f600".encode())
    assert read.to_body(emoji + 1, emoji + 2) == (body.index(b"\\ud83d"), body.index(b"y"))
    plain = read.data.index(b"plain")
    assert read.to_body(plain, plain + 5) == (body.index(b"plain"), body.index(b"plain") + 5)


# -- tollgate_keys ----------------------------------------------------------------------------------------------


def test_own_keys_are_found_without_rules(engine: bool) -> None:
    own = "sk-" + "tollgate-real-0123456789abcdef"
    guard = Guardrails((), [own, "short"], use_hyperscan=engine)
    scan = guard.scan(body_of(f"the key is {own}, and short"), "openai", "gpt-4o", None, ())
    assert [(f.kind, f.action) for f in scan.findings] == [("tollgate_keys", "deny")]
    assert scan.denied and scan.denied_counts() == {"tollgate_keys": 1}
    assert guard.scan(body_of(f"{EMAIL} and {crc_token('gh' + 'p_')}"), "openai", None, None, ()).findings == ()


def test_own_keys_of_one_prefix_are_each_found(engine: bool) -> None:
    keys = [
        "sk-" + "proj-aaaaaaaaaaaa1",
        "sk-" + "proj-aaaaaaaaaaaa1-longer",
        "sk-" + "proj-bbbbbbbbbbbb2",
        "tg-" + "c" * 43,
    ]
    guard = Guardrails((), keys, use_hyperscan=engine)
    body = body_of(" ".join(reversed(keys)) + " sk-proj-aaaaaaaaaaaa")
    scan = guard.scan_all(body)
    assert [body[f.start : f.end].decode() for f in scan.findings] == list(reversed(keys))


def test_a_virtual_key_known_by_its_digest_is_found(engine: bool) -> None:
    config = parse_config({"clients": [{"name": "a", "keys": ["sha256:" + _digest(_VIRTUAL)]}]})
    guard = Guardrails.of(config, use_hyperscan=engine)
    assert guard.scan_all(body_of(f"use {_VIRTUAL} please")).counts() == {"tollgate_keys": 1}
    other = "tg-" + "B" * 43
    assert guard.scan_all(body_of(f"use {other} please")).findings == ()


_VIRTUAL = "tg-" + "A1b2C3d4E5f6" * 3 + "Z9y8x7w"


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


def test_own_secrets_are_every_key_of_the_configuration() -> None:
    config = parse_config(
        {
            "providers": {
                "openai": {"keys": ["sk-upstream-0123456789"]},
                "bedrock": {"bearer_token": "bedrock-bearer-1"},
            },
            "clients": [
                {
                    "name": "a",
                    "keys": ["vk-alice-0123456789", "sha256:" + "0" * 64],
                    "aws_credentials": [{"access_key_id": "AKIAVIRTUAL", "secret_access_key": "virtual-aws-secret-1"}],
                }
            ],
            "mcp": {
                "servers": [{"name": "m", "url": "https://mcp.internal/mcp", "credential": {"bearer": "mcp-bearer-1"}}]
            },
        }
    )
    exact, digests = own_secrets(config)
    assert set(exact) == {
        "sk-upstream-0123456789",
        "bedrock-bearer-1",
        "vk-alice-0123456789",
        "virtual-aws-secret-1",
        "mcp-bearer-1",
    }
    assert digests == ["0" * 64]


def test_the_consoles_cursor_secret_is_one_of_tollgates_own() -> None:
    config = parse_config({"console": {"cursor_secret": "cursor-secret-of-the-console-0123456789"}})
    assert own_secrets(config)[0] == ["cursor-secret-of-the-console-0123456789"]


# -- rules: match, actions, unread ------------------------------------------------------------------------------


def test_the_strongest_action_of_the_matching_rules_wins(engine: bool) -> None:
    guard = Guardrails(
        [
            *rules("pii", action="audit"),
            *rules("pii.email", action="redact", match={"provider": "openai"}),
            *rules("pii.email", action="deny", match={"client": "intern-*"}, unread="deny"),
        ],
        use_hyperscan=engine,
    )
    body = body_of(f"{EMAIL} {SAMPLES['pii.phone'][0]}")
    assert {f.kind: f.action for f in guard.scan(body, "anthropic", None, "ci", ()).findings} == {
        "pii.email": "audit",
        "pii.phone": "audit",
    }
    assert {f.kind: f.action for f in guard.scan(body, "openai", None, "ci", ()).findings}["pii.email"] == "redact"
    intern = guard.scan(body, "openai", None, "intern-7", ())
    assert intern.denied and intern.denied_counts() == {"pii.email": 1} and intern.unread == "deny"
    assert guard.scan(body, "openai", None, "ci", ()).unread == "allow"
    assert guard.unread("openai", None, "intern-7", ()) == "deny"
    assert guard.unread("openai", None, "ci", ()) == "allow"


def test_a_call_no_rule_matches_is_read_for_own_keys_only(engine: bool) -> None:
    guard = Guardrails(rules("pii", match={"provider": "gemini"}), ["own-key-0123456789"], use_hyperscan=engine)
    assert guard.scan(body_of(EMAIL), "openai", None, None, ()).findings == ()
    assert guard.scan(body_of(EMAIL), "gemini", None, None, ()).counts() == {"pii.email": 1}


def test_custom_detectors(engine: bool) -> None:
    guard = Guardrails(
        rules(
            {"name": "customer_id", "regex": r"\bCUST-[0-9]{6}\b"},
            {"name": "codenames", "terms": ["Bluebird", "project nightjar"]},
        ),
        use_hyperscan=engine,
    )
    body = body_of("CUST-004211 asked about bluebird and Project Nightjar; bluebirds are birds. CUST-1")
    assert kinds(guard.scan_all(body)) == {"customer_id": 1, "codenames": 2}
    redacted, _ = guard.scan_all(body).redact(body)
    assert json.loads(redacted)["messages"][0]["content"].startswith("[REDACTED:customer_id] asked about [REDACTED:")


# -- settings ---------------------------------------------------------------------------------------------------


def _config_error(guardrails: Any) -> str:
    from tollgate.configuration.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config({"guardrails": guardrails})
    return str(e.value)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("email", ["pii.email"]),  # a kind's own name, without its group
        ("secrets.aws", ["secrets.aws_access_key_id", "secrets.aws_secret_access_key", "secrets.aws_session_token"]),
        ("secret", ["secrets"]),
        ("tollgate_key", ["tollgate_keys"]),
        ("pii.ssn", ["pii.us_ssn"]),
        ("weather", []),
    ],
)
def test_an_unknown_detector_is_told_the_likely_ones_not_every_one(written: str, meant: list[str]) -> None:
    assert likely_detectors(written) == meant
    message = _config_error([{"detect": [written], "action": "deny"}])
    assert (f"(did you mean {' or '.join(meant)}?)" in message) == bool(meant)
    assert "secrets.github_token" not in message and len(message) < 400  # not the 250 names of every kind


def test_settings_errors_name_the_field() -> None:
    assert _config_error([{"detect": ["secrets.aws"], "action": "deny"}]).startswith(
        "guardrails.0.detect.0: unknown detector 'secrets.aws' (did you mean secrets.aws_access_key_id or"
        " secrets.aws_secret_access_key or secrets.aws_session_token?); the built-in ones are secrets, pii,"
        " tollgate_keys and each kind of a group (secrets.aws_access_key_id, pii.email, …"
    )
    message = _config_error(
        [{"detect": ["pii"], "action": "deny"}, {"detect": [{"name": "x", "regex": "(a"}], "action": "audit"}]
    )
    assert message.startswith(
        "guardrails.1.detect.0.regex: not a regular expression: missing ), unterminated subpattern"
    )
    assert _config_error([{"detect": [{"name": "x", "regex": "a*"}], "action": "audit"}]) == (
        "guardrails.0.detect.0.regex: matches the empty text: every body would have a finding"
    )
    assert "'pii.email' is a built-in detector's name" in _config_error(
        [{"detect": [{"name": "pii.email", "terms": ["a"]}], "action": "audit"}]
    )
    assert _config_error([{"detect": ["pii"], "action": "block"}]).startswith("guardrails.0.action: Input should be")
    assert _config_error([{"detect": [], "action": "deny"}]).startswith("guardrails.0.detect: ")
    assert _config_error([{"detect": ["pii"], "action": "deny", "match": {"provider": "nope"}}]).startswith(
        "guardrails.0: unknown provider 'nope'"
    )
    assert (
        _config_error(
            [
                {"detect": [{"name": "ids", "terms": ["a"]}], "action": "deny"},
                {"detect": [{"name": "ids", "terms": ["b"]}], "action": "deny"},
            ]
        )
        == "guardrails.1.detect.0: 'ids' is defined differently in guardrails.0.detect.0"
    )
    assert _config_error([{"detect": ["pii"], "action": "deny", "unread": "maybe"}]).startswith("guardrails.0.unread")


def test_no_guardrails_by_default() -> None:
    assert parse_config({}).guardrails == ()
    assert parse_config({"guardrails": None}).guardrails == ()


def test_a_clean_corpus_yields_only_what_is_really_there() -> None:
    """The project's docs, source and benchmarks and mitmproxy's source (some 4 MB, read as text):
    no string of another shape is taken for a secret or a number. What is found is there. (The
    engines find the same: the tests above.)"""
    import mitmproxy

    default = Guardrails(rules("secrets", "pii"))
    root = Path(__file__).resolve().parents[4]
    ours = [p for d in ("docs", "addons", "bench") for p in sorted((root / d).rglob("*")) if p.suffix in TEXT]
    theirs = sorted(Path(mitmproxy.__file__).parent.rglob("*.py"))
    assert sum(path.stat().st_size for path in ours + theirs) > 3_000_000

    def found(files: list[Path]) -> Counter[tuple[str, str]]:
        return Counter(
            (path.name, finding.kind)
            for path in files
            for finding in default.scan_all(path.read_bytes(), is_json=False).findings
        )

    # AWS's documented example key id, which the docs name as found; the address of the example
    # request `tollgate scan` is shown on (the answer's, answer.sse, is not read here); the IBAN
    # the agents' taint bench plants in a tool result, and the user's own the agents' overhead
    # bench pays rent to (the banks' own example, GB29 NWBK…); the owner's address in AgentDojo's
    # `agents` settings (AgentDojo's made-up user); the payees the tools policy's example knows.
    assert found(ours) == {
        ("guardrails.md", "secrets.aws_access_key_id"): 1,
        ("request.json", "pii.email"): 1,
        ("agents_taint.py", "pii.iban"): 1,
        ("agents_overhead.py", "pii.iban"): 1,
        ("agents.md", "pii.iban"): 2,  # the known payees of the tools policy's example, shown
        ("tool_calls.rego", "pii.iban"): 2,
        ("tool_calls_test.rego", "pii.iban"): 2,
        ("agentdojo.yaml", "pii.email"): 1,
    }
    # mitmproxy's authors' addresses, and a test key in its source.
    assert {kind for _, kind in found(theirs)} <= {"pii.email", "secrets.private_key"}


TEXT = {".md", ".py", ".rego", ".yaml", ".yml", ".json", ".txt"}


@pytest.mark.skipif(not HYPERSCAN, reason="hyperscan is not installed")
def test_guardrails_of_the_same_rules_compile_their_anchors_once() -> None:
    """A reload that keeps the rules compiles nothing again: the new Guardrails scan with the
    database already compiled (each in a scratch of its own), and find what the first do."""
    compiled = engine_module._database
    compiled.cache_clear()
    first = Guardrails(rules("secrets", "pii"), use_hyperscan=True)
    made = compiled.cache_info().misses
    second = Guardrails(rules("secrets", "pii"), use_hyperscan=True)
    assert (compiled.cache_info().misses, compiled.cache_info().hits) == (made, made)
    body = body_of(f"mail {EMAIL}")
    assert kinds(first.scan_all(body)) == kinds(second.scan_all(body)) == {"pii.email": 1}


def test_a_secret_in_a_name_is_shown_as_its_kind_whatever_the_rules() -> None:
    from tollgate.governance.guardrails.rules import shown_name

    key = "sk-proj-" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1" + "T3BlbkFJ" + "Fg0Ae5Ui3OyTb7Cc2Vn8Mx4Q"
    own = "tg-own-virtual-key-000001"
    with_keys = Guardrails(own_keys=[own])  # no rules: Tollgate's own keys only
    assert shown_name(key, None) == "[REDACTED:secrets.openai_api_key]"
    assert shown_name(f"ft:{key}:x", with_keys) == "ft:[REDACTED:secrets.openai_api_key]:x"
    assert shown_name(own, with_keys) == "[REDACTED:tollgate_keys]"
    assert shown_name(own, None) == own  # no configuration's keys to know it by
    for model in ("gpt-4o-mini", "claude-sonnet-4-5", "ft:gpt-4o:acme::abc123", "模型"):
        assert shown_name(model, with_keys) is model
    assert shown_name("a@b.example", None) == "a@b.example"  # personal data is no secret of these


def test_a_secret_in_the_path_of_a_call_refused_with_no_model_read_is_shown_as_its_kind() -> None:
    from tollgate.calls.call import Call, Route
    from tollgate.formats.request_facts import Classification

    key = "sk-proj-" + "Kq7Zt3Wm9Xp2Rv8Ln4Hs6Jd1" + "T3BlbkFJ" + "Fg0Ae5Ui3OyTb7Cc2Vn8Mx4Q"
    written = f"/v1beta/models/{key}:generateContent"
    refused = Call(Route.as_called("gemini"), "generativelanguage.googleapis.com", "POST", written)
    refused.refused_unread()  # never classified
    shown = "/v1beta/models/[REDACTED:secrets.openai_api_key]:generateContent"
    assert (refused.path, refused.request.secret_in_path) == (shown, (written, shown))
    unread = Call(Route.as_called("gemini"), "generativelanguage.googleapis.com", "POST", written)
    unread.classified(Classification(endpoint="generate"))  # its shape refused: no model read
    unread.refused_unread()
    assert unread.path == shown
    read = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    read.classified(Classification(endpoint="chat", model="gpt-4o"))
    read.refused_unread()
    assert (read.path, read.request.secret_in_path) == ("/v1/chat/completions", None)
