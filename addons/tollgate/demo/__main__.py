"""`./run.sh demo`: a governed call without a key or the internet.

`python -m tollgate.demo --dir DIR --gateway PATH/addons/gateway.py` starts on 127.0.0.1 the
stand-in provider (`standin.py`) and mitmdump with Tollgate configured to use it (two clients with
virtual keys, a policy, guardrails, a budget), then prints the lines to paste. Everything it writes is in
DIR: the configuration and policy (written anew at each start), a CA of its own, the stand-in's
certificate, the audit (begun anew at each start). With `--sign-in`, people sign in to the
console with an OpenID Connect provider of the demo's own (`identity.py`): a security person, a
lead and a developer. Ctrl-C (or SIGTERM) stops the proxy and the stand-in. Only the providers'
hosts are served: every other connection is refused (egress `default: deny`), so nothing leaves
the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import IO

from tollgate.console.command import ADDRESS_LINE, PARENT
from tollgate.demo import identity
from tollgate.demo.standin import StandIn
from tollgate.proxy.certs import ensure_ca, issue_server_cert

HOST = "127.0.0.1"
# The proxy's and the console's ports when they are free: not the ports of a running `./run.sh`
# (8080), of mitmweb and `--capture` (8081) or of its console (8090).
PORT = 8180
CONSOLE_PORT = 8190
IDENTITY_PORT = 8191  # the demo's own OpenID Connect provider (`--sign-in`)
ALICE, BOB = "tg-demo-alice-0123456789", "tg-demo-bob-0123456789"
# A test card number (Visa's), put together here so that the source holds none for a scan to find.
CARD = " ".join(["4111", *["1111"] * 3])
# An e-mail address the demo's rule redacts: not on a domain reserved for examples (example.com,
# .test, .example, …), which `pii.email` leaves alone, as documentation's addresses are.
EMAIL = "dana@" + "tollgate-demo.net"
START_S = 120  # how long the proxy may take to listen (a first start compiles Tollgate's bytecode)
STOP_S = 15

POLICY = """package tollgate

import rego.v1

