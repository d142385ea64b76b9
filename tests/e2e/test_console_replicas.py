"""Two `tollgate console` processes behind HAProxy (Debian's) over one real PostgreSQL, people
signing in with the tests' OpenID Connect provider: a sign-in begun on one console ends on the
other, and the person is served by both; a console restarted keeps every session; a cursor one
gives opens on the other (`console.cursor_secret`); sign-out on one ends the session on both; a
session past its end refused by both. A sessions table newer than the console knows: one line,
exit 1. In Chromium, the database going away while the page is open: the page says why, and is
served again by itself once the database is back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from tests.e2e.test_console_sign_in import CLIENTS, ROLES, SECRET, Agent, agent_for, fleet_rows
from tests.support.cdp import Browser, chromium
from tests.support.cli import console_process
from tests.support.oidc_provider import OidcProvider, oidc_provider
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port
from tests.support.run_sh import wait_listening
from tests.support.web import NoRedirect

from tollgate.records.senders.audit_postgres import ensure_schema, prepare, store

CURSOR_SECRET = "cursor-secret-shared-by-the-console-replicas-0001"
SESSIONS = "tollgate_console_sessions"


@dataclass
class Replica:
    name: str
    directory: Path
    port: int
    process: subprocess.Popen | None = None
    err: str = ""

    def start(self) -> Replica:
        self.process, line = console_process(self.directory / "tollgate.yaml", cwd=self.directory)
        assert line.startswith("Tollgate console: http://127.0.0.1:"), line + self.stop()
        return self

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            _, err = self.process.communicate(timeout=15)
            self.err += err
            assert "Traceback" not in err and SECRET not in err and CURSOR_SECRET not in err, err
        return self.err


def write_config(replica: Replica, dsn: str, provider: OidcProvider, front: int) -> None:
    replica.directory.mkdir(parents=True, exist_ok=True)
    sign_in = {"issuer": provider.issuer, "client_id": "tollgate-console", "client_secret": SECRET,
               "ca_file": str(provider.ca_file), "security": ["secops"], "leads": {"eng-leads": ["research"]},
               "redirect_uri": f"http://127.0.0.1:{front}/auth/callback"}  # fmt: skip
    config = {
        "audit": {"path": str(replica.directory / "audit.jsonl"), "postgres": {"dsn": dsn}},
        "clients": CLIENTS,
        "console": {
            "listen": f"127.0.0.1:{replica.port}",
            "postgres_dsn": dsn,
            "cursor_secret": CURSOR_SECRET,
            "sign_in": sign_in,
        },
    }
    (replica.directory / "tollgate.yaml").write_text(json.dumps(config))


def haproxy_config(front: int, replicas: list[Replica]) -> str:
    """Round robin over the consoles; `X-Console: NAME` asks for one, and every answer names the
    one that gave it."""
    lines = [
        "global", "    maxconn 256",
        "defaults", "    mode http", "    timeout connect 5s", "    timeout client 30s", "    timeout server 30s",
        "frontend consoles", f"    bind 127.0.0.1:{front}", "    default_backend consoles",
        "backend consoles", "    balance roundrobin", "    http-response set-header X-Console %[srv_name]",
    ]  # fmt: skip
    lines += [f"    use-server {r.name} if {{ req.hdr(x-console) -m str {r.name} }}" for r in replicas]
    lines += [f"    server {r.name} 127.0.0.1:{r.port} check inter 300 fall 1 rise 1" for r in replicas]
    return "\n".join(lines) + "\n"


@dataclass
class Fleet:
    front: str  # HAProxy's address
    replicas: dict[str, Replica]
    dsn: str
    provider: OidcProvider


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[OidcProvider]:
    with oidc_provider(client_secret=SECRET, tls_dir=tmp_path_factory.mktemp("issuer")) as started:
        yield started


@pytest.fixture
def fleet(provider: OidcProvider, postgres: PostgresServer, tmp_path: Path) -> Iterator[Fleet]:
    dsn = postgres.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, "tollgate_records")
        prepare(conn)
        store(conn, "tollgate_records", fleet_rows())
    front = free_port()
    replicas = [Replica(name, tmp_path / name, free_port()) for name in ("one", "two")]
    for replica in replicas:
        write_config(replica, dsn, provider, front)
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(front, replicas))
    balancer = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for replica in replicas:
            replica.start()
        wait_listening(front, seconds=15, poll=0.05)
        time.sleep(0.5)  # HAProxy's first health checks
        yield Fleet(f"http://127.0.0.1:{front}", {r.name: r for r in replicas}, dsn, provider)
    finally:
        for replica in replicas:
            replica.stop()
        balancer.terminate()
        balancer.communicate(timeout=10)


def via(agent: Agent, url: str, console: str):
    """`url` through HAProxy, answered by the console named."""
    answer = agent.get(url, {"X-Console": console})
    assert answer.headers["x-console"] == [console], answer.headers
    return answer


def sign_in_across(fleet: Fleet, agent: Agent, begun: str, ended: str) -> None:
    """A sign-in begun on the console `begun` (the pre-sign-in cookie of its making) and ended at
    the callback on `ended`."""
    to_issuer = via(agent, f"{fleet.front}/?since=today", begun)
    assert to_issuer.status == 302 and to_issuer.location().startswith(f"{fleet.provider.issuer}/authorize?")
    at_issuer = agent.get(to_issuer.location())
    assert at_issuer.status == 302 and at_issuer.location().startswith(f"{fleet.front}/auth/callback?")
    back = via(agent, at_issuer.location(), ended)
    assert (back.status, back.headers["location"]) == (303, ["/?since=today"]), back.body


def me(fleet: Fleet, session: str, console: str) -> tuple[int, dict]:
    """`/api/me` with the session's cookie alone, on the console named."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{fleet.front}/api/me",
                                     headers={"Cookie": f"tollgate_session={session}", "X-Console": console})  # fmt: skip
    try:
        answer = opener.open(request, timeout=15)
    except urllib.error.HTTPError as e:
        answer = e
    with answer:
        assert answer.headers["X-Console"] == console
        return answer.status, json.loads(answer.read())


