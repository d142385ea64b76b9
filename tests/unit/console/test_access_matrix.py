"""The access matrix: every role (security, a lead, people with clients, a JWT client, a plan
account, a person with none) × every endpoint × every filter, dropped or forged (another's client,
an unknown instance, a cursor the API never gave), over records of several clients, groups, plan
accounts, JWT clients, instances, anonymous callers and lines that are no record.

No answer holds a record, client or sum of a record outside the viewer's scope, as this file
decides it from the records themselves (`sees`, the rule of docs/console.md written out again);
each answer equals the answer over the in-scope records alone (read into an index of their own);
the totals equal those added up here from the in-scope records."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest

from tollgate.configuration.config import parse_config
from tollgate.console.follow import AuditFiles
from tollgate.console.invoice import Invoice
from tollgate.console.invoice_results import FromRecords
from tollgate.console.scope import ScopeRules
from tollgate.console.table import Table
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import BadQuery, Forbidden, Views, as_csv
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of, store

PEOPLE = {"alice": ["Alice@Example.com"], "bob": ["bob@example.com"], "carol": ["carol@example.com", "dan@example.com"],
          "erin": []}  # fmt: skip
GROUPS = {"alice": ["research"], "bob": ["infra"], "carol": ["research", "infra"], "erin": ["research"]}
PREFIX = "jwt:"
CONFIG = {
    "clients": [{"name": n, "keys": [f"tg-{n}-000000000000000001"], "groups": GROUPS[n], "people": PEOPLE[n]}
                for n in PEOPLE],
    "identity": {"jwt": [{"issuer": "https://ci.example", "audience": "tollgate", "algorithms": ["HS256"],
                          "secret": "s" * 32, "client_prefix": PREFIX}]},
}  # fmt: skip
RULES = ScopeRules.of(parse_config(CONFIG, {}))

# Who made a record: (client, auth, groups as written — None: the field absent —, plan account).
MAKERS = [
    ("alice", "virtual_key", ["research"], None),
    ("bob", "virtual_key", ["infra"], None),
    ("carol", "virtual_key", ["research", "infra"], None),
    ("erin", "virtual_key", ["research"], None),
    ("jwt:Frank@Example.com", "jwt", ["research"], None),  # a JWT client: frank's
    ("jwt:gina@example.com", "virtual_key", [], None),  # the same shape of name, not from a JWT: no one's own
    (None, "subscription", [], "Gina@Example.com"),  # a plan call with no client: gina's account
    ("bob", "subscription", ["infra"], "alice@example.com"),  # bob's client, alice's plan account
    (None, "anonymous", [], None),  # anonymous: security's only
]
INSTANCES = ["pod-0", "pod-1", None]
PROVIDERS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")]
COSTS = [0.25, 0.5, 1.5, 0.125]  # sums of these are exact in binary
VIEWERS = {
    "token": TOKEN_HOLDER,
    "security": Viewer("security", "sam@example.com", "Sam"),
    "lead-research": Viewer("lead", "lena@example.com", "Lena", frozenset({"research"})),
    "lead-infra-bob": Viewer("lead", "bob@example.com", "Bob", frozenset({"infra"})),
    "alice": Viewer("self", "alice@example.com", "Alice"),
    "dan": Viewer("self", "DAN@example.com"),
    "frank": Viewer("self", "frank@example.com"),
    "gina": Viewer("self", "gina@example.com"),
    "nobody": Viewer("self", "nobody@example.com"),
}


def make_records() -> list[dict[str, Any] | str]:
    """Each maker's records on two days and two instances (and none), of each kind, then lines that
    are no record and records of no one."""
    records: list[dict[str, Any] | str] = [{"event": "tollgate_started", "ts": "2026-11-01T00:00:00.000Z",
                                            "instance": "pod-0"}]  # fmt: skip
    made = itertools.product(MAKERS, ("01", "02"), INSTANCES)
    for n, ((client, auth, groups, account), day, instance) in enumerate(made, 1):
        provider, model = PROVIDERS[n % 2]
        ts = f"2026-11-{day}T{n % 24:02d}:{n % 60:02d}:00.000Z"
        who: dict[str, Any] = {"client": client, "auth": auth, "instance": instance, "request_id": f"r{n:03d}"}
        if instance is None:
            del who["instance"]
        denied = n % 3 == 0
        records.append({
            "event": "llm_call", "ts": ts, **who, "groups": groups, "account": account, "provider": provider,
            "model": model, "host": f"api.{provider}.com", "decision": "deny" if denied else "allow",
            "deny_reasons": [f"rule {n}"] if denied else [], "refusal": "policy_denied" if denied else None,
            "findings": {"pii.email": 1} if n % 4 == 0 else {}, "answer_findings": {"secrets.key": 2} if n % 5 == 0
            else None, "upstream_key": f"sha256:{n:012x}", "input_tokens": n, "output_tokens": 2 * n,
            "cost_usd": COSTS[n % 4], "bytes_sent": 10 * n, "bytes_received": 20 * n, "error": None,
        })  # fmt: skip
        if n % 2 == 0:  # no groups field: the client's configured groups count
            records.append({
                "event": "connection", "ts": ts.replace(":00.000Z", ":30.000Z"), **who, "request_id": f"c{n:03d}",
                "host": "pastebin.com", "service": None, "category": None, "decision": "deny",
                "deny_reasons": ["egress deny: pastebin.com"], "refusal": "egress_denied", "bytes_sent": 0,
                "bytes_received": 0,
            })  # fmt: skip
        if n % 3 == 1:
            records.append({
                "event": "mcp_call", "ts": ts.replace(":00.000Z", ":40.000Z"), **who, "request_id": f"m{n:03d}",
                "server": "notes", "tool": "add", "decision": "allow", "deny_reasons": [], "refusal": None,
                "upstream_key": None,
            })  # fmt: skip
    records.append(reconciliation(records))
    records += ["not json", "[1, 2]", {"event": "malformed", "file": "/forged", "offset": 0, "length": 1},
                {"event": "audit_checkpoint", "ts": "2026-11-02T23:00:00.000Z", "instance": "pod-1"}]  # fmt: skip
    return records


def reconciliation(records: list[dict[str, Any] | str]) -> dict[str, Any]:
    """`tollgate reconcile`'s record: a held row per key the calls used (every third one's a
    difference), one of a held key no call used, a key used around Tollgate, each day's totals."""
    rows = []
    for r in records:
        if isinstance(r, dict) and r["event"] == "llm_call":
            n = int(r["request_id"][1:])
            tokens = {"input_tokens": n, "cached_input_tokens": 0, "output_tokens": 2 * n, "requests": 1,
                      "cost_usd": "0.25"}  # fmt: skip
            rows.append({"provider": r["provider"], "day": r["ts"][:10], "open": False, "key_id": f"key_{n}",
                         "key_name": f"key {n}", "project": "proj_a", "model": r["model"], "held": True,
                         "status": "differs" if n % 3 == 0 else "match", "tollgate": tokens,
                         "vendor": {**tokens, "input_tokens": n + n % 3}, "upstream_key": r["upstream_key"]})  # fmt: skip
    spare = {**rows[0], "key_id": "key_spare", "upstream_key": "sha256:ffffffffffff", "status": "unseen"}
    around = {**rows[0], "key_id": "key_laptop", "held": False, "status": "around", "upstream_key": None}
    days = [{"provider": p, "day": f"2026-11-0{d}", "open": False, "coverage": "0.9", "tollgate_usd": "1",
             "vendor_usd": "1.1", "around_usd": "0.1", "billed_usd": "1.1"}
            for p, _ in PROVIDERS for d in (1, 2)]  # fmt: skip
    return {"event": "reconciliation", "ts": "2026-11-03T00:00:00.000Z", "since": "2026-11-01",
            "until": "2026-11-02", "rows": [*rows, spare, around], "days": days}  # fmt: skip