# Interns may use the small models only.
small := {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"}

deny contains sprintf("model %v is not allowed for interns", [input.model]) if {
	"interns" in input.client.groups
	not input.model in small
}
"""


def sign_in_settings(issuer: str) -> str:
    """The console's `sign_in` with the demo's provider: its groups to the console's roles."""
    return f"""console:   # ./run.sh demo --sign-in: people sign in with the demo's own OpenID Connect provider
  sign_in:
    issuer: "{issuer}"
    client_id: {identity.CLIENT_ID}
    client_secret: {identity.CLIENT_SECRET}
    security: [security]                  # the provider's group whose members see every record
    leads: {{research-leads: [research]}}   # the provider's group: the Tollgate groups its members see
"""


def configuration(directory: Path, upstream: str, issuer: str | None = None) -> str:
    """The demo's tollgate.yaml: the stand-in as every provider's upstream, with keys of no worth;
    with an `issuer`, the console's sign-in and the people each client is."""
    audit = directory / "audit.jsonl"
    # Who each client is when they sign in (alice has no sign-in of her own: Lena leads her group).
    people = ("\n    people: [alice@example.com]", "\n    people: [bob@example.com]   # Bob Developer")
    alice, bob = people if issuer else ("", "")
    return f"""# Written by ./run.sh demo at each start. An edit takes effect while it runs, until the next start.
providers:
  openai: {{upstream: "{upstream}", keys: [sk-demo-not-a-real-key]}}
  anthropic: {{upstream: "{upstream}", keys: [sk-ant-demo-not-a-real-key]}}
  gemini: {{upstream: "{upstream}", keys: [AIza-demo-not-a-real-key]}}
clients:
  - name: alice
    keys: ["{ALICE}"]
    groups: [research]{alice}
  - name: bob
    keys: ["{BOB}"]
    groups: [interns]{bob}
policy:
  rego: [policy.rego]
guardrails:
  - detect: [pii.email, pii.payment_card]
    action: redact
  - detect: [secrets]   # what the model answers is read too
    action: redact
    on: [answer]
limits:   # one budget for everyone, shown in the console's Budgets view
  - name: demo budget
    per: all
    tokens_per_day: 100000
    usd_per_day: 1
audit:
  path: {json.dumps(str(audit))}
egress:
  default: deny   # only the providers' hosts: nothing leaves this machine
drain_s: 1
""" + (sign_in_settings(issuer) if issuer else "")


def write_files(directory: Path, upstream: str, issuer: str | None = None) -> Path:
    """The configuration and policy written anew, the audit and ledger of an earlier demo removed."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in [*directory.glob("audit.jsonl*"), *directory.glob("ledger.sqlite*")]:
        old.unlink()
    (directory / "policy.rego").write_text(POLICY)
    config = directory / "tollgate.yaml"
    config.write_text(configuration(directory, upstream, issuer))
    return config


def standin_context(confdir: Path) -> tuple[ssl.SSLContext, Path]:
    """The stand-in's TLS: a certificate for 127.0.0.1 issued by the demo's own CA (mitmproxy's, in
    `confdir`), which the proxy is told to trust upstream. Returns the context and the CA's file."""
    ca = ensure_ca(confdir)
    pem = confdir / "standin.pem"
    pem.touch(0o600)
    pem.write_bytes(issue_server_cert(confdir, HOST))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    return context, ca


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(port: int) -> int:
    """`port` where it is free, else one the system picks."""
    if free(port):
        return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def paste_lines(port: int, ca: Path, directory: Path) -> str:
    """What the user pastes into another terminal, each command on one line, as printed."""
    ca_path = shlex.quote(str(ca))
    # In demo/, with the rest: kept from one demo to the next, as pip's download is the slow part.
    venv, activate = shlex.quote(str(directory / "venv")), shlex.quote(str(directory / "venv" / "bin" / "activate"))
    chat = (
        "curl -sS https://api.openai.com/v1/chat/completions -H 'Authorization: Bearer {key}'"
        " -H 'Content-Type: application/json'"
        ' -d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}\''
    )
    redacted = (
        f"curl -sS https://api.anthropic.com/v1/messages -H 'x-api-key: {ALICE}' -H 'anthropic-version: 2023-06-01'"
        ' -H \'Content-Type: application/json\' -d \'{"model": "claude-haiku-4-5", "max_tokens": 100,'
        ' "messages": [{"role": "user", "content": "Refund the card ' + CARD + " and mail " + EMAIL + "\"}]}'"
    )
    gemini = (
        "curl -sS 'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        f"?alt=sse' -H 'x-goog-api-key: {ALICE}' -H 'Content-Type: application/json'"
        ' -d \'{"contents": [{"parts": [{"text": "Hello"}]}]}\''
    )
    python = (
        "python3 -c 'from openai import OpenAI; client = OpenAI(api_key=\"" + ALICE + '"); '
        'stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, '
        'messages=[{"role": "user", "content": "{prompt}"}]); '
        'print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))\''
    )
    return "\n".join(
        [
            "",
            "Paste these into another terminal (HTTPS_PROXY sends that shell's clients through the demo):",
            "",
            "# Python's openai SDK, for the Python lines below, in a venv of the demo's (a system's Python may",
            "# refuse pip): before the export, so that pip goes to PyPI",
            f"python3 -m venv {venv} && . {activate}",
            "pip install openai",
            "",
            f"export HTTPS_PROXY=http://{HOST}:{port} CURL_CA_BUNDLE={ca_path} SSL_CERT_FILE={ca_path}",
            "",
            "# A governed call: alice's virtual key in, the provider's key out, the tokens counted",
            chat.format(key=ALICE, model="gpt-4o-mini"),
            "",
            "# Refused by the policy (403 policy_denied): bob is an intern, interns use the small models",
            chat.format(key=BOB, model="gpt-4o"),
            "",
            "# Redacted by the guardrail: the provider gets [REDACTED:pii.payment_card] and [REDACTED:pii.email]"
            " and says it back",
            redacted,
            "",
            "# Streamed, in Gemini's shape",
            gemini,
            "",
            "# The same from Python's openai SDK, streamed",
            python.replace("{prompt}", "Hello from Python"),
            "",
            "# The answer is read too: asked for the deploy key, the stand-in streams one back, and you get"
            " [REDACTED:secrets.aws_access_key_id]",
            python.replace("{prompt}", "What is the deploy key?"),
            "",
            "# What Tollgate recorded: one line per call, never the prompt or a key",
            f"tail -n 5 {shlex.quote(str(directory / 'audit.jsonl'))}",
            "",
        ]
    )


async def wait_listening(port: int, proxy: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_S
    while loop.time() < deadline and proxy.returncode is None and not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return True
    return False


async def start_console(config: Path, directory: Path, port: int) -> tuple[asyncio.subprocess.Process | None, str]:
    """`tollgate console` over the demo's audit, and the line it prints with its address and token
    (with sign-in, its address alone); where it does not start, no process and a line that says so
    (the demo goes on without it)."""
    console = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tollgate", "console", "--config", str(config), "--listen", f"{HOST}:{port}"),
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, PARENT: str(os.getpid())},  # it stops when the demo does, however that ends
    )
    assert console.stdout is not None
    try:
        line = (await asyncio.wait_for(console.stdout.readline(), START_S)).decode().strip()
    except TimeoutError:
        line = ""
    if line.startswith(ADDRESS_LINE.partition("{")[0]):
        return console, f"{line.split(' (sign in')[0]} (open it in a browser: each call shows there as it is made)"
    await end(console)
    return None, "Tollgate console: it did not start (above); the demo goes on without it."