def session_of(agent: Agent) -> str:
    (cookie,) = agent.cookies("tollgate_session")
    assert cookie.value is not None
    return cookie.value


def test_two_consoles_behind_haproxy_serve_the_same_people_across_restarts_and_sign_outs(fleet: Fleet) -> None:
    security, lead = ROLES["security"], ROLES["lead"]
    fleet.provider.person = security.person
    sam = agent_for(fleet.provider)
    sign_in_across(fleet, sam, begun="one", ended="two")
    session = session_of(sam)
    status, on_one = me(fleet, session, "one")
    assert (status, on_one["email"], on_one["role"]) == (200, security.person.email.lower(), "security")
    assert me(fleet, session, "two") == (200, on_one)
    # Round robin, no stickiness: a page's requests go to both, and each is answered.
    served = {tuple(sam.get(f"{fleet.front}/api/people").headers["x-console"]) for _ in range(4)}
    assert served == {("one",), ("two",)}
    # A cursor one console gives opens on the other: the key is console.cursor_secret.
    events = json.loads(via(sam, f"{fleet.front}/api/events?limit=2", "one").body)
    later = via(sam, f"{fleet.front}/api/events?limit=2&after={events['cursor']}", "two")
    assert later.status == 200, later.body

    fleet.provider.person = lead.person
    lena = agent_for(fleet.provider)
    sign_in_across(fleet, lena, begun="two", ended="one")
    lena_session = session_of(lena)

    # A console restarted keeps every session: nothing of them was in its memory alone.
    one = fleet.replicas["one"]
    assert "sessions" not in one.stop()
    one.start()
    wait_listening(one.port, seconds=15, poll=0.05)
    time.sleep(0.5)  # HAProxy sees it up again
    for console in ("one", "two"):
        assert me(fleet, session, console)[0] == 200
        assert me(fleet, lena_session, console)[1]["role"] == "lead"

    # Sign-out on one ends the session on both (and no other).
    out = via(sam, f"{fleet.front}/auth/logout", "one")
    assert out.status == 303
    for console in ("two", "one"):
        assert me(fleet, session, console) == (401, {"error": "unauthenticated"})
        assert me(fleet, lena_session, console)[0] == 200

    # A session past its end (by the database's clock) is refused by both.
    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {SESSIONS}").fetchone()  # type: ignore[misc]
        assert count == 1  # Lena's: Sam's row went with the sign-out
        conn.execute(f"UPDATE {SESSIONS} SET expires = now() - interval '1 second'")
    for console in ("one", "two"):
        assert me(fleet, lena_session, console) == (401, {"error": "unauthenticated"})


