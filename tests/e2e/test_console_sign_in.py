"""Sign-in to `tollgate console` with OpenID Connect, end to end: a real console process and the
tests' own provider (`tests/support/oidc_provider.py`), over HTTP with a cookie jar and in
Chromium. People sign in as `security`, a `lead` and `self` and `/api/me` says who they are; a
page without a session goes to the issuer and comes back to the path first asked, an API request
is 401; `allowed_groups` refuse with 403; a bad ID token, a used or foreign pre-sign-in cookie, an
issuer that cannot be reached: 401 with the reason in the console's log, never a session; the
token is a bearer's only and printed nowhere; logout ends the session at the issuer too; every
read, sign-in, failure and logout is in the access log (and PostgreSQL), never a token or a code.
Screenshots under TOLLGATE_SCREENSHOTS, else the test's own directory."""

from __future__ import annotations

import collections
import html
import http.client
import http.cookiejar
import itertools
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import psycopg
import pytest
from tests.support.cdp import Browser, chromium
from tests.support.cli import console_process, run_tollgate
from tests.support.oidc_provider import OidcProvider, Person, oidc_provider
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port
from tests.support.web import NoRedirect, fetched

from tollgate.common.audit_chain import Chain
from tollgate.console.access_log import TABLE_VERSION
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of, store

SECRET = "console-oidc-client-secret-of-the-e2e-tests"
TOKEN = "console-bearer-TOKEN-of-the-e2e-0001"
UNAUTHENTICATED = b'{"error": "unauthenticated"}'
RECORDS = [
    {"event": "tollgate_started", "ts": "2026-11-20T07:59:00.000Z", "version": "0.1.0", "pid": 4242},
    {"event": "llm_call", "ts": "2026-11-20T08:00:00.000Z", "client": "alice", "groups": ["research"],
     "provider": "openai", "model": "gpt-4o-mini", "decision": "allow", "input_tokens": 10, "output_tokens": 5,
     "cost_usd": 0.25},
    {"event": "llm_call", "ts": "2026-11-20T08:01:00.000Z", "client": "bob", "groups": ["sales"],
     "provider": "openai", "model": "gpt-4o-mini", "decision": "allow", "input_tokens": 10, "output_tokens": 5,
     "cost_usd": 0.5},
]  # fmt: skip
CLIENTS = [
    {"name": "alice", "keys": ["tg-alice-sign-in-0001-of-the-tests"], "groups": ["research"],
     "people": ["alice@example.com"]},
    {"name": "bob", "keys": ["tg-bob-sign-in-0002-of-the-tests"], "groups": ["sales"], "people": ["bob@example.com"]},
]  # fmt: skip


@dataclass(frozen=True)
class Role:
    """A person signing in, the role the console gives them, and (with the scope) the clients whose
    records they see: None for every client."""

    person: Person
    role: str
    clients: list[str] | None = None


ROLES = {
    "security": Role(Person("Sam@Example.com", ["secops", "staff"], "Sam Security"), "security"),
    # eng-leads leads the Tollgate group research: alice's.
    "lead": Role(Person("lena@example.com", ["eng-leads", "staff"], "Lena Lead"), "lead", ["alice"]),
    "self": Role(Person("bob@example.com", ["staff"], "Bob Builder"), "self", ["bob"]),
}


# ---- the console


@dataclass
class Console:
    process: subprocess.Popen
    base: str
    line: str
    access: Path
    err: str = ""

    def stop(self) -> str:
        """Stopped as an operator does (SIGTERM); its standard error."""
        if self.process.poll() is None:
            self.process.terminate()
            _, self.err = self.process.communicate(timeout=15)
        assert "Traceback" not in self.err, self.err
        assert TOKEN not in self.err and SECRET not in self.err
        return self.err

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.access.read_text().splitlines()]


def write_config(directory: Path, port: int, provider: OidcProvider | None, issuer: str | None = None,
                 token: str | None = None, audit_postgres: str | None = None, tls: dict | None = None,
                 **sign_in) -> Path:  # fmt: skip
    audit = directory / "audit.jsonl"
    chain = Chain()  # as Tollgate writes it: the audit whole
    lines = [chain.link(json.dumps({**r, "instance": "console-1"}).encode()) for r in RECORDS]
    checkpoint = {**chain.checkpoint(None, "2026-11-20T08:02:00.000Z"), "instance": "console-1"}
    lines.append(chain.link(json.dumps(checkpoint).encode()))
    audit.write_bytes(b"".join(line + b"\n" for line in lines))
    settings = {"issuer": issuer or (provider.issuer if provider else ""), "client_id": "tollgate-console",
                "client_secret": SECRET, "security": ["secops"], "leads": {"eng-leads": ["research"]}, **sign_in}  # fmt: skip
    if provider is not None and provider.ca_file is not None:
        settings["ca_file"] = str(provider.ca_file)
    console: dict = {"listen": f"127.0.0.1:{port}", "sign_in": settings}
    if token:
        console["token"] = token
    if tls:
        console["tls"] = tls
    config: dict = {"audit": {"path": str(audit)}, "clients": CLIENTS, "console": console}
    if audit_postgres:
        config["audit"]["postgres"] = {"dsn": audit_postgres}
        console["cursor_secret"] = "cursors-of-the-sign-in-console-01"  # required over PostgreSQL
    path = directory / "tollgate.yaml"
    path.write_text(json.dumps(config))
    return path


