"""The console's page as a security lead reads it, in Debian's Chromium at 1,024 pixels wide, over
an audit written as Tollgate writes it (chained, one instance's run): Live fits the window with its
findings, a long reason cut after three lines and whole in its title; every view says whether the
audit is whole and shows at 1,024 pixels every cell whole (or whole in its title), never wider than
the window; at 1,024, 1,280 and 1,920 pixels no word of a heading or cell (the longest kinds, model
ids, hosts) is broken over two lines; a finding says where it was and what was done; People name
each person's models; AI services count a governed call's bytes; every kind of record is in Live's
kind filter; one poller however often the view changes; an anonymous caller is `(anonymous)` and a
cost is dollars to the nano-dollar in every view. A screenshot of each view is kept under
TOLLGATE_SCREENSHOTS, else the test's own directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from tests.support.cdp import Browser, chromium
from tests.support.cli import console_process
from tests.support.proxy import free_port
from tests.support.reconciliation import day, record, row, side

from tollgate.common.audit_chain import Chain
from tollgate.records.audit.kinds import RECORD_KINDS

VIEWS = ("live", "people", "spend", "refusals", "guardrails", "services", "budgets", "invoice", "audit")
WIDTH = 1024
DAY = "2026-11-20"
LONG_REASON = "the model gpt-4o is kept for the research group, " * 6 + "and bob is not in it"


def call(ts: str, client: str | None, **fields: object) -> dict:
    record = {
        "event": "llm_call", "ts": f"{DAY}T{ts}Z", "request_id": "r" + ts[:8].replace(":", ""), "client": client,
        "auth": "virtual_key" if client else "anonymous", "provider": "openai",
        "host": "api.openai.com", "model": "gpt-4o-mini", "decision": "allow", "deny_reasons": [], "findings": {},
        "redacted": 0, "answer_findings": {}, "answer_redacted": 0, "status": 200,
        "upstream_key": "sha256:aaaaaaaaaaaa", "latency_ms": 412.3, "ttfb_ms": 120.0, "bytes_sent": 0,
        "bytes_received": 0, "input_tokens": 21, "output_tokens": 9, "total_tokens": 30, "cost_usd": 0.00000315,
        "error": None, "refusal": None,
    }  # fmt: skip
    record.update(fields)
    return record


RECORDS = [
    {"event": "tollgate_started", "ts": f"{DAY}T08:00:00.000Z", "version": "0.1.0", "pid": 4242},
    # Found in the request and redacted there; found in the answer and recorded.
    call("08:01:00.000", "alice", findings={"pii.email": 2}, redacted=2,
         answer_findings={"secrets.github_token": 1}, bytes_sent=812, bytes_received=4096),
    call("08:02:00.000", "bob", model="gpt-4o", decision="deny", deny_reasons=[LONG_REASON], refusal="policy_denied",
         status=403, ttfb_ms=None, bytes_sent=None, bytes_received=None, input_tokens=None, output_tokens=None,
         total_tokens=None, cost_usd=None),
    # Refused for what its request held: it never went upstream.
    call("08:03:00.000", "bob", findings={"secrets.aws_access_key_id": 1}, decision="deny",
         deny_reasons=["Tollgate refused this call: its content holds secrets.aws_access_key_id (1)."],
         refusal="content_denied", status=403, answer_findings=None, answer_redacted=None, ttfb_ms=None,
         bytes_sent=None, bytes_received=None, input_tokens=None, output_tokens=None, total_tokens=None, cost_usd=None),
    # An anonymous caller whose answer was redacted.
    call("08:04:00.000", None, provider="anthropic", host="api.anthropic.com", model="claude-sonnet-4-5",
         upstream_key="sha256:bbbbbbbbbbbb", answer_findings={"pii.email": 3}, answer_redacted=3, bytes_sent=300,
         bytes_received=1200, cost_usd=8.035e-05),
    # Its answer refused for what it held (a stream cut: status 200, the first byte came).
    call("08:05:00.000", "alice", answer_findings={"secrets.aws_access_key_id": 1}, refusal="content_denied",
         error="content_denied", bytes_sent=500, bytes_received=2048),
    {"event": "mcp_call", "ts": f"{DAY}T08:06:00.000Z", "request_id": "m1", "client": "bob", "auth": "virtual_key",
     "server": "notes", "method": "tools/call", "tool": "add", "decision": "allow", "deny_reasons": [],
     "findings": None, "redacted": None, "answer_findings": None, "status": 200, "upstream_key": None,
     "latency_ms": 20.0, "error": None, "refusal": None},
    {"event": "connection", "ts": f"{DAY}T08:07:00.000Z", "client": "bob", "host": "pastebin.com", "port": 443,
     "service": None, "category": None, "decision": "deny", "deny_reasons": ["egress deny: pastebin.com"],
     "refusal": "egress_denied", "bytes_sent": 0, "bytes_received": 0, "duration_ms": 0.0, "error": None},
]  # fmt: skip
# What each record's findings cell in Live says (the checkpoint and the started record, none).
FOUND = {
    "r080100": "request (redacted): pii.email 2\nanswer (recorded): secrets.github_token 1",
    "r080300": "request (refused): secrets.aws_access_key_id 1",
    "r080400": "answer (redacted): pii.email 3",
    "r080500": "answer (refused): secrets.aws_access_key_id 1",
}


# Words as long as they come: the longest kind of record, a refusal's kind, a Bedrock model id, a
# fleet's instance, a client and a host of many parts, a cost to the nano-dollar over a dollar; and
# a run of `tollgate reconcile` (a day closed, within the Invoice view's 31 days).
CLOSED = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
LONG_WORDS = [
    call("08:07:10.000", "research-pipeline-nightly", provider="bedrock", model="anthropic.claude-3-5-sonnet-20241022-v2:0",
         host="bedrock-runtime.eu-central-1.amazonaws.com", total_tokens=123456, cost_usd=1.234567891,
         latency_ms=18234.0),
    call("08:07:20.000", "data_science.batch@example.com", decision="deny", refusal="permission_denied", status=403,
         deny_reasons=["research-pipeline-nightly may not use anthropic.claude-3-5-sonnet-20241022-v2:0"]),
    {"event": "connection", "ts": f"{DAY}T08:07:30.000Z", "client": "research-pipeline-nightly",
     "host": "bedrock-runtime.eu-central-1.amazonaws.com", "port": 443, "service": "bedrock", "category": "llm",
     "decision": "allow", "deny_reasons": [], "refusal": None, "bytes_sent": 4096, "bytes_received": 65536,
     "duration_ms": 1234.5, "error": None},
    record(f"{DAY}T08:07:40.000Z", [
        row("openai", CLOSED, "key_9f8e7d6c5b4a", "gpt-4o-mini-2024-07-18", "differs", side(1200, 340, 3, "0.25"),
            side(3200, 340, 4, "0.750000001"), "sha256:cccccccccccc", key_name="research-pipeline-prod",
            project="proj_research_pipelines"),
        row("openai", CLOSED, "key_0a1b2c3d4e5f", "text-embedding-3-large", "around", side(0, 0, 0, "0"),
            side(120000, 0, 40, "0.015600000"), held=False, key_name="laptop-script", project="proj_side"),
    ], [day("openai", CLOSED, "0.94117", "0.25", "0.765600001", "0.015600000", "0.80")]),
]  # fmt: skip


def chained(records: list[dict], instance: str = "gw-1") -> bytes:
    """The lines as Tollgate's writer makes them: each chained to the one before, a checkpoint last."""
    chain = Chain()
    lines = [chain.link(orjson.dumps({**r, "instance": instance})) for r in records]
    checkpoint = chain.checkpoint(None, f"{DAY}T08:08:00.000Z")
    lines.append(chain.link(orjson.dumps({**checkpoint, "instance": instance})))
    return b"".join(line + b"\n" for line in lines)


