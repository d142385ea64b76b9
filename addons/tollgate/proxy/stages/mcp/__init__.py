"""The stage of calls to the MCP servers of `mcp.servers`."""
