"""The forms personal numbers are written in, each found and its near miss not: an SSN with
dashes, dots or spaces; a card of Dankort, Maestro or UATP; an IBAN in dashed groups. On both
engines, in a JSON body as a client sends it. (Values are written in parts: the clean-corpus test
reads this tree.)"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.guardrail_samples import iban, luhn_complete
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.rules import Guardrails

ENGINES = [False, *([True] if HYPERSCAN else [])]
RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})]
GUARDRAILS = {hs: Guardrails(RULES, use_hyperscan=hs) for hs in ENGINES}
ENGINE_IDS = {False: "python", True: "hyperscan"}


def found(engine: bool, content: str, kind: str) -> list[str]:
    """The values of `kind` found in a chat request whose user message is `content`."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}).encode()
    return [body[f.start : f.end].decode() for f in GUARDRAILS[engine].scan_all(body).findings if f.kind == kind]


SSN = "123-" + "45-6789"
DOTTED_SSN = "123." + "45.6789"
SPACED_SSN = "123 " + "45 6789"
DANKORT = luhn_complete("501912345678901")
MAESTRO = luhn_complete("675912345678901")
UATP = luhn_complete("12345678901234")
DASHED_IBAN = "-".join(iban("DE", "370400440532013000")[i : i + 4] for i in range(0, 22, 4))

FOUND = {
    "an SSN with dashes": (SSN, "pii.us_ssn"),
    "an SSN with dots": (DOTTED_SSN, "pii.us_ssn"),
    "an SSN with spaces": (SPACED_SSN, "pii.us_ssn"),
    "a Dankort number": (DANKORT, "pii.payment_card"),
    "a Maestro number": (MAESTRO, "pii.payment_card"),
    "a Maestro number in groups": (" ".join(MAESTRO[i : i + 4] for i in range(0, 16, 4)), "pii.payment_card"),
    "a UATP number": (UATP, "pii.payment_card"),
    "an IBAN in dashed groups": (DASHED_IBAN, "pii.iban"),
}

NEAR_MISSES = {
    "an SSN of two separators": ("123-" + "45.6789", "pii.us_ssn"),
    "an SSN of dot and space": ("123." + "45 6789", "pii.us_ssn"),
    "an SSN of group 00, spaced": ("123 " + "00 6789", "pii.us_ssn"),
    "an SSN of area 9xx, dotted": ("923." + "45.6789", "pii.us_ssn"),
    "the advertised SSN, spaced": ("078 " + "05 1120", "pii.us_ssn"),
    "spaced groups running on": ("123 " + "45 6789 1234", "pii.us_ssn"),
    "spaced groups after digits": ("12 123 " + "45 6789", "pii.us_ssn"),
    "dotted groups running on": ("123." + "45.6789.12", "pii.us_ssn"),
    "a Dankort number of a wrong Luhn digit": (DANKORT[:-1] + str((int(DANKORT[-1]) + 1) % 10), "pii.payment_card"),
    "a Dankort prefix of 15 digits": (luhn_complete("50191234567890"), "pii.payment_card"),
    "a UATP number of a wrong Luhn digit": (UATP[:-1] + str((int(UATP[-1]) + 1) % 10), "pii.payment_card"),
    "a UATP number in groups": (" ".join((UATP[:4], UATP[4:9], UATP[9:])), "pii.payment_card"),
    "a millisecond timestamp": ("1764161" + "234567", "pii.payment_card"),
    "16 digits from a 1": (luhn_complete("123456789012345"), "pii.payment_card"),
    "an IBAN in dashed groups, a wrong check": (DASHED_IBAN[:-1] + str((int(DASHED_IBAN[-1]) + 1) % 10), "pii.iban"),
    "an IBAN in slashed groups": (DASHED_IBAN.replace("-", "/"), "pii.iban"),
    "an IBAN of dashes and spaces": (DASHED_IBAN.replace("-", " ", 1), "pii.iban"),
}


@pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS.get)
@pytest.mark.parametrize(("value", "kind"), FOUND.values(), ids=FOUND.keys())
def test_each_form_is_found_whole(engine: bool, value: str, kind: str) -> None:
    assert found(engine, f"here: {value}, thanks", kind) == [value]


@pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS.get)
@pytest.mark.parametrize(("value", "kind"), NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_each_near_miss_is_not_found(engine: bool, value: str, kind: str) -> None:
    assert found(engine, f"here: {value}, thanks", kind) == []


@pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS.get)
def test_a_dashed_iban_followed_by_a_word_ends_with_its_country_length(engine: bool) -> None:
    assert found(engine, f"{DASHED_IBAN}-BICX ok", "pii.iban") == [DASHED_IBAN]


@settings(max_examples=200, deadline=None)
@given(
    area=st.integers(1, 899).filter(lambda a: a != 666),
    group=st.integers(1, 99),
    serial=st.integers(1, 9999),
    separator=st.sampled_from(["-", ".", " "]),
    engine=st.sampled_from(ENGINES),
)
def test_an_issued_ssn_is_found_with_any_one_separator(
    area: int, group: int, serial: int, separator: str, engine: bool
) -> None:
    parts = (f"{area:03d}", f"{group:02d}", f"{serial:04d}")
    value = separator.join(parts)
    if all(len(set(p)) == 1 for p in parts) or "".join(parts) in ("078051120", "219099999"):
        return  # a form's example, or the advertised numbers
    assert found(engine, f"SSN {value}.", "pii.us_ssn") == [value]
    other = "." if separator != "." else "-"
    mixed = parts[0] + separator + parts[1] + other + parts[2]
    assert found(engine, f"SSN {mixed}.", "pii.us_ssn") == []


@settings(max_examples=200, deadline=None)
@given(digits=st.text("0123456789", min_size=13, max_size=13), engine=st.sampled_from(ENGINES))
def test_a_uatp_number_is_found_by_its_luhn_digit(digits: str, engine: bool) -> None:
    value = luhn_complete("1" + digits)
    assert found(engine, f"card {value} ok", "pii.payment_card") == [value]
    wrong = value[:-1] + str((int(value[-1]) + 3) % 10)
    assert found(engine, f"card {wrong} ok", "pii.payment_card") == []
