"""A command-line client from npm (an agent's CLI), installed into `.node-clients` when it is not
there yet."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .proxy import ROOT

NODE_CLIENTS = ROOT / ".node-clients"


def npm_command(home: Path, package: str, command: str, version: str | None = None) -> Path:
    """`command` of the npm `package` (at `version`, when one is named), installed into `home` if
    it is not there yet (skips where node is missing). A home without a package.json is made a
    package of its own, so that npm does not install into the package around it."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    launcher = home / "node_modules" / ".bin" / command
    installed = home / "node_modules" / package / "package.json"
    if not launcher.exists() or (version is not None and json.loads(installed.read_text()).get("version") != version):
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "package.json").exists():
            (home / "package.json").write_text('{"private": true}\n')
        spec = package if version is None else f"{package}@{version}"
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-timeout=60000", spec],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm could not install {spec}: {done.stderr[-500:]}"
    return launcher
