"""A command-line client from npm (an agent's CLI), installed once into a package of its own under
`.node-clients`, so that npm does not install it into the SDKs' package around it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .proxy import ROOT

NODE_CLIENTS = ROOT / ".node-clients"


def npm_command(directory: str, package: str, command: str) -> Path:
    """`command` of the npm `package`, installed into `.node-clients/<directory>` if it is not
    there yet (skips where node is missing)."""
    home = NODE_CLIENTS / directory
    launcher = home / "node_modules" / ".bin" / command
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    if not launcher.exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"private": true}\n')
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-timeout=60000", package],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm could not install {package}: {done.stderr[-500:]}"
    return launcher
