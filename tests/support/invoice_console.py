"""The console's Invoice view as people open it: a `tollgate console` signing in with OpenID
Connect (the provider of tests/support/oidc_provider.py), a `security` person and a lead of the
research group, and Chromium opened on the view, signed in, its tables read back as text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.support.cdp import Browser, chromium
from tests.support.cli import console_process
from tests.support.oidc_provider import OidcProvider, Person, oidc_provider
from tests.support.proxy import free_port

SECRET = "console-oidc-client-secret-of-the-invoice-test"
PEOPLE = {
    "security": Person("Sam@Example.com", ["secops"], "Sam Security"),
    "lead": Person("lena@example.com", ["eng-leads"], "Lena Lead"),  # leads research
}


@pytest.fixture(scope="module")
def invoice_sign_in() -> Iterator[OidcProvider]:
    """The OpenID provider the console of the Invoice tests signs people in with."""
    with oidc_provider(client_secret=SECRET) as started:
        yield started


@contextmanager
def console(
    directory: Path, provider: OidcProvider, audit: Path, clients: list[dict[str, Any]], dsn: str | None = None
) -> Iterator[str]:
    """`tollgate console` over `audit` (and the records' table at `dsn`), `secops` security and
    `eng-leads` leads of research, stopped after; its address."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    sign_in = {"issuer": provider.issuer, "client_id": "tollgate-console", "client_secret": SECRET,
               "security": ["secops"], "leads": {"eng-leads": ["research"]}}  # fmt: skip
    config: dict[str, Any] = {"audit": {"path": str(audit)}, "clients": clients,
                              "console": {"listen": f"127.0.0.1:{port}", "sign_in": sign_in}}  # fmt: skip
    if dsn is not None:  # a console over PostgreSQL, as its replicas run: their cursors' secret shared
        config["audit"]["postgres"] = {"dsn": dsn}
        config["console"]["cursor_secret"] = "cursors-of-the-invoice-console-0001"
    path = directory / "tollgate.yaml"
    path.write_text(json.dumps(config))
    process, line = console_process(path, cwd=directory)
    try:
        assert line.startswith("Tollgate console: "), line + (process.stderr.read() if process.stderr else "")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
        assert "Traceback" not in err and SECRET not in err, err


@contextmanager
def invoice_open(provider: OidcProvider, base: str, person: Person, profile: Path) -> Iterator[Browser]:
    """Chromium, 1024 pixels wide, on the Invoice view, `person` signed in (approved at once)."""
    provider.person, provider.form = person, False
    browser = Browser(chromium(), profile, width=1024, height=700)
    try:
        browser.go(f"{base}/#invoice")
        browser.wait_for(f"location.href === {json.dumps(base + '/#invoice')}")
        browser.wait_for("document.querySelectorAll('#invoice-rows tbody tr').length > 0")
        browser.wait_for("!document.getElementById('who').hidden")
        yield browser
    finally:
        browser.close()


def cells(browser: Browser, table: str) -> list[list[str]]:
    """The text of each cell of each row of the table `table`."""
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))"
    )


def cut(browser: Browser, table: str) -> list[str]:
    """The text of each cell of the table `table` not shown whole: wider or taller than its box
    (cut to an ellipsis, or clamped)."""
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody td'))"
        ".filter(c => c.scrollWidth > c.clientWidth || c.scrollHeight > c.clientHeight).map(c => c.textContent)"
    )