@contextmanager
def console(directory: Path, provider: OidcProvider | None, **settings) -> Iterator[Console]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(directory, port, provider, **settings)
    process, line = console_process(config, cwd=directory)
    scheme = "https" if settings.get("tls") else "http"
    running = Console(process, f"{scheme}://127.0.0.1:{port}", line, directory / "audit.jsonl.console-access.jsonl")
    try:
        yield running
    finally:
        running.stop()


# ---- a browser without a browser: urllib with a cookie jar, each redirect seen


@dataclass
class Answer:
    url: str
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def location(self) -> str:
        return urljoin(self.url, self.headers["location"][0])


@dataclass
class Agent:
    context: ssl.SSLContext | None = None
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def get(self, url: str, headers: dict[str, str] | None = None) -> Answer:
        opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self.context),
                                             urllib.request.HTTPCookieProcessor(self.jar))  # fmt: skip
        return Answer(url, *fetched(opener, urllib.request.Request(url, headers=headers or {}), 15))

    def follow(self, url: str) -> list[Answer]:
        """Every answer from `url` on, redirects followed (ten at most)."""
        hops = [self.get(url)]
        while hops[-1].status in (301, 302, 303, 307) and len(hops) < 10:
            hops.append(self.get(hops[-1].location()))
        return hops

    def cookies(self, name: str) -> list[http.cookiejar.Cookie]:
        return [c for c in self.jar if c.name == name]

    def json(self, url: str) -> tuple[int, object]:
        answer = self.get(url)
        return answer.status, json.loads(answer.body)


def sign_in(agent: Agent, base: str, path: str = "/") -> list[Answer]:
    hops = agent.follow(base + path)
    assert [h.status for h in hops] == [302, 302, 303, 200], [(h.status, h.url) for h in hops]
    return hops


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[OidcProvider]:
    """The issuer over TLS (a trustme CA, the console's ca_file), with a client secret."""
    with oidc_provider(client_secret=SECRET, tls_dir=tmp_path_factory.mktemp("issuer")) as started:
        yield started


@pytest.fixture
def idp(provider: OidcProvider) -> Iterator[OidcProvider]:
    provider.person, provider.bad, provider.form, provider.deny, provider.end_session = None, {}, False, False, True
    yield provider
    provider.bad = {}


@pytest.fixture(scope="module")
def served(provider: OidcProvider, tmp_path_factory) -> Iterator[Console]:
    with console(tmp_path_factory.mktemp("console"), provider, token=TOKEN) as running:
        yield running


def agent_for(provider: OidcProvider) -> Agent:
    return Agent(ssl.create_default_context(cafile=str(provider.ca_file)))


# ---- over HTTP


@pytest.mark.parametrize("name", list(ROLES))
def test_signing_in_as_each_role_gives_a_session_of_its_own(idp: OidcProvider, served: Console, name: str) -> None:
    role = ROLES[name]
    idp.person = role.person
    agent = agent_for(idp)
    hops = sign_in(agent, served.base, "/?since=today")
    to_issuer, at_issuer, back, page = hops
    assert to_issuer.location().startswith(f"{idp.issuer}/authorize?")
    pre = [c for c in to_issuer.headers["set-cookie"] if c.startswith("tollgate_sign_in=")]
    assert len(pre) == 1 and re.search(r"; Max-Age=600; Path=/auth/; HttpOnly; SameSite=Lax$", pre[0]), pre
    callback = urlsplit(at_issuer.location())
    assert (f"{callback.scheme}://{callback.netloc}{callback.path}", sorted(parse_qs(callback.query))) == (
        f"{served.base}/auth/callback",
        ["code", "state"],
    )
    assert back.headers["location"] == ["/?since=today"]  # the path first asked for
    session = [c for c in back.headers["set-cookie"] if c.startswith("tollgate_session=")]
    assert len(session) == 1 and re.fullmatch(
        r"tollgate_session=[\w-]{43}; Max-Age=43200; Path=/; HttpOnly; SameSite=Lax", session[0]
    ), session
    assert "tollgate_sign_in=; Max-Age=0; Path=/auth/; HttpOnly; SameSite=Lax" in back.headers["set-cookie"]
    assert page.body.startswith(b"<!doctype html>")
    assert agent.cookies("tollgate_sign_in") == []
    status, me = agent.json(f"{served.base}/api/me")
    assert status == 200 and isinstance(me, dict)
    assert (me["email"], me["role"], me["name"]) == (role.person.email.lower(), role.role, role.person.name)
    # What they see: the clients of their records, in /api/me and in every view (people here).
    assert me["clients"] == role.clients
    status, people = agent.json(f"{served.base}/api/people")
    assert status == 200 and isinstance(people, list)
    assert sorted(p["client"] for p in people) == (role.clients or ["alice", "bob"])
    assert agent.get(f"{served.base}/api/audit").status == (200 if role.role == "security" else 403)


