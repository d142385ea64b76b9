"""Requests no SDK sends, written byte for byte through the proxy (CONNECT, then TLS with the
proxy's CA), for the cases an SDK cannot make."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

TIMEOUT = 30.0


def _read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def _read_response(sock: socket.socket) -> bytes:
    """One answer with a Content-Length (the proxy's own answers), on a connection it keeps open."""
    answer = b""
    while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def proxy_exchange(port: int, request: bytes) -> bytes:
    """Send one request to the proxy itself (CONNECT, or an absolute-form plain HTTP request) and
    return its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        raw.sendall(request)
        return _read_response(raw)


def https_exchange(port: int, host: str, request: bytes, bundle: Path) -> bytes:
    """Send one request (which should say `Connection: close`) to `host`:443 through the proxy's
    CONNECT tunnel; return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        established = raw.recv(4096)
        if not established.startswith(b"HTTP/1.1 200"):
            raise AssertionError(f"CONNECT refused: {established!r}")
        context = ssl.create_default_context(cafile=str(bundle))
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(request)
            return _read_all(tls)


def http_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request with `Host`, `Content-Length` and `Connection: close` added."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
