"""`tollgate console`'s web server: the page and the JSON API over the audit, read-only, behind a
token or a sign-in.

Without `console.sign_in`, every request needs the token or a session: `?token=` once (answered
with a session of its own in an HttpOnly, SameSite=Strict cookie and a redirect to the same address
without the token), the session's cookie, or the token as `Authorization: Bearer`; else 401.
With it, people sign in with the company's identity provider (`sign_in.py`): a page asked for
without a session is sent to the issuer, an API request without one is 401, `/auth/callback`
opens a session (SameSite=Lax: the browser comes back from the issuer's site) holding who signed
in, `/auth/logout` ends it; the token is then a bearer's only (`?token=` is 401) and its holder
sees everything. The token is never put in a cookie (another service on the same host name could
read it); a session ends after 12 hours, and with the console unless the sessions live in
PostgreSQL (`session_table.py`: every replica's, across restarts); where they live cannot be
reached: 503 with the reason (a page: a page that says so and asks again by itself), never 401.
Every API request of a session or of the token is recorded (`access_log.py`). Only GET and
HEAD; every answer has `Content-Security-Policy: default-src 'self'` and no CORS header. Nothing else is logged of a
request (its query holds the token at the first visit); a failed sign-in's reason goes to standard
error.
Python's own `http.server`: one thread per connection, so that a live stream does not hold the
others; a connection's TLS handshake is made in its own thread too, with a timeout, so that a
client that connects and says nothing holds no one else."""

from __future__ import annotations

import hmac
import html
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from tollgate.console.access_log import AccessLog
from tollgate.console.invoice_results import Unreadable
from tollgate.console.sessions import SESSION_S, MemorySessions, Sessions, Unavailable
from tollgate.console.sign_in import SignIn, SignInFailed
from tollgate.console.source import Source
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import BadQuery, Forbidden, Query, Views, as_csv

COOKIE = "tollgate_session"
PRE_COOKIE = "tollgate_sign_in"  # a sign-in under way (sign_in.py): its state, nonce and PKCE verifier
ACCESS_LIMIT = 100  # /api/access's records by default
ACCESS_MAX = 10_000  # at most
OLD_COOKIE = "tollgate_console"  # emptied at sign-in, so that no token stays in a cookie of this name
RETRY_PAGE_S = 5  # a page answered 503 (the sessions' database away) asks again after this
LIVE_CHECK_S = 2.0  # how often a live stream looks whether its session is still open
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
        source: Source,
        views: Views,
        host: str,
        port: int,
        token: str | None,  # None: no token (with sign_in and no console.token)
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,  # the wall's: a session's 12 hours go on while the machine sleeps
        sign_in: SignIn | None = None,
        access: AccessLog | None = None,
        sessions: Sessions | None = None,  # None: in memory, ended with the console
    ) -> None:
        self.source = source
        self.views = views
        self.token = token
        self.tls = tls is not None
        self.sign_in = sign_in
        self.access = access
        self.stopping = threading.Event()
        self.sessions = sessions if sessions is not None else MemorySessions(clock)
        self.clock = clock
        self.server = _Server((host, port), self, tls)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def follow(self) -> None:
        """New lines read every POLL_S; the chain checked behind them, a chunk at a time, so that
        a request waits for at most one chunk."""
        while not self.stopping.wait(0 if self.source.checking else POLL_S):
            try:
                self.source.catch_up()
                self.source.save(due=True)
                self.source.verify_pending()
            except OSError:
                pass  # a file between rotations: looked at again at the next poll
            if self.access is not None:
                self.access.flush()  # the polls folded in a minute that is over
            self.sessions.tidy()

    def serve(self) -> None:
        follower = threading.Thread(target=self.follow, name="tollgate-console-follow", daemon=True)
        follower.start()
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.stopping.set()
            self.server.server_close()
            if self.access is not None:
                self.access.close()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.sessions.close()

    def is_token(self, given: str | None) -> bool:
        return given is not None and self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def open_session(self, viewer: Viewer = TOKEN_HOLDER) -> str:
        """A new session id for `viewer`, valid for SESSION_S (Unavailable: it cannot be kept)."""
        return self.sessions.open(viewer)

    def viewer(self, bearer: str | None, sessions: Iterable[str]) -> Viewer | None:
        """Who asks: the token's holder (as a bearer), or the person of the first of the sessions
        given still open; None when neither. Unavailable when the sessions cannot be looked at."""
        if self.is_token(bearer):
            return TOKEN_HOLDER
        return self.sessions.viewer(sessions)

    def end_sessions(self, sessions: Iterable[str]) -> Viewer | None:
        """The sessions given ended; who the first still open was."""
        return self.sessions.end(sessions)