def start_console(directory: Path, audit: bytes):
    """`tollgate console` over an audit file holding `audit`: the process and its address with the token."""
    path = directory / "audit.jsonl"
    path.write_bytes(audit)
    port = free_port()
    (directory / "tollgate.yaml").write_text(f"audit: {{path: {path}}}\n")
    process, line = console_process(directory / "tollgate.yaml", "--listen", f"127.0.0.1:{port}")
    assert line.startswith("Tollgate console: "), line
    return process, line.split(": ", 1)[1].strip()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.communicate(timeout=10)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    process, url = start_console(tmp_path_factory.mktemp("console"), chained(RECORDS))
    try:
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def long_words(tmp_path_factory):
    """A console over the records and LONG_WORDS, written by an instance of a long name."""
    process, url = start_console(
        tmp_path_factory.mktemp("long"), chained(RECORDS + LONG_WORDS, "tollgate-eu-central-1a")
    )
    try:
        yield url
    finally:
        stop(process)


@pytest.fixture
def browser(tmp_path):
    opened = Browser(chromium(), tmp_path / "profile", width=WIDTH, height=768)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    where = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def rows(view: str) -> str:
    return f"document.querySelectorAll('#{view} tbody tr')"


def cells(browser: Browser, view: str) -> list[list[str]]:
    return browser.evaluate(
        f"Array.from({rows(view)}).map(r => Array.from(r.querySelectorAll('td')).map(c => c.textContent))"
    )