def test_a_sessions_table_newer_than_the_console_knows_is_one_line_and_exit_1(
    provider: OidcProvider, postgres: PostgresServer, tmp_path: Path
) -> None:
    dsn = postgres.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, "tollgate_records")
        conn.execute("INSERT INTO tollgate_schema (name, version) VALUES (%s, 99)", (SESSIONS,))
    replica = Replica("one", tmp_path, free_port())
    write_config(replica, dsn, provider, free_port())
    process, line = console_process(tmp_path / "tollgate.yaml", cwd=tmp_path)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, line) == (1, "")
    assert err == (
        f"error: sessions: the table {SESSIONS} has schema version 99 (tollgate_schema), newer than this console"
        " knows (1): upgrade Tollgate to serve it\n"
    )


TOKEN = "console-token-of-the-replicas-tests-0001"


def test_the_page_says_the_database_is_away_and_is_served_again_by_itself(tmp_path: Path) -> None:
    own = PostgresServer(Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))).start()
    replica = Replica("one", tmp_path / "console", free_port())
    browser = None
    try:
        with psycopg.connect(own.dsn(), autocommit=True) as conn:
            ensure_schema(conn, "tollgate_records")
            prepare(conn)
            store(conn, "tollgate_records", fleet_rows())
        replica.directory.mkdir()
        config = {"audit": {"path": str(replica.directory / "audit.jsonl"), "postgres": {"dsn": own.dsn()}},
                  "clients": CLIENTS, "console": {"listen": f"127.0.0.1:{replica.port}", "token": TOKEN,
                  "postgres_dsn": own.dsn(), "cursor_secret": CURSOR_SECRET}}  # fmt: skip
        (replica.directory / "tollgate.yaml").write_text(json.dumps(config))
        replica.start()
        base = f"http://127.0.0.1:{replica.port}"
        rows = "document.querySelectorAll('#people tbody tr').length"
        notice = "document.getElementById('unavailable')"
        browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
        browser.go(f"{base}/?token={TOKEN}#people")
        browser.wait_for(rows)
        own.stop()
        # The open page: the reason above the view, and the view asked again until it answers.
        browser.evaluate("location.hash = 'spend'")
        browser.wait_for(f"!{notice}.hidden")
        said = browser.evaluate(f"{notice}.textContent")
        assert said.startswith("The console cannot reach its database (PostgreSQL 127.0.0.1:"), said
        assert said.endswith("; trying again."), said
        browser.wait_for("document.getElementById('main').textContent === 'Waiting for the console\\'s database…'")
        shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        browser.screenshot(shots / "console-unavailable.png")
        # The page loaded again meanwhile: a page that says so, and loads again by itself.
        browser.evaluate("location.hash = 'people'")
        browser.call("Page.reload")
        browser.wait_for("document.title === 'Console unavailable'")
        assert "cannot reach its database" in browser.evaluate("document.body.textContent")
        own.start()
        # Loaded again by itself at its address without the view (a fragment only would not load it).
        browser.wait_for("document.title === 'Tollgate console' && location.hash === ''", timeout=20)
        browser.wait_for("document.querySelector('#nav a.active')?.dataset.view === 'live'")
        browser.evaluate("location.hash = 'people'")
        browser.wait_for(rows)
        assert browser.evaluate(f"{notice}.hidden") is True
        own.stop()
        browser.evaluate("location.hash = 'spend'")
        browser.wait_for(f"!{notice}.hidden")
        own.start()
        browser.wait_for(f"{notice}.hidden && !document.querySelector('#main .error')", timeout=20)
    finally:
        if browser is not None:
            browser.close()
        err = replica.stop()
        if own.running():
            own.stop()
        shutil.rmtree(own.directory, ignore_errors=True)
    assert err.count("people are answered 503 until it answers") >= 1, err