RECORDS = make_records()


def sees(viewer: Viewer, record: dict[str, Any] | str) -> bool:
    """The rule, from the record itself."""
    if viewer.role == "security":
        return True
    if not isinstance(record, dict) or record.get("event") == "malformed":
        return False
    email, client = (viewer.email or "").lower(), record.get("client")
    account = record.get("account")
    if email and isinstance(account, str) and account.lower() == email:
        return True
    if client is None:
        return False
    if email and email in [p.lower() for p in PEOPLE.get(client, [])]:
        return True
    if email and record.get("auth") == "jwt" and client.startswith(PREFIX) and client[len(PREFIX) :].lower() == email:
        return True
    groups = record["groups"] if "groups" in record else GROUPS.get(client, [])
    return viewer.role == "lead" and bool(viewer.leads & set(groups))


def write(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records))
    return path


BUDGETS = [
    {"limit": "daily", "field": "requests_per_day", "per": per, "subject": subject, "window": "day", "used": 1,
     "cap": 10, "unit": "requests"}
    for per, subject in [("client", "alice"), ("client", "bob"), ("client", "erin"), ("client", "(anonymous)"),
                         ("client", "jwt:Frank@Example.com"), ("group", "research"), ("group", "infra"),
                         ("all", None)]
]  # fmt: skip


