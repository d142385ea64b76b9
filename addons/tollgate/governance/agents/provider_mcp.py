"""The MCP servers a request has its provider call itself, and which of their tools the provider
calls without the agent's approval: a call of one never reaches the agent, so Tollgate cannot decide
it. Where such a tool may be an acting one (`agents.acting_tools`), the request is refused: its
calls would act undecided. `*` stands for tools the request does not name (every tool of a server
that lists none, a filter by the server's own `read_only` annotations), which may be any.

- The Responses API's `mcp` tool: without approval where `require_approval` is `never`, or its
  object's `never` filter names them; `allowed_tools` (a list of names, or `{tool_names}`) narrows
  them. Absent or `always`, each call comes to the agent as an `mcp_approval_request`, which is
  decided. A stored prompt (`prompt: {id}`) may hold any such tool. A Realtime session's `mcp`
  tool (`session.update`, `response.create`): every tool it allows, approval or not, for its
  approval requests are not decided there.
- Anthropic's `mcp_servers`: always without approval; a server's `tool_configuration`
  (`enabled`, `allowed_tools`) narrows them.
- Gemini's `mcpServers` in a tool: always without approval, every tool of the server."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import dicts, mapping
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.taint import matches

EVERY = "*"  # tools the request does not name: any of the server's
UNDECIDED = (
    "an MCP server's tools the provider calls without approval may act, undecided (ask for approval,"
    " or name only tools that do not act)"
)


def _names(value: Any) -> list[str] | None:
    """Tool names a filter lists (a list of them, or `{tool_names}`); None where it names none."""
    listed = value.get("tool_names") if isinstance(value, dict) else value
    if isinstance(listed, list) and all(isinstance(n, str) for n in listed):
        if isinstance(value, dict) and value.get("read_only"):
            return None  # the server's annotations choose more of them
        return listed
    return None


def _narrowed(unapproved: list[str], allowed: Any) -> list[str]:
    """The tools without approval that the request allows at all (`allowed_tools`)."""
    if allowed is None:
        return unapproved
    named = _names(allowed)
    if named is None:
        return unapproved
    return named if EVERY in unapproved else [n for n in unapproved if n in named]


def responses_unapproved(body: dict[str, Any], approvals_decided: bool = True) -> list[str]:
    """The tools of a Responses body's `mcp` servers that the provider calls without approval (a
    decided one: where approval requests are not decided, every tool allowed)."""
    # A stored prompt (`prompt: {id}`) may hold any tools, Tollgate cannot read which: taken as given.
    out: list[str] = [] if body.get("prompt") is None else [EVERY]
    for tool in dicts(body.get("tools")):
        if tool.get("type") != "mcp":
            continue
        approval = tool.get("require_approval", "always") if approvals_decided else "never"
        if approval is None or approval == "always":
            continue
        if approval == "never":
            unapproved = [EVERY]
        elif isinstance(approval, dict) and set(approval) <= {"always", "never"}:
            never = approval.get("never")
            unapproved = [] if never is None else (_names(never) or [EVERY])
        else:  # a value the provider may read as `never`: not guessed at
            unapproved = [EVERY]
        out += _narrowed(unapproved, tool.get("allowed_tools"))
    return out


def messages_unapproved(body: dict[str, Any]) -> list[str]:
    """The tools of a Messages body's `mcp_servers` (all called without approval) it enables."""
    out: list[str] = []
    for server in dicts(body.get("mcp_servers")):
        configuration = server.get("tool_configuration")
        if configuration is not None and not isinstance(configuration, dict):
            out.append(EVERY)
            continue
        configuration = mapping(configuration)
        if configuration.get("enabled") is False:
            continue
        out += _narrowed([EVERY], configuration.get("allowed_tools"))
    return out


def gemini_unapproved(body: dict[str, Any]) -> list[str]:
    """Every tool of a Gemini body's `mcpServers` (all called without approval)."""
    tools = [*dicts(body.get("tools")), *dicts(mapping(body.get("request")).get("tools"))]
    servers = (s for t in tools for key in ("mcpServers", "mcp_servers") for s in dicts(t.get(key)))
    return [EVERY for _ in servers]


def undecided(unapproved: list[str], settings: AgentsSettings) -> str | None:
    """Why a request is refused: a tool called without approval may be an acting one; None if not."""
    acting = settings.acting_tools
    if any((name == EVERY and bool(acting)) or matches(name, acting) for name in unapproved):
        return UNDECIDED
    return None
