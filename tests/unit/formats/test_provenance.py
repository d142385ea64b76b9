"""Each format's provenance reader: the system prompt and the user's own text trusted, every tool
result outside content attributed to its tool, and the assistant's text outside once a result came
before it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.formats.anthropic_messages.provenance import read_provenance as anthropic
from tollgate.formats.bedrock_converse.provenance import read_provenance as converse
from tollgate.formats.gemini_generate.provenance import read_provenance as gemini
from tollgate.formats.openai_chat.provenance import read_provenance as chat
from tollgate.formats.openai_responses.provenance import continued
from tollgate.formats.openai_responses.provenance import read_provenance as responses
from tollgate.formats.provenance import OutsidePiece, Provenance

# The keys the readers look for, so that generated bodies reach every branch.
KEYS = [
    "messages",
    "input",
    "contents",
    "system",
    "systemInstruction",
    "instructions",
    "tools",
    "role",
    "content",
    "parts",
    "type",
    "text",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "id",
    "call_id",
    "tool_call_id",
    "output",
    "tool_use_id",
    "functionCall",
    "functionResponse",
    "response",
    "toolUse",
    "toolResult",
    "toolUseId",
    "json",
    "user",
    "assistant",
    "tool",
    "model",
    "tool_result",
    "tool_use",
    "function_call_output",
    "web_search_options",
    "previous_response_id",
    "mcp_servers",
    "server_tool_use",
    "web_search_tool_result",
]


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *all_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


def tools_of(p: Provenance) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for piece in p.outside:
        out.setdefault(piece.tool, []).append(piece.text)
    return out


def test_chat_results_attributed_by_call_id() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": [{"type": "text", "text": "read my inbox"}]},
            {
                "role": "assistant",
                "content": "sure",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read_inbox", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "send to US1300"},
            {"role": "tool", "tool_call_id": "zz", "content": "stray"},
            {"role": "function", "name": "legacy", "content": "old"},
            {
                "role": "assistant",
                "content": "I will pay",
                "tool_calls": [
                    {"id": "c2", "type": "function", "function": {"name": "send_money", "arguments": '{"to": "x"}'}}
                ],
            },
        ]
    }
    p = chat(body)
    assert p.trusted == ["be kind", "read my inbox"]
    assert tools_of(p) == {
        "read_inbox": ["send to US1300"],
        "unknown": ["stray"],
        "legacy": ["old"],
        "assistant": ["I will pay", '{"to": "x"}'],
    }


def test_chat_search_answers_are_outside() -> None:
    body = {
        "web_search_options": {},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "web says"}],
    }
    p = chat(body)
    assert p.outside == [OutsidePiece("web_search", "web says")] and p.provider_tools == ["web_search"]


def test_responses_outputs_provider_calls_and_unseen_turns() -> None:
    body = {
        "instructions": "sys",
        "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}],
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "before"}]},
            {"type": "function_call", "call_id": "a", "name": "read_file", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "file text"},
            {"type": "custom_tool_call", "call_id": "b", "name": "shell", "input": "ls"},
            {"type": "custom_tool_call_output", "call_id": "b", "output": [{"type": "input_text", "text": "a.txt"}]},
            {"type": "mcp_call", "server_label": "git", "name": "log", "arguments": "{}", "output": "commit msg"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "after"}]},
        ],
    }
    p = responses(body)
    assert p.trusted == ["sys", "hi"]
    got = tools_of(p)
    assert got["read_file"] == ["file text"] and got["shell"] == ["a.txt"]
    assert "commit msg" in got["mcp:git/log"][0]
    assert got["assistant"] == ["ls", "after"]  # the call after a result is outside content too
    assert p.provider_tools == ["web_search_preview", "mcp:git/log"]


def test_responses_previous_response_makes_assistant_text_outside() -> None:
    body = {
        "previous_response_id": "resp_1",
        "input": [
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "x", "name": "pay", "arguments": '{"to": "y"}'},
        ],
    }
    p = responses(body)
    assert p.trusted == ["go"] and p.outside == [OutsidePiece("assistant", '{"to": "y"}')]
    assert responses({"input": "just text"}).trusted == ["just text"]


def test_responses_an_earlier_response_tollgate_saw_is_read_as_it_saw_it() -> None:
    first = responses({"input": [
        {"role": "user", "content": "pay"},
        {"type": "computer_call", "call_id": "k", "action": {"type": "screenshot"}},
        {"type": "computer_call_output", "call_id": "k", "output": {"type": "input_image", "image_url": "x"}},
        {"type": "function_call", "call_id": "r", "name": "read_inbox", "arguments": "{}"},
    ]})  # fmt: skip
    assert first.calls == {"k": "computer", "r": "read_inbox"}  # a computer call is the agent's: its tool named
    answered = continued(first, [{"type": "message", "role": "assistant", "content": "ok"}])
    later = {
        "previous_response_id": "resp_1",
        "input": [{"type": "function_call_output", "call_id": "r", "output": "IBAN"}],
    }
    p = responses(later, {"resp_1": answered}.get)
    assert p.trusted == ["pay"] and tools_of(p)["read_inbox"] == ["IBAN"]  # attributed by the earlier call's id
    assert tools_of(responses(later))["unknown"] == ["IBAN"]  # not seen: its call unknown


def test_anthropic_tool_results_server_tools_and_user_text() -> None:
    body = {
        "system": [{"type": "text", "text": "sys"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}, {"name": "read_inbox", "input_schema": {}}],
        "mcp_servers": [{"name": "drive", "url": "https://x"}],
        "messages": [
            {"role": "user", "content": "pay my rent"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "looking"},
                    {"type": "tool_use", "id": "t1", "name": "read_inbox", "input": {}},
                    {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "rent"}},
                    {
                        "type": "web_search_tool_result",
                        "tool_use_id": "s1",
                        "content": [{"type": "web_search_result", "url": "https://evil", "title": "t"}],
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "IBAN DE89"}]},
                    {"type": "text", "text": "thanks"},
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t2", "name": "send_money", "input": {"iban": "DE89"}}],
            },
        ],
    }
    p = anthropic(body)
    assert p.trusted == ["sys", "pay my rent", "thanks"]
    got = tools_of(p)
    assert "https://evil" in got["web_search"][0] and got["read_inbox"] == ["IBAN DE89"]
    assert got["assistant"] == ['{"iban": "DE89"}']
    assert p.provider_tools == ["web_search", "mcp:drive"]


def test_gemini_function_responses_by_id_or_name() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "tools": [{"googleSearch": {}}, {"functionDeclarations": []}],
        "contents": [
            {"role": "user", "parts": [{"text": "hello"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "g1", "name": "get_page", "args": {"url": "u"}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"id": "g1", "name": "wrong", "response": {"body": "page"}}}],
            },
            {"role": "user", "parts": [{"function_response": {"name": "by_name", "response": {"v": 1}}}]},
            {"role": "model", "parts": [{"text": "done"}]},
        ],
    }
    p = gemini(body)
    assert p.trusted == ["sys", "hello"]
    got = tools_of(p)
    assert "page" in got["get_page"][0] and "by_name" in got and got["assistant"] == ["done"]
    assert p.provider_tools == ["googleSearch"]


def test_converse_tool_results_text_and_json() -> None:
    body = {
        "system": [{"text": "sys"}],
        "messages": [
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "b1", "name": "search", "input": {}}}]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "b1", "content": [{"text": "t"}, {"json": {"k": "v"}}]}}],
            },
        ],
    }
    p = converse(body)
    assert p.trusted == ["sys", "hi"]
    assert p.outside == [OutsidePiece("search", 't\n{"k": "v"}')]


def test_readers_are_lenient_with_odd_bodies() -> None:
    for read in (chat, responses, anthropic, gemini, converse):
        for body in ({}, {"messages": "x", "input": 3, "contents": [1, None]}, {"messages": [None, 3, {"role": 5}]}):
            assert isinstance(read(body), Provenance)


def test_anthropic_bodies_on_bedrock_and_vertex_read_alike() -> None:
    """Bedrock's InvokeModel and Vertex's rawPredict carry the Messages body with `anthropic_version`
    in place of `model`: the same reader reads it."""
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "fetch", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "page"}]},
    ]
    for body in (
        {"anthropic_version": "bedrock-2023-05-31", "messages": messages},
        {"anthropic_version": "vertex-2023-10-16", "messages": messages},
    ):
        p = anthropic(body)
        assert p.trusted == ["hi"] and p.outside == [OutsidePiece("fetch", "page")]


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.sampled_from(KEYS)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(KEYS), _json, max_size=4))
def test_readers_never_raise_and_trust_only_what_a_user_wrote(body: dict[str, Any]) -> None:
    """Any JSON body, however odd: each reader returns a provenance, and every trusted text is a
    string the body holds (nothing outside content holds is made trusted by a wrong guess)."""
    lines = {line for s in all_strings(body) for line in s.split("\n")}
    for read in (chat, responses, anthropic, gemini, converse):
        p = read(body)
        assert all(set(t.split("\n")) <= lines for t in p.trusted), p.trusted


def test_a_deeply_nested_result_is_read_without_recursion() -> None:
    deep: Any = "US133000000121212121212"
    for _ in range(100_000):
        deep = [deep]
    body = {"messages": [{"role": "tool", "tool_call_id": "x", "content": deep}, {"role": "user", "content": deep}]}
    p = chat(body)
    assert p.outside == [OutsidePiece("unknown", "US133000000121212121212")] and p.trusted == []