@pytest.fixture(scope="module", params=["files", "postgres"])
def opened(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Views, Views]]]:
    """Per viewer: the views over every record (read from the files, or from the fleet's table in
    PostgreSQL, where the database answers them), and the views over its in-scope records alone
    (from a file: each answer over PostgreSQL is the files' answer)."""
    base = tmp_path_factory.mktemp("matrix")
    path = write(base / "audit.jsonl", RECORDS)
    audit: AuditFiles | Table
    if request.param == "files":
        audit = AuditFiles([path], follow=False)
    else:
        dsn = request.getfixturevalue("postgres").database()
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_schema(conn, "tollgate_records")
            prepare(conn)
            store(conn, "tollgate_records", [row_of(line) for line in path.read_bytes().splitlines()])
        audit = Table(dsn, "tollgate_records")
        audit.open()
        audit.count()  # as the console does behind the views (the chain is left unchecked, as the files')
    audit.catch_up()
    # The reconciliation's results: its record's, in the file (over PostgreSQL the console reads
    # them from their own table); whose calls a lead sees: the source's.
    files = AuditFiles([path], follow=False)
    files.catch_up()
    views = Views(audit, lambda: [dict(b) for b in BUDGETS], RULES, invoice=Invoice(FromRecords(files), audit))
    found = {}
    for name, viewer in VIEWERS.items():
        alone = AuditFiles([write(base / f"{name}.jsonl", [r for r in RECORDS if sees(viewer, r)])], follow=False)
        alone.catch_up()
        found[name] = (views, Views(alone, None, RULES))
    yield found
    audit.close()


class Matrix(NamedTuple):
    """One viewer's row of the matrix: its name, the viewer, the views over every record and the
    views over its in-scope records alone."""

    name: str
    viewer: Viewer
    views: Views
    alone: Views


@pytest.fixture(params=list(VIEWERS))
def row(request: pytest.FixtureRequest, opened: dict[str, tuple[Views, Views]]) -> Matrix:
    """Each viewer in turn, with its views."""
    name: str = request.param
    return Matrix(name, VIEWERS[name], *opened[name])


def client_names() -> set[str | None]:
    return {r.get("client") for r in RECORDS if isinstance(r, dict)}


def out_of_scope(viewer: Viewer) -> tuple[set[str], set[str]]:
    """The clients no in-scope record names, and the request ids of the records out of scope."""
    inside = {r.get("client") for r in RECORDS if isinstance(r, dict) and sees(viewer, r)}
    ids = {r["request_id"] for r in RECORDS if isinstance(r, dict) and "request_id" in r and not sees(viewer, r)}
    return {c for c in client_names() - inside if c is not None}, ids


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def assert_no_leak(viewer: Viewer, answer: Any) -> None:
    clients, ids = out_of_scope(viewer)
    text = set(strings(answer))
    assert not text & clients, f"clients out of scope: {text & clients}"
    assert not text & ids, f"records out of scope: {text & ids}"


def without_place(answer: Any) -> Any:
    """An answer less what names a record's place in its file (a marker's `file`, `offset`), which
    differs between two files of other records."""
    if isinstance(answer, dict) and "events" in answer:  # over PostgreSQL: a marker's `table` and row `id`
        place = ("file", "offset", "table", "id")
        return [
            {k: v for k, v in e.items() if e.get("event") != "malformed" or k not in place} for e in answer["events"]
        ]
    return answer


