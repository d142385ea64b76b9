"""The sums the console's views add up, kept by PostgreSQL beside the records' table (schema
version 2 of `audit_postgres`).

Each record is read from its `line` (never from the columns beside it) by `tollgate_facts`, an SQL
function that takes from it what the console's `Index` takes (`console/index.py`, `Index._sum`):
its day and hour (the start of its `ts`), its origin (client, groups, plan account, instance,
JWT-identified), the caller's key when no client is named, provider, model, decision, tokens,
cost, refusal kind and reason, findings by kind, place and action, AI service. Tables per day
(people, spend, refusals, findings, services) and per hour (spend) hold the sums, keyed by those
fields only: who a person is stays configuration, applied when a view is asked.

Two statement-level triggers keep them, with the rows a statement changed (transition tables):
after an insert, one upsert per sum table and key for the whole batch (a row sent again, left out
by `ON CONFLICT DO NOTHING`, is in no transition table: it moves nothing; the batch's lines read
by `tollgate_facts_parsed`, without a guard per line, and again by `tollgate_facts` only when one of
them is no JSON); after a delete (`keep_days`), each day the removed rows were of is summed again
from the rows still there, so that a first or last time and a refusal's last reason stay those of
the rows kept. The trigger functions run as the role that migrated the schema (`SECURITY
DEFINER`): the sender's role writes no sum itself and cannot change how they are kept.

Rows already in the table when the sums came are added by `backfill`, a batch of ids at a time in
a transaction each, its progress in `<table>_backfill` (`upto`: the last id there before the
triggers, `done`: the ids added so far), so that it resumes where it stopped. A row counts in the
sums when its id is at most `done` or above `upto`."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

BACKFILL_IDS = 50_000  # ids summed per transaction by `backfill`
# The sum tables by name (`<table>_<name>`), each with its key columns and its figures: `sums_of`
# reads them, `recomputed_day` compares them.
ORIGIN = ("client", "groups", "account", "instance", "jwt")
_PEOPLE = ("calls", "refused", "input_tokens", "output_tokens", "cost_usd", "unpriced", "connections")
_SERVICES = ("category", "calls", "connections", "refused", "bytes_sent", "bytes_received")
SUM_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "people": (("day", *ORIGIN, "key"), (*_PEOPLE, "first_seen", "last_seen")),
    "spend_day": (
        ("day", *ORIGIN, "key", "provider", "model"),
        ("calls", "input_tokens", "output_tokens", "cost_usd"),
    ),
    "spend_hour": (("hour", *ORIGIN, "provider", "model"), ("calls", "input_tokens", "output_tokens", "cost_usd")),
    "refusals": (("day", *ORIGIN, "kind"), ("count", "last_seen", "last_reason", "first_id")),
    "findings": (("day", *ORIGIN, "key", "kind", "place", "action"), ("count",)),
    "services": (("day", *ORIGIN, "service"), (*_SERVICES, "first_seen", "last_seen", "first_id")),
}


def _facts(name: str, parsed: str) -> str:
    """The statement that makes the function `name`, which reads a line as `parsed` says."""
    return (
        (
            """CREATE OR REPLACE FUNCTION @NAME@(line text, raw bytea) RETURNS TABLE (
    day text, hour text, ts text, event text,
    client text, groups text[], account text, instance text, jwt boolean, key text,
    provider text, model text, denied boolean, inputs numeric, outputs numeric, price numeric,
    unpriced boolean, shaped boolean, refusal text, reason text,
    service text, category text, bytes_sent numeric, bytes_received numeric,
    findings jsonb, answer_findings jsonb, request_action text, answer_action text
) LANGUAGE sql IMMUTABLE PARALLEL UNSAFE AS $f$
SELECT left(r.ts, 10), left(r.ts, 13), r.ts, r.event,
    r.client, r.groups, r.account, r.instance, r.jwt,
    CASE WHEN r.client IS NULL AND r.event IN ('llm_call', 'mcp_call') THEN tollgate_str(d->'upstream_key') END,
    r.provider, tollgate_str(d->'model'), r.denied, r.inputs, r.outputs,
    CASE WHEN jsonb_typeof(d->'cost_usd') = 'number' THEN (d->>'cost_usd')::numeric ELSE 0 END,
    coalesce(jsonb_typeof(d->'cost_usd'), 'null') = 'null' AND r.event = 'llm_call' AND (r.inputs > 0 OR r.outputs > 0),
    coalesce(jsonb_typeof(d->'findings'), 'null') IN ('null', 'object')
        AND coalesce(jsonb_typeof(d->'answer_findings'), 'null') IN ('null', 'object')
        AND (r.refusal IS NULL OR coalesce(jsonb_typeof(d->'deny_reasons'), 'null') IN ('null', 'array')),
    r.refusal,
    CASE WHEN jsonb_typeof(d->'deny_reasons') = 'array' AND jsonb_array_length(d->'deny_reasons') > 0
        THEN (SELECT string_agg(tollgate_item(e.v), '; ' ORDER BY e.n)
              FROM jsonb_array_elements(d->'deny_reasons') WITH ORDINALITY AS e(v, n))
        ELSE tollgate_str(d->'error') END,
    CASE r.event
        WHEN 'llm_call' THEN CASE WHEN r.provider <> '' THEN r.provider
            WHEN tollgate_str(d->'requested_provider') <> '' THEN tollgate_str(d->'requested_provider')
            ELSE tollgate_str(d->'host') END
        WHEN 'connection' THEN coalesce(tollgate_str(d->'service'),
            CASE WHEN r.denied THEN tollgate_str(d->'host') END)
    END,
    CASE r.event WHEN 'llm_call' THEN 'ai_api' WHEN 'connection' THEN tollgate_str(d->'category') END,
    tollgate_count(d->'bytes_sent'), tollgate_count(d->'bytes_received'),
    CASE WHEN jsonb_typeof(d->'findings') = 'object' THEN d->'findings' END,
    CASE WHEN jsonb_typeof(d->'answer_findings') = 'object' THEN d->'answer_findings' END,
    CASE WHEN r.refusal = 'content_denied' AND coalesce(jsonb_typeof(d->'answer_findings'), 'null') = 'null'
            AND coalesce(jsonb_typeof(d->'ttfb_ms'), 'null') = 'null' THEN 'refused'
        WHEN tollgate_count(d->'redacted') > 0 THEN 'redacted' ELSE 'recorded' END,
    CASE WHEN r.refusal = 'content_denied' THEN 'refused'
        WHEN tollgate_count(d->'answer_redacted') > 0 THEN 'redacted' ELSE 'recorded' END
