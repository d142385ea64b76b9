"""The sizes the code is kept to, read from its source (`ast`, nothing imported): no module over
700 lines, no class over 25 members (its methods, and the attributes and annotations of its body),
the pydantic models of `configuration/` aside (a setting each). A class still over it is named
below with its count today, which may only go down (docs/architecture.md, "Layers": "Sizes")."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import tollgate

PACKAGE = Path(tollgate.__file__).parent
MAX_LINES = 700
MAX_MEMBERS = 25
# Classes still over `MAX_MEMBERS`, each at most as large as it is today: to be split by concern.
STILL_LARGE: dict[str, int] = {}


def members(node: ast.ClassDef) -> int:
    """A class's members: the methods and the attributes and annotations of its body."""
    count = 0
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.AnnAssign)):
            count += 1
        elif isinstance(item, ast.Assign):
            count += len(item.targets)
    return count


@functools.cache
def classes() -> dict[str, int]:
    """Every class of the package outside `configuration/`, by `<module>:<name>`, with its members."""
    out: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("configuration/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                out[f"{module}:{node.name}"] = members(node)
    return out


def test_no_module_is_over_700_lines() -> None:
    long = {
        path.relative_to(PACKAGE).as_posix(): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_class_is_over_25_members() -> None:
    found = classes()
    large = {name: n for name, n in found.items() if n > STILL_LARGE.get(name, MAX_MEMBERS)}
    assert not large, f"classes over {MAX_MEMBERS} members (or larger than they were): {large}"


def test_the_classes_still_large_are_named_as_they_are() -> None:
    """A class split (or gone) leaves the list: the bound it had then would hide its growing again."""
    found = classes()
    stale = {name: found.get(name) for name in STILL_LARGE if found.get(name, 0) <= MAX_MEMBERS}
    assert not stale, f"no longer over {MAX_MEMBERS} members: drop them from STILL_LARGE: {stale}"


def test_the_count_sees_members() -> None:
    """The count counts what it says: methods, attributes and annotations, not nested statements."""
    tree = ast.parse("class A:\n    x = 1\n    y: int\n    def f(self):\n        z = 2\n    async def g(self): ...\n")
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    assert members(node) == 4
