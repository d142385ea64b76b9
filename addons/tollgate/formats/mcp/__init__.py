"""MCP's Streamable HTTP transport: the JSON-RPC messages a client POSTs (`messages`), and what the
server's answer, as JSON or server-sent events, says of each request (`answers`)."""