# ---- the queries, generated

FORGED_CLIENTS = sorted(c for c in client_names() if c is not None)
WINDOWS = [{}, {"since": ["2026-11-02"]}, {"until": ["2026-11-02"]}, {"since": ["2026-11-01T12:00"], "until": ["2026-11-02T06:00"]}]  # fmt: skip
INSTANCE_FILTERS = [{}, {"instance": ["pod-0"]}, {"instance": ["pod-1"]}, {"instance": ["pod-9"]}]
EVENT_FILTERS = [
    {}, *({"client": [c]} for c in FORGED_CLIENTS), {"provider": ["openai"]}, {"provider": ["nowhere"]},
    {"event": ["llm_call"]}, {"event": ["connection"]}, {"event": ["malformed"]}, {"decision": ["allow"]},
    {"decision": ["deny"]}, {"client": ["bob"], "decision": ["deny"]},
]  # fmt: skip
SPEND = [{"by": [by], "bucket": [bucket]} for by in ("provider", "model", "client") for bucket in ("day", "hour")]
SUMS = ["/api/people", "/api/refusals", "/api/findings", "/api/inventory"]


def queries() -> Iterator[tuple[str, dict[str, list[str]]]]:
    for extra in INSTANCE_FILTERS:
        for filters in EVENT_FILTERS:
            yield "/api/events", {**filters, **extra, "limit": ["1000"]}
        for path, span in itertools.product(SUMS, WINDOWS):
            yield path, {**span, **extra}
        for spend, span in itertools.product(SPEND, WINDOWS):
            hourly = {"since": ["2026-10-31"]} if spend["bucket"] == ["hour"] else {}  # a since within 31 days
            yield "/api/spend", {**spend, **hourly, **span, **extra}


def test_every_answer_is_the_answer_over_the_records_in_scope_alone(row: Matrix) -> None:
    _, viewer, views, alone = row
    asked = 0
    for path, query in queries():
        answer = views.answer(path, query, viewer)
        assert without_place(answer) == without_place(alone.answer(path, query)), (path, query)
        assert_no_leak(viewer, answer)
        assert as_csv(without_place(answer), query) == as_csv(without_place(alone.answer(path, query)), query)
        assert_no_leak(viewer, as_csv(answer, query))
        asked += 1
    assert asked == len(list(queries())) == 220


def test_the_events_and_a_walk_by_cursor_hold_exactly_the_records_in_scope(row: Matrix) -> None:
    _, viewer, views, _ = row
    for extra in INSTANCE_FILTERS:
        instance = extra.get("instance", [None])[0]
        expected = [r.get("request_id") if isinstance(r, dict) else None for r in RECORDS if sees(viewer, r)
                    and (instance is None or (isinstance(r, dict) and r.get("instance") == instance))]  # fmt: skip
        listed = views.answer("/api/events", {**extra, "limit": ["1000"]}, viewer)["events"]
        assert [e.get("request_id") for e in listed] == expected
        walked, cursor = [], "first"
        for _ in range(len(RECORDS)):  # pages of 3, from the first record on
            page = views.answer("/api/events", {**extra, "after": [cursor], "limit": ["3"]}, viewer)
            walked += page["events"]
            if not page["events"]:
                break
            cursor = page["cursor"]
        assert [e.get("request_id") for e in walked] == expected
        # A cursor the API never gave (a record's number, another's cursor, one changed): refused.
        for forged in ("-5", "-1", "0", str(len(RECORDS) + 5), *others_cursors(viewer, views, extra), tampered(cursor)):
            with pytest.raises(BadQuery, match="not a cursor this console gave you"):
                views.answer("/api/events", {**extra, "after": [forged], "limit": ["1000"]}, viewer)
        # The live stream: the same records, as they come.
        lines, seen = views.newer(0, extra, viewer)
        assert seen == len(RECORDS)
        assert [json.loads(line).get("request_id") for line in lines] == expected


