"""An answer read whole within its bound (`patches.read_whole_up_to`): its flow is let go once
answered. The bound is kept by flow, weakly; a bound holding its flow would keep every such call
(its request and answer) for the life of the process."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from pathlib import Path

from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from tests.support.pipeline import one_call

from tollgate.proxy.pipeline import gateway
from unit.recipes.conftest import chat_flow, openai_config

TOOL = {"type": "function", "function": {"name": "send_money", "parameters": {"type": "object"}}}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "send_money", "arguments": '{"amount": 10}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}


def test_a_call_whose_answer_agents_read_whole_is_let_go_once_answered(tmp_path: Path) -> None:
    addon = gateway()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(addon, tollgate_config=str(openai_config(tmp_path, agents={})))
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "pay 10"}], "tools": [TOOL]}
        flow = chat_flow(body)
        asyncio.run(one_call(addon, flow, [json.dumps(ANSWER).encode()], content_type=b"application/json"))
        assert flow.response is not None and flow.response.status_code == 200
        assert json.loads(flow.response.content or b"")["choices"][0]["message"]["tool_calls"]  # let through
        gone = weakref.ref(flow)
        del flow
        gc.collect()
        assert gone() is None
