"""Tollgate's CA, made once however many instances start at once from one checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.proxy import ROOT

# What `./run.sh` runs before each proxy starts (ensure_certs), then the CA it left, as each saw it.
CERTS = """
import sys
from pathlib import Path
from mitmproxy import certs  # imported before the word to go, as the CA is made after it
from tollgate.cli.main import main
from tollgate.proxy.certs import CA_CERT
print("ready", flush=True)
sys.stdin.read(1)  # started together: each waits for the word
main(["certs", "--confdir", sys.argv[1]])
print(Path(sys.argv[1], CA_CERT).read_text(), end="")
"""


def test_instances_started_at_once_make_the_ca_once(tmp_path: Path) -> None:
    confdir = tmp_path / "certs"
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", CERTS, str(confdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT / "addons"), "PATH": "/usr/bin:/bin"},
        )
        for _ in range(6)
    ]
    for process in starts:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in starts:
        assert process.stdin is not None
        process.stdin.write("go")
        process.stdin.close()
    said = [process.stdout.read() for process in starts if process.stdout is not None]
    assert [process.wait(timeout=60) for process in starts] == [0] * 6
    ca = (confdir / "mitmproxy-ca-cert.pem").read_text()
    # Each printed its CA's path, the bundle's, then the CA's certificate as it found it.
    assert [s.split("\n", 2)[2] for s in said] == [ca] * 6
    assert (confdir / "ca-bundle.pem").read_text().endswith(ca)
    assert (confdir / "mitmproxy-ca.pem").read_text().endswith(ca)  # the key the proxies sign with is its