class _Server(ThreadingHTTPServer):
    """Connections taken as they come: each one's TLS handshake is made in its own thread, with a
    timeout (made in the accepting thread, one client that says nothing would stop all others)."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], console: Console, tls: ssl.SSLContext | None):
        self.console, self.tls = console, tls
        if ":" in address[0]:  # --listen [::1]:PORT
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a browser drops the connections it opened ahead) is none of
        the console's faults: nothing said. Anything else, as socketserver says it."""
        if not isinstance(sys.exception(), ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

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


class _Replies(BaseHTTPRequestHandler):
    """HTTP's part of a request to the console: how an answer is written (with the security
    headers, for HEAD without its body), the methods other than GET and HEAD refused, and nothing
    logged."""

    server_version = "tollgate-console"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request's line holds the token at the first visit: nothing is logged

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "method_not_allowed"}', "application/json",
                   {"Allow": "GET, HEAD"})  # fmt: skip

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

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


class _Handler(_Replies):
    """One request to the console: the token or a session, the page's files, the API
    (`_ApiAnswers`), the live stream, sign-in (`_SignInPages`)."""

    server: _Server

    @property
    def console(self) -> Console:
        return self.server.console

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def _get(self, head: bool) -> None:
        try:
            self._answer(head)
        except Unavailable as e:
            self._unavailable(e, head)

    def _answer(self, head: bool) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if self.console.sign_in is not None and parts.path.startswith("/auth/"):
            return _SignInPages(self, self.console.sign_in).answer(parts.path, query)
        given = query.pop("token", None)
        if given is not None:  # the sign-in link: the token exchanged for a session
            # With sign_in, the token is a bearer's only: never in an address, where it is kept.
            if self.console.sign_in is not None or not self.console.is_token(given[-1]):
                return self._unauthenticated()
            attributes = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.console.tls else "")
            rest = urlencode(query, doseq=True)
            # One leading slash: `//host` or `/\\host` would send the browser to another site.
            location = "/" + parts.path.lstrip("/\\") + (f"?{rest}" if rest else "")
            return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", [
                ("Location", location),
                ("Set-Cookie", f"{COOKIE}={self.console.open_session()}; Max-Age={SESSION_S}{attributes}"),
                ("Set-Cookie", f"{OLD_COOKIE}=; Max-Age=0{attributes}"),
            ])  # fmt: skip
        viewer = self.console.viewer(self._bearer(), self._sessions())
        path = parts.path
        if viewer is None:
            # A page the browser goes to: to the issuer, and back here once signed in. Not what
            # a page loads by itself (a favicon): it would start a sign-in over the one under way.
            navigates = self.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
            if self.console.sign_in is not None and not path.startswith("/api/") and navigates:
                return _SignInPages(self, self.console.sign_in).begin("/" + self.path.lstrip("/\\"))
            return self._unauthenticated()
        if path in STATIC:
            name, kind = STATIC[path]
            body = resources.files("tollgate.console").joinpath("static", name).read_bytes()
            return self._send(HTTPStatus.OK, body, kind, head=head)
        if path == "/metrics":
            status, body, kind = _ApiAnswers(self.console).metrics(viewer)
            self._record(viewer, path, {}, status)
            return self._send(status, body, kind, head=head)
        if not path.startswith("/api/"):
            return self._send(HTTPStatus.NOT_FOUND, b'{"error": "not_found"}', "application/json", head=head)
        asked = {k: list(v) for k, v in query.items()}
        if path == "/api/events/live":
            self._record(viewer, path, asked, HTTPStatus.OK)  # recorded as it opens: it lasts
            # It ends with the session it was opened in (a logout, its 12 hours, a new sign-in).
            return self._live(head, query, viewer, self._still_open(viewer))
        status, body, kind, headers = _ApiAnswers(self.console).answer(viewer, path, query)
        self._record(viewer, path, asked, status)  # before the answer: no read goes unrecorded
        self._send(status, body, kind, headers, head=head)

    def _record(self, viewer: Viewer, path: str, query: dict[str, list[str]], status: HTTPStatus) -> None:
        if self.console.access is not None:
            self.console.access.request(viewer, path, query, int(status))

    def _bearer(self) -> str | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def _sessions(self) -> list[str]:
        """Every value of a cookie named COOKIE: another service on the same host name may have
        set one of its own beside the console's."""
        return self._cookies(COOKIE)

    def _cookies(self, cookie: str) -> list[str]:
        pairs = (p.partition("=") for h in self.headers.get_all("Cookie", []) for p in h.split(";"))
        return [value.strip() for name, _, value in pairs if name.strip() == cookie]

    def _still_open(self, viewer: Viewer) -> Callable[[], bool]:
        """Whether the session (or the token) this request came with still names `viewer`: looked
        at every LIVE_CHECK_S at most (in PostgreSQL, a query each time); False once it cannot be."""
        bearer, sessions = self._bearer(), self._sessions()
        looked = [time.monotonic(), True]

        def still_open() -> bool:
            if time.monotonic() - looked[0] >= LIVE_CHECK_S:
                try:
                    looked[1] = self.console.viewer(bearer, sessions) == viewer
                except Unavailable:
                    looked[1] = False  # the page opens the stream again, and is told why
                looked[0] = time.monotonic()
            return bool(looked[1])

        return still_open

    def _unavailable(self, e: Unavailable, head: bool) -> None:
        """Who asks cannot be known (the sessions' database away): 503 with the reason; a page the
        browser goes to says so, and asks again by itself."""
        retry = {"Retry-After": str(RETRY_PAGE_S)}
        navigates = self.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
        if urlsplit(self.path).path.startswith("/api/") or not navigates:
            body = orjson.dumps({"error": "unavailable", "message": e.reason})
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json", retry, head=head)
        text = f"The console cannot reach its database ({e.reason}). This page tries again every {RETRY_PAGE_S} s."
        # Loaded again at the address asked for without its fragment (the view, `#people`): to the
        # same address with it, a browser would only move within the page. A `?token=` address
        # is loaded again as it is (it names no view).
        again, parts = str(RETRY_PAGE_S), urlsplit(self.path)
        if "token" not in parse_qs(parts.query):
            again += "; url=/" + parts.path.lstrip("/\\") + (f"?{parts.query}" if parts.query else "")
        page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Console unavailable</title>'
                f'<meta http-equiv="refresh" content="{html.escape(again)}"></head><body><h1>Console unavailable</h1>'
                f'<p>{html.escape(text)}</p></body></html>')  # fmt: skip
        self._send(HTTPStatus.SERVICE_UNAVAILABLE, page.encode(), "text/html; charset=utf-8",
                   {**retry, "Refresh": again}, head=head)  # fmt: skip

    def _unauthenticated(self) -> None:
        # With sign_in, the page goes there to sign in again.
        again = {"X-Tollgate-Sign-In": "/auth/login"} if self.console.sign_in is not None else None
        self._send(HTTPStatus.UNAUTHORIZED, b'{"error": "unauthenticated"}', "application/json", again)

    def _live(self, head: bool, query: Query, viewer: Viewer, open_still: Callable[[], bool]) -> None:
        """One `data: <record>` per record written after the stream opened that `viewer` may see
        (of the query's `instance`, when it names one), for as long as `open_still` (its session)."""
        # Where the stream starts is taken before the client learns it is open: a record written as
        # soon as the client sees the headers is after it.
        views = self.console.views
        seen = 0 if head else views.live_start()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if head:
            return
        quiet_since = time.monotonic()
        try:
            while not self.console.stopping.is_set() and open_still():
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


