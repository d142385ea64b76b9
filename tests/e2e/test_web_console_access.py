"""Who reaches `tollgate console`, run as its command: under TLS, a hundred clients that connect and
say nothing hold no one else (each handshake in its own thread, with a timeout) and are closed in
time; the sign-in link leaves Chromium with a session of the console's own in its cookie, never the
token, and a restart ends every session."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.test_web_console import chromium
from tests.support.cli import console_running
from tests.support.proxy import free_port
from tests.support.web import NoRedirect, fetched

TOKEN = "console-access-TOKEN-0001-of-test"
IDLE = 100  # connections that say nothing
IDLE_S = 10.0  # the console's: tollgate.console.server.IDLE_S
RECORD = {"event": "llm_call", "ts": "2026-11-01T08:00:00.000Z", "client": "alice", "provider": "openai",
          "model": "gpt-4o-mini", "decision": "allow", "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25}  # fmt: skip


def configured(tmp_path: Path, port: int, tls: str = "") -> Path:
    audit = tmp_path / "audit.jsonl"
    audit.write_text(json.dumps(RECORD) + "\n")
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"audit: {{path: {audit}}}\nconsole: {{listen: '127.0.0.1:{port}', token: {TOKEN}{tls}}}\n")
    return config


@contextmanager
def console(config: Path) -> Iterator[str]:
    """`tollgate console --config config` until the block ends: the address it prints."""
    with console_running(config, r"Tollgate console: https?://127\.0\.0\.1:\d+/\?token=\S+\n") as run:
        yield run.address
    assert TOKEN not in run.err and "Traceback" not in run.err, run.err


def get(url: str, headers: dict[str, str], context: ssl.SSLContext | None = None,
        timeout: float = 10) -> tuple[int, dict[str, list[str]], bytes]:  # fmt: skip
    """Status, fields (by lower-case name, every value) and body; a redirect is not followed."""
    handlers = [NoRedirect, urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)]
    return fetched(urllib.request.build_opener(*handlers), urllib.request.Request(url, headers=headers), timeout)


PEOPLE = [{"client": "alice", "calls": 1}]


def people(body: bytes) -> list[dict]:
    return [{"client": p["client"], "calls": p["calls"]} for p in json.loads(body)]


def test_a_hundred_silent_connections_hold_no_one_under_tls_and_are_closed_in_time(tmp_path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "console.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "console.key"))
    port = free_port()
    config = configured(tmp_path, port, f", tls: {{cert: {tmp_path / 'console.pem'}, key: {tmp_path / 'console.key'}}}")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    idle: list[socket.socket] = []
    with console(config) as address:
        assert address.startswith(f"https://127.0.0.1:{port}/")
        try:
            idle.extend(socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(IDLE))
            began = time.monotonic()
            # A client's own timeout of a few seconds: with the handshakes made one after the other
            # in the accepting thread, the first silent connection holds this request for good.
            status, _, body = get(f"https://127.0.0.1:{port}/api/people", {"Authorization": f"Bearer {TOKEN}"},
                                  context=trusting, timeout=3)  # fmt: skip
            print(f"answered in {time.monotonic() - began:.2f} s beside {IDLE} silent connections")
            assert (status, people(body)) == (200, PEOPLE)
            closed = []
            for s in idle:  # each closed by the console once silent IDLE_S (here: within 3 × IDLE_S)
                s.settimeout(3 * IDLE_S)
                closed.append(s.recv(1))
            assert closed == [b""] * IDLE
        finally:
            for s in idle:
                s.close()
        status, _, body = get(f"https://127.0.0.1:{port}/api/people", {"Authorization": f"Bearer {TOKEN}"},
                              context=trusting)  # fmt: skip
        assert (status, people(body)) == (200, PEOPLE)


def test_the_sign_in_link_gives_a_session_never_the_token_and_a_restart_ends_it(tmp_path) -> None:
    """In Chromium: the sign-in link is answered with the page at the address without the token and
    a cookie `tollgate_session` that scripts cannot read and that is not the token; then, over HTTP,
    the session opens the API, the token in a cookie or an unknown session does not; after a
    restart (the same token) the old session is refused and the token as a bearer still works."""
    from tests.support.cdp import Browser

    port = free_port()
    config = configured(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    browser = Browser(chromium(), tmp_path / "profile")
    status_of = "fetch('/api/people').then(r => r.status)"
    try:
        with console(config) as address:
            assert address == f"{base}/?token={TOKEN}"
            browser.go(f"{address}#people")
            assert browser.evaluate("location.href") == f"{base}/#people"
            assert browser.call("Runtime.evaluate", expression=status_of, awaitPromise=True)["result"]["value"] == 200
            assert browser.evaluate("document.cookie") == ""  # HttpOnly: no script of the page reads it
            cookies = browser.call("Storage.getCookies")["cookies"]
            assert [
                (c["name"], c["domain"], c["path"], c["httpOnly"], c["secure"], c["sameSite"]) for c in cookies
            ] == [("tollgate_session", "127.0.0.1", "/", True, False, "Strict")]
            session = cookies[0]["value"]
            assert TOKEN not in session and len(session) >= 43
            cookie = {"Cookie": f"tollgate_session={session}"}
            status, _, body = get(f"{base}/api/people", cookie)
            assert (status, people(body)) == (200, PEOPLE)
            unauthenticated = (401, b'{"error": "unauthenticated"}')
            for refused in (f"tollgate_session={TOKEN}", f"tollgate_console={TOKEN}", "tollgate_session=not-one"):
                assert get(f"{base}/api/people", {"Cookie": refused})[::2] == unauthenticated, refused
        with console(config):
            assert get(f"{base}/api/people", cookie)[::2] == unauthenticated
            assert browser.call("Runtime.evaluate", expression=status_of, awaitPromise=True)["result"]["value"] == 401
            status, _, body = get(f"{base}/api/people", {"Authorization": f"Bearer {TOKEN}"})
            assert (status, people(body)) == (200, PEOPLE)
            status, headers, _ = get(f"{base}/?token={TOKEN}&view=1", {})
            assert (status, headers["location"]) == (303, ["/?view=1"])
            assert TOKEN not in "".join(headers["set-cookie"])
    finally:
        browser.close()