FLEET = {  # instance -> its calls' clients, in the order it wrote them
    "east": ["alice", "bob", "alice"],
    "west": ["bob", "alice", "bob", "bob"],
}


def fleet_rows() -> list[tuple]:
    """Each instance's run as it writes it (chained, a checkpoint at its end), in the rows the
    senders store, the two instances' interleaved as they arrive."""
    runs = []
    for instance, callers in FLEET.items():
        chain = Chain()
        group = {"alice": "research", "bob": "sales"}
        records = [{"event": "tollgate_started", "ts": "2026-11-20T07:59:00.000Z", "version": "0.1.0", "pid": 1}]
        for n, client in enumerate(callers):
            records.append({"event": "llm_call", "ts": f"2026-11-20T08:0{n}:00.000Z", "client": client,
                            "groups": [group[client]], "provider": "openai", "model": "gpt-4o-mini",
                            "decision": "allow", "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25})  # fmt: skip
        lines = [chain.link(json.dumps({**record, "instance": instance}).encode()) for record in records]
        checkpoint = {**chain.checkpoint(None, "2026-11-20T08:09:00.000Z"), "instance": instance}
        lines.append(chain.link(json.dumps(checkpoint).encode()))
        runs.append(lines)
    interleaved = [line for pair in itertools.zip_longest(*runs) for line in pair if line is not None]
    return [row_of(line) for line in interleaved]


@pytest.mark.parametrize("name", list(ROLES))
def test_each_role_sees_its_scope_of_a_fleets_records_in_postgresql(
    idp: OidcProvider, tmp_path: Path, postgres, name: str
) -> None:
    """Two instances' records in PostgreSQL, the console reading them with sign-in: each person's
    events, sums and instance filter hold their clients' records alone, and only security sees the
    Audit view, a row per instance, whole."""
    dsn = postgres.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, "tollgate_records")
        prepare(conn)
        store(conn, "tollgate_records", fleet_rows())
    role = ROLES[name]
    seen = set(role.clients or ["alice", "bob"])
    with console(tmp_path, idp, audit_postgres=dsn) as running:
        idp.person = role.person
        agent = agent_for(idp)
        sign_in(agent, running.base)
        for instance in (None, *FLEET):
            suffix = "" if instance is None else f"&instance={instance}"
            status, events = agent.json(f"{running.base}/api/events?event=llm_call&limit=100{suffix}")
            assert status == 200 and isinstance(events, dict)
            expected = sorted(c for i, callers in FLEET.items() if instance in (None, i) for c in callers if c in seen)
            assert sorted(e["client"] for e in events["events"]) == expected
            status, people = agent.json(f"{running.base}/api/people?{suffix[1:]}")
            assert status == 200 and isinstance(people, list)
            assert {p["client"]: p["calls"] for p in people} == dict(collections.Counter(expected))
        # A forged filter finds nothing of another person's client.
        others = {"alice", "bob"} - seen
        for other in others:
            status, events = agent.json(f"{running.base}/api/events?client={other}")
            assert (status, events["events"]) == (200, [])  # type: ignore[index]
        deadline = time.monotonic() + 10  # the chain is checked behind the views
        status, audit = agent.json(f"{running.base}/api/audit")
        while status == 200 and any(r["state"] == "checking" for r in audit) and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.1)
            status, audit = agent.json(f"{running.base}/api/audit")
        if role.role == "security":
            assert status == 200 and isinstance(audit, list)
            assert sorted((r["instance"], r["state"], r["records"], r["file"]) for r in audit) == [
                ("east", "whole", 5, None), ("west", "whole", 6, None)]  # fmt: skip
        else:
            assert (status, audit) == (403, {"error": "forbidden"})