def column(browser: Browser, view: str, label: str) -> int:
    headings = browser.evaluate(f"Array.from(document.querySelectorAll('#{view} th')).map(h => h.textContent)")
    return headings.index(label)


def show(browser: Browser, console: str, view: str, count: int) -> None:
    """The view opened (the token in the address once: a cookie from then on) and its rows there."""
    if browser.evaluate("location.href").startswith("http"):
        browser.evaluate(f"location.hash = {json.dumps(view)}")
    else:
        browser.go(f"{console}#{view}")
    browser.wait_for(f"{rows(view)}.length === {count}")


def test_live_fits_a_1024_pixel_window_with_its_findings(console, browser, shots) -> None:
    show(browser, console, "live", len(RECORDS) + 1)
    assert browser.evaluate("window.innerWidth") == WIDTH
    assert browser.evaluate("document.getElementById('who').hidden") is True  # the token's holder: no one signed in
    # Nothing wider than the window: no scrolling sideways.
    assert browser.evaluate("document.documentElement.scrollWidth") <= WIDTH
    right = browser.evaluate(
        "Math.max(...Array.from(document.querySelectorAll('#live th, #live td')).map(c => c.getBoundingClientRect().right))"
    )
    assert right <= WIDTH
    found = column(browser, "live", "findings")
    shown = {
        browser.evaluate(f"{rows('live')}[{i}].querySelectorAll('td')[{column(browser, 'live', 'time')}].title"): row
        for i, row in enumerate(cells(browser, "live"))
    }
    by_request = {r["request_id"]: r for r in RECORDS if "request_id" in r}
    for request_id, text in FOUND.items():
        assert shown[by_request[request_id]["ts"]][found] == text
    # The long reason is cut to its column, after three lines; its title holds it whole.
    reason = column(browser, "live", "reason")
    cell = f"Array.from({rows('live')}).map(r => r.querySelectorAll('td')[{reason}]).find(c => c.title.length > 200)"
    assert browser.evaluate(f"{cell}.title") == LONG_REASON
    box = f"{cell}.firstElementChild"
    assert browser.evaluate(f"{box}.scrollHeight > {box}.clientHeight")
    assert browser.evaluate(f"Math.round({box}.clientHeight / parseFloat(getComputedStyle({box}).lineHeight))") == 3
    assert browser.evaluate(f"{cell}.getBoundingClientRect().right") <= WIDTH
    browser.screenshot(shots / "console-live-1024.png")


def unseen(browser: Browser, width: int = WIDTH) -> list[str]:
    """What a window `width` pixels wide does not show of the view: the page wider than the window,
    and each cell not shown whole (wider or taller than its box) that does not hold the whole in its
    title."""
    wide = browser.evaluate("document.documentElement.scrollWidth")
    cut = browser.evaluate(
        "Array.from(document.querySelectorAll('#main td')).filter(c => !c.title"
        " && (c.scrollWidth > c.clientWidth || c.scrollHeight > c.clientHeight)).map(c => c.textContent)"
    )
    return ([f"the page is {wide} pixels wide"] if wide > width else []) + cut


@pytest.mark.parametrize("width", [WIDTH, 1280, 1920])
def test_every_view_breaks_no_word_in_a_window_1024_1280_or_1920_pixels_wide(long_words, browser, shots, width) -> None:
    """Each heading and cell of each view shows each word on one line (a name wraps at its spaces,
    hyphens, `_`, `/`, `.`): never `connecti` / `on`; and still every cell whole, nothing wider
    than the window."""
    browser.resize(width, 768)
    show(browser, long_words, "live", len(RECORDS + LONG_WORDS) + 1)
    assert browser.evaluate("window.innerWidth") == width
    broken, hidden = {}, {}
    for view in VIEWS:
        browser.evaluate(f"location.hash = {json.dumps(view)}")
        browser.wait_for(f"document.querySelector('#nav a.active').dataset.view === {json.dumps(view)}")
        browser.wait_for("!!document.querySelector('#main section, #main .empty')")
        browser.screenshot(shots / f"console-{view}-long-words-{width}.png")
        if words := browser.broken_words("header, #main th, #main td"):
            broken[view] = words
        if cut := unseen(browser, width):
            hidden[view] = cut
    assert broken == {}, json.dumps(broken, indent=1)
    assert hidden == {}, json.dumps(hidden, indent=1)