class _ApiAnswers:
    """The API's answers (`/api/…`, `/metrics`) as status, body, type and headers: the views'
    answers in JSON or CSV, each refusal or fault a status with its reason, never a dropped
    connection."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def answer(
        self, viewer: Viewer, path: str, query: dict[str, list[str]]
    ) -> tuple[HTTPStatus, bytes, str, dict[str, str]]:
        """An API request's answer: status, body, its type and headers."""
        fmt = query.pop("format", ["json"])[-1]
        if fmt not in ("json", "csv"):
            body = orjson.dumps({"error": "bad_request", "message": "format: json or csv"})
            return HTTPStatus.BAD_REQUEST, body, "application/json", {}
        try:
            if path == "/api/access":
                answer: Any = self.access(viewer, query)
            else:
                answer = self.console.views.answer(path, query, viewer)
        except KeyError:
            return HTTPStatus.NOT_FOUND, b'{"error": "not_found"}', "application/json", {}
        except Forbidden:
            return HTTPStatus.FORBIDDEN, b'{"error": "forbidden"}', "application/json", {}
        except BadQuery as e:
            body = orjson.dumps({"error": "bad_request", "message": str(e)})
            return HTTPStatus.BAD_REQUEST, body, "application/json", {}
        except Unavailable as e:  # the database a view asks is away: it answers again by itself
            body = orjson.dumps({"error": "unavailable", "message": e.reason})
            return HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json", {"Retry-After": str(RETRY_PAGE_S)}
        except Unreadable as e:  # the reconciliation's table, for now (its reason in the log already)
            body = orjson.dumps({"error": "unavailable", "message": str(e)})
            return HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json", {}
        except Exception as e:  # a fault of the console's own: answered and recorded, never a dropped connection
            # Its kind alone: a message may quote the query, which is the person's.
            print(f"tollgate console: {path}: {type(e).__name__}", file=sys.stderr, flush=True)
            return HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "internal"}', "application/json", {}
        if fmt == "csv":
            name = path.rsplit("/", 1)[-1]
            return (HTTPStatus.OK, as_csv(answer, query).encode(), "text/csv; charset=utf-8",
                    {"Content-Disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
        return HTTPStatus.OK, orjson.dumps(answer), "application/json", {}

    def metrics(self, viewer: Viewer) -> tuple[HTTPStatus, bytes, str]:
        """`/metrics`: the spend metrics of `tollgate reconcile`'s newest closed days (`invoice.py`),
        for the token's holder (Prometheus, as a bearer) and security: they sum the company's
        accounts."""
        from tollgate.console.invoice import metrics_text

        if viewer.role != "security":
            return HTTPStatus.FORBIDDEN, b'{"error": "forbidden"}', "application/json"
        try:
            found = self.console.views.invoice.metrics()
        except Unreadable:
            return HTTPStatus.SERVICE_UNAVAILABLE, b'{"error": "unavailable"}', "application/json"
        return HTTPStatus.OK, metrics_text(found), "text/plain; version=0.0.4; charset=utf-8"

    def access(self, viewer: Viewer, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """`/api/access`: the console's access records, newest first; security's only."""
        if viewer.role != "security":
            raise Forbidden("/api/access is security's")
        text = query.get("limit", [str(ACCESS_LIMIT)])[-1]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= ACCESS_MAX:  # not `²`, which int() refuses
            raise BadQuery(f"limit: a number from 1 to {ACCESS_MAX}")
        return [] if self.console.access is None else self.console.access.recent(int(text))


class _SignInPages:
    """The sign-in's part of a request (`/auth/…`, and where one begins): the redirects to the
    issuer and back, the session cookies, and the pages that say a sign-in failed or ended."""

    def __init__(self, handler: _Handler, sign_in: SignIn) -> None:
        self.handler = handler
        self.sign_in = sign_in

    def answer(self, path: str, query: dict[str, list[str]]) -> None:
        sign_in = self.sign_in
        if path == "/auth/login":
            return self.begin("/")  # never a path from the query: no open redirect
        if path == "/auth/callback":
            return self._callback(query)
        if path == "/auth/logout":
            ended = self.handler.console.end_sessions(self.handler._sessions())
            if ended is not None and self.handler.console.access is not None:
                self.handler.console.access.logout(ended)
            back = sign_in.redirect_uri.rsplit("/", 1)[0] + "/signed-out"
            return self.handler._send(HTTPStatus.SEE_OTHER, b"", "text/plain", [
                ("Location", sign_in.logout_location(back)),
                ("Set-Cookie", f"{COOKIE}=; Max-Age=0{self._attributes('/')}"),
            ])  # fmt: skip
        if path == "/auth/signed-out":
            return self._page(HTTPStatus.OK, "Signed out", "You have signed out of the Tollgate console.")
        self.handler._send(HTTPStatus.NOT_FOUND, b'{"error": "not_found"}', "application/json")

    def begin(self, back: str) -> None:
        try:
            cookie, location = self.sign_in.begin(back)
        except SignInFailed as e:
            return self._failed(e)
        self.handler._send(HTTPStatus.FOUND, b"", "text/plain", [
            ("Location", location),
            ("Set-Cookie", f"{PRE_COOKIE}={cookie}; Max-Age=600{self._attributes('/auth/')}"),
        ])  # fmt: skip

    def _callback(self, query: dict[str, list[str]]) -> None:
        sign_in = self.sign_in
        forget = ("Set-Cookie", f"{PRE_COOKIE}=; Max-Age=0{self._attributes('/auth/')}")
        try:
            viewer, back = sign_in.finish(sign_in.take(self.handler._cookies(PRE_COOKIE)), query)
        except SignInFailed as e:
            return self._failed(e, [forget])
        if self.handler.console.access is not None:
            self.handler.console.access.sign_in(viewer)
        self.handler.console.end_sessions(self.handler._sessions())  # the browser's session before this sign-in, if any
        session = self.handler.console.open_session(viewer)
        self.handler._send(HTTPStatus.SEE_OTHER, b"", "text/plain", [
            ("Location", back), forget,
            ("Set-Cookie", f"{COOKIE}={session}; Max-Age={SESSION_S}{self._attributes('/')}"),
        ])  # fmt: skip

    def _failed(self, e: SignInFailed, headers: list[tuple[str, str]] | None = None) -> None:
        """A sign-in refused: the reason in the console's log and on the page (never a token or a
        code: the reasons name neither), and no session."""
        print(f"tollgate console: sign-in refused ({e.status}): {e.reason}", file=sys.stderr, flush=True)
        if self.handler.console.access is not None:
            self.handler.console.access.failed(e.reason, e.email, e.status)
        if e.status == HTTPStatus.FORBIDDEN:
            return self._page(HTTPStatus.FORBIDDEN, "Not allowed",
                              "Your account is not among those allowed to use this console.", headers)  # fmt: skip
        # The reason, as the log has it: plain words that never hold a token, a code or a secret.
        self._page(HTTPStatus.UNAUTHORIZED, "Sign-in failed",
                   f"The sign-in could not be completed: {e.reason}.", headers)  # fmt: skip

    def _page(self, status: HTTPStatus, title: str, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        # Nothing loaded from the console (its files need a session: a stylesheet would start a sign-in).
        body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f'</head><body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>'
                f'<p><a href="/auth/login">Sign in</a></p></body></html>')  # fmt: skip
        self.handler._send(status, body.encode(), "text/html; charset=utf-8", headers)

    def _attributes(self, path: str) -> str:
        return f"; Path={path}; HttpOnly; SameSite=Lax" + ("; Secure" if self.handler.console.tls else "")
