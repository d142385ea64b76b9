"""A fleet's records made inside PostgreSQL, for `console_postgres.py`: a statement per part, each
line built and chained by a PL/pgSQL function (the sender's chain: SHA-256 of the previous chain, a
newline and the line up to `,"chain":"`), its columns read from the line as the sender's `row_of`
reads them, the sums added by the table's statement trigger. No file, no COPY: 10 million records
are as fast to make as PostgreSQL writes them."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from tollgate.records.senders.audit_postgres import FIELD_COLUMNS

PART = 250_000  # records per statement: the trigger's transition table of one part

# The records of one part, [lo, hi) of `total`, `instances` instances in turn (record n is
# instance n % instances's record n / instances + 1, its time n/total of a year after
# 2025-12-01): mostly LLM calls, some connections and MCP calls; 120 clients, 5 models, a refusal
# in 20 (a cost of at least 0.0001, written as orjson writes it); each instance's first record its start. Each instance's chain goes on from its last row.
GENERATE = r"""
CREATE OR REPLACE FUNCTION bench_fleet(tab regclass, lo bigint, hi bigint, total bigint, instances int)
RETURNS TABLE (chain text, line text) LANGUAGE plpgsql AS $f$
DECLARE
    prev text[] := array_fill('0000000000000000000000000000000000000000000000000000000000000000'::text, ARRAY[instances]);
    models text[] := ARRAY['gpt-4o', 'gpt-4o-mini', 'o3', 'claude-sonnet-4-5', 'gemini-2.5-pro'];
    providers text[] := ARRAY['openai', 'openai', 'openai', 'anthropic', 'gemini'];
    refusals text[] := ARRAY['policy_denied', 'content_denied', 'budget_exceeded', 'unauthenticated'];
    last text; k int; seq bigint; ts text; content text; draw float8; m int; refused boolean;
    tin bigint; tout bigint; who text; inst text;
