"""The layers of the code: nothing below the stages names one, and the loaded configuration is plain Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "addons" / "tollgate"
# What may import the stages: themselves, the pipeline that lists them, and the runner of their steps.
ABOVE_THE_STAGES = ("stages/", "pipeline.py", "steps.py")


def imported(path: Path) -> set[str]:
    """The modules a file imports, by absolute name, type-only imports included."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # the package a relative import starts from (an __init__'s is its own)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            start = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*start, *([node.module] if node.module else [])))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_below_the_stages_imports_one() -> None:
    below = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith(ABOVE_THE_STAGES)
    ]
    assert len(below) > 50  # the walk found the package
    naming = {
        path.relative_to(PACKAGE).as_posix(): sorted(n for n in imported(path) if n.startswith("tollgate.stages"))
        for path in below
    }
    assert {name: stages for name, stages in naming.items() if stages} == {}


def test_the_loaded_configuration_loads_without_mitmproxy() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "import sys, tollgate.call, tollgate.runtime; print('mitmproxy' in sys.modules)"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout == "False\n"
