"""`tollgate reconcile` end to end: the official OpenAI and Anthropic SDKs call through a real
mitmdump to fake upstreams; stand-ins of both vendors' admin APIs (TLS, their documented shapes,
pages, keys across projects) are fed what those calls spent, and usage on a key Tollgate never saw.
The command finds every token Tollgate counted on the vendor's side, the coverage to the cent, and
the key used around Tollgate by its id, name and project; an open day never fails it, a revised
bucket is read as revised; a refused admin key exits 2 with the vendor's reason; the admin keys are
never in the output, the audit or the table. Tollgate's side is read from the local audit, and from
the records' table (`audit.postgres`), where the results are kept in `tollgate_reconciliation`
(made by `tollgate audit migrate`: the command makes none). The console's Invoice view shows a lead
the held keys their clients' calls used, from either; in Chromium, over the results of those same
calls, security sees the coverage per day to the cent and the key used around Tollgate, and a lead
of the calling client's group the held rows' tokens on both sides, nothing more, all as printed.
Screenshots under TOLLGATE_SCREENSHOTS, else the test's own directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from tests.support.admin_apis import AnthropicAdmin, Key, OpenAIAdmin, Usage, hint_of
from tests.support.cli import checkout_env
from tests.support.fake_upstream import FakeUpstream
from tests.support.invoice_console import PEOPLE, cells, console, invoice_open
from tests.support.oidc_provider import OidcProvider
from tests.support.postgres import PostgresServer

from tollgate.configuration.config import parse_config
from tollgate.console.follow import AuditFiles
from tollgate.console.invoice import Invoice
from tollgate.console.invoice_results import FromTable
from tollgate.console.scope import ScopeRules
from tollgate.console.viewer import Viewer
from tollgate.console.views import Views
from tollgate.records.reconcile.kept_results import TABLE, exact_json, latest, record_entries, table_entries
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of, store

REAL_OPENAI = "sk-proj-gatewayheld-0123456789abcdefWXYZ"
REAL_ANTHROPIC = "sk-ant-api03-gatewayheld-0123456789-igAA"
LAPTOP = "sk-proj-laptop-notthroughtollgate-7788"
ALICE = "tg-alice-reconcile-0123456789"
OPENAI_ADMIN = "sk-admin-openai-reconcile-secret-4242"
ANTHROPIC_ADMIN = "sk-ant-admin01-reconcile-secret-4343"
ADMIN_ENV = {"OPENAI_ADMIN_KEY": OPENAI_ADMIN, "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN}
# The names the vendors bill the models called by: their dated snapshots.
SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}
TODAY = datetime.now(UTC).date()
CLOSED = TODAY - timedelta(days=3)  # ended more than 48 hours ago, whatever the hour
LAPTOP_USD = 0.0012  # 4000 input tokens of gpt-4o-mini at $0.15 per million, 1000 output at $0.60

CALLS = f"""
import anthropic, openai
o = openai.OpenAI(api_key="{ALICE}", max_retries=0)
o.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
o.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "again"}}])
o.embeddings.create(model="text-embedding-3-small", input="hello")
a = anthropic.Anthropic(api_key="{ALICE}", max_retries=0)
a.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[{{"role": "user", "content": "hi"}}])
report(done=True)
"""


CLIENTS = [{"name": "alice", "keys": [ALICE], "groups": ["research"]}]


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL_OPENAI]},
                      "anthropic": {"upstream": urls["anthropic"], "keys": [REAL_ANTHROPIC]}},
        "clients": CLIENTS,
    }  # fmt: skip


@pytest.fixture(scope="module")
def made(start_gateway):
    """The gateway, and the records of the calls made through it."""
    gw = start_gateway(config, providers=("openai", "anthropic"))
    assert gw.run(CALLS) == {"done": True}
    return gw, gw.new_audit(4)


@pytest.fixture(scope="module")
def vendors(upstream_ca) -> Iterator[tuple[OpenAIAdmin, AnthropicAdmin, FakeUpstream, FakeUpstream]]:
    openai_api = OpenAIAdmin(OPENAI_ADMIN, {"proj_gw": "Gateway", "proj_rs": "Research"})
    anthropic_api = AnthropicAdmin(ANTHROPIC_ADMIN)
    servers = FakeUpstream(upstream_ca, openai_api.handle), FakeUpstream(upstream_ca, anthropic_api.handle)
    yield openai_api, anthropic_api, *servers
    for server in servers:
        server.close()


def fed(vendors, records: list[dict], laptop_day) -> None:
    """The stand-ins told what Tollgate's calls spent, and 4000 + 1000 tokens on a laptop's key."""
    openai_api, anthropic_api, _, _ = vendors
    openai_api.keys = [Key("key_gw", "tollgate", "proj_gw", hint_of(REAL_OPENAI, 8, 4)),
                       Key("key_laptop", "dana-laptop", "proj_rs", hint_of(LAPTOP, 8, 4)),
                       Key("key_unused", "ci", "proj_rs", "sk-proj-...0000")]  # fmt: skip
    anthropic_api.keys = [Key("apikey_gw", "tollgate", "wrkspc_gw", hint_of(REAL_ANTHROPIC, 14, 4)),
                          Key("apikey_ci", "ci", "wrkspc_ci", "sk-ant-api03-Zz9...q9AA")]  # fmt: skip
    openai_api.usage, anthropic_api.usage = [], []
    for r in records:
        api, key = (openai_api, "key_gw") if r["provider"] == "openai" else (anthropic_api, "apikey_gw")
        api.usage.append(Usage(TODAY, key, SNAPSHOTS.get(r["model"], r["model"]), r["input_tokens"],
                               r["output_tokens"] or 0, cached_tokens=r["cached_tokens"] or 0,
                               cache_write_tokens=r["cache_write_tokens"] or 0,
                               endpoint="embeddings" if r["endpoint"] == "embeddings" else "completions"))  # fmt: skip
    openai_api.usage.append(Usage(laptop_day, "key_laptop", "gpt-4o-mini-2024-07-18", 4000, 1000, requests=2))
    openai_api.costs = [
        (TODAY, "proj_gw", "gpt-4o-mini, input", "0.01"),
        (laptop_day, "proj_rs", "gpt-4o-mini", "0.0012"),
    ]
    anthropic_api.costs = [(TODAY, "wrkspc_gw", "Claude Sonnet 4.5 Usage - Input Tokens", "0.02")]


def reconcile_config(gw, vendors, ca: Path, postgres_dsn: str | None = None) -> Path:
    _, _, openai_server, anthropic_server = vendors
    data = yaml.safe_load(gw.config_path.read_text())
    data["reconcile"] = {
        "openai": {"admin_key": "${OPENAI_ADMIN_KEY}", "base_url": openai_server.url, "ca_file": str(ca)},
        "anthropic": {"admin_key": "${ANTHROPIC_ADMIN_KEY}", "base_url": anthropic_server.url, "ca_file": str(ca)},
    }
    if postgres_dsn is not None:
        data["audit"]["postgres"] = {"dsn": postgres_dsn}
    path = gw.config_path.with_name("reconcile-postgres.yaml" if postgres_dsn else "reconcile.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def reconcile(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "tollgate", "reconcile", "--config", str(path), *args],
        env={**checkout_env(), **(ADMIN_ENV if env is None else env)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    for secret in (OPENAI_ADMIN, ANTHROPIC_ADMIN, REAL_OPENAI, REAL_ANTHROPIC):
        assert secret not in run.stdout and secret not in run.stderr
    return run


def lead_sees(gw, since: str, result: dict, dsn: str | None = None) -> None:
    """The console's Invoice view over the run's results: a lead of alice's group sees the rows of
    the held keys alice's calls used (matched by the fingerprint the records name the key by), none
    used around Tollgate, no day's totals; a lead of another group sees none."""
    rules = ScopeRules.of(parse_config({"clients": CLIENTS}, {}))
    audit = AuditFiles([gw.audit_path], follow=False)
    audit.catch_up()
    views = (
        Views(audit, rules=rules) if dsn is None else Views(audit, rules=rules, invoice=Invoice(FromTable(dsn), audit))
    )
    lead = Viewer("lead", "lena@example.com", "Lena", frozenset({"research"}))
    answer = views.answer("/api/invoice", {"since": [since]}, lead)
    held = [r for r in result["rows"] if r["held"] and r["status"] != "around"]
    assert held and all(r["upstream_key"].startswith("sha256:") for r in held)
    assert sorted((r["provider"], r["day"], r["key_id"], r["model"]) for r in answer["rows"]) == sorted(
        (r["provider"], r["day"], r["key_id"], r["model"]) for r in held)  # fmt: skip
    assert (answer["days"], answer["around"]) == ([], [])
    other = Viewer("lead", "ian@example.com", "Ian", frozenset({"infra"}))
    assert views.answer("/api/invoice", {"since": [since]}, other)["rows"] == []
    views.invoice.results.close()


