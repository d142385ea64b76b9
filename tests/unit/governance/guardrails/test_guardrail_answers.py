"""The answer scanner (`governance/guardrails/answer.py`): an answer's text fed in pieces, split
anywhere, releases nothing of a value (what went on is at every step a prefix of the whole text
with its values replaced), releases clean text byte for byte, and holds a bounded tail; on both
engines (Hyperscan where installed, Python's re)."""

from __future__ import annotations

import itertools
import json
import re
import string
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from support.answer_guards import drawn
from support.examples import examples
from support.guardrail_samples import AWS_KEY_ID, AWS_SECRET, EMAIL, SAMPLES, crc_token, pem
from tollgate.configuration.config import parse_config
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import AnswerDetectors, Released, compiled_for
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.partial import partial
from tollgate.governance.guardrails.rules import Guardrails

ENGINES = [False, *([True] if HYPERSCAN else [])]
_KEY = pem("ec").strip()
VALUES = {**{kind: (value, context) for kind, (value, context) in SAMPLES.items()}, "secrets.private_key": (_KEY, "{}")}
_COMPILED: dict[tuple[str, bool, int], AnswerDetectors] = {}


def compiled(action: str = "redact", use_hyperscan: bool = HYPERSCAN, hold: int = 4096) -> AnswerDetectors:
    """Every built-in detector, each kind with `action` (compiled once per test run)."""
    key = (action, use_hyperscan, hold)
    if key not in _COMPILED:
        _COMPILED[key] = compiled_for(dict.fromkeys(detectors.KINDS, action), (), hold, use_hyperscan)
    return _COMPILED[key]


def fed(found: AnswerDetectors, pieces: list[bytes]) -> tuple[list[Released], int]:
    """Each piece's release and the flush's, and the most held after any piece."""
    scanner = found.scanner()
    out, most = [], 0
    for piece in pieces:
        out.append(scanner.feed(piece))
        most = max(most, scanner.held)
        if out[-1].denied:
            return out, most
    out.append(scanner.flush())
    return out, most


def whole(found: AnswerDetectors, data: bytes) -> bytes:
    return b"".join(r.text for r in fed(found, [data])[0])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def assert_never_ahead(releases: list[Released], expected: bytes) -> None:
    """What went on, after every piece, is a prefix of the expected whole: no byte of a value went
    on that the whole text replaces, and nothing went on twice or out of order."""
    sent = b""
    for release in releases:
        sent += release.text
        assert expected.startswith(sent), (sent[-80:], expected[:200])
    assert sent == expected


def answer_of(kind: str, before: str = "Here it is: ", after: str = " and that is all.") -> tuple[bytes, bytes]:
    """An answer that writes a value of the kind in its context, and the value."""
    value, context = VALUES[kind]
    return (before + context.format(value) + after).encode(), value.encode()


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_each_kind_split_at_every_byte_never_goes_on(kind: str) -> None:
    found = compiled()
    data, value = answer_of(kind)
    expected = whole(found, data)
    assert value not in expected and f"[REDACTED:{kind}]".encode() in expected
    # One byte at a time, and in two pieces cut at each byte.
    releases, most = fed(found, [data[i : i + 1] for i in range(len(data))])
    assert_never_ahead(releases, expected)
    assert most <= found.hold_bytes
    step = 1 if len(data) < 400 else 7
    for at in range(0, len(data) + 1, step):
        assert_never_ahead(fed(found, [data[:at], data[at:]])[0], expected)


@pytest.mark.parametrize("use_hyperscan", ENGINES)
def test_the_held_tail_is_where_a_candidate_begins(use_hyperscan: bool) -> None:
    found = compiled(use_hyperscan=use_hyperscan)
    scanner = found.scanner()
    token = crc_token("gh" + "p_")
    assert scanner.feed(b"Your token: " + token[:2].encode()).text == b"Your token: "
    assert scanner.held == 2
    assert scanner.feed(token[2:20].encode()).text == b""
    assert scanner.feed(token[20:].encode()).text == b""  # whole, but a letter may still follow
    assert scanner.feed(b". Keep it").text == b"[REDACTED:secrets.github_token]. Keep "
    assert scanner.flush().text == b"it"
    assert scanner.counts == {"secrets.github_token": 1}


