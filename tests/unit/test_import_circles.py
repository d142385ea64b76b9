"""No import circle among the package's modules, read from their imports (`ast`, nothing imported).

A circle is modules that each reach the others through their imports: which of them runs first
then depends on which one something else imported first, a name one takes from another may not be
defined yet, and neither can be read without the other. Every import counts:

- one inside `if TYPE_CHECKING:` too: only type checkers run it, but the modules still need each
  other to be understood (a record whose fields name the configuration, whose rules take the record);
- one inside a function too: it runs when the function is called;
- `from package import module` imports that module, not the package's other names;
- a package's `__init__.py`, which runs before any module in it, is not an import of that module's
  own (a package that re-exports its modules is no circle)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping

import pytest
from tests.unit.test_layers import is_module, module_name, modules, nodes


def run_imports(path: str) -> set[str]:
    """The modules of the package that the module at `path` imports, wherever it does."""
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    found: set[str] = set()
    for node in nodes(path):  # every node of the module, walked once and shared with test_layers
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            name = ".".join(p for p in (base, node.module or "") if p)
            for alias in node.names:
                found.add(f"{name}.{alias.name}" if is_module(f"{name}.{alias.name}") else name)
    own = module_name(path)
    return {name for name in found if name != own and is_module(name)}


def import_graph() -> dict[str, set[str]]:
    """Each module of the package, by name, and the package's modules it imports when it runs."""
    return {module_name(path): run_imports(path) for path in modules()}


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The circles of `graph`: each set of two or more modules that reach one another (a strongly
    connected component, found by Tarjan's algorithm), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def described(circle: list[str], graph: Mapping[str, set[str]]) -> Iterator[str]:
    """Each import that keeps the circle closed, as `importer -> imported`."""
    members = set(circle)
    for name in circle:
        for other in sorted(graph[name] & members):
            yield f"{name} -> {other}"


@pytest.mark.slow
def test_no_module_is_in_an_import_circle() -> None:
    graph = import_graph()
    found = {" / ".join(c): list(described(c, graph)) for c in circles(graph)}
    assert found == {}


def test_the_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "d"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_reading_counts_every_import() -> None:
    """Imports under TYPE_CHECKING and in functions are kept, a package's modules imported from it
    named as modules."""
    assert "tollgate.configuration.runtime" in run_imports("calls/call.py")  # under TYPE_CHECKING
    assert "tollgate.providers" in run_imports("calls/call.py")
    assert "tollgate.ledger.sqlite_store" in run_imports("ledger/__init__.py")  # in a function
    vertex = run_imports("providers/vertex.py")  # from tollgate.providers import gemini, openai
    assert {"tollgate.providers.gemini", "tollgate.providers.openai"} <= vertex
    assert "tollgate.providers" not in vertex
