"""docs/audit.md's commands that check a token with OpenSSL alone, run as written on an audit file
whose anchor a real TSA made (OpenSSL's `openssl ts -reply`, tests/support/tsa.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from tests.support.tsa import Tsa
from tests.unit.anchored_audit import Writer, rewritten

ROOT = Path(__file__).resolve().parents[3]
HEADING = "**Checking a token with OpenSSL alone.**"


def docs_commands() -> str:
    """The ```sh block after the heading."""
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    found = re.search(r"^```sh\n(.*?)^```", text[text.index(HEADING) :], re.DOTALL | re.MULTILINE)
    assert found is not None
    return found.group(1)


def run(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", docs_commands()], cwd=directory, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("openssl") is None, reason="needs jq and openssl")
def test_the_docs_openssl_commands_check_the_last_anchor(tmp_path: Path) -> None:
    tsa = Tsa.start(tmp_path / "tsa", listening=False)
    now = time.time()
    w = Writer(tsa)
    w.start(now - 5)
    w.calls(now - 5, 2)
    w.anchor(now - 4, w.checkpoint(now - 4))
    w.calls(now - 3, 1)
    w.anchor(now, w.checkpoint(now - 1))  # the last anchor: the one the commands take
    w.calls(now, 1)
    directory = tmp_path / "auditor"
    directory.mkdir()
    w.write(directory / "audit.jsonl")
    shutil.copy(tsa.ca_file, directory / "tsa-roots.pem")
    done = run(directory)
    stamped = datetime.fromisoformat(w.records[-2]["gen_time"])
    assert (done.returncode, done.stdout) == (
        0,
        "Verification: OK\n"
        f"Time stamp: {stamped:%b} {stamped.day:2d} {stamped:%H:%M:%S %Y} GMT\n"
        "TSA: DirName:/O=Tollgate tests/CN=tsa test TSA\n",
    )
    assert (directory / "covers_chain.txt").read_text() == w.records[-2]["covers_chain"]
    # The records rewritten and the anchor's covers_chain made the new chain: OpenSSL refuses it.
    (directory / "audit.jsonl").write_bytes(
        b"".join(line + b"\n" for line in rewritten(w.records, {1: {"input_tokens": 1}}, tsa_anchor=True))
    )
    done = run(directory)
    assert (done.returncode, done.stdout) == (1, "Verification: FAILED\n")
    assert "message imprint mismatch" in done.stderr
    # Another CA's roots: OpenSSL refuses the TSA's certificate.
    w.write(directory / "audit.jsonl")
    shutil.copy(tsa.foreign_ca_file, directory / "tsa-roots.pem")
    done = run(directory)
    assert (done.returncode, done.stdout) == (1, "Verification: FAILED\n")
    assert "unable to get local issuer certificate" in done.stderr
    tsa.close()