def test_every_view_says_whether_the_audit_is_whole(console, browser, shots, tmp_path) -> None:
    badge = "document.getElementById('audit-state')"
    browser.go(f"{console}#live")
    for view in VIEWS:
        browser.evaluate(f"location.hash = {json.dumps(view)}")
        browser.wait_for(f"document.querySelector('#nav a.active').dataset.view === {json.dumps(view)}")
        browser.wait_for(f"{badge}.textContent === 'Audit: whole'")
        assert browser.evaluate(f"{badge}.getBoundingClientRect().right") <= WIDTH
        browser.wait_for("document.getElementById('main').textContent !== 'Loading…'")
        browser.screenshot(shots / f"console-{view}-1024.png")
        assert not unseen(browser), view
    # A line changed after it was written: every view says the chain has a fault.
    lines = chained(RECORDS).splitlines(keepends=True)
    changed = lines[1].replace(b'"gpt-4o-mini"', b'"gpt-4o-nano"')
    assert changed != lines[1]
    lines[1] = changed
    (tmp_path / "faulty").mkdir()
    process, faulty = start_console(tmp_path / "faulty", b"".join(lines))
    try:
        browser.go(f"{faulty}#live")
        for view in VIEWS:
            browser.evaluate(f"location.hash = {json.dumps(view)}")
            browser.wait_for(f"document.querySelector('#nav a.active').dataset.view === {json.dumps(view)}")
            browser.wait_for(f"{badge}.textContent === 'Audit: fault'")
        browser.wait_for("document.querySelectorAll('#audit tbody tr.fault').length > 0")
        browser.screenshot(shots / "console-audit-fault-1024.png")
        assert not unseen(browser)
        assert browser.broken_words() == []
    finally:
        stop(process)


def test_a_finding_says_where_it_was_and_what_was_done(console, browser) -> None:
    show(browser, console, "guardrails", 5)
    assert sorted(map(tuple, cells(browser, "guardrails"))) == sorted([
        ("pii.email", "alice", "request", "redacted", "2"),
        ("secrets.github_token", "alice", "answer", "recorded", "1"),
        ("secrets.aws_access_key_id", "bob", "request", "refused", "1"),
        ("pii.email", "(anonymous)", "answer", "redacted", "3"),
        ("secrets.aws_access_key_id", "alice", "answer", "refused", "1"),
    ])  # fmt: skip


def test_people_show_each_persons_models(console, browser) -> None:
    show(browser, console, "people", 3)
    models = column(browser, "people", "models (calls)")
    assert {row[0]: row[models] for row in cells(browser, "people")} == {
        "alice": "gpt-4o-mini 2",
        "bob": "gpt-4o 1\ngpt-4o-mini 1",
        "(anonymous)": "claude-sonnet-4-5 1",
    }


def test_ai_services_count_the_bytes_of_governed_calls(console, browser) -> None:
    show(browser, console, "services", 4)
    table = {(row[0], row[1]): row for row in cells(browser, "services")}
    sent, received = column(browser, "services", "sent"), column(browser, "services", "received")
    assert (table[("alice", "openai")][sent], table[("alice", "openai")][received]) == ("1312", "6144")
    assert (table[("(anonymous)", "anthropic")][sent], table[("(anonymous)", "anthropic")][received]) == ("300", "1200")


def test_every_kind_of_record_is_in_lives_kind_filter(console, browser) -> None:
    show(browser, console, "live", len(RECORDS) + 1)
    kind = "document.querySelector('#live select[name=event]')"
    assert browser.evaluate(f"Array.from({kind}.options).map(o => o.value)") == ["", *RECORD_KINDS]
    browser.evaluate(f"{kind}.value = 'audit_checkpoint'; {kind}.dispatchEvent(new Event('change'))")
    browser.wait_for(f"{rows('live')}.length === 1")
    assert cells(browser, "live")[0][1] == "audit_checkpoint"


