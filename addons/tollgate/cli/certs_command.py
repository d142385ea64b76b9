"""`tollgate certs`: Tollgate's CA and CA bundle made, if missing, where the proxy will read them.

Without `--confdir`, run from a checkout (the package beside `run.sh`): the checkout's `certs/`,
the one `./run.sh` makes and hands mitmdump (`--set confdir=`), wherever the command is run from;
a CA made in the working directory instead would be one no proxy uses and no client trusts.
Installed elsewhere (no checkout is known): `./certs`. Either way it says on standard error which
directory it used and how to point mitmdump at it."""

from __future__ import annotations

import sys
from pathlib import Path

import tollgate

# What marks the directory holding `addons/tollgate` as a checkout (`./run.sh` sets `CERTS` to its certs/).
RUN_SCRIPT = "run.sh"
CERTS_DIR = "certs"


def checkout_certs(package: Path | None = None) -> Path | None:
    """The `certs/` of the checkout this package (`addons/tollgate/`) is in, as `./run.sh` names it;
    None when the package was installed out of a checkout."""
    package = Path(tollgate.__file__).resolve().parent if package is None else package
    root = package.parent.parent
    return root / CERTS_DIR if package.parent.name == "addons" and (root / RUN_SCRIPT).is_file() else None


def certs(confdir: Path | None) -> int:
    """Make the CA and the bundle in `confdir` (default: `checkout_certs()`, else `./certs`) and print
    their paths on standard output, one a line."""
    from tollgate.proxy.certs import ensure_bundle, ensure_ca

    found = checkout_certs() if confdir is None else None
    chosen = confdir or found or Path(CERTS_DIR)
    ca, bundle = ensure_ca(chosen).resolve(), ensure_bundle(chosen).resolve()
    print(ca)
    print(bundle)
    if confdir is None:
        where = ca.parent
        whose = "the checkout's certs/, which ./run.sh uses" if found else "no checkout is known, so ./certs"
        print(f"tollgate certs: the CA is in {where} ({whose}); a mitmdump started by hand reads it only with"
              f" --set confdir={where} (its own default is ~/.mitmproxy); clients trust {bundle}",
              file=sys.stderr)  # fmt: skip
    return 0