def others_cursors(viewer: Viewer, views: Views, extra: dict[str, list[str]]) -> list[str]:
    """The cursors the same console gave every other viewer."""
    return [views.answer("/api/events", {**extra, "limit": ["1"]}, other)["cursor"]
            for other in VIEWERS.values() if other != viewer]  # fmt: skip


def tampered(cursor: str) -> str:
    """A cursor with one of its characters changed."""
    return cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]


def test_a_forged_client_filter_finds_nothing_of_another_persons_client(opened: dict[str, tuple[Views, Views]]) -> None:
    views, _ = opened["alice"]
    for client in ("erin", "jwt:Frank@Example.com", "carol", "jwt:gina@example.com"):
        assert views.answer("/api/events", {"client": [client]}, VIEWERS["alice"])["events"] == []
    assert views.answer("/api/events", {"client": ["bob"]}, VIEWERS["dan"])["events"] == []
    # bob's client, alice's plan account: hers; the others of bob's client are not.
    theirs = views.answer("/api/events", {"client": ["bob"], "event": ["llm_call"]}, VIEWERS["alice"])["events"]
    assert len(theirs) == 6
    assert {e["account"] for e in theirs} == {"alice@example.com"}


def test_the_totals_are_those_of_the_records_in_scope(row: Matrix) -> None:
    _, viewer, views, _ = row
    for extra in INSTANCE_FILTERS:
        instance = extra.get("instance", [None])[0]
        kept = [r for r in RECORDS if isinstance(r, dict) and sees(viewer, r)
                and (instance is None or r.get("instance") == instance)]  # fmt: skip
        calls = [r for r in kept if r["event"] == "llm_call"]
        by_client: dict[str | None, tuple[int, float]] = {}
        for r in kept:
            if r["event"] in ("llm_call", "mcp_call"):  # People's calls: both
                n, cost = by_client.get(r["client"], (0, 0.0))
                by_client[r["client"]] = (n + 1, cost + r.get("cost_usd", 0.0))
        people: dict[str | None, tuple[int, float]] = {}
        for p in views.answer("/api/people", extra, viewer):
            n, cost = people.get(p["client"], (0, 0.0))
            people[p["client"]] = (n + p["calls"], cost + p["cost_usd"])
        assert {c: v for c, v in people.items() if v[0]} == by_client
        spend = views.answer("/api/spend", {**extra, "by": ["client"]}, viewer)
        assert sum(s["calls"] for s in spend) == len(calls)
        assert sum(s["cost_usd"] for s in spend) == sum(r["cost_usd"] for r in calls)
        hourly = views.answer("/api/spend", {**extra, "by": ["model"], "bucket": ["hour"], "since": ["2026-10-31"]},
                              viewer)  # fmt: skip
        assert sum(s["input_tokens"] for s in hourly) == sum(r["input_tokens"] for r in calls)
        refused = [r for r in kept if r.get("refusal")]
        assert sum(r["count"] for r in views.answer("/api/refusals", extra, viewer)) == len(refused)


EXPECTED_BUDGETS = {
    "token": [b["subject"] for b in BUDGETS],
    "security": [b["subject"] for b in BUDGETS],
    # A counter sums every call of its client or group: only the clients a person is, or a lead's
    # groups' configured clients (bob's client, which alice's plan account once called through, is
    # not alice's; frank's, a JWT client calling as research, is not the research lead's).
    "lead-research": ["alice", "erin", "research"],  # and carol's, which has no row
    "lead-infra-bob": ["bob", "infra"],
    "alice": ["alice", "research"],
    "dan": ["infra", "research"],  # carol's groups; carol's client has no row
    "frank": ["jwt:Frank@Example.com", "research"],
    "gina": [],
    "nobody": [],
}