FROM (SELECT @JSON@ AS d WHERE raw IS NULL OFFSET 0) AS j
CROSS JOIN LATERAL (SELECT
    tollgate_str(d->'ts') AS ts, tollgate_str(d->'event') AS event, tollgate_str(d->'client') AS client,
    CASE WHEN coalesce(jsonb_typeof(d->'groups'), 'null') = 'null' THEN NULL
        WHEN jsonb_typeof(d->'groups') = 'array' AND NOT jsonb_path_exists(d->'groups', '$[*] ? (@.type() != "string")')
            THEN ARRAY(SELECT jsonb_array_elements_text(d->'groups'))
        ELSE '{{}}'::text[] END AS groups,
    translate(tollgate_str(d->'account'), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS account,
    tollgate_str(d->'instance') AS instance, coalesce(d->'auth' = '"jwt"', false) AS jwt,
    tollgate_str(d->'provider') AS provider, coalesce(d->'decision' = '"deny"', false) AS denied,
    tollgate_count(d->'input_tokens') AS inputs, tollgate_count(d->'output_tokens') AS outputs,
    tollgate_str(d->'refusal') AS refusal
) AS r
WHERE jsonb_typeof(d) = 'object' AND length(r.ts) >= 13 AND r.event IS DISTINCT FROM 'malformed'
$f$"""
        )
        .replace("@NAME@", name)
        .replace("@JSON@", parsed)
    )


# ---- what a line says, in SQL (the same for every records' table; made again by each migration)

FUNCTIONS = (
    # The line as JSON; NULL when it is none (jsonb refuses, where orjson may not, a string holding
    # \u0000: such a record is listed by the console and counted in no sum). Never in a parallel
    # plan: its exception block is a subtransaction, which a parallel worker cannot start.
    """CREATE OR REPLACE FUNCTION tollgate_json(line text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE AS $f$
BEGIN
    RETURN line::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $f$""",
    # A field that is a string (`_str`), else NULL.
    """CREATE OR REPLACE FUNCTION tollgate_str(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$f$ SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{{}}' END $f$""",
    # A whole number of at least 0 (`_int`: a count, tokens, bytes), else 0.
    """CREATE OR REPLACE FUNCTION tollgate_count(v jsonb) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$f$ SELECT CASE WHEN jsonb_typeof(v) = 'number' AND v::text ~ '^[0-9]+$' THEN v::text::numeric ELSE 0 END $f$""",
    # A list's item as Python's str() writes it (a refusal's reasons joined).
    """CREATE OR REPLACE FUNCTION tollgate_item(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$f$ SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{{}}' WHEN 'null' THEN 'None'
    WHEN 'boolean' THEN CASE WHEN v = 'true' THEN 'True' ELSE 'False' END ELSE v::text END $f$""",
    # What a line counts in (`Index._sum`): one row for a record with a `ts` of an hour at least, none
    # for a line that is no record. `shaped`: its findings and reasons of the shapes the audit writes
    # (else it counts in the hourly spend only, as the console's index counts it).
    _facts("tollgate_facts", "tollgate_json(line)"),
    # The same, the line cast to jsonb unguarded: no subtransaction a row, but an error for a line
    # that is no JSON, after which the trigger reads its batch again with `tollgate_facts`.
    _facts("tollgate_facts_parsed", "line::jsonb"),
)

_O = "client, groups, account, instance, jwt"
_C = 'COLLATE "C"'


def add_statement(source: str, where: str = "", facts: str = "tollgate_facts") -> str:
    """One statement that adds the rows of `source` (a query or relation with `id`, `line`, `raw`)
    (those of them `where` keeps), as the function `facts` reads them, to every sum table: an upsert
    per table, its keys in order (two batches meet in the same order: no deadlock). Its names
    ({people}, …) are filled in by `migrate`."""
    calls = "f.event IN ('llm_call', 'mcp_call')"
    return f"""WITH f AS MATERIALIZED (
    SELECT s.id, x.* FROM {source} AS s CROSS JOIN LATERAL {facts}(s.line, s.raw) AS x {where}
), o AS (
    INSERT INTO {{origins}} ({_O}) SELECT DISTINCT {_O} FROM f ON CONFLICT DO NOTHING
), p AS (
    INSERT INTO {{people}} AS t (day, {_O}, key, calls, refused, input_tokens, output_tokens, cost_usd, unpriced,
        connections, first_seen, last_seen)
    SELECT day, {_O}, key, count(*) FILTER (WHERE {calls}), count(*) FILTER (WHERE {calls} AND denied),
        coalesce(sum(inputs) FILTER (WHERE {calls}), 0), coalesce(sum(outputs) FILTER (WHERE {calls}), 0),
        coalesce(sum(price) FILTER (WHERE {calls}), 0), count(*) FILTER (WHERE unpriced),
        count(*) FILTER (WHERE event = 'connection'), min(ts {_C}), max(ts {_C})
    FROM f WHERE shaped AND event IN ('llm_call', 'mcp_call', 'connection')
    GROUP BY day, {_O}, key ORDER BY day, {_O}, key
    ON CONFLICT (day, {_O}, key) DO UPDATE SET calls = t.calls + EXCLUDED.calls,
        refused = t.refused + EXCLUDED.refused, input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost_usd = t.cost_usd + EXCLUDED.cost_usd,
        unpriced = t.unpriced + EXCLUDED.unpriced, connections = t.connections + EXCLUDED.connections,
        first_seen = least(t.first_seen, EXCLUDED.first_seen), last_seen = greatest(t.last_seen, EXCLUDED.last_seen)
), sd AS (
    INSERT INTO {{spend_day}} AS t (day, {_O}, key, provider, model, calls, input_tokens, output_tokens, cost_usd)
    SELECT day, {_O}, key, provider, model, count(*), sum(inputs), sum(outputs), sum(price)
    FROM f WHERE shaped AND event = 'llm_call'
    GROUP BY day, {_O}, key, provider, model ORDER BY day, {_O}, key, provider, model
    ON CONFLICT (day, {_O}, key, provider, model) DO UPDATE SET calls = t.calls + EXCLUDED.calls,
        input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost_usd = t.cost_usd + EXCLUDED.cost_usd
), sh AS (
    INSERT INTO {{spend_hour}} AS t (hour, {_O}, provider, model, calls, input_tokens, output_tokens, cost_usd)
    SELECT hour, {_O}, provider, model, count(*), sum(least(inputs, 2147483647)),
        sum(least(outputs, 2147483647)), sum(price)
    FROM f WHERE event = 'llm_call'
    GROUP BY hour, {_O}, provider, model ORDER BY hour, {_O}, provider, model
    ON CONFLICT (hour, {_O}, provider, model) DO UPDATE SET calls = t.calls + EXCLUDED.calls,
        input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost_usd = t.cost_usd + EXCLUDED.cost_usd
), r AS (
    INSERT INTO {{refusals}} AS t (day, {_O}, kind, count, last_seen, last_reason, first_id)
    SELECT day, {_O}, refusal, count(*), max(ts {_C}),
        (array_agg(reason ORDER BY ts {_C} DESC, id DESC))[1], min(id)
    FROM f WHERE shaped AND refusal IS NOT NULL AND event IN ('llm_call', 'mcp_call', 'connection')
    GROUP BY day, {_O}, refusal ORDER BY day, {_O}, refusal
    ON CONFLICT (day, {_O}, kind) DO UPDATE SET count = t.count + EXCLUDED.count,
        last_reason = CASE WHEN EXCLUDED.last_seen >= t.last_seen THEN EXCLUDED.last_reason ELSE t.last_reason END,
        last_seen = greatest(t.last_seen, EXCLUDED.last_seen), first_id = least(t.first_id, EXCLUDED.first_id)
), fi AS (
    INSERT INTO {{findings}} AS t (day, {_O}, key, kind, place, action, count)
    SELECT f.day, {_O}, f.key, k.kind, k.place, k.action, sum(tollgate_count(k.n))
    FROM f CROSS JOIN LATERAL (
        SELECT e.key AS kind, 'request' AS place, f.request_action AS action, e.value AS n
            FROM jsonb_each(f.findings) AS e
        UNION ALL
        SELECT e.key, 'answer', f.answer_action, e.value FROM jsonb_each(f.answer_findings) AS e
    ) AS k
    WHERE f.shaped AND {calls} AND (f.findings <> '{{{{}}}}' OR f.answer_findings <> '{{{{}}}}')  -- most have none
    GROUP BY f.day, {_O}, f.key, k.kind, k.place, k.action ORDER BY f.day, {_O}, f.key, k.kind, k.place, k.action
    ON CONFLICT (day, {_O}, key, kind, place, action) DO UPDATE SET count = t.count + EXCLUDED.count
)
INSERT INTO {{services}} AS t (day, {_O}, service, category, calls, connections, refused, bytes_sent,
        bytes_received, first_seen, last_seen, first_id)
    SELECT day, {_O}, service, (array_agg(category ORDER BY id) FILTER (WHERE category IS NOT NULL))[1],
        count(*) FILTER (WHERE event = 'llm_call' AND NOT denied),
        count(*) FILTER (WHERE event = 'connection' AND NOT denied), count(*) FILTER (WHERE denied),
        sum(bytes_sent), sum(bytes_received), min(ts {_C}), max(ts {_C}), min(id)
    FROM f WHERE shaped AND service IS NOT NULL AND event IN ('llm_call', 'connection')
    GROUP BY day, {_O}, service ORDER BY day, {_O}, service
    ON CONFLICT (day, {_O}, service) DO UPDATE SET category = coalesce(t.category, EXCLUDED.category),
        calls = t.calls + EXCLUDED.calls, connections = t.connections + EXCLUDED.connections,
        refused = t.refused + EXCLUDED.refused, bytes_sent = t.bytes_sent + EXCLUDED.bytes_sent,
        bytes_received = t.bytes_received + EXCLUDED.bytes_received,
        first_seen = least(t.first_seen, EXCLUDED.first_seen), last_seen = greatest(t.last_seen, EXCLUDED.last_seen),
        first_id = least(t.first_id, EXCLUDED.first_id)"""


def counted(alias: str) -> str:
    """Whether the row `alias` counts in the sums: added by a trigger, or by the backfill already."""
    return f"({alias}.id > b.upto OR {alias}.id <= b.done)"


def day_rows(since: str, until: str) -> str:
    """The rows that count whose `ts` column is from `since` to before `until` (or none), `b` the
    backfill's row: those of some days, found by the `ts` index."""
    return f"""(SELECT s.id, s.line, s.raw FROM {{table}} AS s, {{backfill}} AS b
    WHERE {counted("s")} AND (s.ts IS NULL OR (s.ts >= {since} AND s.ts < {until})))"""


_UNKEYED = 'COLLATE "C"'


def _table(name: str) -> str:
    keys, figures = SUM_TABLES[name]
    kinds = {
        "day": f"text {_UNKEYED} NOT NULL", "hour": f"text {_UNKEYED} NOT NULL", "groups": "text[]",
        "jwt": "boolean NOT NULL", "first_seen": f"text {_UNKEYED}", "last_seen": f"text {_UNKEYED}",
        "last_reason": "text", "first_id": "bigint", "category": "text",
        "kind": f"text {_UNKEYED} NOT NULL", "service": f"text {_UNKEYED} NOT NULL",
        "place": "text NOT NULL", "action": "text NOT NULL", "cost_usd": "numeric NOT NULL",
    }  # fmt: skip
    columns = [f"{c} {kinds.get(c, f'text {_UNKEYED}')}" for c in keys]
    columns += [f"{c} {kinds.get(c, 'numeric NOT NULL')}" for c in figures]
    return (
        f"CREATE TABLE IF NOT EXISTS {{{name}}} (\n    {', '.join(columns)},\n"
        f"    UNIQUE NULLS NOT DISTINCT ({', '.join(keys)})\n)"
    )


_KEPT = (*SUM_TABLES, "origins", "backfill")  # the tables the triggers write
MIGRATION: tuple[str, ...] = (
    *FUNCTIONS,
    # No row arrives while the sums and their triggers are made: the last id before them is the
    # backfill's end.
    "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
    f"""CREATE TABLE IF NOT EXISTS {{origins}} (
    id bigserial PRIMARY KEY, client text {_UNKEYED}, groups text[], account text {_UNKEYED},
    instance text {_UNKEYED}, jwt boolean NOT NULL,
    UNIQUE NULLS NOT DISTINCT ({_O})
)""",
    *(_table(name) for name in SUM_TABLES),
    "CREATE TABLE IF NOT EXISTS {backfill} (upto bigint NOT NULL, done bigint NOT NULL)",
    # The sums are the triggers' to write: every role but the owner may read them at most, whatever
    # default privileges gave (deploy/postgres-roles.sql gives the sender INSERT and DELETE on the
    # owner's tables, for the records').
    f"""DO $d$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS t, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            ELSE a.grantee::regrole::text END AS who
        FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = ANY(ARRAY[{", ".join(f"'{{{name}}}'" for name in _KEPT)}]::regclass[])
            AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s', r.t, r.who);
    END LOOP;
END $d$""",
    "INSERT INTO {backfill} (upto, done) SELECT coalesce(max(id), 0), 0 FROM {table}",
    f"""CREATE OR REPLACE FUNCTION {{sums_added}}() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
BEGIN
    -- A batch of JSON lines (every batch but one holding a line that is none) read unguarded; that
    -- one read again, each line guarded as `tollgate_json` guards it (the upserts of the first try
    -- undone with its block).
    BEGIN
        {add_statement("added", facts="tollgate_facts_parsed")};
    EXCEPTION WHEN others THEN
        {add_statement("added")};
    END;
    RETURN NULL;
END $f$""",
    f"""CREATE OR REPLACE FUNCTION {{sums_removed}}() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
DECLARE
    days text[];
    since timestamptz;
    until timestamptz;
BEGIN
    SELECT array_agg(DISTINCT x.day) INTO days
        FROM removed AS s CROSS JOIN {{backfill}} AS b CROSS JOIN LATERAL tollgate_facts(s.line, s.raw) AS x
        WHERE {counted("s")};
    IF days IS NULL THEN
        RETURN NULL;
    END IF;
    -- A record's day is the start of its ts as written: its ts column is within a day or so of it
    -- (an offset from UTC, the session's time zone); a day that is no date: every row is read.
    BEGIN
        SELECT min(d::date) - 3, max(d::date) + 3 INTO since, until FROM unnest(days) AS d;
    EXCEPTION WHEN others THEN
        since := '-infinity';
        until := 'infinity';
    END;
    PERFORM {{sums_forget}}(days);
    {add_statement(day_rows("since", "until"), "WHERE x.day = ANY(days)")};
    RETURN NULL;
END $f$""",
    f"""CREATE OR REPLACE FUNCTION {{sums_forget}}(days text[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
BEGIN
    {"; ".join(f"DELETE FROM {{{name}}} WHERE day = ANY(days)" for name in SUM_TABLES if name != "spend_hour")};
    DELETE FROM {{spend_hour}} WHERE left(hour, 10) = ANY(days);
END $f$""",
    f"""CREATE OR REPLACE FUNCTION {{sums_backfill}}(ids bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
DECLARE
    lo bigint;
    hi bigint;
    upto_ bigint;
BEGIN
    SELECT done, upto INTO lo, upto_ FROM {{backfill}} FOR UPDATE;
    IF lo >= upto_ THEN
        RETURN 0;
    END IF;
    hi := least(lo + ids, upto_);
    {add_statement("(SELECT id, line, raw FROM {table} WHERE id > lo AND id <= hi)")};
    UPDATE {{backfill}} SET done = hi;
    RETURN upto_ - hi;
END $f$""",
    "REVOKE ALL ON FUNCTION {sums_added}(), {sums_removed}(), {sums_forget}(text[]) FROM PUBLIC",
    "CREATE TRIGGER {sums_added} AFTER INSERT ON {table} REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION {sums_added}()",
    "CREATE TRIGGER {sums_removed} AFTER DELETE ON {table} REFERENCING OLD TABLE AS removed"
    " FOR EACH STATEMENT EXECUTE FUNCTION {sums_removed}()",
)

# The event list's indexes: a time range with one of client (the table's own), instance, kind,
# decision or model; built on a live table without stopping its inserts (`ensure_indexes`).
INDEXES = {
    "instance_ts": "instance, ts",
    "event_ts": "event, ts",
    "decision_ts": "decision, ts",
    "model_ts": "model, ts",
}


def names(table: str) -> dict[str, sql.Identifier]:
    """The names the sums' statements use, each after the records' table."""
    found = {name: sql.Identifier(f"{table}_{name}") for name in (*SUM_TABLES, "origins", "backfill")}
    for name in ("sums_added", "sums_removed", "sums_forget", "sums_backfill"):
        found[name] = sql.Identifier(f"{table}_{name}")
    return found


def ensure_indexes(conn: psycopg.Connection, table: str, lock: int) -> list[str]:
    """The event list's indexes of `table` made where missing (or left invalid by a build that
    stopped), each `CONCURRENTLY` (`conn` in autocommit): the rows keep arriving meanwhile. One
    instance of a fleet builds them, the one that takes the session advisory lock `lock`; the
    others go on without them (a build waits for the transactions under way, which may be theirs).
    The names built."""
    built: list[str] = []
    wanted = {f"{table}_{suffix}": columns for suffix, columns in INDEXES.items()}
    valid = """SELECT c.relname, i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
        WHERE i.indrelid = to_regclass(%s) AND c.relname = ANY(%s)"""
    found: dict[str, bool] = dict(conn.execute(valid, (table, list(wanted))))
    if all(found.get(name) for name in wanted):
        return built
    taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()
    if not taken or not taken[0]:
        return built
    try:
        found = dict(conn.execute(valid, (table, list(wanted))))
        for name, columns in wanted.items():
            if found.get(name):
                continue
            if name in found:  # a build that stopped half-way: made again
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(name),
                    sql.Identifier(table),
                    sql.SQL(columns),  # built here: no input
                )
            )
            built.append(name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
    return built


def backfill(conn: psycopg.Connection, table: str, ids: int = BACKFILL_IDS, rounds: int | None = None) -> int:
    """The rows there before the sums added to them, `ids` ids per transaction (`conn` in
    autocommit), for `rounds` transactions at most (None: until done); the ids left."""
    statement = sql.SQL("SELECT {}(%s)").format(names(table)["sums_backfill"])
    left = 1
    done = 0
    while left and (rounds is None or done < rounds):
        row = conn.execute(statement, (ids,)).fetchone()
        left = int(row[0]) if row else 0
        done += 1
    return left


def backfill_progress(conn: psycopg.Connection, table: str) -> tuple[int, int]:
    """The backfill's (done, upto): the ids added so far, the last id it adds."""
    row = conn.execute(sql.SQL("SELECT done, upto FROM {}").format(names(table)["backfill"])).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def filled(statement: str, table: str, more: Mapping[str, sql.Composable] | None = None) -> sql.Composed:
    """A statement of this module with its names filled in (`more`: others, or some of them
    instead)."""
    return sql.SQL(statement).format(**{"table": sql.Identifier(table), **names(table), **(more or {})})
