"""`tollgate console [AUDIT…] [--listen HOST:PORT] [--config FILE]`: reads the audit, then serves
the console until interrupted, printing its address with the token once (with `console.sign_in`,
its address alone: people sign in, and the token is printed nowhere)."""

from __future__ import annotations

import errno
import os
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tollgate.configuration.console_settings import ConsoleConfig, exposed_without_tls, listen_address, redirect_uri

if TYPE_CHECKING:
    from tollgate.console.server import Console
    from tollgate.console.sessions import Sessions

# The one line that names the token: run.sh lets it through to the terminal as mitmweb's own.
ADDRESS_LINE = "Tollgate console: {scheme}://{host}:{port}/?token={token}"
SIGN_IN_LINE = "Tollgate console: {scheme}://{host}:{port}/ (sign in with {issuer})"
# Set by run.sh to the proxy's process id: the console stops when it does.
PARENT = "TOLLGATE_CONSOLE_PARENT"


def run(files: list[Path], listen: str | None, config_path: Path | None) -> int:
    """Exit status 0 when interrupted; 1 when the configuration, the files or the address cannot
    be used (one line on standard error says which); 3 when the address is taken."""
    from tollgate.configuration.config import ConfigError, Unset, load_config
    from tollgate.console.access_log import AccessLog, default_path
    from tollgate.console.budgets import budgets_reader
    from tollgate.console.cursors import Cursors
    from tollgate.console.follow import AuditFiles
    from tollgate.console.scope import ScopeRules
    from tollgate.console.server import Console, new_token
    from tollgate.console.sessions import Unavailable
    from tollgate.console.source import Source
    from tollgate.console.views import Views
    from tollgate.records.reports.inventory import with_rotations

    unset: list[Unset] = []
    try:
        if config_path is None and Path("tollgate.yaml").is_file():
            config_path = Path("tollgate.yaml")
        config = load_config(config_path, unset=unset)  # the providers' secrets are not needed
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    settings: ConsoleConfig = config.console
    address = listen or settings.listen
    try:
        host, port = listen_address(address)
        refusal = exposed_without_tls(address, settings.tls is not None)
    except ValueError as e:
        print(f"error: --listen: {e}", file=sys.stderr)
        return 1
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    sign_in = None
    if settings.sign_in is not None:
        from tollgate.console.sign_in import SignIn

        try:
            sign_in = SignIn(settings.sign_in, redirect_uri(settings.sign_in, address, settings.tls is not None))
        except ValueError as e:  # --listen other than loopback, and no redirect_uri
            print(f"error: console.{e}", file=sys.stderr)
            return 1
        except (OSError, ssl.SSLError) as e:
            print(f"error: console.sign_in.ca_file: {settings.sign_in.ca_file}: {e}", file=sys.stderr)
            return 1
    from tollgate.console.saved import path_for

    given = files
    postgres = config.audit.postgres if not files else None  # files named: those are read
    if postgres is None and not files:
        if config.audit.path == "-":
            print("error: audit.path is - (standard output): there is no audit file to read", file=sys.stderr)
            return 1
        files = with_rotations(Path(config.audit.path))
    key = None
    if config.audit.signing_key is not None:
        from tollgate.common.audit_chain import load_signing_key

        try:
            key = load_signing_key(config.audit.signing_key).public_key()
        except (OSError, ValueError):
            key = None  # the signatures are then not checked; the audit view says so (signed: null)
    anchors = None
    if config.audit.anchor is not None:  # the anchors checked as `verify --anchors` does, its window the default
        from tollgate.records.audit.anchor_verify import load_rules

        try:
            anchors = load_rules(config.audit.anchor.ca_file)
        except ValueError as e:
            print(f"error: {config_path}: audit.anchor.ca_file: {e}", file=sys.stderr)
            return 1
    tls = None
    if settings.tls is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(settings.tls.cert, settings.tls.key)
        except (OSError, ssl.SSLError) as e:
            print(f"error: console.tls: {e}", file=sys.stderr)
            return 1
    source: Source
    dsn: str | None = None
    sessions: Sessions | None = None  # None: in the console's memory
    if postgres is not None:
        from tollgate.console.table import Table, UnreadableTable

        # The console's own role when it has one, else the instances'.
        place, dsn = ("console.postgres_dsn", settings.postgres_dsn) if settings.postgres_dsn else \
            ("audit.postgres.dsn", postgres.dsn)  # fmt: skip
        missing = [u for u in unset if u.where == place]
        if missing:
            print(f"error: {config_path}: {missing[0]}: the console reads the fleet's records from PostgreSQL with it",
                  file=sys.stderr)  # fmt: skip
            return 1
        # Over PostgreSQL the console is made to run as replicas behind one address (its sessions are
        # there): a cursor sealed with a key of one process alone would not open on the others.
        if settings.cursor_secret is None:
            print(f"error: {config_path}: console.cursor_secret: required when the console reads PostgreSQL"
                  " (audit.postgres): 32 characters or more, the same for every replica (${NAME}), so that a page's"
                  " cursors open on whichever answers", file=sys.stderr)  # fmt: skip
            return 1
        table = Table(dsn, postgres.table, key=key, keep_days=postgres.keep_days, anchors=anchors)
        try:
            table.open()
        except UnreadableTable as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        read_from, source = table.where, table
        # Its sessions and sign-ins under way there too: every replica serves the same people.
        from tollgate.console.session_table import SessionTable, TooNew

        session_table = SessionTable(dsn)
        try:
            session_table.prepare()
        except (Unavailable, TooNew) as e:
            print(f"error: sessions: {e}", file=sys.stderr)
            return 1
        sessions = session_table
        if sign_in is not None:
            sign_in.sessions = session_table
    else:
        # The index is remembered beside the audit: the configured file's, else the last file given.
        remember = path_for(given[-1] if given else Path(config.audit.path)) if files else None
        source = AuditFiles(files, follow=True, key=key, remember=remember, anchors=anchors)
        read_from = ", ".join(map(str, files))
    # The views and the server ask only what `Source` names.
    from tollgate.console.invoice import Invoice
    from tollgate.console.invoice_results import FromRecords, FromTable

    # `tollgate reconcile`'s results: its table beside the records', else its records in the files.
    results = FromTable(dsn) if dsn is not None else FromRecords(source)
    views = Views(source, budgets_reader(config.limits, config.ledger_store), ScopeRules.of(config),
                  Cursors(settings.cursor_secret), Invoice(results, source))  # fmt: skip
    if settings.access_log is not None:
        access_path = Path(settings.access_log)
    else:
        access_path = default_path(config.audit.path if config.audit.path != "-" or not files else str(files[-1]))
    # Its table beside the records' when the console reads PostgreSQL.
    access = AccessLog(access_path, dsn, postgres.keep_days if postgres is not None else None)
    # With sign_in, a token only when one is configured (for scripts, as a bearer).
    token = settings.token if sign_in is not None else settings.token or new_token()
    try:
        console = Console(source, views, host, port, token, tls, sign_in=sign_in, access=access,
                          sessions=sessions)  # fmt: skip
    except OSError as e:
        taken = e.errno == errno.EADDRINUSE
        why = "the address is in use" if taken else e.strerror
        print(f"tollgate: no console: it cannot listen on {address} ({why})", file=sys.stderr)
        return 3 if taken else 1
    began = time.monotonic()
    try:
        source.catch_up()
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    # SIGTERM ends it as ^C does: the access log's last minute of polls written. A ^C ignored
    # (run.sh's console, in the background) stays ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        if sign_in is not None:
            print(SIGN_IN_LINE.format(scheme=scheme, host=shown, port=console.port, issuer=sign_in.settings.issuer),
                  flush=True)  # fmt: skip
        else:
            print(ADDRESS_LINE.format(scheme=scheme, host=shown, port=console.port, token=console.token), flush=True)
        parent = os.environ.get(PARENT)
        if parent and parent.isdigit():
            threading.Thread(target=_stop_with, args=(int(parent), console), daemon=True).start()
        else:
            read = len(source.index)
            remembered = f" ({source.saved_records} of them from {remember})" if source.saved_records > 0 else ""
            print(f"tollgate console: {read} records read in {time.monotonic() - began:.1f} s from "
                  f"{read_from}{remembered}", file=sys.stderr, flush=True)  # fmt: skip
        console.serve()
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        results.close()
        if sessions is not None:
            sessions.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """The first ^C or SIGTERM stops the console; those after it are ignored while it saves its
    index and closes (a terminal's ^C reaches `./run.sh demo`, which passes one on to it too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop_with(pid: int, console: Console) -> None:
    """Stop the console once the process `pid` (the proxy run.sh started it beside, its parent)
    has ended: it is then no longer the console's parent (a parent not yet reaped still answers
    a signal, but its children have been handed on)."""
    while os.getppid() == pid:
        time.sleep(0.5)
    console.stop()
