"""`./run.sh` starts `tollgate console` beside the proxy: its address printed once with the token,
a call made through the proxy shown by it, and the proxy started without it where its address is
taken; it stops with the proxy."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import wait_listening


def start(tmp_path: Path, confdir: Path, console: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "--listen-port", str(port), "--set", f"confdir={confdir}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TOLLGATE_CONSOLE": console},
    )  # fmt: skip
    return proxy, port


def stop(proxy: subprocess.Popen) -> str:
    proxy.terminate()
    out, _ = proxy.communicate(timeout=20)
    return out


def lines_until(proxy: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    assert proxy.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proxy.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no {pattern!r} in:\n{''.join(seen)}")


def test_run_sh_starts_the_console_beside_the_proxy(tmp_path, confdir) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proxy, port = start(tmp_path, confdir, listen)
    try:
        seen = lines_until(proxy, r"^Tollgate console: ")
        url = seen[-1].split(": ", 1)[1].strip()
        assert re.fullmatch(rf"http://{listen}/\?token=[\w-]{{32}}", url), url
        wait_listening(port, proxy)
        base, token = url.split("/?token=")
        request = urllib.request.Request(base + "/api/audit", headers={"Authorization": f"Bearer {token}"})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the proxy's started record, once written and read
            with urllib.request.urlopen(request, timeout=10) as answer:
                files = json.loads(answer.read())
            if files and files[0]["records"] >= 1 and files[0]["state"] != "checking":
                break
            time.sleep(0.2)
        assert [(f["file"], f["state"]) for f in files] == [("audit.jsonl", "whole")]  # audit.path as configured
    finally:
        out = "".join(seen) + stop(proxy)
    assert out.count(token) == 1  # printed once, nowhere else
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the console stops with the proxy
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", int(listen.rsplit(":", 1)[1]))) != 0:
                break
        time.sleep(0.2)
    else:
        raise AssertionError("the console outlived the proxy")


def test_a_taken_address_is_said_in_one_line_and_the_proxy_starts_without_it(tmp_path, confdir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        proxy, port = start(tmp_path, confdir, listen)
        try:
            seen = lines_until(proxy, r"no console")
            assert seen[-1] == f"tollgate: no console: it cannot listen on {listen} (the address is in use)\n"
            wait_listening(port, proxy)
        finally:
            out = "".join(seen) + stop(proxy)
    assert "Tollgate console:" not in out


def test_off_leaves_it_out(tmp_path, confdir) -> None:
    proxy, port = start(tmp_path, confdir, "off")
    try:
        wait_listening(port, proxy)
        time.sleep(2)
    finally:
        out = stop(proxy)
    assert "console" not in out.replace(str(ROOT), "ROOT").lower()  # the repository's own path may say console


def test_run_sh_help_names_the_console_and_tollgate_console() -> None:
    done = subprocess.run([str(ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    usage = done.stdout[: done.stdout.index("mitmdump's options:")]
    assert "console (tollgate console:" in usage and "127.0.0.1:8090" in usage
    assert "TOLLGATE_CONSOLE=HOST:PORT moves the console; TOLLGATE_CONSOLE=off leaves it out." in usage
    assert "inventory, console, key" in usage
