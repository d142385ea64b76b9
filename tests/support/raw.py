"""Raw HTTP/1.1 requests through the proxy, byte for byte as a test writes them: what no SDK sends
(odd paths, encodings, bodies, hosts), through CONNECT and TLS with Tollgate's CA, or as plain HTTP."""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `send`'s TLS server name by default: the Host header's host.
SAME = "<the host>"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    trailers: list[str] = field(default_factory=list)  # a chunked body's trailer lines

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    proxy_port: int,
    bundle: Path,
    host: str,
    target: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    connect: str | None = None,
    tls: bool = True,
    chunked: bool = False,
    trailers: list[tuple[str, str]] | None = None,
    timeout: float = 20.0,
    sni: str | None = SAME,
    scheme: str = "http",
) -> RawResponse:
    """One request to `host` (its Host header) through the proxy; `connect` is the CONNECT
    authority (default host:443), `sni` the TLS server name (default host's name; None: none).
    With `tls=False` the request goes in cleartext to the proxy in absolute form, its URL's scheme
    `scheme` (`https`: an https:// URL sent without CONNECT). `trailers` go after a chunked body."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", host))
    if chunked:
        pairs.append(("Transfer-Encoding", "chunked"))
        fields = b"".join(f"{name}: {value}\r\n".encode() for name, value in trailers or [])
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _pieces(body)) + b"0\r\n" + fields + b"\r\n"
    else:
        if body and "content-length" not in names:
            pairs.append(("Content-Length", str(len(body))))
        payload = body
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    try:
        if tls:
            sock.sendall(
                f"CONNECT {connect or host + ':443'} HTTP/1.1\r\nHost: {connect or host + ':443'}\r\n\r\n".encode()
            )
            head = _read_head(sock)
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"CONNECT refused: {head!r}")
            context = ssl.create_default_context(cafile=str(bundle))
            if sni is None:
                context.check_hostname = False  # the proxy's certificate is still verified
            server_name = host.rstrip(".").split(":")[0] if sni is SAME else sni
            sock = context.wrap_socket(sock, server_hostname=server_name)
            line = f"{method} {target} HTTP/1.1\r\n"
        else:
            line = f"{method} {scheme}://{host}{target} HTTP/1.1\r\n"
        head = line + "".join(f"{n}: {v}\r\n" for n, v in pairs) + "Connection: close\r\n\r\n"
        sock.sendall(head.encode("latin-1") + payload)
        return _read_response(sock)
    finally:
        sock.close()


def tunnel(proxy_port: int, target: str) -> tuple[socket.socket, bytes]:
    """A CONNECT to `target` (host:port): the socket and the proxy's whole answer, its head and the
    body its Content-Length gives."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = _read_head(sock)
    fields = head.lower().split(b"\r\n")
    length = next((int(f.split(b":")[1]) for f in fields if f.startswith(b"content-length:")), 0)
    body = b""
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return sock, head + body


def _pieces(body: bytes, size: int = 1000) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or []


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(sock: socket.socket) -> RawResponse:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, trailers = _dechunk(body)
        return RawResponse(status, headers, body, trailers)
    return RawResponse(status, headers, body)


def _dechunk(data: bytes) -> tuple[bytes, list[str]]:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out, [line.decode("latin-1") for line in data.split(b"\r\n") if line]
        out += data[:size]
        data = data[size + 2 :]
    return out, []


def get_through_tunnel(raw: socket.socket, context: ssl.SSLContext) -> tuple[dict[str, str], bytes]:
    """`GET /` over TLS (checked with `context`, for localhost) on `raw`, a tunnel the proxy opened:
    the certificate's issuer the client saw, and the whole answer."""
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return issuer, answer
