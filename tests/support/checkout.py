"""A checkout of Tollgate made of links to this one, in a folder of a test's own: its run.sh a copy
(which takes its folder for the checkout), its venv, code and docs this checkout's, its certs/ and
whatever a command writes there (tollgate.yaml, audit.jsonl) its own. A test runs the commands a
user would run in a checkout, touching nothing of this one's."""

from __future__ import annotations

import shutil
from pathlib import Path

from .proxy import ROOT

LINKED = (".venv", "addons", "deploy", "docs", "node-proxy", "pyproject.toml", "requirements", "tests")


def linked_checkout(folder: Path) -> Path:
    """`folder` made a checkout (created if missing); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "run.sh", folder / "run.sh")
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name)
    (folder / "certs").mkdir()
    return folder
