"""`tollgate console`'s web server: the page and the JSON API over the audit, read-only, behind a
token.

Every request needs the token: `?token=` once (answered with an HttpOnly, SameSite=Strict cookie
and a redirect to the same address without it), the cookie, or `Authorization: Bearer`; else 401.
Only GET and HEAD; every answer has `Content-Security-Policy: default-src 'self'` and no CORS
header. Nothing is logged of a request (its query holds the token at the first visit).
Python's own `http.server`: one thread per connection, so that a live stream does not hold the
others."""

from __future__ import annotations

import hmac
import secrets
import ssl
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from tollgate.console.follow import Audit
from tollgate.console.views import BadQuery, Views, as_csv

COOKIE = "tollgate_console"
POLL_S = 0.2  # how often the files are looked at for new records
KEEPALIVE_S = 15.0  # a live stream's comment line when nothing was written, so that proxies keep it open
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Console:
    """The server: `serve_forever` in the caller's thread, the files followed in another."""

    def __init__(
        self, audit: Audit, views: Views, host: str, port: int, token: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self.audit = audit
        self.views = views
        self.token = token
        self.tls = tls is not None
        self.stopping = threading.Event()
        handler = _handler(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def follow(self) -> None:
        """New lines read every POLL_S; the chain checked behind them, a chunk at a time, so that
        a request waits for at most one chunk."""
        while not self.stopping.wait(0 if self.audit.checking else POLL_S):
            try:
                self.audit.catch_up()
                self.audit.save(due=True)
                self.audit.verify_pending()
            except OSError:
                pass  # a file between rotations: looked at again at the next poll

    def serve(self) -> None:
        follower = threading.Thread(target=self.follow, name="tollgate-console-follow", daemon=True)
        follower.start()
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.stopping.set()
            self.server.server_close()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()

    def authorized(self, bearer: str | None, cookie: str | None) -> bool:
        return any(v is not None and hmac.compare_digest(v.encode(), self.token.encode()) for v in (bearer, cookie))


def _handler(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tollgate-console"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a request's line holds the token at the first visit: nothing is logged

        def do_GET(self) -> None:
            self._get(head=False)

        def do_HEAD(self) -> None:
            self._get(head=True)

        def _refuse_method(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "method_not_allowed"}', "application/json",
                       {"Allow": "GET, HEAD"})  # fmt: skip

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

        def _get(self, head: bool) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            given = query.pop("token", None)
            if given is not None:
                if not console.authorized(given[-1], None):
                    return self._unauthenticated()
                cookie = f"{COOKIE}={console.token}; Path=/; HttpOnly; SameSite=Strict" + (
                    "; Secure" if console.tls else ""
                )
                rest = urlencode(query, doseq=True)
                location = parts.path + (f"?{rest}" if rest else "")
                return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": location, "Set-Cookie": cookie})
            if not console.authorized(self._bearer(), self._cookie()):
                return self._unauthenticated()
            path = parts.path
            if path in STATIC:
                name, kind = STATIC[path]
                body = resources.files("tollgate.console").joinpath("static", name).read_bytes()
                return self._send(HTTPStatus.OK, body, kind, head=head)
            if path == "/api/events/live":
                return self._live(head)
            fmt = query.pop("format", ["json"])[-1]
            try:
                answer = console.views.answer(path, query)
            except KeyError:
                return self._send(HTTPStatus.NOT_FOUND, b'{"error": "not_found"}', "application/json", head=head)
            except BadQuery as e:
                body = orjson.dumps({"error": "bad_request", "message": str(e)})
                return self._send(HTTPStatus.BAD_REQUEST, body, "application/json", head=head)
            if fmt == "csv":
                name = path.rsplit("/", 1)[-1]
                return self._send(HTTPStatus.OK, as_csv(answer).encode(), "text/csv; charset=utf-8",
                                  {"Content-Disposition": f'attachment; filename="{name}.csv"'}, head=head)  # fmt: skip
            return self._send(HTTPStatus.OK, orjson.dumps(answer), "application/json", head=head)

        def _bearer(self) -> str | None:
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else None

        def _cookie(self) -> str | None:
            jar = SimpleCookie()
            try:
                jar.load(self.headers.get("Cookie", ""))
            except Exception:  # a malformed Cookie header is no token
                return None
            morsel = jar.get(COOKIE)
            return None if morsel is None else morsel.value

        def _unauthenticated(self) -> None:
            self._send(HTTPStatus.UNAUTHORIZED, b'{"error": "unauthenticated"}', "application/json")

        def _send(
            self, status: HTTPStatus, body: bytes, kind: str, headers: dict[str, str] | None = None, head: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _live(self, head: bool) -> None:
            """One `data: <record>` per record written after the stream opened."""
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if head:
                return
            audit = console.audit
            with audit.lock:
                seen = len(audit.index)
            quiet_since = time.monotonic()
            try:
                while not console.stopping.is_set():
                    lines = _newer(audit, seen)
                    if lines:
                        seen += len(lines)
                        self.wfile.write(b"".join(b"data: " + line.rstrip(b"\r\n") + b"\n\n" for line in lines))
                        self.wfile.flush()
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since > KEEPALIVE_S:
                        self.wfile.write(b": still here\n\n")
                        self.wfile.flush()
                        quiet_since = time.monotonic()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                return

    return Handler


def _newer(audit: Audit, seen: int) -> list[bytes]:
    """The lines of the records after the first `seen` as the stream shows them (`Audit.shown`),
    waiting a moment for one when none is."""
    with audit.grew:
        if len(audit.index) <= seen:
            audit.grew.wait(POLL_S * 2)
        total = len(audit.index)
        if total <= seen:
            return []
        recent = [audit.recent(n) for n in range(seen, total)]
        if None not in recent:
            return [audit.shown(n, line) for n, line in enumerate(cast(list[bytes], recent), seen)]
    # More than the recent lines kept: read back.
    return [audit.shown(n, audit.line(n)) for n in range(seen, total)]
