#!/usr/bin/env bash
# Installs OPA's engine (its pin and hashes in requirements/run.lock) into a virtual environment's
# Python:
#   deploy/install-opa.sh VENV/bin/python
# Its releases ask for Python 3.14, but the engine is OPA's Go library loaded through ctypes and
# runs on 3.12 and 3.13: there it is installed without that check (and without dependencies: it
# has none). On 3.14 the lock file installs it. run.sh and deploy/install.sh call this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$1"

if "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14) else 1)'; then
  exit 0
fi
# The lock's entry for it, without its marker (Python 3.14 and newer): the pin and every hash.
requirement="$(mktemp)"
trap 'rm -f "$requirement"' EXIT
"$PYTHON" - "$ROOT/requirements/run.lock" >"$requirement" <<'PY'
import re, sys
entry = re.search(r"^opa-golib-python-bindings==\S+.*?\n(?=\S|\Z)", open(sys.argv[1]).read(), re.M | re.S)
if entry is None:
    sys.exit(f"{sys.argv[1]} has no opa-golib-python-bindings: write it anew with ./run.sh lock")
print(re.sub(r" ;[^\\]*", " ", entry.group(0), count=1))
PY
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python \
  --require-hashes -r "$requirement" >&2
