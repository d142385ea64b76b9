"""The MCP servers the configuration governs (`mcp_servers.py`), one request to them
(`mcp_exchange.py`) and what is decided of it: the policy's input (`mcp_input.py`), its sessions'
owners (`mcp_sessions.py`), its retries (`mcp_rounds.py`), its limits (`mcp_limits.py`), the answer
guardrails on its results (`result_guard.py`) and the tools a tools/list answer keeps (`tool_checks.py`)."""