def test_under_tls_the_cookies_are_secure(idp: OidcProvider, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "console.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "console-key.pem"))
    tls = {"cert": str(tmp_path / "console.pem"), "key": str(tmp_path / "console-key.pem")}
    with console(tmp_path / "tls", idp, tls=tls) as running:
        assert running.base.startswith("https://")
        agent = agent_for(idp)
        assert agent.context is not None
        ca.configure_trust(agent.context)
        idp.person = ROLES["security"].person
        to_issuer, _, back, _ = sign_in(agent, running.base)
        pre = [c for c in to_issuer.headers["set-cookie"] if c.startswith("tollgate_sign_in=")]
        session = [c for c in back.headers["set-cookie"] if c.startswith("tollgate_session=")]
        assert pre[-1].endswith("; Max-Age=600; Path=/auth/; HttpOnly; SameSite=Lax; Secure")
        assert session[-1].endswith("; Max-Age=43200; Path=/; HttpOnly; SameSite=Lax; Secure")
        assert agent.json(f"{running.base}/api/me")[0] == 200


def test_an_api_request_without_a_session_is_401_and_a_page_goes_to_the_issuer(idp, served: Console) -> None:
    agent = agent_for(idp)
    answer = agent.get(f"{served.base}/api/people")
    assert (answer.status, answer.body, answer.headers["x-tollgate-sign-in"]) == (401, UNAUTHENTICATED, ["/auth/login"])
    for path in ("/", "/app.js", "/anything"):
        answer = agent.get(served.base + path)
        assert answer.status == 302 and answer.location().startswith(f"{idp.issuer}/authorize?"), path
    # What a page loads by itself (a favicon, in a browser that says so) starts no sign-in.
    answer = agent.get(f"{served.base}/favicon.ico", {"Sec-Fetch-Mode": "no-cors"})
    assert (answer.status, answer.body, "set-cookie" in answer.headers) == (401, UNAUTHENTICATED, False)
    # /auth/login always comes back to /: never to an address the query names.
    idp.person = ROLES["self"].person
    hops = agent.follow(f"{served.base}/auth/login?next=https://evil.example/")
    assert [h.status for h in hops] == [302, 302, 303, 200] and hops[2].headers["location"] == ["/"]


def test_the_token_is_a_bearers_only_and_printed_nowhere(idp, served: Console, tmp_path: Path) -> None:
    assert served.line == f"Tollgate console: {served.base}/ (sign in with {idp.issuer})\n"
    agent = agent_for(idp)
    answer = agent.get(f"{served.base}/api/people?token={TOKEN}")
    assert (answer.status, answer.body) == (401, UNAUTHENTICATED)
    assert "set-cookie" not in answer.headers
    assert agent.get(f"{served.base}/?token={TOKEN}").status == 401
    answer = agent.get(f"{served.base}/api/me", {"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 200
    me = json.loads(answer.body)
    assert (me["email"], me["role"]) == (None, "security")
    assert agent.get(f"{served.base}/api/people", {"Authorization": "Bearer not-the-token-0000000"}).status == 401
    # Without console.token there is no token at all.
    with console(tmp_path / "tokenless", idp) as tokenless:
        assert agent.get(f"{tokenless.base}/api/people", {"Authorization": "Bearer None"}).status == 401
        assert tokenless.line == f"Tollgate console: {tokenless.base}/ (sign in with {idp.issuer})\n"


def test_allowed_groups_refuse_others_with_403_and_no_session(idp: OidcProvider, tmp_path: Path) -> None:
    with console(tmp_path, idp, allowed_groups=["tollgate-users"]) as running:
        idp.person = Person("eve@example.com", ["staff"])
        agent = agent_for(idp)
        hops = agent.follow(running.base + "/")
        assert [h.status for h in hops] == [302, 302, 403]
        assert b"Your account is not among those allowed to use this console.</p>" in hops[-1].body
        assert agent.cookies("tollgate_session") == []
        idp.person = Person("ann@example.com", ["tollgate-users"])
        sign_in(agent, running.base)
        err = running.stop()
    assert "tollgate console: sign-in refused (403): in none of console.sign_in.allowed_groups" in err
    assert [(r["action"], r["email"], r["status"]) for r in running.records() if r["action"] != "request"] == [
        ("sign_in_failed", "eve@example.com", 403), ("sign_in", "ann@example.com", 303)
    ]  # fmt: skip


def test_logout_ends_the_session_and_goes_to_the_issuers_end_session(idp: OidcProvider, served: Console) -> None:
    idp.person = ROLES["lead"].person
    agent = agent_for(idp)
    sign_in(agent, served.base)
    session = agent.cookies("tollgate_session")[0].value
    assert agent.get(f"{served.base}/api/people").status == 200
    hops = agent.follow(f"{served.base}/auth/logout")
    assert [h.status for h in hops] == [303, 302, 200]
    assert hops[0].location() == (f"{idp.issuer}/logout?client_id=tollgate-console&post_logout_redirect_uri="
                                  f"http%3A%2F%2F127.0.0.1%3A{served.base.rsplit(':', 1)[1]}%2Fauth%2Fsigned-out")  # fmt: skip
    assert hops[-1].url == f"{served.base}/auth/signed-out" and b"You have signed out" in hops[-1].body
    assert agent.get(f"{served.base}/api/people").status == 401
    stolen = agent_for(idp).get(f"{served.base}/api/people", {"Cookie": f"tollgate_session={session}"})
    assert stolen.status == 401  # the session itself ended, not only the browser's cookie


def test_logout_without_an_end_session_endpoint_shows_signed_out(idp: OidcProvider, tmp_path: Path) -> None:
    idp.end_session = False
    with console(tmp_path, idp) as running:
        idp.person = ROLES["self"].person
        agent = agent_for(idp)
        sign_in(agent, running.base)
        hops = agent.follow(f"{running.base}/auth/logout")
        assert [(h.status, h.url) for h in hops] == [(303, f"{running.base}/auth/logout"),
                                                     (200, f"{running.base}/auth/signed-out")]  # fmt: skip


def test_signing_in_again_ends_the_sessions_before_and_takes_the_last_groups(idp, served: Console) -> None:
    agent = agent_for(idp)
    idp.person = Person("pat@example.com", ["staff"], "Pat")
    sign_in(agent, served.base)
    before = agent.cookies("tollgate_session")[0].value
    assert agent.json(f"{served.base}/api/me")[1]["role"] == "self"
    idp.person = Person("pat@example.com", ["staff", "secops"], "Pat")  # added to secops since
    hops = agent.follow(f"{served.base}/auth/login")
    assert [h.status for h in hops] == [302, 302, 303, 200]
    after = agent.cookies("tollgate_session")[0].value
    assert after != before
    assert agent.json(f"{served.base}/api/me")[1]["role"] == "security"
    assert agent_for(idp).get(f"{served.base}/api/me", {"Cookie": f"tollgate_session={before}"}).status == 401


def test_the_pre_sign_in_cookie_is_used_once_and_the_state_is_checked(idp: OidcProvider, served: Console) -> None:
    idp.person = ROLES["self"].person
    agent = agent_for(idp)
    to_issuer = agent.get(served.base + "/")
    pre = agent.cookies("tollgate_sign_in")[0].value
    callback = agent.get(to_issuer.location()).location()
    first = agent.get(callback)
    assert first.status == 303
    again = agent_for(idp).get(callback, {"Cookie": f"tollgate_sign_in={pre}"})  # the same cookie, replayed
    assert (
        again.status,
        "set-cookie" in again.headers
        and any(c.startswith("tollgate_session=") and "Max-Age=0" not in c for c in again.headers["set-cookie"]),
    ) == (401, False)
    # Another browser's callback (no pre-sign-in cookie), and a state that is not this browser's.
    other = agent_for(idp)
    other.get(served.base + "/")
    assert other.get(callback).status == 401
    third = agent_for(idp)
    location = third.get(third.get(served.base + "/").location()).location()
    forged = re.sub(r"state=[^&]+", "state=another", location)
    assert third.get(forged).status == 401
    assert third.cookies("tollgate_session") == []


BAD_TOKENS = {
    "wrong iss": ({"iss": "https://evil.example"}, "the ID token is from another issuer (iss)"),
    "wrong aud": ({"aud": "another-client"}, "the ID token is not for this console (aud)"),
    "wrong nonce": ({"nonce": "another"}, "the ID token's nonce is not this sign-in's"),
    "expired": ({"exp": -300}, "the ID token has expired"),
    "alg none": ({"alg": "none"}, "the ID token's algorithm 'none' is not allowed"),
    "alg HS256": ({"alg": "HS256"}, "the ID token's algorithm 'HS256' is not allowed"),
    "unknown kid": ({"kid": "unknown"}, "is not in the issuer's JWKS"),
    "unverified e-mail": ({"email_verified": False}, "the ID token's e-mail is not verified"),
    # KELVIN SIGN: Unicode's lower() would make it bob@example.com, who is someone else.
    "look-alike e-mail": ({"email": "\u212aate@example.com"}, "the ID token's e-mail holds characters Unicode NFKC"),
}


def test_a_bad_id_token_is_401_with_its_reason_in_the_log_and_no_session(idp: OidcProvider, tmp_path: Path) -> None:
    with console(tmp_path, idp) as running:
        idp.person = ROLES["security"].person
        for name, (bad, _) in BAD_TOKENS.items():
            idp.bad = bad
            agent = agent_for(idp)
            hops = agent.follow(running.base + "/")
            assert [h.status for h in hops] == [302, 302, 401], name
            assert b"Sign-in failed" in hops[-1].body and agent.cookies("tollgate_session") == [], name
            # The page says why in plain words, as the log does, with no token, code or secret.
            page = hops[-1].body.decode()
            assert html.escape(BAD_TOKENS[name][1], quote=True) in page, (name, page)
            assert "eyJ" not in page and "code=" not in page and SECRET not in page, page
            assert agent.get(f"{running.base}/api/people").status == 401
        idp.bad = {}
        sign_in(agent_for(idp), running.base)  # a good one still signs in
        err = running.stop()
    refused = [line for line in err.splitlines() if line.startswith("tollgate console: sign-in refused (401): ")]
    assert len(refused) == len(BAD_TOKENS)
    for line, (name, (_, reason)) in zip(refused, BAD_TOKENS.items(), strict=True):
        assert reason in line, name
    failed = [r for r in running.records() if r["action"] == "sign_in_failed"]
    assert [r["reason"] for r in failed] == [line.split(": ", 2)[2] for line in refused]


def test_an_issuer_whose_tokens_carry_no_kid_signs_people_in(idp: OidcProvider, tmp_path: Path) -> None:
    """OpenID Connect makes `kid` optional: a JWKS of one key per type, ID tokens without a kid."""
    idp.kids = False
    try:
        with console(tmp_path, idp) as running:
            for name in ("security", "self"):
                idp.person = ROLES[name].person
                agent = agent_for(idp)
                sign_in(agent, running.base)
                assert agent.json(f"{running.base}/api/me")[1]["role"] == ROLES[name].role
    finally:
        idp.kids = True


def test_an_issuer_that_cannot_be_reached_is_401_with_the_reason(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with console(tmp_path, None, issuer=nowhere) as running:
        answer = Agent().get(running.base + "/")
        assert answer.status == 401 and "set-cookie" not in answer.headers
        err = running.stop()
    assert f"tollgate console: sign-in refused (401): the issuer cannot be reached at {nowhere}/.well-known/" in err


def test_the_access_log_records_reads_sign_ins_failures_and_logouts(idp: OidcProvider, tmp_path: Path) -> None:
    with console(tmp_path, idp, token=TOKEN) as running:
        idp.person = ROLES["self"].person
        bob = agent_for(idp)
        hops = sign_in(bob, running.base)
        code = parse_qs(urlsplit(hops[1].location()).query)["code"][0]
        bob.get(f"{running.base}/api/people?since=2026-11-01")
        assert bob.get(f"{running.base}/nothing-here").status == 404  # no API request: not recorded
        cursor = "first"
        for _ in range(3):  # Live's polls, each from the cursor the last gave: one record
            polled = bob.get(f"{running.base}/api/events?after={cursor}&limit=200")
            assert polled.status == 200
            cursor = json.loads(polled.body)["cursor"]
        live = http.client.HTTPConnection("127.0.0.1", int(running.base.rsplit(":", 1)[1]), timeout=10)
        live.request(
            "GET",
            "/api/events/live",
            headers={"Cookie": f"tollgate_session={bob.cookies('tollgate_session')[0].value}"},
        )
        assert live.getresponse().status == 200  # recorded as it opens
        live.close()
        assert bob.get(f"{running.base}/api/access").status == 403  # security's only
        agent_for(idp).get(f"{running.base}/api/people?token={TOKEN}")  # refused: no one's read
        token = Agent()
        assert token.get(f"{running.base}/api/people", {"Authorization": f"Bearer {TOKEN}"}).status == 200
        idp.person, idp.bad = ROLES["security"].person, {"aud": "x"}
        agent_for(idp).follow(running.base + "/")
        idp.bad = {}
        sam = agent_for(idp)
        sign_in(sam, running.base)
        status, listed = sam.json(f"{running.base}/api/access?limit=100")
        latest = sam.json(f"{running.base}/api/access?limit=2")[1]
        bob.follow(f"{running.base}/auth/logout")
        err = running.stop()
    records = running.records()
    # /api/access: every record so far (its own request is recorded once answered), newest first.
    assert status == 200 and isinstance(listed, list) and isinstance(latest, list)
    assert [r["ts"] for r in listed] == sorted((r["ts"] for r in listed), reverse=True)
    later = [r for r in records if r["action"] == "logout" or r.get("query", "").startswith("limit=")]
    before = [r for r in records if r not in later]
    assert sorted(map(json.dumps, listed)) == sorted(map(json.dumps, before))
    assert [(r["email"], r["path"], r["query"]) for r in latest[:1]] == [
        ("sam@example.com", "/api/access", "limit=100")
    ]
    assert len(latest) == 2
    shown = [(r["action"], r["email"], r.get("role"), r.get("path"), r.get("query"), r["status"], r.get("count"))
             for r in records]  # fmt: skip
    # Each request as it is answered, sign-ins and logouts as they come; the repeats of a request
    # once their minute is over (here: at the stop), with how many times it was asked again.
    repeated = shown[-1][4] or ""
    assert re.fullmatch(r"after=[\w-]{48}&limit=200", repeated)  # the second poll's own cursor
    assert shown == [
        ("sign_in", "bob@example.com", "self", None, None, 303, None),
        ("request", "bob@example.com", "self", "/api/people", "since=2026-11-01", 200, 1),
        ("request", "bob@example.com", "self", "/api/events", "after=first&limit=200", 200, 1),
        ("request", "bob@example.com", "self", "/api/events/live", "", 200, 1),
        ("request", "bob@example.com", "self", "/api/access", "", 403, 1),
        ("request", "token", "security", "/api/people", "", 200, 1),
        ("sign_in_failed", None, None, None, None, 401, None),
        ("sign_in", "sam@example.com", "security", None, None, 303, None),
        ("request", "sam@example.com", "security", "/api/access", "limit=100", 200, 1),
        ("request", "sam@example.com", "security", "/api/access", "limit=2", 200, 1),
        ("logout", "bob@example.com", "self", None, None, 303, None),
        ("request", "bob@example.com", "self", "/api/events", repeated, 200, 2),
    ]
    assert records[6]["reason"] == "the ID token is not for this console (aud)"
    assert all(r["event"] == "console_access" and r["ts"].endswith("Z") for r in records)
    text = running.access.read_text()
    for secret in (TOKEN, SECRET, code, *idp.codes):
        assert secret not in text and secret not in err


def test_the_access_log_goes_to_postgresql_too_and_a_database_down_is_503_until_it_is_back(
    idp: OidcProvider, tmp_path: Path, postgres
) -> None:
    dsn = postgres.database()
    with console(tmp_path / "up", idp, token=TOKEN, audit_postgres=dsn) as running:
        idp.person = ROLES["lead"].person
        agent = agent_for(idp)
        sign_in(agent, running.base)
        agent.get(f"{running.base}/api/people")
        err = running.stop()  # the minute's requests written, and sent, as it stops

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT action, email, role, path, status, count, line FROM tollgate_console_access"
                            " ORDER BY id").fetchall()  # fmt: skip
        version = conn.execute("SELECT version FROM tollgate_schema WHERE name = 'tollgate_console_access'").fetchone()
    assert [r[:6] for r in rows] == [
        ("sign_in", "lena@example.com", "lead", None, 303, None),
        ("request", "lena@example.com", "lead", "/api/people", 200, 1),
    ], err
    assert [json.loads(r[6]) for r in rows] == running.records()
    assert version == (TABLE_VERSION,)
    # The database gone while the console runs: who a session is cannot be known, so a person is
    # answered 503 with the reason (never 401: no new sign-in); the token's holder too (the views
    # are the database's); one line says so; the database back, the same session is served again.
    own = PostgresServer(Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))).start()
    try:
        with console(tmp_path / "down", idp, token=TOKEN, audit_postgres=own.dsn()) as running:
            agent = agent_for(idp)
            sign_in(agent, running.base)
            assert agent.get(f"{running.base}/api/people").status == 200
            own.stop()
            for _ in range(3):
                answer = agent.get(f"{running.base}/api/people")
                assert answer.status == 503 and answer.headers["retry-after"] == ["5"]
                assert json.loads(answer.body)["message"].startswith("PostgreSQL 127.0.0.1:"), answer.body
            bearer = agent.get(f"{running.base}/api/people", {"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status == 503 and json.loads(bearer.body)["error"] == "unavailable"
            own.start()
            deadline = time.monotonic() + 10
            while agent.get(f"{running.base}/api/people").status != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert agent.get(f"{running.base}/api/people").status == 200
            err = running.stop()
    finally:
        if own.running():
            own.stop()
        shutil.rmtree(own.directory, ignore_errors=True)
    # The 503s answered no one known: none recorded (the token's holder is known: its 503 is); the
    # file keeps every other.
    assert [(r["action"], r.get("email"), r["status"]) for r in running.records()] == [
        ("sign_in", "lena@example.com", 303), ("request", "lena@example.com", 200), ("request", "token", 503),
        ("request", "lena@example.com", 200),
    ]  # fmt: skip
    assert err.count("people are answered 503 until it answers") == 1, err  # said once, and once it is back
    again = r"^tollgate console: sessions: PostgreSQL 127\.0\.0\.1:\d+/postgres answers again$"
    assert re.search(again, err, re.M), err


# ---- in Chromium


@pytest.fixture(scope="module")
def plain_provider() -> Iterator[OidcProvider]:
    """The issuer Chromium signs in at: plain HTTP on loopback (Chromium has no ca_file), at
    `localhost`: another site than the console's 127.0.0.1, as an identity provider is."""
    with oidc_provider(client_secret=SECRET) as started:
        yield started


@pytest.fixture(scope="module")
def browser_console(plain_provider: OidcProvider, tmp_path_factory) -> Iterator[Console]:
    with console(tmp_path_factory.mktemp("browser-console"), plain_provider) as running:
        yield running


@pytest.fixture
def shots(tmp_path) -> Path:
    where = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def status_of(browser: Browser, path: str) -> int:
    expression = f"fetch({json.dumps(path)}).then(r => r.status)"
    return browser.call("Runtime.evaluate", expression=expression, awaitPromise=True)["result"]["value"]


@pytest.mark.parametrize("name", list(ROLES))
def test_signing_in_in_chromium_shows_who_is_signed_in(
    plain_provider: OidcProvider, browser_console: Console, tmp_path: Path, shots: Path, name: str
) -> None:
    role = ROLES[name]
    plain_provider.person, plain_provider.form = role.person, True  # a page with a button at the issuer
    base = browser_console.base
    browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
    try:
        browser.go(f"{base}/#people")
        assert browser.evaluate("location.href").startswith(f"{plain_provider.issuer}/authorize?")
        browser.evaluate("document.getElementById('approve').click()")
        # Back at the path first asked for; the fragment stayed at the issuer's page, whose form sent
        # the browser on (a browser keeps it only through redirects).
        browser.wait_for(f"location.href.startsWith({json.dumps(base)}) && document.readyState === 'complete'")
        assert browser.evaluate("location.href") == f"{base}/"
        who = "document.getElementById('who')"
        browser.wait_for(f"!{who}.hidden && document.getElementById('who-name').textContent")
        assert (
            browser.evaluate("document.getElementById('who-name').textContent") == f"{role.person.name} · {role.role}"
        )
        assert browser.evaluate("document.getElementById('who-name').title") == role.person.email.lower()
        assert browser.evaluate("document.getElementById('sign-out').getAttribute('href')") == "/auth/logout"
        # Whether the audit is whole, for every role (from /api/me where /api/audit is security's).
        browser.wait_for("document.getElementById('audit-state').textContent === 'Audit: whole'")
        # The Audit view's tab only where it answers (security's).
        audit_tab = "document.querySelector('a[data-view=\"audit\"]')"
        assert browser.evaluate(f"{audit_tab}.hidden") == (role.role != "security")
        # The Invoice's: security's and the leads' (tests/e2e/test_web_console_invoice.py).
        invoice_tab = "document.querySelector('a[data-view=\"invoice\"]')"
        assert browser.evaluate(f"{invoice_tab}.hidden") == (role.role == "self")
        browser.evaluate("location.hash = 'people'")
        browser.wait_for("document.querySelectorAll('#people tbody tr').length > 0")
        shown = browser.evaluate(
            "Array.from(document.querySelectorAll('#people tbody tr td:first-child')).map(c => c.textContent)"
        )
        assert sorted(shown) == (role.clients or ["alice", "bob"])  # the page shows their scope, no more
        browser.screenshot(shots / f"console-signed-in-{name}.png")
        cookies = {c["name"]: c for c in browser.call("Storage.getCookies")["cookies"] if c["domain"] == "127.0.0.1"}
        assert list(cookies) == ["tollgate_session"]  # the pre-sign-in cookie gone
        session = cookies["tollgate_session"]
        assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Lax", "/")
        assert browser.evaluate("document.cookie") == ""
        me = browser.call("Runtime.evaluate", expression="fetch('/api/me').then(r => r.json())", awaitPromise=True,
                          returnByValue=True)["result"]["value"]  # fmt: skip
        assert (me["email"], me["role"]) == (role.person.email.lower(), role.role)
        # Sign out: the session ends, at the console and at the issuer.
        logouts = len(plain_provider.logouts)
        browser.evaluate("document.getElementById('sign-out').click()")
        browser.wait_for(f"location.href === {json.dumps(base + '/auth/signed-out')}")
        browser.screenshot(shots / f"console-signed-out-{name}.png")
        assert len(plain_provider.logouts) == logouts + 1
        assert status_of(browser, "/api/people") == 401
    finally:
        browser.close()


def test_a_self_person_who_clicks_the_audit_badge_sees_whether_the_audit_is_whole(
    plain_provider: OidcProvider, browser_console: Console, tmp_path: Path, shots: Path
) -> None:
    """The Audit view's table is security's: for anyone else, the badge (and #audit) opens a view
    saying whether the whole audit is whole, never an error."""
    plain_provider.person, plain_provider.form = ROLES["self"].person, False  # approved at once
    base = browser_console.base
    browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
    try:
        browser.go(f"{base}/#audit")  # as a link to the Audit view would, before the page knows who signs in
        browser.wait_for(f"location.href === {json.dumps(base + '/#audit')}")
        said = "document.querySelector('#audit-summary .audit-said')"
        browser.wait_for(f"{said} && {said}.textContent === 'The audit is whole.'")
        browser.evaluate("location.hash = 'live'")
        browser.wait_for("document.querySelector('#nav a.active').dataset.view === 'live'")
        browser.wait_for("!document.getElementById('who').hidden")
        badge = "document.getElementById('audit-state')"
        browser.wait_for(f"{badge}.textContent === 'Audit: whole'")
        browser.evaluate(f"{badge}.click()")
        browser.wait_for(f"location.hash === '#audit' && {said} && {said}.textContent === 'The audit is whole.'")
        assert browser.evaluate("document.querySelector('#main .error')") is None
        assert "403" not in browser.evaluate("document.getElementById('main').textContent")
        browser.screenshot(shots / "console-audit-self.png")
    finally:
        browser.close()


def test_an_api_401_sends_the_page_to_sign_in_again(plain_provider: OidcProvider, browser_console: Console,
                                                    tmp_path: Path, shots: Path) -> None:  # fmt: skip
    plain_provider.person, plain_provider.form = ROLES["self"].person, False  # approved at once
    base = browser_console.base
    browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
    try:
        browser.go(f"{base}/#spend")
        browser.wait_for(f"location.href === {json.dumps(base + '/#spend')}")
        browser.wait_for("!document.getElementById('who').hidden")
        # The session ends behind the page's back (another tab signed out): its next request is 401.
        sessions = [
            c["value"] for c in browser.call("Storage.getCookies")["cookies"] if c["name"] == "tollgate_session"
        ]
        Agent().get(f"{base}/auth/logout", {"Cookie": f"tollgate_session={sessions[0]}"})
        assert status_of(browser, "/api/people") == 401
        signed_in = len([r for r in browser_console.records() if r["action"] == "sign_in"])
        browser.evaluate("location.hash = 'people'")
        browser.wait_for(
            f"location.href === {json.dumps(base + '/#people')} && document.querySelectorAll('#people tbody tr').length",
            timeout=20,
        )
        assert len([r for r in browser_console.records() if r["action"] == "sign_in"]) == signed_in + 1
        assert status_of(browser, "/api/people") == 200
        browser.screenshot(shots / "console-signed-in-again.png")
    finally:
        browser.close()


def test_settings_it_cannot_use_stop_it_with_one_line(tmp_path: Path) -> None:
    """A ca_file that cannot be read, and --listen away from loopback without a redirect_uri."""
    port = free_port()
    config = write_config(tmp_path, port, None, issuer="https://login.example.com", ca_file=str(tmp_path / "none.pem"))
    done = run_tollgate("console", "--config", str(config), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: console.sign_in.ca_file: {tmp_path}/none.pem: [Errno 2] No such file or directory\n"
    tls = {"cert": str(tmp_path / "console.pem"), "key": str(tmp_path / "console-key.pem")}
    config = write_config(tmp_path, port, None, issuer="https://login.example.com", tls=tls)
    done = run_tollgate("console", "--config", str(config), "--listen", f"0.0.0.0:{port}", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: console.sign_in.redirect_uri: required when the console listens on 0.0.0.0:{port} (not loopback):"
        " the console's address as the browser reaches it, e.g. https://console.example.com/auth/callback\n"
    )