def test_live_has_an_instance_column_and_filter(console, browser, shots) -> None:
    show(browser, console, "live", len(RECORDS) + 1)
    instance = column(browser, "live", "instance")
    assert {row[instance] for row in cells(browser, "live")} == {"gw-1"}
    box = "document.querySelector('#live input[name=instance]')"
    for name, count in (("gw-2", 0), ("gw-1", len(RECORDS) + 1)):  # asked of the API: its `instance`
        browser.evaluate(f"{box}.value = {json.dumps(name)}; {box}.dispatchEvent(new Event('change'))")
        browser.wait_for(f"{rows('live')}.length === {count}")
    assert browser.evaluate("document.documentElement.scrollWidth") <= WIDTH
    browser.screenshot(shots / "console-live-instance-1024.png")
    browser.evaluate("location.hash = 'live?instance=gw-2'")  # a link to one instance's calls
    browser.wait_for(f"{box}.value === 'gw-2' && {rows('live')}.length === 0")


# Counts, in the page, the Live pollers at work at each moment: a poll waiting for its turn (a timer
# whose callback is the view's `poll`) or asking (a request for the records after a cursor); and
# likewise the header's looks at the audit's state (`auditState`, `/api/audit`).
POLLERS = """
window.polls = {timers: new Map(), asking: 0, asked: 0, most: 0, looking: 0, mostLooks: 0};
(() => {
  const set = window.setTimeout, clear = window.clearTimeout, fetch = window.fetch;
  const count = () => [...polls.timers.values()].filter(n => n === "poll").length + polls.asking;
  const looks = () => [...polls.timers.values()].filter(n => n === "auditState").length + polls.looking;
  const note = () => {
    polls.most = Math.max(polls.most, count());
    polls.mostLooks = Math.max(polls.mostLooks, looks());
  };
  window.setTimeout = function (fn, ms, ...args) {
    const id = set(function () { polls.timers.delete(id); fn(...args); }, ms);
    polls.timers.set(id, fn && fn.name);
    note();
    return id;
  };
  window.clearTimeout = function (id) { polls.timers.delete(id); return clear(id); };
  window.fetch = async function (url, ...args) {
    const poll = String(url).includes("after="), look = String(url).startsWith("/api/audit");
    if (poll) { polls.asking += 1; polls.asked += 1; }
    if (look) polls.looking += 1;
    note();
    try { return await fetch(url, ...args); } finally { if (poll) polls.asking -= 1; if (look) polls.looking -= 1; }
  };
})();
"""


def test_one_poller_however_often_the_view_is_changed(console, browser) -> None:
    browser.call("Page.enable")
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=POLLERS)
    show(browser, console, "live", len(RECORDS) + 1)
    since = "document.getElementById('since')"
    for _ in range(4):
        # Away and back at once, before the view has loaded; then Live asked for twice at once:
        # each time until Live polls again.
        for change in (
            "location.hash = 'people'; setTimeout(() => { location.hash = 'live'; }, 0)",
            f"{since}.dispatchEvent(new Event('change')); {since}.dispatchEvent(new Event('change'))",
        ):
            asked = browser.evaluate("polls.asked")
            browser.evaluate(change)
            browser.wait_for(f"location.hash === '#live' && polls.asked > {asked}")
    asked = browser.evaluate("polls.asked")
    browser.wait_for(f"polls.asked >= {asked + 6}", timeout=30)  # six polls since the last change
    assert browser.evaluate("polls.most") == 1
    # Each view looks at the audit's state at once, then every few seconds: one look at a time.
    assert browser.evaluate("polls.mostLooks") == 1


def test_anonymous_and_costs_are_written_one_way_in_every_view(console, browser) -> None:
    show(browser, console, "live", len(RECORDS) + 1)
    live = cells(browser, "live")
    client, cost = column(browser, "live", "client"), column(browser, "live", "cost")
    provider = column(browser, "live", "provider / server / host")
    assert [row[client] for row in live if row[provider] == "anthropic"] == ["(anonymous)"]
    costs = sorted({row[cost] for row in live if row[cost]})
    assert costs == ["$0.00000315", "$0.00008035"]  # 0.00000315 and 8.035e-05, as usd_text writes them
    for view, count in (("people", 3), ("refusals", 4), ("services", 4)):
        show(browser, console, view, count)
        shown = cells(browser, view)
        page = " ".join(" ".join(row) for row in shown)
        assert not re.search(r"\d[eE][-+]?\d", page), (view, page)
        assert "anonymous" not in page.replace("(anonymous)", ""), view
    show(browser, console, "people", 3)
    cost = column(browser, "people", "cost")  # the most spent first
    assert [(row[0], row[cost]) for row in cells(browser, "people")] == [
        ("(anonymous)", "$0.00008035"),
        ("alice", "$0.0000063"),
        ("bob", "$0.00"),
    ]