def sums(records: list[dict], provider: str) -> dict[str, dict]:
    by_model: dict[str, dict] = {}
    for r in records:
        if r["provider"] == provider:
            s = by_model.setdefault(r["model"], {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0,
                                                 "requests": 0, "cost_usd": 0.0})  # fmt: skip
            s["input_tokens"] += r["input_tokens"]
            s["cached_input_tokens"] += r["cached_tokens"] or 0
            s["output_tokens"] += r["output_tokens"] or 0
            s["requests"] += 1
            s["cost_usd"] += r["cost_usd"]
    return by_model


def test_every_token_and_the_key_used_around_tollgate(made, vendors, upstream_ca_pem):
    gw, records = made
    fed(vendors, records, CLOSED)
    run = reconcile(reconcile_config(gw, vendors, upstream_ca_pem), "--json", "--since", CLOSED.isoformat())
    assert run.returncode == 1, run.stderr  # a closed day used around Tollgate
    assert run.stderr == ""
    result = json.loads(run.stdout)
    held = [r for r in result["rows"] if r["held"]]
    for provider in ("openai", "anthropic"):
        counted = sums(records, provider)
        rows = {r["model"]: r for r in held if r["provider"] == provider}
        assert set(rows) == set(counted)  # the snapshots billed are the models called
        for model, ours in counted.items():
            row = rows[model]
            assert (row["day"], row["open"], row["status"], row["key_name"]) == (TODAY.isoformat(), True, "match",
                                                                                  "tollgate")  # fmt: skip
            for side in ("tollgate", "vendor"):
                got = {k: row[side][k] for k in ("input_tokens", "cached_input_tokens", "output_tokens")}
                assert got == {k: ours[k] for k in got}, (provider, model, side)
            assert row["tollgate"]["requests"] == ours["requests"]
            assert row["tollgate"]["cost_usd"] == row["vendor"]["cost_usd"]
            assert row["tollgate"]["cost_usd"] == pytest.approx(ours["cost_usd"], abs=1e-8)
    [around] = [r for r in result["rows"] if not r["held"]]
    assert {k: around[k] for k in ("provider", "day", "open", "key_id", "key_name", "project", "status")} == {
        "provider": "openai", "day": CLOSED.isoformat(), "open": False, "key_id": "key_laptop",
        "key_name": "dana-laptop", "project": "Research", "status": "around"}  # fmt: skip
    assert around["vendor"]["cost_usd"] == LAPTOP_USD and around["tollgate"]["input_tokens"] == 0
    days = {(d["provider"], d["day"]): d for d in result["days"]}
    assert len(days) == 2 * 4
    closed = days[("openai", CLOSED.isoformat())]
    assert (closed["coverage"], closed["around_usd"], closed["vendor_usd"], closed["billed_usd"]) == (
        0.0, LAPTOP_USD, LAPTOP_USD, 0.0012)  # fmt: skip
    for provider in ("openai", "anthropic"):
        today = days[(provider, TODAY.isoformat())]
        spent = sum(s["cost_usd"] for s in sums(records, provider).values())
        assert today["coverage"] == 1.0 and today["open"] is True
        assert round(today["tollgate_usd"], 2) == round(today["vendor_usd"], 2) == round(spent, 2)
        assert today["tollgate_usd"] == pytest.approx(spent, abs=1e-8)
    assert days[("anthropic", TODAY.isoformat())]["billed_usd"] == 0.02
    # The run is kept in the audit, exactly as printed, beside the proxy's own records.
    [kept] = [r for r in gw.audit_records() if r.get("event") == "reconciliation"]
    assert (kept["since"], kept["until"], kept["rows"], kept["days"]) == (
        CLOSED.isoformat(), TODAY.isoformat(), result["rows"], result["days"])  # fmt: skip
    newest = latest(record_entries(gw.audit_records()))
    assert newest[("openai", CLOSED.isoformat())].rows == [around]
    lead_sees(gw, CLOSED.isoformat(), result)
    text = gw.audit_path.read_text()
    assert OPENAI_ADMIN not in text and ANTHROPIC_ADMIN not in text
    # Written by the audit's own writer: the file stays whole, the proxy's run and the command's.
    verified = subprocess.run([sys.executable, "-m", "tollgate", "audit", "verify", "--live", str(gw.audit_path)],
                              env=checkout_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def dollars(cell: str) -> Decimal | None:
    """A dollar amount as the page shows it, read back exactly: written out, never in exponents;
    none (an empty cell) where the vendor said none."""
    if cell == "":
        return None
    assert re.fullmatch(r"-?\$\d+\.\d{2,}", cell), cell
    return Decimal(cell.replace("$", ""))


def tokens(side: dict) -> str:
    return f"{side['input_tokens']} in / {side['output_tokens']} out"


def shown_row(cell: list[str]) -> tuple:
    """A row of the Invoice's rows table: day, provider, key, project, model, status, the tokens
    on both sides, the input tokens more, and the costs on both sides and their difference."""
    return (*cell[:8], cell[8], *(dollars(c) for c in cell[9:]))


def printed_row(r: dict) -> tuple:
    key = f"{r['key_name']} ({r['key_id']})" if r["key_name"] != r["key_id"] else r["key_id"]
    more = r["vendor"]["input_tokens"] - r["tollgate"]["input_tokens"]  # the vendor's less Tollgate's
    return (r["day"], r["provider"], key, r["project"], r["model"], r["status"] + (", open" if r["open"] else ""),
            tokens(r["tollgate"]), tokens(r["vendor"]), f"+{more}" if more > 0 else str(more),
            r["tollgate"]["cost_usd"], r["vendor"]["cost_usd"], r["vendor"]["cost_usd"] - r["tollgate"]["cost_usd"])  # fmt: skip


# The amounts' cells that wrap (their text on more than one line) or are cut (wider than the cell).
AMOUNTS_BROKEN = """Array.from(document.querySelectorAll('td.usd')).filter(c => {
  const text = document.createRange();
  text.selectNodeContents(c);
  return text.getClientRects().length > 1 || c.scrollWidth > c.clientWidth;
}).map(c => c.textContent)"""


def test_the_invoice_in_chromium_shows_what_reconcile_printed(
    made, vendors, upstream_ca_pem, invoice_sign_in: OidcProvider, tmp_path: Path
):
    gw, records = made
    fed(vendors, records, CLOSED)
    run = reconcile(reconcile_config(gw, vendors, upstream_ca_pem), "--json", "--since", CLOSED.isoformat())
    assert run.returncode == 1, run.stderr
    result = exact_json(run.stdout)  # amounts as printed, exactly
    held = [r for r in result["rows"] if r["held"]]
    [around] = [r for r in result["rows"] if r["status"] == "around"]
    assert held and all(r["status"] == "match" for r in held)
    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with console(tmp_path / "console", invoice_sign_in, gw.audit_path, CLIENTS) as base:
        for name, person in PEOPLE.items():
            with invoice_open(invoice_sign_in, base, person, tmp_path / f"profile-{name}") as browser:
                page = browser.evaluate("document.getElementById('main').textContent")
                shown = sorted(shown_row(c) for c in cells(browser, "invoice-rows"))
                if name == "security":
                    days = [(d[0], d[1], d[2], *(dollars(c) for c in d[3:])) for d in cells(browser, "invoice-days")]
                    assert sorted(days) == sorted(
                        (d["day"] + (" (open)" if d["open"] else ""), d["provider"], f"{d['coverage'] * 100:.2f} %",
                         d["tollgate_usd"], d["vendor_usd"], d["around_usd"], d["billed_usd"])
                        for d in result["days"])  # fmt: skip
                    assert shown == [printed_row(around)]  # every held row matched: only the around one differs
                    [key] = cells(browser, "invoice-around")
                    assert key[:4] == ["openai", "dana-laptop", "key_laptop", "Research"]
                    assert key[:4] == [around[k] for k in ("provider", "key_name", "key_id", "project")]
                    assert key[7:10] == [
                        str(around["vendor"][k]) for k in ("requests", "input_tokens", "output_tokens")
                    ]
                    assert dollars(key[10]) == around["vendor"]["cost_usd"] == Decimal(str(LAPTOP_USD))
                else:
                    assert shown == sorted(printed_row(r) for r in held)
                    assert browser.evaluate("document.getElementById('invoice-days')") is None
                    assert browser.evaluate("document.getElementById('invoice-around')") is None
                    for other in ("key_laptop", "dana-laptop", "Research"):
                        assert other not in page, other
                assert "upstream_key" not in page and "sha256:" not in page
                assert browser.evaluate("document.documentElement.scrollWidth") <= 1024  # no scrolling sideways
                assert browser.evaluate(AMOUNTS_BROKEN) == []  # each amount on one line, whole
                browser.screenshot(shots / f"console-invoice-reconciled-{name}.png")
                if name == "security":  # the tables under the fold: the differences, the key used around
                    browser.evaluate("document.getElementById('invoice-rows').scrollIntoView()")
                    browser.screenshot(shots / f"console-invoice-reconciled-{name}-around.png")


def test_a_revised_bucket_on_an_open_day_is_compared_but_never_fails(made, vendors, upstream_ca_pem):
    gw, records = made
    fed(vendors, records, TODAY)  # the vendor revised: the laptop's usage is today's
    vendors[0].malformed_bucket = True  # and one of its buckets is not of the documented shape
    path = reconcile_config(gw, vendors, upstream_ca_pem)
    try:
        run = reconcile(path, "--json", "--since", CLOSED.isoformat())
    finally:
        vendors[0].malformed_bucket = False
    assert run.returncode == 0, run.stderr
    assert "warning: openai: usage/completions: bucket 0: start_time is str, not a time; left out" in run.stderr
    result = json.loads(run.stdout)
    [around] = [r for r in result["rows"] if r["status"] == "around"]
    assert (around["key_id"], around["open"]) == ("key_laptop", True)
    today = next(d for d in result["days"] if d["provider"] == "openai" and d["day"] == TODAY.isoformat())
    assert today["around_usd"] == LAPTOP_USD
    assert today["coverage"] == round(1 - LAPTOP_USD / today["vendor_usd"], 6)
    table = reconcile(path, "--since", CLOSED.isoformat())
    assert table.returncode == 0 and "key_laptop (dana-laptop)" in table.stdout and "around (open)" in table.stdout
    csv = reconcile(path, "--csv", "--since", CLOSED.isoformat())
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith("kind,provider,day,open,key_id")


def test_a_refused_admin_key_exits_2_with_the_vendors_reason(made, vendors, upstream_ca_pem):
    gw, records = made
    fed(vendors, records, CLOSED)
    wrong = {**ADMIN_ENV, "OPENAI_ADMIN_KEY": "sk-admin-WRONGwrongWRONG-5555"}
    run = reconcile(reconcile_config(gw, vendors, upstream_ca_pem), "--json", env=wrong)
    assert run.returncode == 2
    assert "error: openai: the admin key (OPENAI_ADMIN_KEY) was refused: 401: Incorrect API key provided" in run.stderr
    assert "WRONG" not in run.stderr and "5555" not in run.stderr and "WRONG" not in run.stdout
    unset = reconcile(reconcile_config(gw, vendors, upstream_ca_pem), env={"ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN})
    assert unset.returncode == 2
    assert "reconcile.openai.admin_key: environment variable OPENAI_ADMIN_KEY is not set" in unset.stderr


def test_a_fleet_without_the_records_table_exits_2(made, vendors, upstream_ca_pem):
    gw, _ = made
    run = reconcile(reconcile_config(gw, vendors, upstream_ca_pem), "--from", "postgres")
    assert run.returncode == 2 and "no audit.postgres" in run.stderr


def test_the_records_table_is_read_and_the_results_kept_in_theirs(made, vendors, upstream_ca_pem, postgres):
    gw, records = made
    fed(vendors, records, CLOSED)
    dsn = postgres.database()
    with postgres_connection(dsn) as conn:  # the audit sent as the sender sends it
        ensure_schema(conn, "tollgate_records")
        prepare(conn)
        lines = [line.encode() for line in gw.audit_path.read_text().splitlines() if line.strip()]
        store(conn, "tollgate_records", [row_of(line) for line in lines])
    path = reconcile_config(gw, vendors, upstream_ca_pem, dsn)
    env = {**ADMIN_ENV}
    # Its table is made by `tollgate audit migrate` (as the owner of the records' tables): until
    # then, the results are printed but not kept, said in one line, exit 2.
    unmade = reconcile(path, "--json", "--from", "postgres", "--since", CLOSED.isoformat(), env=env)
    assert unmade.returncode == 2 and unmade.stderr.count("\n") == 1, unmade.stderr
    assert f"the results were not kept: {TABLE} is missing: run `tollgate audit migrate`" in unmade.stderr
    migrated = subprocess.run([sys.executable, "-m", "tollgate", "audit", "migrate"], capture_output=True, text=True,
                              env={**checkout_env(), "TOLLGATE_RECORDS_DSN": dsn}, timeout=120)  # fmt: skip
    assert migrated.returncode == 0 and f"{TABLE} migrated from schema version 0 to 1" in migrated.stdout, migrated
    first = reconcile(path, "--json", "--from", "postgres", "--since", CLOSED.isoformat(), env=env)
    assert first.returncode == 1, first.stderr
    from_audit = reconcile(path, "--json", "--from", "audit", "--since", CLOSED.isoformat(), env=env)
    assert json.loads(first.stdout) == json.loads(from_audit.stdout)  # the table holds what the file does
    fed(vendors, records, TODAY)  # revised, and run again: the newest run is what is read back
    second = reconcile(path, "--json", "--from", "postgres", "--since", CLOSED.isoformat(), env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    with postgres_connection(dsn) as conn:
        kept = conn.execute(f"SELECT kind, body FROM {TABLE} ORDER BY id").fetchall()
        newest = latest(table_entries(conn))
        dump = conn.execute(f"SELECT string_agg(body::text, '') FROM {TABLE}").fetchone()[0]
    assert [b for k, b in kept if k == "row"][-len(result["rows"]) :] == result["rows"]
    assert [b for k, b in kept if k == "day"][-len(result["days"]) :] == result["days"]
    exact = exact_json(second.stdout)  # read back exactly, amounts as written
    for day in exact["days"]:
        assert newest[(day["provider"], day["day"])].day == day
    assert any(isinstance(d["vendor_usd"], Decimal) for d in exact["days"])
    assert newest[("openai", CLOSED.isoformat())].rows == []  # the revised run left nothing there
    assert OPENAI_ADMIN not in dump and ANTHROPIC_ADMIN not in dump
    lead_sees(gw, CLOSED.isoformat(), result, dsn)


def postgres_connection(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture(autouse=True)
def _postgres_running(request):
    if "postgres" in request.fixturenames:
        server: PostgresServer = request.getfixturevalue("postgres")
        if not server.running():
            server.start()
