"""`tollgate console`'s web server: the page and the JSON API over the audit, read-only, behind a
token.

Every request needs the token or a session: `?token=` once (answered with a session of its own in
an HttpOnly, SameSite=Strict cookie and a redirect to the same address without the token), the
session's cookie, or the token as `Authorization: Bearer`; else 401. The token is never put in a
cookie (another service on the same host name could read it); a session ends with the console or
after 12 hours. Only GET and HEAD; every answer has `Content-Security-Policy: default-src 'self'`
and no CORS header. Nothing is logged of a request (its query holds the token at the first visit).
Python's own `http.server`: one thread per connection, so that a live stream does not hold the
others; a connection's TLS handshake is made in its own thread too, with a timeout, so that a
client that connects and says nothing holds no one else."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from tollgate.console.follow import Audit
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import BadQuery, Forbidden, Query, Views, as_csv

COOKIE = "tollgate_session"
OLD_COOKIE = "tollgate_console"  # emptied at sign-in, so that no token stays in a cookie of this name
SESSION_S = 12 * 3600  # a session ends after this (or with the console); the token signs in again
IDLE_S = 10.0  # a connection silent this long is closed: in its TLS handshake, before or between requests
BACKLOG = 128  # connections waiting to be taken, as a page's burst of requests or many idle ones
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
        self,
        audit: Audit,
        views: Views,
        host: str,
        port: int,
        token: str,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,  # the wall's: a session's 12 hours go on while the machine sleeps
    ) -> None:
        self.audit = audit
        self.views = views
        self.token = token
        self.tls = tls is not None
        self.stopping = threading.Event()
        # Sessions live in memory only, so that a restart ends them; kept by their SHA-256, so that
        # looking one up tells nothing of the others.
        self.sessions: dict[bytes, float] = {}  # → when it ends, by the clock
        self.sessions_lock = threading.Lock()
        self.clock = clock
        self.server = _Server((host, port), _handler(self), tls)

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
        with self.sessions_lock:
            self.sessions.clear()

    def is_token(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def open_session(self) -> str:
        """A new session id, valid for SESSION_S; the sessions ended are forgotten."""
        session = secrets.token_urlsafe(32)
        now = self.clock()
        with self.sessions_lock:
            for ended in [key for key, end in self.sessions.items() if end <= now]:
                del self.sessions[ended]
            self.sessions[_digest(session)] = now + SESSION_S
        return session

    def authorized(self, bearer: str | None, sessions: Iterable[str]) -> bool:
        """The token as a bearer, or any of the sessions given still open."""
        if self.is_token(bearer):
            return True
        now = self.clock()
        with self.sessions_lock:
            return any(self.sessions.get(_digest(s), 0.0) > now for s in sessions)


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode()).digest()


class _Server(ThreadingHTTPServer):
    """Connections taken as they come: each one's TLS handshake is made in its own thread, with a
    timeout (made in the accepting thread, one client that says nothing would stop all others)."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None):
        self.tls = tls
        if ":" in address[0]:  # --listen [::1]:PORT
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(IDLE_S)  # kept by the TLS socket and the handler's reads and writes
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError:  # no handshake in time, or a failed one: this connection alone ends
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)


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
            if given is not None:  # the sign-in link: the token exchanged for a session
                if not console.is_token(given[-1]):
                    return self._unauthenticated()
                attributes = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if console.tls else "")
                rest = urlencode(query, doseq=True)
                # One leading slash: `//host` or `/\\host` would send the browser to another site.
                location = "/" + parts.path.lstrip("/\\") + (f"?{rest}" if rest else "")
                return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", [
                    ("Location", location),
                    ("Set-Cookie", f"{COOKIE}={console.open_session()}; Max-Age={SESSION_S}{attributes}"),
                    ("Set-Cookie", f"{OLD_COOKIE}=; Max-Age=0{attributes}"),
                ])  # fmt: skip
            if not console.authorized(self._bearer(), self._sessions()):
                return self._unauthenticated()
            path = parts.path
            if path in STATIC:
                name, kind = STATIC[path]
                body = resources.files("tollgate.console").joinpath("static", name).read_bytes()
                return self._send(HTTPStatus.OK, body, kind, head=head)
            if path == "/api/events/live":
                return self._live(head, query)
            fmt = query.pop("format", ["json"])[-1]
            try:
                answer = console.views.answer(path, query)
            except KeyError:
                return self._send(HTTPStatus.NOT_FOUND, b'{"error": "not_found"}', "application/json", head=head)
            except BadQuery as e:
                body = orjson.dumps({"error": "bad_request", "message": str(e)})
                return self._send(HTTPStatus.BAD_REQUEST, body, "application/json", head=head)
            except Forbidden:
                return self._send(HTTPStatus.FORBIDDEN, b'{"error": "forbidden"}', "application/json", head=head)
            if fmt == "csv":
                name = path.rsplit("/", 1)[-1]
                return self._send(HTTPStatus.OK, as_csv(answer, query).encode(), "text/csv; charset=utf-8",
                                  {"Content-Disposition": f'attachment; filename="{name}.csv"'}, head=head)  # fmt: skip
            return self._send(HTTPStatus.OK, orjson.dumps(answer), "application/json", head=head)

        def _bearer(self) -> str | None:
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else None

        def _sessions(self) -> list[str]:
            """Every value of a cookie named COOKIE: another service on the same host name may have
            set one of its own beside the console's."""
            pairs = (p.partition("=") for h in self.headers.get_all("Cookie", []) for p in h.split(";"))
            return [value.strip() for name, _, value in pairs if name.strip() == COOKIE]

        def _unauthenticated(self) -> None:
            self._send(HTTPStatus.UNAUTHORIZED, b'{"error": "unauthenticated"}', "application/json")

        def _send(
            self,
            status: HTTPStatus,
            body: bytes,
            kind: str,
            headers: dict[str, str] | list[tuple[str, str]] | None = None,
            head: bool = False,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            extra = list(headers.items() if isinstance(headers, dict) else headers or [])
            for name, value in [*SECURITY_HEADERS.items(), *extra]:
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _live(self, head: bool, query: Query, viewer: Viewer = TOKEN_HOLDER) -> None:
            """One `data: <record>` per record written after the stream opened that `viewer` may see
            (of the query's `instance`, when it names one)."""
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if head:
                return
            views = console.views
            seen = views.live_start()
            quiet_since = time.monotonic()
            try:
                while not console.stopping.is_set():
                    lines, seen = views.newer(seen, query, viewer)
                    if lines:
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
