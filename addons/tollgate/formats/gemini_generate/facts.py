"""A generateContent body's request facts, read at classification on every call (the messages,
system instruction, tools and MCP servers, the output bound and the answers asked for): quickly,
without the chat model, refusing (`Unreadable`) what cannot be read exactly."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.exact import CACHED_CONTENT, Unreadable, count, request_count, request_int, request_text
from tollgate.formats.request_facts import GrantedMcpServer, RequestFacts


def one_of(data: dict[str, Any], name: str, snake_name: str) -> Any:
    """A field Gemini's JSON reads under its camelCase or its snake_case name; both is refused,
    as which one Google's parser takes is not Tollgate's to guess."""
    if name in data and snake_name in data:
        raise Unreadable(f"the body sets both '{name}' and '{snake_name}'")
    return data.get(name, data.get(snake_name))


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A generateContent-shaped body's facts."""
    config = one_of(data, "generationConfig", "generation_config")
    config = config if isinstance(config, dict) else {}
    facts.message_count = count(data.get("contents"))
    facts.has_system = bool(one_of(data, "systemInstruction", "system_instruction"))
    tools = data.get("tools")
    # Every kind of tool is one: functions, Google Search, code execution, URL context, computer
    # use, file search, Maps, MCP servers…
    facts.has_tools = bool(tools)
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict):
                facts.grants(mcp_servers(one_of(tool, "mcpServers", "mcp_servers"), f"tools[{i}].mcpServers"))
    facts.max_tokens = request_int(
        one_of(config, "maxOutputTokens", "max_output_tokens"), "generationConfig.maxOutputTokens"
    )
    candidates = one_of(config, "candidateCount", "candidate_count")
    facts.answers = request_count(candidates, "generationConfig.candidateCount")
    facts.service_tier = request_text(one_of(data, "serviceTier", "service_tier"), "serviceTier")
    if one_of(data, "cachedContent", "cached_content") is not None:
        facts.unseen(CACHED_CONTENT)  # a cached content may hold tools and a system instruction


def mcp_servers(value: Any, where: str) -> tuple[GrantedMcpServer, ...]:
    """A tool's `mcpServers`: each `{name, streamableHttpTransport: {url, …}}`, either may be absent;
    anything else is refused, never skipped."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Unreadable(f"{where} is not a list")
    servers = []
    for i, server in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(server, dict):
            raise Unreadable(f"{at} is not an object")
        transport = one_of(server, "streamableHttpTransport", "streamable_http_transport")
        if transport is not None and not isinstance(transport, dict):
            raise Unreadable(f"{at}.streamableHttpTransport is not an object")
        url = request_text((transport or {}).get("url"), f"{at}.streamableHttpTransport.url")
        servers.append(GrantedMcpServer(url, request_text(server.get("name"), f"{at}.name")))
    return tuple(servers)
