"""`tollgate reconcile`: Tollgate's counts beside what the vendors' admin APIs say, per provider,
day, key and model; the usage on the organisation's keys that never passed Tollgate; the results
kept (the records' table, or the local audit) and printed.

The only command that reads the vendors' admin keys (`reconcile.<vendor>.admin_key`): from their
variables, at the moment they are sent, never into a message, a record or the output."""

from __future__ import annotations

import dataclasses
import sys
import time as clock
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollgate.configuration.config import Config
    from tollgate.governance.limits.pricing import Prices
    from tollgate.records.reconcile.gateway_counts import Counted, CountKey
    from tollgate.records.reconcile.reconciling import Pricer

SOURCES = ("auto", "postgres", "audit")
MOST_DAYS = 92  # the vendors' reports are asked a page of 31 days at a time: a quarter at most


def day_argument(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a day (2026-11-01)") from None


def pricer(prices: Prices) -> Pricer:
    """Tokens priced at Tollgate's prices, the same on both sides: a day's tokens on a model at its
    base rate (tiers by prompt size are a call's, not a day's)."""
    from tollgate.common.shown import NANO
    from tollgate.formats.usage import Usage
    from tollgate.governance.limits.pricing import cost_nanousd

    def price(provider: str, model: str | None, day: date, counted: Counted) -> Decimal | None:
        if model is None:
            return None
        when = datetime.combine(day, time(12), UTC).timestamp()
        rate = prices.rate(provider, model, None, (), when)
        if rate is None:
            return None
        usage = Usage(input_tokens=counted.input_tokens, cached_tokens=counted.cached_input_tokens,
                      cache_write_tokens=counted.cache_write_tokens, output_tokens=counted.output_tokens)  # fmt: skip
        return cost_nanousd(dataclasses.replace(rate, tiers=()), usage) * NANO

    return price


def reconcile(
    config_path: Path | None,
    since_text: str | None,
    until_text: str | None,
    form: str,
    source: str,
    env: Mapping[str, str] | None = None,
    now: Callable[[], float] = clock.time,
) -> int:
    """Exit status 0 when every closed day matches and nothing closed was used around Tollgate; 1
    otherwise; 2 when the configuration, a vendor or Tollgate's records cannot be read, or the
    results cannot be kept."""
    from tollgate.configuration.config import ConfigError, Unset, load_config

    if config_path is None:
        config_path = Path("tollgate.yaml")
    unset: list[Unset] = []
    try:
        # Other providers' secrets may be unset here: only the vendors compared need their keys.
        config = load_config(config_path, env, unset)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = config.reconcile
    if settings is None or not settings.vendors():
        print(f"error: {config_path}: no reconcile: vendor named (reconcile: {{openai: {{admin_key: ${{NAME}}}}}})"
              " — see docs/reconcile.md", file=sys.stderr)  # fmt: skip
        return 2
    needed = [f"providers.{name}.keys" for name in settings.vendors()] + ["audit.postgres.dsn"]
    lacking = [u for u in unset if any(u.where == n or u.where.startswith(n + ".") for n in needed)]
    if lacking:
        for u in lacking:
            print(f"error: {config_path}: {u}", file=sys.stderr)
        return 2
    today = datetime.fromtimestamp(now(), UTC).date()
    try:
        until = day_argument(until_text) if until_text else today
        since = day_argument(since_text) if since_text else until - timedelta(days=settings.days - 1)
    except ValueError as e:
        print(f"error: --since/--until: {e}", file=sys.stderr)
        return 2
    if since > until or (until - since).days >= MOST_DAYS:
        print(f"error: --since {since} --until {until}: a span of 1 to {MOST_DAYS} days, since first", file=sys.stderr)
        return 2
    keys: dict[str, str] = {}
    for name, vendor in settings.vendors().items():
        try:
            keys[name] = vendor.admin_key_value(env)
        except ValueError as e:
            print(f"error: reconcile.{name}.admin_key: {e}", file=sys.stderr)
            return 2
    ours = gateway_side(config, source, set(keys), since, until)
    if ours is None:
        return 2
    return compared(config, keys, ours, since, until, form, datetime.fromtimestamp(now(), UTC))


def gateway_side(config: Config, source: str, providers: set[str], since: date, until: date) -> dict | None:
    """Tollgate's sums: from the records' table with `audit.postgres`, else the local audit; None
    (said on standard error) when they cannot be read, or `--from postgres` has no table."""
    from tollgate.records.reconcile.gateway_counts import audit_records, from_table, tally
    from tollgate.records.reports.inventory import with_rotations
    from tollgate.records.reports.usage_report import SkippedRecord

    table = config.audit.postgres
    if table is None and source == "postgres":
        print("error: --from postgres: the configuration has no audit.postgres (a fleet's records are read from"
              " its table: a machine's own audit would count one instance's calls alone)", file=sys.stderr)  # fmt: skip
        return None
    if table is not None and source != "audit":
        import psycopg

        try:
            return from_table(table.dsn, table.table, providers, since, until)
        except psycopg.Error as e:
            from tollgate.records.senders.audit_postgres import described, first_line

            print(f"error: audit.postgres ({described(table.dsn)}): cannot read {table.table}: {first_line(e)}",
                  file=sys.stderr)  # fmt: skip
            return None
    if config.audit.path == "-":
        print("error: audit.path is - (standard output): Tollgate's side cannot be read", file=sys.stderr)
        return None
    skipped: list[SkippedRecord] = []
    try:
        sums = tally(audit_records(with_rotations(Path(config.audit.path)), skipped), providers, since, until)
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}", file=sys.stderr)
        return None
    if skipped:
        print(f"warning: {len(skipped)} audit lines are no record (the first: {skipped[0]}); skipped", file=sys.stderr)
    return sums


