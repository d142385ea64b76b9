"""Every module path and dotted code name docs/architecture.md mentions exists: a file or folder of
the repository, and a module, class, function, field or attribute of the code (or of mitmproxy's,
or the standard library's, where the code is theirs), a setting of tollgate.yaml, or a name the
code knows as a string (an event's type). A name the code no longer has is caught when it goes."""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import http, master
from mitmproxy.addons.proxyserver import Proxyserver
from pydantic import BaseModel

import tollgate
from tollgate.calls.call import Call, Route
from tollgate.configuration.config import Config
from tollgate.configuration.runtime import Loaded
from tollgate.credentials.keypool import KeyPool
from tollgate.proxy.state import Shared

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = Path(tollgate.__file__).parent
SKIPPED_DIRS = {".git", ".venv", ".venv-clients", "node_modules", "__pycache__", ".node-clients"}

# What the doc calls by a variable's name, as the code does: the object each stands for.
VARIABLES: dict[str, Any] = {
    "call": Call,
    "route": Route,
    "shared": Shared,
    "loaded": Loaded,
    "flow": http.HTTPFlow,
    "request": http.Request,
    "response": http.Response,
    "master": master.Master,
    "proxyserver": Proxyserver,
    "pool": KeyPool,
}

# The libraries whose names the doc gives by their modules' dotted names.
LIBRARIES = {"mitmproxy"}

_FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(
    r"(?<![\w./<>-])((?:[\w<>-]+/)+(?:[\w<>.-]+\.(?:py|md|go|rego|yaml|sh))?|[\w<>-]+\.(?:py|md|go))(?![\w/])"
)
_DOTTED = re.compile(r"(?<![\w./<>-])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?![\w/<>-])")


def mentions() -> Iterator[str]:
    """The text of every code span of the doc, and of its fenced blocks but the shell commands."""
    text = DOC.read_text(encoding="utf-8")
    for language, block in _FENCE.findall(text):
        if language != "sh":
            yield block
    yield from _SPAN.findall(_FENCE.sub("", text))


def paths() -> set[str]:
    return {p for text in mentions() for p in _PATH.findall(text) if "<" not in p}


def dotted_names() -> set[str]:
    # A path's parts are no code names.
    return {name for text in mentions() for name in _DOTTED.findall(_PATH.sub(" ", text))}


@cache
def repository_paths() -> frozenset[str]:
    """Every file and folder of the checkout, by its path from the root (folders with a `/`)."""
    found = set()
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for entry in folder.iterdir():
            if entry.name in SKIPPED_DIRS:
                continue
            relative = entry.relative_to(ROOT).as_posix()
            if entry.is_dir():
                found.add(relative + "/")
                stack.append(entry)
            else:
                found.add(relative)
    return frozenset(found)


def path_exists(path: str) -> bool:
    """A path as the doc writes it: from the root, or from a folder the doc's section names
    (`stages/records/audit.py` under `addons/tollgate/proxy/`), so any path that ends with it."""
    return any(p == path or p.endswith("/" + path) for p in repository_paths())


@cache
def package_modules() -> dict[str, ModuleType]:
    """Every module of the package by its dotted name, imported."""
    found = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = importlib.import_module(name)
    return found


@cache
def classes_named(name: str) -> tuple[type, ...]:
    """The package's classes of that name."""
    return tuple(
        {
            id(value): value
            for module in package_modules().values()
            if isinstance(value := getattr(module, name, None), type) and value.__module__.startswith("tollgate")
        }.values()
    )


@cache
def package_source() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py")))


def a_string_of_the_code(name: str) -> bool:
    """Whether the code holds `name` as a string of its own (an event's type, a command's name)."""
    source = package_source()
    return f'"{name}"' in source or f"'{name}'" in source


def roots(name: str) -> Iterator[Any]:
    """What a name can stand for: a variable, a class, a module of the package (by the end of its
    dotted name), a setting of tollgate.yaml, or a module of the standard library."""
    if name in VARIABLES:
        yield VARIABLES[name]
    yield from classes_named(name)
    yield from (m for full, m in package_modules().items() if full == name or full.endswith("." + name))
    if name in Config.model_fields:
        yield Config.model_fields[name].annotation
    if name in sys.stdlib_module_names or name in LIBRARIES:
        yield importlib.import_module(name)


