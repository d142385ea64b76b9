#!/usr/bin/env bash
# Installs Tollgate from the source tree this script sits in into a new virtual environment:
#   deploy/install.sh VENV        (PYTHON=/path/to/python3.12+ to choose the interpreter)
# The container image runs it (deploy/Dockerfile) and so does its test (tests/e2e/test_deploy.py).
# Tollgate is installed in place, as run.sh installs it: mitmdump loads the source tree's
# addons/gateway.py, which imports the package beside it. pip's own settings (PIP_NO_CACHE_DIR,
# PIP_INDEX_URL, …) come from the environment.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

say() { printf 'install.sh: %s\n' "$*" >&2; }

if (($# != 1)) || [[ -z "$1" ]]; then
  say "usage: deploy/install.sh VENV"
  exit 2
fi
VENV="$1"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
  say "$PYTHON is not Python 3.12 or newer (mitmproxy 12 needs it): set PYTHON=/path/to/python3.12"
  exit 1
fi
if [[ ! -f "$SRC/pyproject.toml" || ! -f "$SRC/requirements/run.lock" || ! -f "$SRC/addons/gateway.py" ]]; then
  say "$SRC does not hold Tollgate's source (pyproject.toml, requirements/run.lock, addons/gateway.py)"
  exit 1
fi

say "installing Tollgate from $SRC into $VENV with $("$PYTHON" --version 2>&1)"
"$PYTHON" -m venv "$VENV"
# The exact versions and hashes of requirements/run.lock, then Tollgate itself in place (its build
# backend is in the lock too).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$SRC/requirements/run.lock"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable "$SRC"
"$SRC/deploy/install-opa.sh" "$VENV/bin/python"
# Compiled now: the image's root filesystem is read-only when it runs, so Python could not cache them.
"$VENV/bin/python" -m compileall -q "$SRC/addons" >/dev/null

# What the image runs must be there: the command, mitmdump, and the pipeline the gateway loads.
"$VENV/bin/tollgate" --help >/dev/null
"$VENV/bin/mitmdump" --version >/dev/null
"$VENV/bin/python" -c 'import tollgate.proxy.pipeline' >/dev/null
say "done: $VENV/bin/tollgate, and mitmdump loads $SRC/addons/gateway.py"
