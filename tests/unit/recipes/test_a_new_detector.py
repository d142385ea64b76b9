"""A built-in guardrail detector added as the recipe in docs/architecture.md says: one detector in
`detectors._builtin()` (here `token(kind, prefix, rest, reach)`, as a prefixed token is written),
patched into `BUILTIN` with the kinds and groups made of it as the module makes them (`kinds_of`).
A configuration then names it (by its kind, or its group `secrets`) and the real pipeline finds its
value in a request, redacted before it goes upstream, and in an answer, redacted as it streams to
the client, in the answer format's own events. Nothing else knows it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.support.pipeline import configured_gateway, one_call

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.detectors import BUILTIN, kinds_of, token

from .conftest import chat_chunks, chat_flow, openai_config, records, said

KIND = "secrets.tollway_token"
TOLLWAY = token(KIND, rb"twy_", rb"[A-Za-z0-9]{32}", 40)
VALUE = "twy_" + "Ab3" * 10 + "Zz"  # 4 + 32 characters
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"my token is {VALUE}, keep it"}], "stream": True}


@pytest.fixture
def built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector's line in `_builtin()`: `BUILTIN`, and the kinds and groups made of it."""
    found = (*BUILTIN, TOLLWAY)
    kinds, groups = kinds_of(found)
    monkeypatch.setattr(detectors, "BUILTIN", found)
    monkeypatch.setattr(detectors, "KINDS", kinds)
    monkeypatch.setattr(detectors, "GROUPS", groups)


def test_a_configuration_names_it_once_it_is_built_in(built_in: None) -> None:
    config = parse_config({"guardrails": [{"detect": [KIND], "action": "redact"}]}, {})
    assert config.guardrails[0].detect[0].kinds == (KIND,)
    assert (
        KIND
        in parse_config({"guardrails": [{"detect": ["secrets"], "action": "audit"}]}, {}).guardrails[0].detect[0].kinds
    )


def test_no_configuration_names_it_before() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'secrets\.tollway_token'"):
        parse_config({"guardrails": [{"detect": [KIND], "action": "redact"}]}, {})


def test_its_value_is_found_in_a_request_and_in_an_answer(built_in: None, tmp_path: Path) -> None:
    rule = {"detect": [KIND], "action": "redact", "on": ["request", "answer"]}
    with configured_gateway(openai_config(tmp_path, guardrails=[rule])) as addon:
        flow = chat_flow(BODY)
        sent, received = asyncio.run(one_call(addon, flow, chat_chunks(f"Your token: {VALUE}.")))

    # The request went upstream with the value replaced; the answer came to the client so.
    content = json.loads(sent.raw_content or b"")["messages"][0]["content"]
    assert content == f"my token is [REDACTED:{KIND}], keep it"
    assert said(received) == f"Your token: [REDACTED:{KIND}]."
    [record] = records(tmp_path / "audit.jsonl")
    assert (record["findings"], record["answer_findings"]) == ({KIND: 1}, {KIND: 1})
    assert VALUE not in (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
