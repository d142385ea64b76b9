"""The roll-up stage's summarizer call where it cannot be made: the call goes on as it came."""

from __future__ import annotations

import pytest

from tollgate.calls.call import Call, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats import OPENAI_CHAT
from tollgate.formats.request_facts import Classification
from tollgate.governance.limits.rollup import Size, Summaries, plan
from tollgate.proxy.stages.limits.summarize import SummaryUnavailable, summarizer_call

RULE = {"above_messages": 3, "keep_last": 2, "summarizer": {"provider": "anthropic", "model": "claude-haiku-4-5"}}


def test_a_summarizer_without_a_credential_of_tollgates_is_unavailable_naming_the_setting() -> None:
    loaded = Loaded.build(parse_config({"rollup": [RULE]}, {}))
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions", loaded=loaded)
    call.classified(Classification("chat.completions", "gpt-4o"))
    body = {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(6)]}
    rolled = plan(OPENAI_CHAT, body, Size(3, None, 2), "anthropic/claude-haiku-4-5", Summaries(0))
    assert rolled is not None
    with pytest.raises(
        SummaryUnavailable, match=r"^Tollgate has no anthropic credential for the summarizer \(providers\.anthropic\)$"
    ):
        summarizer_call(call, loaded.config.rollup[0], rolled)