def test_budgets_me_and_audit_by_role(row: Matrix) -> None:
    name, viewer, views, _ = row
    rows = views.answer("/api/budgets", {}, viewer)
    assert sorted(map(str, (r["subject"] for r in rows))) == sorted(map(str, EXPECTED_BUDGETS[name]))
    me = views.answer("/api/me", {}, viewer)
    inside = sorted({r["client"] for r in RECORDS if isinstance(r, dict) and r.get("client") and sees(viewer, r)})
    if viewer.role == "security":
        assert me["clients"] is None
        per_instance = [
            sum(1 for r in RECORDS if isinstance(r, dict) and r.get("instance") == i) for i in INSTANCES[:2]
        ]
        assert [(row["instance"], row["records"]) for row in views.answer("/api/audit", {}, viewer)] == [
            ("pod-0", per_instance[0]), ("pod-1", per_instance[1])]  # fmt: skip
    else:
        assert set(inside) <= set(me["clients"])
        assert not set(me["clients"]) & out_of_scope(viewer)[0] - set(PEOPLE)
        with pytest.raises(Forbidden):
            views.answer("/api/audit", {}, viewer)
    assert (me["email"], me["role"], me["audit"]) == (viewer.email, viewer.role, "checking")


def test_the_unverified_marks_are_those_of_the_records_in_scope(tmp_path: Path) -> None:
    """A fault of the chain before bob's records marks his rows, never alice's rows of the same day
    and provider, nor her view's (her records before the fault are whole)."""
    from tollgate.common.audit_chain import ZERO, chain_of

    def call(n: int, client: str) -> dict[str, Any]:
        return {"event": "llm_call", "ts": f"2026-11-01T0{n}:00:00.000Z", "client": client, "groups": [],
                "provider": "openai", "model": "gpt-4o-mini", "decision": "allow", "deny_reasons": [], "findings": {},
                "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5, "refusal": None, "error": None}  # fmt: skip

    records = [{"event": "tollgate_started", "ts": "2026-11-01T00:00:00.000Z", "previous_chain": None},
               call(1, "alice"), call(2, "bob"), call(3, "bob")]  # fmt: skip
    lines, chain = [], ZERO
    for seq, record in enumerate(records, 1):
        content = json.dumps({**record, "instance": "gw-1", "seq": seq})[:-1]
        chain = chain_of(chain, content.encode())
        lines.append(f'{content},"chain":"{chain}"}}\n'.encode())
    lines[2] = lines[2].replace(b'"input_tokens": 1', b'"input_tokens": 9')  # changed after it was written
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(lines))
    audit = AuditFiles([path], follow=False)
    audit.catch_up()
    while audit.verify_pending():
        pass
    views = Views(audit, rules=RULES)
    alice = VIEWERS["alice"]
    for viewer, marked in ((TOKEN_HOLDER, True), (alice, False)):
        spend = views.answer("/api/spend", {"by": ["provider"]}, viewer)
        assert [(s["key"], s.get("unverified", False)) for s in spend] == [("openai", marked)]
        hourly = views.answer("/api/spend", {"by": ["provider"], "bucket": ["hour"], "since": ["2026-10-31"]}, viewer)
        assert [s.get("unverified", False) for s in hourly] == ([False, True, True] if marked else [False])
    assert [(p["client"], p.get("unverified", False)) for p in views.answer("/api/people", {}, alice)] == [
        ("alice", False)
    ]
    assert [e.get("unverified", False) for e in views.answer("/api/events", {}, alice)["events"]] == [False]
    lines_seen, _ = views.newer(0, {}, alice)
    assert [json.loads(line).get("unverified", False) for line in lines_seen] == [False]


def outcome(views: Views, query: dict[str, list[str]], viewer: Viewer) -> tuple[Any, ...]:
    """What a person can tell of an answer: its events and the place its cursor stands for (as
    the console reads it back), or its error."""
    try:
        answer = views.answer("/api/events", query, viewer)
    except BadQuery as e:
        return ("bad_request", str(e))
    return ("ok", answer["events"], views.cursors.open(answer["cursor"], viewer))


