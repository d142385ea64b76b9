"""`tollgate console [AUDIT…] [--listen HOST:PORT] [--config FILE]`: reads the audit, then serves
the console until interrupted, printing its address with the token once."""

from __future__ import annotations

import errno
import ssl
import sys
import time
from pathlib import Path

from tollgate.records.console_settings import ConsoleConfig, exposed_without_tls, listen_address

# The one line that names the token: run.sh lets it through to the terminal as mitmweb's own.
ADDRESS_LINE = "Tollgate console: {scheme}://{host}:{port}/?token={token}"


def run(files: list[Path], listen: str | None, config_path: Path | None) -> int:
    """Exit status 0 when interrupted; 1 when the configuration, the files or the address cannot
    be used (one line on standard error says which); 3 when the address is taken."""
    from tollgate.config import ConfigError, load_config
    from tollgate.console.budgets import budgets_reader
    from tollgate.console.follow import Audit
    from tollgate.console.server import Console, new_token
    from tollgate.console.views import Views
    from tollgate.records.inventory import with_rotations

    try:
        if config_path is None and Path("tollgate.yaml").is_file():
            config_path = Path("tollgate.yaml")
        config = load_config(config_path)
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
    if not files:
        if config.audit.path == "-":
            print("error: audit.path is - (standard output): there is no audit file to read", file=sys.stderr)
            return 1
        files = with_rotations(Path(config.audit.path))
    key = None
    if config.audit.signing_key is not None:
        from tollgate.records.chain import load_signing_key

        try:
            key = load_signing_key(config.audit.signing_key).public_key()
        except (OSError, ValueError):
            key = None  # the signatures are then not checked; the audit view says so (signed: null)
    tls = None
    if settings.tls is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(settings.tls.cert, settings.tls.key)
        except (OSError, ssl.SSLError) as e:
            print(f"error: console.tls: {e}", file=sys.stderr)
            return 1
    audit = Audit(files, follow=True, key=key)
    views = Views(audit, budgets_reader(config.limits, config.ledger_store))
    try:
        console = Console(audit, views, host, port, settings.token or new_token(), tls)
    except OSError as e:
        taken = e.errno == errno.EADDRINUSE
        print(f"error: the console cannot listen on {address}: {'address in use' if taken else e.strerror}",
              file=sys.stderr)  # fmt: skip
        return 3 if taken else 1
    began = time.monotonic()
    try:
        audit.catch_up()
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    shown = f"[{host}]" if ":" in host else host
    print(ADDRESS_LINE.format(scheme="https" if tls else "http", host=shown, port=console.port, token=console.token),
          flush=True)  # fmt: skip
    read = len(audit.index)
    print(f"tollgate console: {read} records read in {time.monotonic() - began:.1f} s from "
          f"{', '.join(map(str, files)) or 'no file yet'}", file=sys.stderr, flush=True)  # fmt: skip
    try:
        console.serve()
    except KeyboardInterrupt:
        pass
    finally:
        audit.close()
    return 0