def hold(directory: Path) -> IO[str] | None:
    """The demo's lock, held while it runs (the system lets go of it when the process ends), else
    None: another demo runs with these files, which a second one would write over."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = (directory / "demo.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def sign_in_lines(console_port: int, provider: identity.Provider) -> str:
    """How to sign in to the console as each of the demo's people."""
    width = max(len(p.name) for p in identity.PEOPLE)
    people = [f"  {p.name:<{width}}  {p.email:<17} {p.sees}" for p in identity.PEOPLE]
    return "\n".join([
        f"Sign in to the console as one of these: open http://{HOST}:{console_port}/ and the demo's own OpenID",
        f"Connect provider ({provider.issuer}) asks who you are, with no password:",
        *people,
        "Sign out (top right) to sign in as another, or use another browser's private window.",
    ])  # fmt: skip


async def run(directory: Path, gateway: Path, sign_in: bool = False) -> int:
    lock = hold(directory)
    if lock is None:
        print(f"tollgate demo: another ./run.sh demo runs with {directory}: stop it first (Ctrl-C)", file=sys.stderr)
        return 1
    with lock:
        return await run_held(directory, gateway, sign_in)


async def run_held(directory: Path, gateway: Path, sign_in: bool = False) -> int:
    confdir = directory / "ca"
    context, ca = standin_context(confdir)
    console_port = free_port(CONSOLE_PORT)
    provider = None
    if sign_in:  # the console's callback is known before it starts: the provider sends people there
        callback = f"http://{HOST}:{console_port}/auth/callback"
        try:
            provider = identity.Provider(HOST, free_port(IDENTITY_PORT), callback).start()
        except OSError as e:
            print(f"tollgate demo: its sign-in provider cannot listen on {HOST}: {e}", file=sys.stderr)
            return 1
    standin = StandIn(context, HOST)
    await standin.start()
    config = write_files(directory, f"https://{HOST}:{standin.port}", provider.issuer if provider else None)
    port = free_port(PORT)
    args = ["-s", str(gateway), "--set", f"confdir={confdir}", "--listen-host", HOST, "--listen-port", str(port)]
    args += ["--set", f"tollgate_config={config}", "--set", f"ssl_verify_upstream_trusted_ca={ca}"]
    # The proxy's own lines (one per call) go to standard error: standard output is the lines to paste.
    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tollgate.proxy.start", "mitmdump", *args, cwd=directory, stdout=sys.stderr
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console = None
    try:
        if not await wait_listening(port, proxy, stop):
            if stop.is_set():
                return 0
            print(f"tollgate demo: the proxy did not start (above); {directory} holds its files", file=sys.stderr)
            return 1
        console, console_line = await start_console(config, directory, console_port)
        print(f"Tollgate demo: Tollgate on {HOST}:{port}, a stand-in provider on {HOST}:{standin.port}.")
        print(f"Its files: {directory}. Nothing leaves this machine. Ctrl-C stops it.")
        print(console_line)
        if provider is not None and console is not None:
            print(sign_in_lines(console_port, provider))
        print(paste_lines(port, ca, directory), flush=True)
        waiting = asyncio.ensure_future(proxy.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        return 0 if stop.is_set() else (proxy.returncode or 1)
    finally:
        if console is not None:
            await end(console)
        await end(proxy)
        standin.close()
        if provider is not None:
            provider.close()


async def end(proxy: asyncio.subprocess.Process) -> None:
    """The proxy (or the console) stopped as Ctrl-C stops it, killed if it does not stop in time."""
    if proxy.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proxy.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proxy.wait(), STOP_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proxy.kill()
        await proxy.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tollgate.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the demo keeps its files")
    parser.add_argument("--gateway", type=Path, required=True, help="addons/gateway.py of this checkout")
    parser.add_argument(
        "--sign-in", action="store_true", help="people sign in to the console with the demo's own OpenID Connect"
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args.dir.resolve(), args.gateway.resolve(), args.sign_in))


if __name__ == "__main__":
    sys.exit(main())
