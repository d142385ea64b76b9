"""The layers the code is built in, read from its imports and string literals (`ast`, nothing
imported): `proxy/` alone knows mitmproxy, no module imports a layer above its own, a stage uses no
other stage, and nothing outside `providers/` names a provider (docs/architecture.md, "Layers")."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import tollgate
from tollgate.providers import PROVIDERS

PACKAGE = Path(tollgate.__file__).parent

# The layers, top down: a module may import its own layer and the ones below it, never one above.
# `proxy/` alone knows mitmproxy; `cli/` starts processes and reads records, never the proxy;
# `demo/` starts a stand-in provider and the proxy (`./run.sh demo`); `console/` serves the records it reads.
LAYERS = (
    ("cli/", "demo/"),
    ("proxy/", "console/"),
    ("records/",),
    ("calls/",),
    ("configuration/",),
    ("governance/",),
    ("providers/",),
    ("credentials/",),
    ("ledger/",),
    ("common/",),
    ("formats/",),
)
PROXY_LAYER = ("proxy/",)

# Modules in providers/ that belong to no one provider: any module may import them.
SHARED_PROVIDER_MODULES = {
    "tollgate.providers": "the registry: every provider, by name",
    "tollgate.providers.base": "what every provider is (`Provider`) and shares (error shapes)",
    "tollgate.providers.credentials": "the part every provider declares for where credentials go",
    "tollgate.providers.cost": "the part every provider declares for what a call costs",
    "tollgate.providers.plans": "the part a provider that takes plans declares, and the accounts they name",
    "tollgate.providers.client_certs": "the client certificates an mTLS upstream asks for",
    "tollgate.providers.admin": "the registry of the vendors' admin APIs `tollgate reconcile` reads, by name",
}
# Modules outside providers/ allowed to import one provider's module, and why.
PROVIDER_IMPORT_EXCEPTIONS: dict[tuple[str, str], str] = {}


@cache
def modules() -> dict[str, ast.Module]:
    """Every module of the package by its path under it (`stages/transport/translate.py`), parsed."""
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def module_name(path: str) -> str:
    """`stages/transport/translate.py` → `tollgate.proxy.stages.transport.translate`; a package's `__init__.py` is the package."""
    parts = ["tollgate", *path.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache  # asked of every name every module imports: the files do not change while the tests run
def is_module(name: str) -> bool:
    rest = name.split(".")[1:]
    return name.startswith("tollgate.") and (
        PACKAGE.joinpath(*rest).with_suffix(".py").is_file() or PACKAGE.joinpath(*rest, "__init__.py").is_file()
    )


@cache
def nodes(path: str) -> tuple[ast.AST, ...]:
    """Every node of the module at `path`, walked once: the checks below each read them all."""
    return tuple(ast.walk(modules()[path]))


@cache
def imports(path: str) -> tuple[str, ...]:
    """The absolute names of the modules `path` imports, anywhere in it (also under TYPE_CHECKING
    and in functions); `from . import x` and `from .p import x` count x when it is a module."""
    return tuple(_imports(path))


def _imports(path: str) -> Iterator[str]:
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    for node in nodes(path):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            name = ".".join(p for p in (base, node.module or "") if p)
            yield name
            for alias in node.names:
                if is_module(f"{name}.{alias.name}"):
                    yield f"{name}.{alias.name}"


def in_layer(path: str, layer: tuple[str, ...]) -> bool:
    return any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in layer)


@pytest.mark.slow
def test_only_the_proxy_layer_imports_mitmproxy() -> None:
    importers = {path for path in modules() if any(name.split(".")[0] == "mitmproxy" for name in imports(path))}
    assert {p for p in importers if not in_layer(p, PROXY_LAYER)} == set()


def layer_of(path: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if in_layer(path, layer)), None)


def path_of(name: str) -> str:
    """`tollgate.proxy.stages` → `proxy/stages/__init__.py`; a module → its file."""
    rest = name.split(".")[1:]
    file = PACKAGE.joinpath(*rest).with_suffix(".py")
    return "/".join(rest) + ".py" if file.is_file() else "/".join([*rest, "__init__.py"])


def test_every_module_is_in_a_layer() -> None:
    top = {"__init__.py", "__main__.py"}
    assert {p for p in modules() if layer_of(p) is None and p not in top} == set()


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = set()
    for path in modules():
        own = layer_of(path)
        for name in imports(path):
            if own is None or not is_module(name):
                continue
            theirs = layer_of(path_of(name))
            if theirs is not None and theirs < own:
                found.add((path, name))
    assert found == set()


