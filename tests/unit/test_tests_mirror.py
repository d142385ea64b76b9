"""The unit tests mirror the package (docs/architecture.md, "Tests"): a test file named after a module
(`test_<module>.py`) sits in that module's folder's mirror under tests/unit/, or, where a package
has the name too, in the package's own folder or its parent's. A few are named after a module by chance (what
holds for every provider, `providers/test_registry.py`, is no test of `formats/registry.py`): the
share that sits elsewhere stays under 5 %."""

from __future__ import annotations

from pathlib import Path

import tollgate

PACKAGE = Path(tollgate.__file__).parent
UNIT = Path(__file__).parent
AT_MOST_ELSEWHERE = 0.05


def homes() -> dict[str, set[str]]:
    """Each module's name, with the folders (under tests/unit/) where a test named after it belongs."""
    modules: dict[str, set[str]] = {}
    packages: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        folder = path.parent.relative_to(PACKAGE).as_posix().removeprefix(".")
        if path.stem not in {"__init__", "__main__"}:
            modules.setdefault(path.stem, set()).add(folder)
        elif path.stem == "__init__" and folder:
            packages.setdefault(folder.rpartition("/")[2], set()).update({folder, folder.rpartition("/")[0]})
    return {name: folders | packages.get(name, set()) for name, folders in modules.items()}


def misplaced() -> tuple[int, list[str]]:
    """How many unit test files are named after a module, and which of them sit elsewhere."""
    where = homes()
    named, elsewhere = 0, []
    for test in sorted(UNIT.rglob("test_*.py")):
        name = test.stem.removeprefix("test_")
        if name not in where:
            continue
        named += 1
        if test.parent.relative_to(UNIT).as_posix().removeprefix(".") not in where[name]:
            elsewhere.append(test.relative_to(UNIT).as_posix())
    return named, elsewhere


def test_a_test_named_after_a_module_sits_in_its_mirror_folder() -> None:
    named, elsewhere = misplaced()
    assert named > 100  # the reading itself: the tests named after modules are found
    assert len(elsewhere) <= AT_MOST_ELSEWHERE * named, elsewhere


def test_the_mirror_is_read_as_the_package_is_laid_out() -> None:
    where = homes()
    assert where["limits"] >= {"governance/limits", "governance"}
    assert "governance/limits" in where["rollup"]
    assert "" in where["console"] and "console" in where["console"]
    assert "proxy/stages/transport" in where["classify"]