@pytest.mark.parametrize("name", ["alice", "dan", "frank", "gina", "nobody"])
def test_a_name_outside_ones_scope_answers_as_one_no_record_has(name: str, opened) -> None:
    """A client, provider, kind or instance of others' records only, and one of no record: the
    same answer, whatever comes with it (a bad decision, a bad cursor, a good one, a page)."""
    views, _ = opened[name]
    viewer = VIEWERS[name]
    own = views.answer("/api/events", {"limit": ["1"]}, viewer)["cursor"]
    seen = {r.get(k) for r in RECORDS if isinstance(r, dict) and sees(viewer, r) for k in ("client", "provider")}
    others = {"client": [c for c in ("bob", "carol", "erin", "jwt:gina@example.com") if c not in seen],
              "provider": [p for p in ("openai", "anthropic") if p not in seen],
              "event": ["audit_checkpoint", "tollgate_started", "malformed"]}  # fmt: skip
    unknown = {"client": "zed", "provider": "nowhere", "event": "no_such_kind"}
    extras = [{}, {"decision": ["maybe"]}, {"decision": ["deny"]}, {"after": ["junk"]}, {"after": [own]},
              {"after": ["first"], "limit": ["2"]}, {"limit": ["0"]}, {"instance": ["pod-0"]}]  # fmt: skip
    compared = 0
    for filter_name, names in others.items():
        for known in names:
            for extra in extras:
                asked = {**extra, filter_name: [known]}
                assert outcome(views, asked, viewer) == outcome(views, {**extra, filter_name: [unknown[filter_name]]},
                                                                viewer), asked  # fmt: skip
                compared += 1
    assert compared >= 5 * len(extras)


def test_a_cursor_tells_nothing_of_the_records_one_may_not_see(opened) -> None:
    """Opaque: no number in it, never twice the same, and it does not grow with others' records."""
    views, _ = opened["nobody"]
    viewer = VIEWERS["nobody"]
    cursors = [views.answer("/api/events", {"limit": ["1"]}, viewer)["cursor"] for _ in range(3)]
    assert len(set(cursors)) == 3
    for cursor in cursors:
        assert not cursor.lstrip("-").isdigit() and str(len(RECORDS) - 1) not in cursor
        assert len(cursor) == 48  # the same length whatever it stands for
    assert views.answer("/api/events", {"after": [cursors[0]]}, viewer)["events"] == []


def test_the_invoice_shows_security_all_a_lead_the_keys_its_scopes_calls_used_and_no_one_else_any(row: Matrix) -> None:
    """`/api/invoice` (the run's results are no one's record: the answer over the in-scope records
    alone would hold none): security every row, day and key used around Tollgate; a lead the held
    keys the calls it sees used, on the day and provider of those calls; anyone else 403."""
    name, viewer, views, _ = row
    (run,) = [r for r in RECORDS if isinstance(r, dict) and r["event"] == "reconciliation"]
    for extra, span in itertools.product(INSTANCE_FILTERS, [{"since": ["2026-11-01"], "until": ["2026-11-02"]},
                                                            {"since": ["2026-11-02T08:00"], "until": ["2026-11-02"]}]):  # fmt: skip
        query = {**extra, **span}
        if viewer.role == "self":
            with pytest.raises(Forbidden):
                views.answer("/api/invoice", query, viewer)
            continue
        answer = views.answer("/api/invoice", query, viewer)
        since = span["since"][0][:10]
        shown = [(r["provider"], r["day"], r["key_id"]) for r in answer["rows"]]
        if viewer.role == "security":
            assert shown == by_day([(r["provider"], r["day"], r["key_id"]) for r in run["rows"] if r["day"] >= since])
            assert [(d["provider"], d["day"]) for d in answer["days"]] == sorted(
                ((d["provider"], d["day"]) for d in run["days"] if d["day"] >= since), key=lambda d: (d[1], d[0])
            )
            assert [k["key_id"] for k in answer["around"]] == (["key_laptop"] if since == "2026-11-01" else [])
            continue
        used = {(r["provider"], r["ts"][:10], r["upstream_key"]) for r in RECORDS if isinstance(r, dict)
                and r["event"] == "llm_call" and sees(viewer, r)}  # fmt: skip
        expected = [(r["provider"], r["day"], r["key_id"]) for r in run["rows"] if r["held"] and r["day"] >= since
                    and (r["provider"], r["day"], r["upstream_key"]) in used]  # fmt: skip
        assert expected and shown == by_day(expected), name
        assert (answer["days"], answer["around"]) == ([], [])
        for text in (json.dumps(answer), as_csv(answer, query)):
            assert "key_laptop" not in text and "key_spare" not in text
            assert_no_leak(viewer, text)


def by_day(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """In the Invoice's order: by day, then provider, then as the run wrote them."""
    return sorted(rows, key=lambda r: (r[1], r[0]))