def compared(
    config: Config,
    admin_keys: dict[str, str],
    ours: Mapping[CountKey, Counted],
    since: date,
    until: date,
    form: str,
    now: datetime,
) -> int:
    from tollgate.common.fingerprint import fingerprint
    from tollgate.governance.limits.pricing import Prices
    from tollgate.providers.admin import READERS, AdminRefused, VendorUnreadable
    from tollgate.records.reconcile.reconcile_output import RENDER
    from tollgate.records.reconcile.reconciling import compare, failing

    settings = config.reconcile
    assert settings is not None  # checked by the caller
    price = pricer(Prices(config.prices))
    rows: list[dict[str, Any]] = []
    days: list[dict[str, Any]] = []
    unread = False
    for name, vendor in settings.vendors().items():
        reader = READERS[name]
        admin = reader.admin(vendor.base_url, admin_keys[name], vendor.ca_file, clock.sleep)
        try:
            report = reader.read(admin, since, until)
        except AdminRefused as e:
            print(f"error: {name}: the admin key ({vendor.variable}) was refused: {e}", file=sys.stderr)
            unread = True
            continue
        except VendorUnreadable as e:
            print(f"error: {name}: cannot be read: {e}", file=sys.stderr)
            unread = True
            continue
        for problem in report.problems:
            print(f"warning: {name}: {problem}", file=sys.stderr)
        held = {fingerprint(k): k for k in config.providers.get(name).keys}
        mine = {k: v for k, v in ours.items() if k[0] == name}
        result = compare(name, report, mine, held, price, settings.tolerance, since, until, now)
        rows += result.rows
        days += result.days
    if unread and not rows and not days:
        return 2
    kept = keep(config, since, until, rows, days, now)
    sys.stdout.write(RENDER[form](rows, days))
    if unread or not kept:
        return 2
    return 1 if failing(rows) else 0


def keep(config: Config, since: date, until: date, rows: list[dict[str, Any]], days: list[dict[str, Any]],
         now: datetime) -> bool:  # fmt: skip
    """The results kept: in the records' table with `audit.postgres`, else as a record of the local
    audit. False (said on standard error) when they could not be."""
    from tollgate.records.reconcile.kept_results import TABLE, NotMigrated, record, store_table, write_record

    table = config.audit.postgres
    if table is not None:
        import psycopg

        from tollgate.records.senders.audit_postgres import SchemaTooNew, described, first_line

        try:
            with psycopg.connect(table.dsn, autocommit=True, connect_timeout=10,
                                 application_name="tollgate reconcile") as conn:  # fmt: skip
                store_table(conn, now, rows, days)
        except NotMigrated as e:
            print(f"error: audit.postgres ({described(table.dsn)}): the results were not kept: {e}", file=sys.stderr)
            return False
        except (psycopg.Error, SchemaTooNew) as e:
            why = first_line(e) if isinstance(e, psycopg.Error) else str(e)
            print(f"error: audit.postgres ({described(table.dsn)}): the results were not kept in {TABLE}: {why}",
                  file=sys.stderr)  # fmt: skip
            return False
        return True
    if config.audit.path == "-":
        return True  # the audit goes to standard output: the results are printed there already
    try:
        write_record(config.audit, record(since, until, rows, days))
    except Exception as e:
        print(f"error: audit.path: the results were not kept in {config.audit.path}: {e}", file=sys.stderr)
        return False
    return True
