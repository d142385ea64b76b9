"""`tollgate usage` and `tollgate inventory`: reports over the ledger and the audit files, which
read records and never the providers' secrets."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tollgate.records.reports.usage_report import Report


# Malformed records named on standard error, at most: the count covers the rest.
MALFORMED_SHOWN = 20


def print_usage(
    config_path: Path | None, store: str | None, since_text: str, by_text: str, form: str, audit: list[Path] | None
) -> int:
    """Exit status 0 with the report on standard output; 2 for a bad --since or --by; 1 when the
    configuration, the ledger or an audit file cannot be read."""
    from tollgate.common.config_base import ConfigError
    from tollgate.records.reports.usage_report import (
        RENDER,
        SkippedRecord,
        aggregate,
        audit_file_calls,
        parse_by,
        parse_since,
        records,
    )

    try:
        since = parse_since(since_text, time.time())
        by = parse_by(by_text)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    malformed: list[SkippedRecord] = []

    def calls(items: Iterable[object]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, SkippedRecord):
                if len(malformed) < MALFORMED_SHOWN:
                    print(f"warning: {item}; skipped", file=sys.stderr)
                malformed.append(item)
            else:
                yield item

    try:
        if audit:
            report = aggregate(calls(audit_file_calls(audit)), by, since)
        else:
            report = ledger_report(config_path, store, calls, by, since)
    except (ConfigError, LedgerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr)
        return 1
    if (more := len(malformed) - MALFORMED_SHOWN) > 0:
        print(f"warning: {more} more malformed {'record' if more == 1 else 'records'} skipped", file=sys.stderr)
    if malformed and form == "csv":  # a CSV has no place for the count
        print(f"warning: {records(len(malformed))} skipped in all", file=sys.stderr)
    sys.stdout.write(RENDER[form](report, len(malformed)))
    return 0


def print_inventory(files: list[Path], config_path: Path | None, since_text: str | None, as_json: bool) -> int:
    """Exit status 0 with the inventory on standard output; 2 for a bad --since; 1 when the
    configuration or an audit file cannot be read."""
    from tollgate.configuration.config import ConfigError, load_config
    from tollgate.records.reports.inventory import Seen, audit_file_seen, table, tally, to_json, with_rotations
    from tollgate.records.reports.usage_report import SkippedRecord, parse_since

    try:
        since = parse_since(since_text, time.time()) if since_text is not None else -float("inf")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not files:
        try:
            if config_path is None and Path("tollgate.yaml").is_file():
                config_path = Path("tollgate.yaml")
            audit_path = load_config(config_path, unset=[]).audit.path  # no provider's secret needed
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if audit_path == "-":
            print("error: audit.path is - (standard output): name the audit files", file=sys.stderr)
            return 1
        files = with_rotations(Path(audit_path))
    malformed = 0

    def seen(items: Iterable[Seen | SkippedRecord]) -> Iterator[Seen]:
        nonlocal malformed
        for item in items:
            if isinstance(item, SkippedRecord):
                if malformed < MALFORMED_SHOWN:
                    print(f"warning: {item}; skipped", file=sys.stderr)
                malformed += 1
            else:
                yield item

    try:
        inventory = tally(seen(audit_file_seen(files)), since)
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr)
        return 1
    if (more := malformed - MALFORMED_SHOWN) > 0:
        print(f"warning: {more} more malformed {'record' if more == 1 else 'records'} skipped", file=sys.stderr)
    sys.stdout.write(to_json(inventory) if as_json else table(inventory, malformed))
    return 0


class LedgerUnavailable(Exception):
    """The ledger cannot be read; the message says which and why."""


def ledger_report(
    config_path: Path | None,
    store_url: str | None,
    calls: Callable[[Iterable[object]], Iterator[Any]],
    by: Sequence[str],
    since: float,
) -> Report:
    """The report over the ledger store's calls: --store, else the configuration's ledger.store."""
    from tollgate.configuration.config import load_config
    from tollgate.records.reports.usage_report import aggregate, ledger_calls

    if store_url is None:
        if config_path is None and Path("tollgate.yaml").is_file():
            config_path = Path("tollgate.yaml")
        store_url = load_config(config_path, unset=[]).ledger_store  # no provider's secret needed
    missing = missing_sqlite_file(store_url)
    if missing is not None:
        # Opening it would make an empty ledger, and the report would say nothing was spent.
        raise LedgerUnavailable(
            f"no ledger at {missing} (Tollgate makes it when it runs; --store or --config name another)"
        )
    from tollgate.ledger import (  # only the report reads the ledger: not at every command's start
        StoreError,
        open_store,
    )

    try:
        store = open_store(store_url)
        try:
            return aggregate(calls(ledger_calls(store.calls(since))), by, since)
        finally:
            asyncio.run(store.aclose())
    except StoreError as e:
        raise LedgerUnavailable(str(e)) from None


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// store URL when it does not exist."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    path = Path(parts.path[1:])  # sqlite:///relative, sqlite:////absolute
    return None if path.exists() else path
