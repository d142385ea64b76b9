#!/usr/bin/env bash
# Installs OPA's engine (the pin in pyproject.toml) into a virtual environment's Python:
#   deploy/install-opa.sh VENV/bin/python
# Its releases ask for Python 3.14, but the engine is OPA's Go library loaded through ctypes and
# runs on 3.12 and 3.13: there it is installed without that check (and without dependencies: it
# has none). On 3.14 pyproject.toml's dependency installs it. run.sh and deploy/install.sh call this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$1"

requirement="$("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    dependencies = tomllib.load(f)["project"]["dependencies"]
print(next(d.split(";")[0].strip() for d in dependencies if d.startswith("opa-golib-python-bindings")))
PY
)"
if "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14) else 1)'; then
  exit 0
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "$requirement" >&2