def test_a_stage_uses_no_other_stage() -> None:
    allowed = {"tollgate.proxy.stages"}
    found = {
        (path, name)
        for path in modules()
        if path.startswith("proxy/stages/")
        for name in imports(path)
        if name.startswith("tollgate.proxy.stages") and name not in allowed and name != module_name(path)
    }
    assert found == set()


# The stages' folders: the concerns they govern, in the words of `governance/` and `records/`, and
# the proxy's own work (docs/architecture.md, "Where each concern lives").
STAGE_FOLDERS = {
    "identity": "who calls",
    "policy": "the policy's decision",
    "limits": "the ledger's reservations, roll-up",
    "guardrails": "what a body carries",
    "routing": "where a call goes",
    "egress": "connections to other hosts",
    "mcp": "calls to MCP servers",
    "agents": "tool calls an agent makes, quarantine",
    "records": "the audit, its export, metrics, traces",
    "transport": "the proxy's own: classify, translation, WebSocket calls",
    "upstream": "the proxy's own: the credential, attempts, fallbacks, the stream tap",
    "process": "the proxy's own: settings, drain, warm-up",
}


def test_every_stage_sits_in_the_folder_of_its_concern() -> None:
    found = {
        path
        for path in modules()
        if path.startswith("proxy/stages/")
        and path != "proxy/stages/__init__.py"
        and (path.count("/") != 3 or path.split("/")[2] not in STAGE_FOLDERS)
    }
    assert found == set()


def test_nothing_below_the_stages_imports_a_stage() -> None:
    found = {
        (path, name)
        for path in modules()
        if not in_layer(path, PROXY_LAYER)
        for name in imports(path)
        if name == "tollgate.proxy.stages" or name.startswith("tollgate.proxy.stages.")
    }
    assert found == set()


# Where one name may stand for several modules: the formats' and the providers' own, named alike on
# purpose (each format's `answer.py`, `stream.py`, ...), and a package's or a program's entry.
NAMES_THAT_REPEAT = ("formats/", "providers/")
ENTRIES = {"__init__.py", "__main__.py"}


def test_no_module_name_is_used_twice() -> None:
    """A module's name says what it is, once: `egress.py` twice would be two things under one name."""
    by_name: dict[str, list[str]] = {}
    for path in modules():
        name = path.rsplit("/", 1)[-1]
        if name not in ENTRIES and not path.startswith(NAMES_THAT_REPEAT):
            by_name.setdefault(name, []).append(path)
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


# What it prints is all: os._exit spares the interpreter's teardown, which only takes time.
SAYS_IF_MITMPROXY_LOADED = (
    "import os, sys, tollgate.calls.call, tollgate.configuration.runtime;"
    " print('mitmproxy' in sys.modules, flush=True); os._exit(0)"
)


@pytest.mark.slow
def test_the_loaded_configuration_loads_without_mitmproxy() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", SAYS_IF_MITMPROXY_LOADED],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout == "False\n"


def test_only_providers_import_a_provider() -> None:
    found = {
        (path, name)
        for path in modules()
        if not path.startswith("providers/")
        for name in imports(path)
        if name.startswith("tollgate.providers")
        and name not in SHARED_PROVIDER_MODULES
        and (path, name) not in PROVIDER_IMPORT_EXCEPTIONS
    }
    assert found == set()


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstrings' nodes (a module's, a class's, a function's): prose, not names."""
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


@pytest.mark.slow
def test_only_providers_name_a_provider() -> None:
    names = set(PROVIDERS)
    found = set()
    for path, tree in modules().items():
        if path.startswith("providers/"):
            continue
        prose = docstrings(tree)
        found |= {
            (path, node.lineno, node.value)
            for node in nodes(path)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in prose
        }
    assert found == set()


def test_the_checks_see_what_they_look_for() -> None:
    """The reading itself: the imports and names the rules above look for are found where they are."""
    assert "mitmproxy" in set(imports("proxy/flows.py"))
    assert "tollgate.proxy.flows" in set(imports("proxy/stages/transport/translate.py"))
    assert "tollgate.providers.gemini" in set(imports("providers/vertex.py"))
    assert "tollgate.formats.openai_realtime" in set(imports("proxy/stages/transport/websocket.py"))
    assert "tollgate.calls.call" in set(imports("records/telemetry/metrics.py"))
    assert layer_of("cli/main.py") == 0 and layer_of("formats/framing/sse.py") == len(LAYERS) - 1
    assert layer_of("governance/limits/limits.py") > layer_of("calls/call.py") > layer_of("records/audit/auditlog.py")  # type: ignore[operator]
    assert {"openai", "anthropic", "gemini", "vertex", "bedrock"} <= set(PROVIDERS)
