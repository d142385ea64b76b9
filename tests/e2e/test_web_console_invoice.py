"""The console's Invoice view in Chromium, for a `security` person and a lead signed in with
OpenID Connect, over the audit files (the results in `reconciliation` records) and over PostgreSQL
(the records in their table, the results in `tollgate_reconciliation`): security sees the coverage
per day, the differences and the key used around Tollgate, amounts exact; the lead sees the held
key their clients' calls used, and nothing of the others' keys nor of the key used around
Tollgate. Screenshots under TOLLGATE_SCREENSHOTS, else the test's own directory."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.invoice_console import PEOPLE, cells, console, cut, invoice_open
from tests.support.oidc_provider import OidcProvider
from tests.support.reconciliation import day, record, row, side, store

from tollgate.common.audit_chain import Chain
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of
from tollgate.records.senders.audit_postgres import store as store_records

KEY_A, KEY_B = "sha256:a1a1a1a1a1a1", "sha256:b2b2b2b2b2b2"
DAY = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()  # closed, and in the view's default 31 days
EXACT = "0.000123456789"  # a cost no binary float holds exactly
CLIENTS = [
    {"name": "alice", "keys": ["tg-alice-invoice-0001-of-the-tests"], "groups": ["research"],
     "people": ["alice@example.com"]},
    {"name": "bob", "keys": ["tg-bob-invoice-0002-of-the-tests"], "groups": ["sales"], "people": ["bob@example.com"]},
]  # fmt: skip
RECORDS = [
    {"event": "tollgate_started", "ts": f"{DAY}T07:59:00.000Z", "version": "0.1.0", "pid": 4242},
    {"event": "llm_call", "ts": f"{DAY}T08:00:00.000Z", "client": "alice", "groups": ["research"],
     "provider": "openai", "model": "gpt-4o-mini", "decision": "allow", "upstream_key": KEY_A, "input_tokens": 10,
     "output_tokens": 5, "cost_usd": 0.25},
    {"event": "llm_call", "ts": f"{DAY}T08:01:00.000Z", "client": "bob", "groups": ["sales"], "provider": "openai",
     "model": "gpt-4o-mini", "decision": "allow", "upstream_key": KEY_B, "input_tokens": 10, "output_tokens": 5,
     "cost_usd": 0.5},
]  # fmt: skip
ROWS = [
    row("openai", DAY, "key_research", "gpt-4o-mini", "match", side(10, 5, 1, "0.25"), side(10, 5, 1, "0.25"), KEY_A,
        key_name="research-prod", project="proj_research"),
    row("openai", DAY, "key_sales", "gpt-4o-mini", "differs", side(10, 5, 1, "0.5"), side(2010, 5, 3, "0.9"), KEY_B,
        key_name="sales-prod", project="proj_sales"),
    row("openai", DAY, "key_laptop", "gpt-4o", "around", side(0, 0, 0, "0"), side(120, 40, 2, EXACT), held=False,
        key_name="laptop-script", project="proj_side"),
]  # fmt: skip
DAYS = [day("openai", DAY, "0.99966", "0.75", f"0.75{EXACT[2:]}", EXACT, "0.80")]


def chained(records: list[dict[str, Any]], instance: str) -> list[bytes]:
    """The records as an instance writes them: chained, a checkpoint at the end."""
    chain = Chain()
    lines = [chain.link(json.dumps({**r, "instance": instance}).encode()) for r in records]
    checkpoint = {**chain.checkpoint(None, f"{DAY}T08:02:00.000Z"), "instance": instance}
    return [*lines, chain.link(json.dumps(checkpoint).encode())]


def stored(directory: Path, dsn: str | None) -> Path:
    """The audit (and the run's results) where the console reads them: the audit's path."""
    directory.mkdir(parents=True, exist_ok=True)
    audit = directory / "audit.jsonl"
    run = record(f"{DAY}T23:30:00.000Z", ROWS, DAYS)
    if dsn is None:
        audit.write_bytes(b"".join(line + b"\n" for line in chained([*RECORDS, run], "gw-1")))
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_schema(conn, "tollgate_records")
            prepare(conn)
            store_records(conn, "tollgate_records", [row_of(line) for line in chained(RECORDS, "gw-1")])
        store(dsn, f"{DAY}T23:00:00Z", ROWS[:1], DAYS)  # an earlier run of the day: the newer one is shown
        store(dsn, f"{DAY}T23:30:00Z", ROWS, DAYS)
    return audit


@pytest.mark.parametrize("source", ["files", "postgresql"])
def test_the_invoice_in_chromium_for_security_and_a_lead(
    invoice_sign_in: OidcProvider, tmp_path: Path, request: pytest.FixtureRequest, source: str
) -> None:
    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    dsn = request.getfixturevalue("postgres").database() if source == "postgresql" else None
    directory = tmp_path / "console"
    with console(directory, invoice_sign_in, stored(directory, dsn), CLIENTS, dsn) as base:
        for name, person in PEOPLE.items():
            with invoice_open(invoice_sign_in, base, person, tmp_path / f"profile-{name}") as browser:
                assert not browser.evaluate("document.querySelector('a[data-view=\"invoice\"]').hidden")
                page = browser.evaluate("document.getElementById('main').textContent")
                if name == "security":
                    assert cells(browser, "invoice-days") == [
                        [DAY, "openai", "99.97 %", "$0.75", f"$0.75{EXACT[2:]}", f"${EXACT}", "$0.80"]
                    ]
                    differences = cells(browser, "invoice-rows")
                    assert [(r[2], r[5], r[8]) for r in differences] == [
                        ("sales-prod (key_sales)", "differs", "+2000"),
                        ("laptop-script (key_laptop)", "around", "+120"),
                    ]
                    assert differences[0][9:] == ["$0.50", "$0.90", "$0.40"]
                    around = cells(browser, "invoice-around")
                    assert [r[:4] for r in around] == [["openai", "laptop-script", "key_laptop", "proj_side"]]
                    assert around[0][-1] == f"${EXACT}"
                else:
                    mine = cells(browser, "invoice-rows")
                    assert [(r[2], r[5]) for r in mine] == [("research-prod (key_research)", "match")]
                    assert browser.evaluate("document.getElementById('invoice-days')") is None
                    assert browser.evaluate("document.getElementById('invoice-around')") is None
                    for other in ("key_sales", "sales-prod", "key_laptop", "laptop-script", EXACT):
                        assert other not in page, other
                assert "upstream_key" not in page and KEY_A not in page
                assert browser.evaluate("document.documentElement.scrollWidth") <= 1024  # no scrolling sideways
                # At 1,024 pixels every cell is whole: a key, project or model wraps, an amount to
                # the pico-dollar fits its column.
                for table in (
                    ("invoice-days", "invoice-rows", "invoice-around") if name == "security" else ("invoice-rows",)
                ):
                    assert cut(browser, table) == [], table
                    assert browser.broken_words(f"#{table} th, #{table} td") == [], table  # at `_`, `-`, `.`, spaces
                metrics = "fetch('/metrics').then(r => r.status)"
                status = browser.call("Runtime.evaluate", expression=metrics, awaitPromise=True)["result"]["value"]
                assert status == (200 if name == "security" else 403)
                browser.screenshot(shots / f"console-invoice-{source}-{name}.png", whole=True)
