"""Recorded text, bounded: 256 characters a string, 32 entries a list, 64 KiB a line."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.records.audit.bounded import CHAINED, LINE, bounded, cut, within_line


def test_a_long_string_keeps_256_characters_the_last_one_the_mark() -> None:
    assert cut("m" * 2_200_000) == "m" * 255 + "…"
    assert cut("é" * 256) == "é" * 256  # characters, not bytes
    assert cut("x" * 257) == "x" * 255 + "…"
    assert cut("") == ""


def test_a_long_list_keeps_32_entries_then_says_how_many_more() -> None:
    record = {"event": "llm_call", "deny_reasons": [f"r{i}" for i in range(40)], "groups": ["a"] * 32}
    fitted = bounded(record)
    assert fitted["deny_reasons"] == [f"r{i}" for i in range(32)] + ["… 8 more"]
    assert fitted["groups"] is record["groups"]  # 32 entries: within
    assert record["deny_reasons"] == [f"r{i}" for i in range(40)]  # the caller's record is left as it was


def test_strings_are_cut_inside_lists_and_mappings_keys_too() -> None:
    record = {"unread": ["u" * 300], "findings": {"k" * 300: 1}, "attempts": [{"error": "e" * 1000, "status": 502}]}
    assert bounded(record) == {
        "unread": ["u" * 255 + "…"], "findings": {"k" * 255 + "…": 1}, "attempts": [{"error": "e" * 255 + "…", "status": 502}]
    }  # fmt: skip


def test_a_record_within_bounds_is_itself() -> None:
    record = {"event": "llm_call", "model": "m" * 256, "groups": ["a", "b"], "findings": {"email": 1}, "cost_usd": 0.1,
              "stream": True, "error": None, "attempts": [{"provider": "openai", "status": 200}]}  # fmt: skip
    assert bounded(record) is record


def test_tollgates_own_values_are_never_cut() -> None:
    record = {"event": "audit_checkpoint", "instance": "i" * 300, "covers_chain": "c" * 300, "signature": "s" * 300,
              "previous_chain": "p" * 300, "config_sha256": "h" * 300}  # fmt: skip
    assert bounded(record) is record


def test_a_line_that_is_still_too_long_gives_up_its_largest_values_first() -> None:
    # Bounded, each value is small; hundreds of them (or nested) still weigh more than a line holds.
    record = bounded({"event": "mcp_call", "instance": "gw", "client": "alice",
                      "big": [[["\x01" * 300] * 40] * 40], "small": ["x" * 300] * 40})  # fmt: skip
    line = within_line(record, orjson.dumps)
    assert isinstance(line, bytes) and len(line) <= LINE - CHAINED
    written = orjson.loads(line)
    assert written["big"].startswith("… ") and written["big"].endswith(" bytes cut")
    assert (written["event"], written["instance"], written["client"]) == ("mcp_call", "gw", "alice")
    assert written["small"] == ["x" * 255 + "…"] * 32 + ["… 8 more"]


# Long values made cheaply: a character repeated, an entry repeated.
texts = st.builds(lambda c, n: c * n, st.sampled_from(["x", "\x01", "é", "😀", '"']), st.integers(0, 600))
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda children: (
        st.builds(lambda v, n: [v] * n, children, st.integers(0, 40)) | st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=6,
)


def _within(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 256
    if isinstance(value, list):
        return len(value) <= 33 and all(map(_within, value))
    if isinstance(value, dict):
        return all(map(_within, value)) and all(map(_within, value.values()))
    return True


@settings(deadline=None, max_examples=50)
@given(st.dictionaries(st.sampled_from(["model", "client", "error", "findings", "unread", "path"]), values))
def test_any_record_is_bounded_and_its_line_within_64_kib(record: dict[str, Any]) -> None:
    fitted = bounded({"event": "llm_call", **record})
    assert _within(fitted)
    line = within_line(fitted, orjson.dumps)
    assert len(line) <= LINE - CHAINED


def test_the_console_line_cuts_what_it_takes_from_a_caller_a_policy_and_an_upstream() -> None:
    from tests.unit.calls.test_call import full_call

    from tollgate.calls.call import Route, Target
    from tollgate.records.audit.summary import summary

    call = full_call()
    call.route = Route(Target("openai", "m" * 100_000), Target("openai", "m" * 100_000), "https://api.openai.com")
    call.answer.usage, call.answer.findings = None, None
    call.answer.refused, call.verdict.decision = "policy_denied", "deny"
    call.verdict.deny_reasons = tuple("r" * 1000 for _ in range(1000))
    assert summary(call) == f"alice · ⛔ policy_denied · openai/{'m' * 255}… · {'r' * 255}…"


def test_a_refused_connections_line_is_cut_likewise() -> None:
    from tollgate.records.audit.connection_record import Connection, connection_line

    refused = Connection("r-1", "h" * 1000, 443, client="c" * 300, deny_reasons=("x" * 300,))
    assert connection_line(refused) == f"Tollgate: {'c' * 255}… · ⛔ egress_denied · {'h' * 255}…:443 · {'x' * 255}…"