@pytest.mark.parametrize("use_hyperscan", ENGINES)
def test_clean_text_without_candidate_characters_is_released_whole_at_once(use_hyperscan: bool) -> None:
    found = compiled(use_hyperscan=use_hyperscan)
    scanner = found.scanner()
    for piece in (b"The answer is simple; ", b"look at the logs, then the config!\n", b"That is all. "):
        assert scanner.feed(piece).text == piece
        assert scanner.held == 0
    assert scanner.flush().text == b""


def test_deny_releases_what_comes_before_the_value_and_nothing_after() -> None:
    found = compiled("deny")
    data, value = answer_of("pii.email")
    start = data.index(value)
    for at in range(len(data) + 1):
        releases, _ = fed(found, [data[:at], data[at:]])
        assert releases[-1].denied == "pii.email"
        assert b"".join(r.text for r in releases) == data[:start]


def test_audit_releases_everything_at_once_and_counts_values_split_anywhere() -> None:
    found = compiled("audit")
    data, _ = answer_of("pii.email")
    for at in range(len(data) + 1):
        scanner = found.scanner()
        assert scanner.feed(data[:at]).text == data[:at]
        assert scanner.feed(data[at:]).text == data[at:]
        assert scanner.flush().text == b""
        assert scanner.counts == {"pii.email": 1}


def test_an_aws_secret_waits_for_a_key_id_that_comes_after_it() -> None:
    found = compiled()
    data = f"secret {AWS_SECRET} and, a little later, the id {AWS_KEY_ID} .".encode()
    expected = whole(found, data)
    assert AWS_SECRET.encode() not in expected and AWS_KEY_ID.encode() not in expected
    assert_never_ahead(fed(found, [data[i : i + 3] for i in range(0, len(data), 3)])[0], expected)


def test_a_candidate_longer_than_the_bound_is_treated_as_found() -> None:
    found = compiled(hold=64)
    # A key's armour line and more of its body than may be held, then prose.
    body = _KEY.encode()
    data = b"key: " + body + b"\n\nThat was it."
    releases, most = fed(found, [data[i : i + 16] for i in range(0, len(data), 16)])
    sent = b"".join(r.text for r in releases)
    assert sent.startswith(b"key: [REDACTED:secrets.private_key]")
    assert most <= 64 + 16
    for line in body.splitlines()[1:-1]:
        assert line not in sent
    denied, _ = fed(compiled("deny", hold=64), [data[i : i + 16] for i in range(0, len(data), 16)])
    assert denied[-1].denied == "secrets.private_key"
    assert b"".join(r.text for r in denied) == b"key: "


def test_a_custom_regex_holds_the_tail_and_terms_only_their_candidates() -> None:
    regex = detectors.custom_regex("ticket", re.compile(rb"TCK-[0-9]{6}"))
    terms = detectors.custom_terms("codename", ["blue falcon"])
    found = AnswerDetectors([regex], {"ticket": "redact"}, hold_bytes=32)
    scanner = found.scanner()
    assert scanner.feed(b"x" * 40).text == b"x" * 8
    assert scanner.feed(b" TCK-123").text == b"x" * 8
    assert scanner.feed(b"456 done" + b"." * 40).text.startswith(b"xxxxxxxxxxxxxxxxxxxxxxxx [REDACTED:ticket] done")
    by_terms = AnswerDetectors([terms], {"codename": "redact"})
    scanner = by_terms.scanner()
    assert scanner.feed(b"the plan is ").text == b"the plan is "
    assert scanner.feed(b"Blue fal").text == b""
    assert scanner.feed(b"con, today").text == b"[REDACTED:codename], today"
    assert scanner.flush().text == b""


