"""A fake MCP server for the end-to-end tests: the official SDK's `MCPServer` (Streamable HTTP)
over TLS on 127.0.0.1, run in `.venv-clients` as its own process. It writes each request it
receives (method, path, the headers a test asserts on) to a JSON-lines file, and answers as JSON
(`--json`) or by server-sent events.

    python mcp_server.py PORT CERT KEY LOG [--json]
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer, Resolve
from mcp.server.mcpserver.resolve import Elicit
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field

# A credential the server refuses, as a server with OAuth does: 401 and where to get a token.
REFUSED = "Bearer refused-by-the-server"
HEADERS = ("authorization", "x-api-key", "mcp-session-id", "host", "x-tollgate-request-id", "mcp-name", "mcp-param-to")


# What the `customer` tool, resource and prompt carry back, made here at run time (this checkout's
# source holds no such value whole): a customer's e-mail address and card number.
CUSTOMER = {"email": "jane.doe" + "@" + "acme-corp.com", "card": "4111 1111 " + "1111 1111"}


class Approval(BaseModel):
    note: str


def ask_why() -> Elicit[Approval]:
    return Elicit("Why?", Approval)


def app(log_path: str, json_response: bool):
    server = MCPServer("fake")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @server.tool()
    def delete_everything(really: bool) -> str:
        """A tool a policy denies."""
        return "deleted"

    @server.tool()
    def fail(reason: str) -> str:
        """A tool that fails (its result is marked isError)."""
        raise ValueError(reason)

    @server.tool()
    async def slow(seconds: float) -> str:
        """A tool that answers late (as JSON, its answer's headers come only with the result)."""
        await anyio.sleep(seconds)
        return "late"

    @server.tool()
    def send_mail(to: Annotated[str, Field(json_schema_extra={"x-mcp-header": "To"})], text: str) -> str:
        """A tool whose address a 2026-07-28 client mirrors into `Mcp-Param-To` (the server checks it)."""
        return f"sent to {to}"

    @server.tool()
    def approve(item: str, approval: Annotated[Approval, Resolve(ask_why)]) -> str:
        """A tool that asks its client why (at 2026-07-28 an `input_required` result, then a retry)."""
        return f"approved {item}: {approval.note}"

    @server.tool()
    def customer(field: str) -> str:
        """A tool whose result carries a value its caller never gave (in its text and its
        structuredContent)."""
        return f"on file: {CUSTOMER[field]}, since 2019"

    @server.resource("notes://hello")
    def hello() -> str:
        return "hello from the notes"

    @server.resource("notes://customer")
    def customer_note() -> str:
        return f"write to {CUSTOMER['email']} first"

    @server.prompt()
    def follow_up() -> str:
        """A prompt that carries a customer's address."""
        return f"Write a follow-up to {CUSTOMER['email']}."

    inner = server.streamable_http_app(
        json_response=json_response,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def logged(scope, receive, send):
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        body = b""
        more = True
        while more:  # the whole body, then given to the server as it came
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = {name: headers.get(name) for name in HEADERS}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        messages = parsed if isinstance(parsed, list) else [parsed] if parsed else []
        calls = [(m.get("method"), (m.get("params") or {}).get("name")) for m in messages if isinstance(m, dict)]
        # A tool's or a prompt's arguments as they arrived (the tests plant no real secret).
        arguments = [(m.get("params") or {}).get("arguments") for m in messages if isinstance(m, dict)]
        # A retry's answers to an `input_required` result, and the state it echoes.
        answers = [(m.get("params") or {}).get("inputResponses") for m in messages if isinstance(m, dict)]
        states = [(m.get("params") or {}).get("requestState") for m in messages if isinstance(m, dict)]
        with open(log_path, "a") as log:
            entry = {"method": scope["method"], "path": scope["path"], "headers": seen, "calls": calls,
                     "arguments": arguments, "answers": answers, "states": states}  # fmt: skip
            log.write(json.dumps(entry) + "\n")
        if headers.get("authorization") == REFUSED:
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer resource_metadata="https://127.0.0.1/.well-known/oauth-protected-resource"'),
            ]})  # fmt: skip
            await send({"type": "http.response.body", "body": b'{"error": "invalid_token"}'})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await inner(scope, replay, send)

    return logged


def main() -> None:
    port, cert, key, log_path = sys.argv[1:5]
    json_response = "--json" in sys.argv[5:]
    uvicorn.run(
        app(log_path, json_response),
        host="127.0.0.1",
        port=int(port),
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