_SELF_ATTRIBUTE = re.compile(r"^\s*self\.(\w+)\s*(?::\s*([^=\n]+?))?\s*=(?!=)", re.MULTILINE)


@cache
def instance_attributes(cls: type) -> dict[str, str | None]:
    """The attributes a class's methods set on `self`, with their annotations where written."""
    found: dict[str, str | None] = {}
    for klass in cls.__mro__:
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for name, annotation in _SELF_ATTRIBUTE.findall(source):
            found.setdefault(name, annotation or None)
    return found


def annotation_of(owner: type, name: str) -> str | None:
    """How the class (or one it inherits from) annotates the attribute, as written."""
    for klass in owner.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get(name)
        if annotation is not None:
            return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return instance_attributes(owner).get(name)


def typed(annotation: str | None, module: str) -> Iterator[Any]:
    """The classes an annotation names (`Route`, `Target | None`, `tuple[KeyPool, str]`)."""
    for word in re.findall(r"[A-Za-z_]\w*", annotation or ""):
        if word in ("None", "Any") or hasattr(builtins, word):
            continue
        known = getattr(sys.modules.get(module), word, None)  # as the annotation's own module has it
        if isinstance(known, type):
            yield known
        yield from classes_named(word)


def attribute(owner: Any, name: str) -> list[Any]:
    """What `owner.name` is, as far as can be told: the values or classes it may hold; [] when
    `owner` has no such attribute."""
    if isinstance(owner, ModuleType):
        full = f"{owner.__name__}.{name}"
        if full in package_modules():
            return [package_modules()[full]]
        if not hasattr(owner, name):
            try:
                return [importlib.import_module(full)]
            except ImportError:
                return []
        value = getattr(owner, name)
        return [value]
    if isinstance(owner, type):
        if issubclass(owner, BaseModel) and name in owner.model_fields:
            return [*typed(str(owner.model_fields[name].annotation), owner.__module__), object()]
        annotation = annotation_of(owner, name)  # a dataclass's fields among them
        if annotation is not None or hasattr(owner, name) or name in instance_attributes(owner):
            value = inspect.getattr_static(owner, name, None)
            if isinstance(value, property) and value.fget is not None:
                annotation = annotation or inspect.get_annotations(value.fget).get("return")
            return [*typed(annotation if isinstance(annotation, str) else None, owner.__module__), object()]
        return []
    return []


def resolves(name: str) -> bool:
    """Whether the dotted name is one the code has, each part an attribute of the one before."""
    first, *rest = name.split(".")
    found = list(roots(first))
    for part in rest:
        found = [a for owner in found for a in attribute(owner, part)]
        if not found:
            return False
    return bool(found)


def known(name: str) -> bool:
    return resolves(name) or a_string_of_the_code(name)


def test_every_path_it_names_exists() -> None:
    assert sorted(p for p in paths() if not path_exists(p)) == []


def test_every_dotted_name_it_names_exists() -> None:
    assert sorted(n for n in dotted_names() if not known(n)) == []


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("call.route.target.model", True),
        ("call.answer.request_sent", True),
        ("runtime.Loaded.build", True),
        ("patches.end_response_with", True),
        ("flow.request.trailers", True),
        ("shared.draining", True),
        ("metrics.otlp", True),
        ("translate.translator.Translation", False),
        ("call.decision", False),
        ("compat.resend", False),
        ("Call.audit_record", False),
    ],
)
def test_the_check_tells_names_that_exist(name: str, found: bool) -> None:
    assert known(name) is found


def test_the_doc_is_read_for_paths_and_names() -> None:
    assert {"addons/tollgate/proxy/pipeline.py", "stages/records/audit.py", "formats/"} <= paths()
    assert {"call.route.target.model", "patches.end_response_with", "CallerCheck.verify_caller"} <= dotted_names()