def test_a_tool_calls_json_arguments_are_read_through_their_escapes() -> None:
    found = compiled()
    token = crc_token("gh" + "p_")
    escaped = token.replace("_", "\\u005f")
    data = ('{"cmd": "curl -H \\"Authorization: token ' + escaped + '\\" https://x"}').encode()
    scanner = found.scanner(is_json=True)
    sent = b""
    for i in range(len(data)):
        sent += scanner.feed(data[i : i + 1]).text
        assert b"gh" not in sent[sent.rfind(b"token ") :] if b"token " in sent else True
    sent += scanner.flush().text
    assert sent == b'{"cmd": "curl -H \\"Authorization: token [REDACTED:secrets.github_token]\\" https://x"}'


_PROSE = st.text(alphabet=string.ascii_letters + string.digits + " ,.:;!?@+-()/\n\t\u00e9\u2603", max_size=60)
# A value of each kind, in prose, its text cut anywhere.
_SPLIT = {
    "kind": st.sampled_from(sorted(VALUES)),
    "before": _PROSE,
    "after": _PROSE,
    "cuts": st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
}


@drawn(150)
@given(**_SPLIT, use_hyperscan=st.sampled_from(ENGINES))
def test_values_in_prose_split_anywhere_never_go_on(
    kind: str, before: str, after: str, cuts: list[int], use_hyperscan: bool
) -> None:
    found = compiled(use_hyperscan=use_hyperscan)
    data, value = answer_of(kind, before + " ", " " + after)
    expected = whole(found, data)
    assert value not in expected
    releases, most = fed(found, split(data, cuts))
    assert_never_ahead(releases, expected)
    assert most <= found.hold_bytes


@settings(max_examples=examples(150), deadline=None)
@given(text=_PROSE, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_clean_prose_comes_through_byte_for_byte(text: str, cuts: list[int]) -> None:
    data = text.encode()
    found = compiled()
    if whole(found, data) != data:  # prose that happens to hold a value (rare): not this test's
        return
    releases, _ = fed(found, split(data, cuts))
    assert_never_ahead(releases, data)


def test_every_builtin_pattern_has_an_open_form() -> None:
    for d in detectors.BUILTIN:
        assert partial(d.pattern).alphabet, d.kind


def test_an_email_address_is_held_from_its_first_character() -> None:
    found = compiled()
    scanner = found.scanner()
    local = EMAIL.split("@")[0]
    assert scanner.feed(b"Write to " + local.encode()).text == b"Write to "
    assert scanner.feed(b"@").text == b""
    assert scanner.feed(EMAIL.split("@")[1].encode() + b" now").text == b"[REDACTED:pii.email] "


# -- settings: `on` and `answer_hold_bytes` ----------------------------------------------------------


def _config_error(guardrails: Any) -> str:
    from tollgate.configuration.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config({"guardrails": guardrails})
    return str(e.value)


def test_a_rule_reads_requests_by_default() -> None:
    (rule,) = parse_config({"guardrails": [{"detect": ["pii"], "action": "deny"}]}).guardrails
    assert rule.on == ("request",)
    assert rule.answer_hold_bytes == 4096
    (both,) = parse_config(
        {"guardrails": [{"detect": ["pii"], "action": "deny", "on": ["request", "answer"], "answer_hold_bytes": 512}]}
    ).guardrails
    assert both.on == ("request", "answer") and both.answer_hold_bytes == 512


def test_on_written_bare_in_yaml_is_the_rules_on() -> None:
    """YAML 1.1 reads `on:` as the boolean true: as the docs write it, unquoted, it still works."""
    import yaml

    data = yaml.safe_load("guardrails:\n  - detect: [pii]\n    action: redact\n    on: [answer]\n")
    (rule,) = parse_config(data).guardrails
    assert rule.on == ("answer",)


def test_on_and_answer_hold_bytes_errors_name_the_field() -> None:
    rule = {"detect": ["pii"], "action": "deny"}
    assert _config_error([{**rule, "on": []}]) == (
        "guardrails.0.on: name what the rule reads: [request], [answer] or [request, answer]"
    )
    assert _config_error([{**rule, "on": ["answer", "answer"]}]) == "guardrails.0.on: names a side twice"
    assert _config_error([{**rule, "on": ["response"]}]).startswith("guardrails.0.on.0: Input should be")
    assert _config_error([{**rule, "answer_hold_bytes": 10}]).startswith(
        "guardrails.0.answer_hold_bytes: Input should be greater than or equal to 64"
    )
    assert _config_error([{**rule, "answer_hold_bytes": 2 * 1024 * 1024}]).startswith(
        "guardrails.0.answer_hold_bytes: Input should be less than or equal to 1048576"
    )


def _guardrails(*rules: dict[str, Any]) -> Guardrails:
    return Guardrails.of(parse_config({"guardrails": list(rules)}))


def test_a_rule_on_answers_does_not_act_on_requests() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]}).encode()
    answers_only = _guardrails({"detect": ["pii"], "action": "deny", "on": ["answer"]})
    assert answers_only.scan(body, "openai", "m", None, ()).findings == ()
    assert answers_only.reads and not answers_only.reads_requests
    both = _guardrails({"detect": ["pii"], "action": "deny", "on": ["request", "answer"]})
    assert both.scan(body, "openai", "m", None, ()).counts() == {"pii.email": 1}
    requests_only = _guardrails({"detect": ["pii"], "action": "deny"})
    assert requests_only.answer("openai", "m", None, ()) is None


