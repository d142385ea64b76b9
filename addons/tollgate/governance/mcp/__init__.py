"""The MCP servers the configuration governs (`mcp_servers.py`), and one request to them
(`mcp_exchange.py`)."""
