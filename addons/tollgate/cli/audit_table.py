"""`tollgate audit verify --postgres`: the chain of the fleet's table checked from the command line
(`records/audit/table_verify.py`), going on from `tollgate_verified` as the console does.

The DSN is never given on the command line (a process list and a shell's history would show its
password). With `--config`, it is the configuration's: the console's own (`console.postgres_dsn`,
the role that owns `tollgate_verified`) when set, else `audit.postgres.dsn`. Without, it is the
environment variable TOLLGATE_RECORDS_DSN when set (the table `tollgate_records`, rows not removed
by keep_days), else ./tollgate.yaml's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.cli.words import plural
from tollgate.records.audit.anchor_verify import AnchorRules

ENV = "TOLLGATE_RECORDS_DSN"
DEFAULT_TABLE = "tollgate_records"
REFUSED = (
    "error: --postgres takes no DSN on the command line (a process list and the shell's history would show its"
    f" password): give it in the configuration (--config: console.postgres_dsn, else audit.postgres.dsn) or in {ENV}"
)


class Refused(Exception):
    """Where the records are cannot be told: the message says why (never the DSN)."""


def looks_like_dsn(text: str) -> bool:
    return "://" in text or "=" in text or text.startswith("postgres")


def where_from(config_path: Path | None) -> tuple[str, str, float | None, Ed25519PublicKey | None, str | None]:
    """The DSN, the table, keep_days, the key of the configuration's `audit.signing_key` and its
    `audit.anchor.ca_file`; Refused when there is no DSN to use."""
    if config_path is None and os.environ.get(ENV):
        return os.environ[ENV], DEFAULT_TABLE, None, None, None
    if config_path is None and Path("tollgate.yaml").is_file():
        config_path = Path("tollgate.yaml")
    if config_path is None:
        raise Refused(f"--postgres: give --config FILE (its audit.postgres) or set {ENV}")
    from tollgate.configuration.config import ConfigError, Unset, load_config
    from tollgate.configuration.records_settings import postgres_dsn

    unset: list[Unset] = []
    try:
        config = load_config(config_path, unset=unset)
    except ConfigError as e:
        raise Refused(str(e)) from None
    postgres = config.audit.postgres
    if postgres is None:
        raise Refused(f"{config_path}: audit.postgres is not set: the records are in no table")
    place, dsn = ("console.postgres_dsn", config.console.postgres_dsn) if config.console.postgres_dsn else \
        ("audit.postgres.dsn", postgres.dsn)  # fmt: skip
    missing = [u for u in unset if u.where == place]
    if missing:
        raise Refused(f"{config_path}: {missing[0]}: the table is read with it")
    try:
        postgres_dsn(dsn)
    except ValueError as e:
        raise Refused(f"{config_path}: {place}: {e}") from None
    key = None
    if config.audit.signing_key is not None:  # the signatures checked as the console checks them
        from tollgate.common.audit_chain import load_signing_key

        try:
            key = load_signing_key(config.audit.signing_key).public_key()
        except (OSError, ValueError) as e:
            raise Refused(f"{config_path}: audit.signing_key: {e}") from None
    anchors = config.audit.anchor.ca_file if config.audit.anchor is not None else None
    return dsn, postgres.table, postgres.keep_days, key, anchors


def verify_postgres(
    config_path: Path | None, key: Ed25519PublicKey | None, rules: AnchorRules | None, anchor_window: float
) -> int:
    """Exit status as `verify`'s: 0 whole (a summary printed), 1 with a line per fault, 2 when the
    table cannot be read (or told)."""
    import psycopg

    from tollgate.records.audit.anchor_verify import load_rules
    from tollgate.records.audit.table_verify import NoTable, verify_table
    from tollgate.records.senders.audit_postgres import SchemaTooNew, described, first_line

    try:
        dsn, table, keep_days, configured_key, ca_file = where_from(config_path)
        if rules is None and ca_file is not None:
            rules = load_rules(ca_file, anchor_window)
    except (Refused, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    key = key if key is not None else configured_key
    where = f"PostgreSQL ({described(dsn)}, table {table})"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="tollgate-verify") as conn:
            check = verify_table(conn, table, key, rules, keep_days)
    except psycopg.Error as e:
        print(f"error: {where} cannot be read: {first_line(e)}", file=sys.stderr)
        return 2
    except SchemaTooNew as e:
        print(f"error: the table {e.table} has schema version {e.version}, newer than this Tollgate knows"
              f" ({e.known}): upgrade Tollgate to verify it", file=sys.stderr)  # fmt: skip
        return 2
    except NoTable as e:
        print(f"error: {where}: {e}", file=sys.stderr)
        return 2
    if check.not_kept is not None:
        print(f"warning: how far the chain was checked cannot be kept in tollgate_verified: {check.not_kept}",
              file=sys.stderr)  # fmt: skip
    faults = check.faults()
    for fault in faults:
        print(fault)
    records = sum(s.checked for s in check.instances.values())
    named = len([i for i in check.instances if i is not None])
    runs = [r for i in check.verifier.runs for r in (*check.verifier.ended.get(i, ()), check.verifier.runs[i])]
    signatures = (
        f"{plural(sum(r.signed for r in runs), 'signature')} verified" if key is not None
        else "signatures not checked (no key)"
    )  # fmt: skip
    went_on = f", going on from tollgate_verified for {plural(check.resumed, 'instance')}" if check.resumed else ""
    counts = (
        f"{plural(records, 'record')} of {plural(named, 'instance')} in {where} ({check.checked_now} checked"
        f" now{went_on}), {signatures}"
    )
    if faults:
        print(f"{plural(len(faults), 'fault')} in {counts}", file=sys.stderr)
        return 1
    print(f"whole: {counts}")
    last = max((s.last_record for s in check.instances.values() if s.last_record), default=None)
    print(f"last record: {last or '-'}")
    return 0