BEGIN
    PERFORM setseed(((lo % 1000000) / 1000000.0)::float8);
    FOR k IN 1..instances LOOP
        EXECUTE format('SELECT chain FROM %s WHERE instance = $1 ORDER BY seq DESC LIMIT 1', tab)
            INTO last USING 'gw-' || (k - 1);
        IF last IS NOT NULL THEN prev[k] := last; END IF;
    END LOOP;
    FOR n IN lo..hi - 1 LOOP
        k := (n % instances)::int + 1; seq := n / instances + 1; inst := 'gw-' || (k - 1);
        ts := to_char(timestamp '2025-12-01 00:00:00' + (n::float8 / total) * interval '365 days', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
        who := 'person-' || lpad((floor(random() * 120))::int::text, 3, '0');
        draw := random(); refused := random() < 0.05;
        IF seq = 1 THEN
            content := format('{"event":"tollgate_started","ts":"%s","previous_chain":null,"instance":"%s","seq":%s',
                              ts, inst, seq);
        ELSIF draw < 0.1 THEN
            content := format('{"event":"connection","instance":"%s","ts":"%s","request_id":"%s","client":"%s",'
                '"auth":"proxyauth","host":"chat.example.ai","port":443,"service":"example_ai","category":"ai_chat",'
                '"decision":"%s","deny_reasons":%s,"bytes_sent":1200,"bytes_received":54000,"duration_ms":812.4,'
                '"error":null,"refusal":%s,"seq":%s',
                inst, ts, lpad(to_hex(n), 32, '0'), who, CASE WHEN refused THEN 'deny' ELSE 'allow' END,
                CASE WHEN refused THEN '["egress deny"]' ELSE '[]' END,
                CASE WHEN refused THEN '"egress_denied"' ELSE 'null' END, seq);
        ELSIF draw < 0.15 THEN
            content := format('{"event":"mcp_call","instance":"%s","ts":"%s","request_id":"%s","client":"%s",'
                '"auth":"virtual_key","server":"docs","method":"tools/call","tool":"search","decision":"%s",'
                '"deny_reasons":%s,"findings":null,"redacted":null,"is_error":false,"status":%s,'
                '"upstream_key":"sha256:1b3223cf51fe","latency_ms":46.5,"error":null,"refusal":%s,"seq":%s',
                inst, ts, lpad(to_hex(n), 32, '0'), who, CASE WHEN refused THEN 'deny' ELSE 'allow' END,
                CASE WHEN refused THEN '["policy_denied: the reason"]' ELSE '[]' END,
                CASE WHEN refused THEN 403 ELSE 200 END,
                CASE WHEN refused THEN '"policy_denied"' ELSE 'null' END, seq);
        ELSE
            m := 1 + floor(random() * 5)::int;
            tin := 20 + floor(random() * 3980)::bigint; tout := 30 + floor(random() * 1970)::bigint;
            last := refusals[1 + floor(random() * 4)::int];
            content := format('{"event":"llm_call","instance":"%s","ts":"%s","request_id":"%s","client":"%s",'
                '"auth":"virtual_key","groups":["research"],"account":null,"tenant":null,"provider":"%s",'
                '"requested_provider":"%s","endpoint":"chat.completions","method":"POST","host":"api.example.com",'
                '"requested_model":"%s","model":"%s","stream":true,"decision":"%s","deny_reasons":%s,"findings":%s,'
                '"redacted":0,"answer_findings":{},"answer_redacted":0,"status":%s,'
                '"upstream_key":"sha256:4be1a3c09d2e","latency_ms":912.4,"ttfb_ms":905.8,"bytes_sent":%s,'
                '"bytes_received":%s,"input_tokens":%s,"output_tokens":%s,"cached_tokens":0,"reasoning_tokens":0,'
                '"cache_write_tokens":null,"cost_usd":%s,"finish_reason":"stop","error":null,"refusal":%s,"seq":%s',
                inst, ts, lpad(to_hex(n), 32, '0'), who, providers[m], providers[m], models[m], models[m],
                CASE WHEN refused THEN 'deny' ELSE 'allow' END,
                CASE WHEN refused THEN '["' || last || ': the reason"]' ELSE '[]' END,
                CASE WHEN random() < 0.02 THEN '{"pii.email":1}' ELSE '{}' END,
                CASE WHEN refused THEN 403 ELSE 200 END,
                CASE WHEN refused THEN 'null' ELSE (tin * 4)::text END,
                CASE WHEN refused THEN 'null' ELSE (tout * 9)::text END,
                CASE WHEN refused THEN 'null' ELSE tin::text END,
                CASE WHEN refused THEN 'null' ELSE tout::text END,
                CASE WHEN refused THEN 'null' ELSE rtrim(rtrim(round((tin + tout) * 2 / 1000000.0, 6)::text, '0'), '.') END,
                CASE WHEN refused THEN '"' || last || '"' ELSE 'null' END, seq);
        END IF;
        prev[k] := encode(sha256(convert_to(prev[k] || E'\n' || content, 'UTF8')), 'hex');
        chain := prev[k];
        line := content || ',"chain":"' || prev[k] || '"}';
        RETURN NEXT;
    END LOOP;
END $f$
"""


def _column(name: str, kind: str) -> str:
    """A column's value from the line's JSON `d`, as `row_of` takes it (NULL where the field is
    missing or not of the column's kind)."""
    field = f"d->'{name}'"
    if kind == "text":
        return f"tollgate_str({field})"
    if kind == "text[]":
        return f"CASE WHEN jsonb_typeof({field}) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text({field})) END"
    if kind == "timestamptz":
        return f"(d->>'{name}')::timestamptz"
    if kind in ("bigint", "integer"):
        return f"CASE WHEN jsonb_typeof({field}) = 'number' THEN (d->>'{name}')::{kind} END"
    return f"CASE WHEN jsonb_typeof({field}) = 'number' THEN (d->>'{name}')::{kind} END"


def fill(conn: psycopg.Connection, table: str, records: int, instances: int, held: int) -> float:
    """The table filled from record `held` to `records`; the records a second it was written at."""
    conn.execute(GENERATE)
    names = [name for name, _, _ in FIELD_COLUMNS]
    insert = sql.SQL(
        "INSERT INTO {} (chain, {}, line) SELECT g.chain, {}, g.line"
        " FROM bench_fleet(%s::regclass, %s, %s, %s, %s) AS g CROSS JOIN LATERAL (SELECT g.line::jsonb AS d OFFSET 0) AS j"
    ).format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.SQL(_column(name, kind)) for name, kind, _ in FIELD_COLUMNS),
    )
    began = time.perf_counter()
    for lo in range(held, records, PART):
        hi = min(records, lo + PART)
        conn.execute(insert, (table, lo, hi, records, instances))
        took = time.perf_counter() - began
        print(f"  {hi:,} records made ({(hi - held) / took:,.0f} a second, the sums with them)", flush=True)
    return (records - held) / max(time.perf_counter() - began, 1e-9)