def test_an_answer_is_read_by_the_matching_answer_rules_and_own_keys() -> None:
    guardrails = Guardrails(
        [
            GuardrailRule(detect=["pii.email"], action="redact", on=["answer"], answer_hold_bytes=256),
            GuardrailRule(match={"provider": "anthropic"}, detect=["pii.email"], action="deny", on=["answer"]),
        ],
        own_keys=["sk-own-" + "Q" * 30],
    )
    openai = guardrails.answer("openai", "m", None, ())
    assert openai is not None and openai.hold_bytes == 256
    assert guardrails.answer("openai", "m", None, ()) is openai  # compiled once
    scanner = openai.scanner()
    sent = scanner.feed(f"to {EMAIL}, key sk-own-{'Q' * 30}!".encode())
    assert sent == Released(b"to [REDACTED:pii.email], key ", "tollgate_keys")
    anthropic = guardrails.answer("anthropic", "m", None, ())
    assert anthropic is not None and anthropic.actions["pii.email"] == "deny"


def test_an_answers_detectors_are_compiled_when_the_rules_load() -> None:
    rules = [
        GuardrailRule(detect=["pii.email"], action="redact", on=["answer"]),
        GuardrailRule(match={"provider": "anthropic"}, detect=["pii"], action="deny", on=["answer"]),
        GuardrailRule(detect=["secrets"], action="deny"),
    ]
    guardrails = Guardrails(rules)
    # Every set of the two answer rules a call may match, before any call.
    compiled = dict(guardrails._answers)
    assert len(compiled) == 3
    assert guardrails.answer("openai", "m", None, ()) in compiled.values()
    assert guardrails.answer("anthropic", "m", None, ()) in compiled.values()
    assert guardrails._answers == compiled
    many = Guardrails([GuardrailRule(detect=["pii.email"], action="audit", on=["answer"])] * 6)
    assert len(many._answers) == 6 + 1  # each alone, and all of them


@drawn(100)
@given(**_SPLIT)
def test_deny_split_anywhere_releases_only_what_comes_before_the_first_value(
    kind: str, before: str, after: str, cuts: list[int]
) -> None:
    found = compiled("deny")
    data, _ = answer_of(kind, before + " ", " " + after)
    whole_releases, _ = fed(found, [data])
    expected = b"".join(r.text for r in whole_releases)
    assert whole_releases[-1].denied is not None and data.startswith(expected)
    releases, _ = fed(found, split(data, cuts))
    assert_never_ahead(releases, expected)
    assert releases[-1].denied == whole_releases[-1].denied


