"""What the policy sees of the tools a request gives its model, in every provider's bodies: every
field that grants a tool makes `has_tools` true, the MCP servers a call grants are named, and what
Tollgate cannot see into (a stored prompt, a cached content) is named as unread."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification, GrantedMcpServer

from .common import ANTHROPIC, BEDROCK, GEMINI, OPENAI, VERTEX, classify, j

VERTEX_PATH = "/v1/projects/caller-1/locations/us-central1"
USER = [{"role": "user", "content": "hi"}]
GEMINI_CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
CLAUDE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": USER}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": USER}
GITHUB = {"type": "url", "url": "https://mcp.example.com/sse", "name": "github"}
RESPONSES_MCP = {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"}

PROVIDERS = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI, "vertex": VERTEX, "bedrock": BEDROCK}


def seen(provider: str, path: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """has_tools, has_system, the MCP servers and `unread`, as the policy input has them."""
    c: Classification = classify(PROVIDERS[provider], "POST", path, j(body))
    f = c.facts
    return f.has_tools, f.has_system, f.mcp_servers, c.unread + f.unread


NONE: tuple[GrantedMcpServer, ...] = ()


@pytest.mark.parametrize(
    ("provider", "path", "body", "expected"),
    [
        # Anthropic: remote MCP servers, server tools, skills; on Claude's every path.
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [GITHUB]},
         (True, False, (GrantedMcpServer("https://mcp.example.com/sse", "github"),), ())),
        ("anthropic", "/v1/messages/count_tokens", {**MESSAGES, "mcp_servers": [GITHUB, {**GITHUB, "name": "b"}]},
         (True, False, (GrantedMcpServer(GITHUB["url"], "github"), GrantedMcpServer(GITHUB["url"], "b")), ())),
        ("anthropic", "/v1/messages", {**MESSAGES, "container": {"skills": [{"type": "anthropic", "skill_id": "pptx"}]}},
         (True, False, NONE, ())),
        ("vertex", f"{VERTEX_PATH}/publishers/anthropic/models/claude-sonnet-4-5:rawPredict",
         {**CLAUDE, "mcp_servers": [GITHUB]}, (True, False, (GrantedMcpServer(GITHUB["url"], "github"),), ())),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke", {**CLAUDE, "mcp_servers": [GITHUB]},
         (True, False, (GrantedMcpServer(GITHUB["url"], "github"),), ())),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke",
         {**CLAUDE, "container": {"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}}, (True, False, NONE, ())),
        # OpenAI chat: the older `functions`, and web search (even `{}` turns it on).
        ("openai", "/v1/chat/completions", {"model": "gpt-4o-search-preview", "messages": USER, "web_search_options": {}},
         (True, False, NONE, ())),
        # The same on every provider's OpenAI-compatible endpoint.
        ("gemini", "/v1beta/openai/chat/completions", {"model": "gemini-2.5-flash", "messages": USER,
         "web_search_options": {}}, (True, False, NONE, ())),
        ("bedrock", "/openai/v1/chat/completions", {"model": "openai.gpt-oss-120b-1:0", "messages": USER,
         "web_search_options": {"search_context_size": "low"}}, (True, False, NONE, ())),
        ("anthropic", "/v1/chat/completions", {"model": "claude-sonnet-4-5", "messages": USER,
         "web_search_options": {}}, (True, False, NONE, ())),
        # Responses: tools of every type; MCP servers by URL, connector or tunnel; a stored prompt.
        ("openai", "/v1/responses", {"model": "gpt-5", "input": "hi", "tools": [{"type": "function", "name": "f"},
         RESPONSES_MCP]}, (True, False, (GrantedMcpServer("https://mcp.deepwiki.com/mcp", "deepwiki"),), ())),
        ("openai", "/v1/responses", {"model": "gpt-5", "input": "hi", "tools": [
            {"type": "mcp", "server_label": "Dropbox", "connector_id": "connector_dropbox"},
            {"type": "mcp", "server_label": "intranet", "tunnel_id": "tun_1"}]},
         (True, False, (GrantedMcpServer(None, "Dropbox"), GrantedMcpServer(None, "intranet")), ())),
        ("openai", "/v1/responses", {"model": "gpt-5", "input": "hi", "prompt": {"id": "pmpt_123", "version": "2"}},
         (True, True, NONE, ("stored_prompt",))),
        ("openai", "/v1/responses", {"input": "hi", "prompt": {"id": "pmpt_123"}},
         (True, True, NONE, ("model", "stored_prompt"))),
        ("bedrock", "/openai/v1/responses", {"model": "openai.gpt-oss-120b-1:0", "input": "hi",
         "tools": [RESPONSES_MCP]}, (True, False, (GrantedMcpServer("https://mcp.deepwiki.com/mcp", "deepwiki"),), ())),
        # A Realtime session's settings, for whoever holds its client secret.
        ("openai", "/v1/realtime/client_secrets", {"session": {"type": "realtime", "model": "gpt-realtime",
         "instructions": "be brief", "tools": [RESPONSES_MCP]}},
         (True, True, (GrantedMcpServer("https://mcp.deepwiki.com/mcp", "deepwiki"),), ())),
        ("openai", "/v1/realtime/client_secrets", {"session": {"type": "realtime", "model": "gpt-realtime",
         "prompt": {"id": "pmpt_1"}}}, (True, True, NONE, ("stored_prompt",))),
        ("openai", "/v1/realtime/client_secrets", {"session": {"type": "realtime", "model": "gpt-realtime"}},
         (False, False, NONE, ())),
        # An Assistant's run: its tools and instructions are the Assistant's.
        ("openai", "/v1/threads/thread_1/runs", {"assistant_id": "asst_1"}, (True, True, NONE, ("model", "assistant"))),
        ("openai", "/v1/threads/runs", {"assistant_id": "asst_1", "model": "gpt-4o"}, (True, True, NONE, ("assistant",))),
        ("openai", "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", {"tool_outputs": []},
         (True, True, NONE, ("model", "assistant"))),
        # Gemini: every kind of tool, its MCP servers, a cached content (tools and a system
        # instruction, unread), on the Gemini API, Vertex AI and their OpenAI-compatible endpoints.
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", {"contents": GEMINI_CONTENTS,
         "tools": [{"mcpServers": [{"name": "wiki", "streamableHttpTransport": {"url": "https://mcp.example/wiki"}}]},
                   {"mcp_servers": [{"name": "bare"}]}]},
         (True, False, (GrantedMcpServer("https://mcp.example/wiki", "wiki"), GrantedMcpServer(None, "bare")), ())),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", {"contents": GEMINI_CONTENTS,
         "cachedContent": "cachedContents/abc"}, (True, True, NONE, ("cached_content",))),
        ("gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"contents": GEMINI_CONTENTS,
         "cached_content": "cachedContents/abc"}, (True, True, NONE, ("cached_content",))),
        ("gemini", "/v1beta/openai/chat/completions", {"model": "gemini-2.5-flash", "messages": USER,
         "extra_body": {"google": {"cached_content": "cachedContents/abc"}}}, (True, True, NONE, ("cached_content",))),
        ("gemini", "/v1beta/openai/chat/completions", {"model": "gemini-2.5-flash", "messages": USER,
         "google": {"cachedContent": "cachedContents/abc"}}, (True, True, NONE, ("cached_content",))),
        ("vertex", f"{VERTEX_PATH}/publishers/google/models/gemini-2.5-flash:generateContent",
         {"contents": GEMINI_CONTENTS, "cachedContent": f"{VERTEX_PATH[4:]}/cachedContents/1"},
         (True, True, NONE, ("cached_content",))),
        ("vertex", f"{VERTEX_PATH}/endpoints/4567:generateContent",
         {"contents": GEMINI_CONTENTS, "cachedContent": f"{VERTEX_PATH[4:]}/cachedContents/1"},
         (True, True, NONE, ("cached_content",))),
        ("vertex", f"{VERTEX_PATH}/endpoints/openapi/chat/completions", {"model": "google/gemini-2.5-flash",
         "messages": USER, "extra_body": {"google": {"cached_content": "c"}}}, (True, True, NONE, ("cached_content",))),
        # Bedrock: Converse's toolConfig, what additionalModelRequestFields passes to the model, the
        # model families' own tool fields on InvokeModel, a stored prompt's ARN as the model.
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/converse", {**CONVERSE, "additionalModelRequestFields": {
            "tools": [{"type": "computer_20250124", "name": "computer"}], "anthropic_beta": ["computer-use-2025-01-24"]}},
         (True, False, NONE, ())),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/converse-stream",
         {**CONVERSE, "additionalModelRequestFields": {"mcp_servers": [GITHUB]}},
         (True, False, (GrantedMcpServer(GITHUB["url"], "github"),), ())),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/converse",
         {**CONVERSE, "additionalModelRequestFields": {"system": "be brief", "top_k": 5}}, (False, True, NONE, ())),
        ("bedrock", "/model/openai.gpt-oss-120b-1%3A0/invoke", {"messages": USER, "web_search_options": {}},
         (True, False, NONE, ())),
        ("bedrock", "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprompt%2FPROMPT12345%3A2/converse",
         {"promptVariables": {"topic": {"text": "x"}}}, (True, True, NONE, ("model", "stored_prompt"))),
        ("bedrock", "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprompt%2FPROMPT12345/invoke",
         {"promptVariables": {}}, (True, True, NONE, ("model", "stored_prompt"))),
    ],
)  # fmt: skip
def test_every_field_that_gives_the_model_a_tool(provider: str, path: str, body: dict, expected: tuple) -> None:
    assert seen(provider, path, body) == expected


def test_a_realtime_sessions_events_may_give_it_tools() -> None:
    c = OPENAI.classify("GET", "/v1/realtime", None, "model=gpt-realtime")
    assert (c.facts.has_tools, c.facts.has_system, c.facts.unread) == (True, True, ("session_updates",))


@pytest.mark.parametrize(
    ("provider", "path", "granting", "not_granting"),
    [
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [GITHUB]}, {**MESSAGES, "mcp_servers": []}),
        ("anthropic", "/v1/messages", {**MESSAGES, "container": {"skills": [{"skill_id": "pptx"}]}},
         {**MESSAGES, "container": "container_011"}),
        ("openai", "/v1/chat/completions", {"model": "gpt-4o", "messages": USER, "web_search_options": {}},
         {"model": "gpt-4o", "messages": USER, "web_search_options": None}),
        ("openai", "/v1/responses", {"model": "gpt-5", "prompt": {"id": "pmpt_1"}}, {"model": "gpt-5", "prompt": None}),
        ("gemini", "/v1beta/models/g:generateContent", {"cachedContent": "cachedContents/1"}, {"cachedContent": None}),
        ("bedrock", "/model/amazon.nova-pro-v1%3A0/converse", {**CONVERSE, "additionalModelRequestFields": {
         "tools": [{"name": "t"}]}}, {**CONVERSE, "additionalModelRequestFields": {"inferenceConfig": {"topK": 5}}}),
    ],
)  # fmt: skip
def test_the_same_field_granting_nothing_grants_no_tool(
    provider: str, path: str, granting: dict, not_granting: dict
) -> None:
    assert seen(provider, path, granting)[0] is True
    assert seen(provider, path, not_granting) == (False, False, NONE, ())


@pytest.mark.parametrize(
    ("provider", "path", "body", "problem"),
    [
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": GITHUB}, "'mcp_servers' is not a list"),
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [GITHUB, "https://x"]}, r"mcp_servers\[1\] is not an object"),
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [{**GITHUB, "type": "sse"}]}, r"mcp_servers\[0\].type is not 'url'"),
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [{"type": "url", "name": "a"}]}, r"mcp_servers\[0\] names no url"),
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [{**GITHUB, "url": ["https://x"]}]}, r"mcp_servers\[0\].url' is not a string"),
        ("anthropic", "/v1/messages", {**MESSAGES, "mcp_servers": [{"type": "url", "url": "https://x"}]}, r"mcp_servers\[0\] names no name"),
        ("vertex", f"{VERTEX_PATH}/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict",
         {**CLAUDE, "mcp_servers": [{}]}, r"mcp_servers\[0\].type is not 'url'"),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke", {**CLAUDE, "mcp_servers": {}}, "'mcp_servers' is not a list"),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/converse",
         {**CONVERSE, "additionalModelRequestFields": {"mcp_servers": [{"url": "https://x"}]}},
         r"additionalModelRequestFields: mcp_servers\[0\].type is not 'url'"),
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-v1%3A0/converse",
         {**CONVERSE, "additionalModelRequestFields": "tools"}, "'additionalModelRequestFields' is not an object"),
        ("openai", "/v1/responses", {"model": "gpt-5", "tools": [{"type": "mcp", "server_url": "https://x"}]},
         r"tools\[0\] names no server_label"),
        ("openai", "/v1/responses", {"model": "gpt-5", "tools": [{"type": "mcp", "server_label": "a"}]},
         r"tools\[0\] gives none of server_url, connector_id and tunnel_id"),
        ("openai", "/v1/responses", {"model": "gpt-5", "tools": [{**RESPONSES_MCP, "connector_id": "connector_gmail"}]},
         r"tools\[0\] gives more than one of server_url, connector_id and tunnel_id"),
        ("openai", "/v1/responses", {"model": "gpt-5", "tools": [{**RESPONSES_MCP, "server_url": 7}]},
         r"tools\[0\].server_url' is not a string"),
        ("openai", "/v1/responses", {"model": "gpt-5", "tools": [{"type": "function"}, {**RESPONSES_MCP, "type": "MCP"}]},
         r"tools\[1\].type is not written 'mcp'"),
        ("openai", "/v1/realtime/calls/rtc_1/accept", {"type": "realtime", "tools": [{"type": "mcp"}]},
         r"tools\[0\] names no server_label"),
        ("gemini", "/v1beta/models/g:generateContent", {"tools": [{"mcpServers": {"name": "a"}}]},
         r"tools\[0\].mcpServers is not a list"),
        ("gemini", "/v1beta/models/g:generateContent", {"tools": [{"mcpServers": [{"name": "a"}], "mcp_servers": []}]},
         "both 'mcpServers' and 'mcp_servers'"),
        ("gemini", "/v1beta/models/g:generateContent",
         {"tools": [{"mcpServers": [{"name": "a", "streamableHttpTransport": "https://x"}]}]},
         r"tools\[0\].mcpServers\[0\].streamableHttpTransport is not an object"),
        ("gemini", "/v1beta/models/g:generateContent",
         {"tools": [{"mcpServers": [{"streamableHttpTransport": {"url": ["https://x"]}}]}]}, "url' is not a string"),
        ("gemini", "/v1beta/models/g:generateContent", {"cachedContent": "a", "cached_content": "b"},
         "both 'cachedContent' and 'cached_content'"),
    ],
)  # fmt: skip
def test_an_mcp_server_not_read_exactly_is_refused(provider: str, path: str, body: dict, problem: str) -> None:
    with pytest.raises(Unreadable, match=problem) as info:
        classify(PROVIDERS[provider], "POST", path, j(body))
    assert info.value.endpoint is not None  # the audit names the endpoint refused