@drawn(100)
@given(
    kind=st.sampled_from(sorted(VALUES)),
    before=_PROSE,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    ensure_ascii=st.booleans(),
    slashes=st.booleans(),
)
def test_tool_call_arguments_split_anywhere_never_release_a_value(
    kind: str, before: str, cuts: list[int], ensure_ascii: bool, slashes: bool
) -> None:
    value, context = VALUES[kind]
    arguments = json.dumps({"note": before, "cmd": context.format(value)}, ensure_ascii=ensure_ascii)
    if slashes:
        arguments = arguments.replace("/", "\\/")  # as some writers escape them
    data = arguments.encode()
    scanner_of = compiled()
    whole_scanner = scanner_of.scanner(is_json=True)
    expected = whole_scanner.feed(data).text + whole_scanner.flush().text
    assume(json.loads(expected)["note"] == before)  # prose may make a value (`0@0.AA`): not clean
    assert value not in json.loads(expected)["cmd"]
    scanner = scanner_of.scanner(is_json=True)
    sent = b""
    for piece in split(data, cuts):
        sent += scanner.feed(piece).text
        assert expected.startswith(sent)
    assert sent + scanner.flush().text == expected


def test_many_own_keys_are_held_from_any_prefix_and_compile_at_once() -> None:
    keys = [f"sk-proj-{i:04d}-" + "k" * 80 for i in range(300)] + ["a.b|c\\d-" + "z" * 10, "x\\|" + "y" * 12]
    # Held from any prefix, however many keys; how fast they compile is a benchmark's to say.
    found = AnswerDetectors(detectors.own_keys(keys, ()), {"tollgate_keys": "deny"})
    for key in (keys[5], keys[-2], keys[-1]):
        for cut in range(1, len(key)):
            scanner = found.scanner()
            assert scanner.feed(b"here: " + key.encode()[:cut]) == Released(b"here: ")
            assert scanner.held == cut
            assert scanner.feed(key.encode()[cut:] + b" x") == Released(b"", "tollgate_keys")


_FRAGMENTS = st.sampled_from(
    [
        *(context.format(value) for value, context in VALUES.values()),
        "Call +1 212 555 0199 or (415) 555-0100 before 2024-03-07 at 12:30.",
        "alice at example dot com, ref AB12 CD34, order 12345678901234, $1,234.56",
        'def f(x):\n    return {"id": x, "n": 4111_1111}\n',
        "The model reads a file and answers with what it found there. ",
        "AKIA",
        "sk-",
    ]
)


@drawn(100)
@given(
    parts=st.lists(st.one_of(_FRAGMENTS, _PROSE), min_size=1, max_size=8),
    piece=st.integers(min_value=1, max_value=300),
    action=st.sampled_from(["redact", "deny", "audit"]),
    is_json=st.booleans(),
)
def test_the_size_of_the_pieces_never_changes_what_goes_on(
    parts: list[str], piece: int, action: str, is_json: bool
) -> None:
    found = compiled(action)
    text = " ".join(parts)
    data = json.dumps({"note": text})[9:-1].encode() if is_json else text.encode()

    def read(size: int) -> tuple[bytes, str | None, dict[str, int]]:
        scanner = found.scanner(is_json)
        sent, denied = b"", None
        for at in range(0, len(data), size):
            release = scanner.feed(data[at : at + size])
            sent, denied = sent + release.text, release.denied
            assert scanner.held <= found.hold_bytes
            if denied:
                return sent, denied, dict(scanner.counts)
        release = scanner.flush()
        return sent + release.text, release.denied, dict(scanner.counts)

    assert read(piece) == read(max(1, len(data)))
