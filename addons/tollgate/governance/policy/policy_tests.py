"""A policy's Rego tests run as `opa test` runs them, by the engine that decides the proxy's calls.

Every `.rego` file under the paths given is compiled together (the policy and its `*_test.rego`
files); every rule whose name begins `test_` is a test, which passes when it is defined and not
false; one that begins `todo_test_` is skipped. The modules' packages and rule names are read by
OPA's own parser (`rego.parse_module`), so a test is found exactly where `opa test` finds one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tollgate.governance.policy.policy_engine import PolicyError, Rules

PASS, FAIL, ERROR, SKIPPED = "PASS", "FAIL", "ERROR", "SKIPPED"
TEST, TODO = "test_", "todo_test_"


@dataclass(frozen=True, slots=True)
class TestResult:
    name: str  # data.<package>.<rule>, as opa test names it
    file: str
    outcome: str  # PASS, FAIL, ERROR or SKIPPED
    seconds: float = 0.0
    error: str | None = None
    prints: tuple[str, ...] = ()


def rego_files(paths: Iterable[Path]) -> list[Path]:
    """The `.rego` files a path names: itself, or those beneath a directory (as `opa test` loads them)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.rego") if p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise PolicyError(f"{path}: no such file or directory")
    return found


def run_tests(files: Sequence[Path]) -> list[TestResult]:
    """Each test of the files compiled together, in the order written; `PolicyError` when they do
    not compile (as the proxy would refuse them)."""
    sources: dict[str, str] = {}
    for path in files:
        try:
            sources[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    prints: list[str] = []
    rules = Rules(sources, prints=lambda message, location: prints.append(f"{location}: {message}"))
    results: list[TestResult] = []
    for name, source in sources.items():
        module = rules.query("module := rego.parse_module(input.name, input.source)", {"name": name, "source": source})
        package, tests = tests_of(module[0]["module"])
        for rule in tests:
            reference = f"{package}.{rule}" if _NAME.fullmatch(rule) else f"{package}[{json.dumps(rule)}]"
            if rule.startswith(TODO):
                results.append(TestResult(reference, name, SKIPPED))
                continue
            prints.clear()
            started = time.perf_counter()
            error = None
            try:
                found = rules.query(f"value := {reference}", None)
            except PolicyError as e:
                outcome, error = ERROR, str(e)
            else:
                outcome = PASS if found and found[0]["value"] is not False else FAIL
            results.append(TestResult(reference, name, outcome, time.perf_counter() - started, error, tuple(prints)))
    return results


def tests_of(module: dict[str, Any]) -> tuple[str, list[str]]:
    """A parsed module's package, as a reference (`data.tollgate_test`), and its test rules' names,
    each once, in the order written."""
    parts = []
    for term in module["package"]["path"][1:]:
        value = term["value"]
        parts.append(f".{value}" if _NAME.fullmatch(value) else f"[{json.dumps(value)}]")
    names: dict[str, None] = {}
    for rule in module.get("rules", ()):
        name = rule["head"].get("name")
        if isinstance(name, str) and name.startswith((TEST, TODO)):
            names.setdefault(name)
    return "data" + "".join(parts), list(names)


def report(results: Sequence[TestResult], verbose: bool = False) -> str:
    """The results as `opa test` prints them: the tests that did not pass (every test with
    `verbose`) by file, then the counts."""
    lines: list[str] = []
    shown = [r for r in results if verbose or r.outcome != PASS]
    file = None
    for result in shown:
        if result.file != file:
            if file is not None:
                lines.append("")
            file = result.file
            lines.append(f"{file}:")
        took = "" if result.outcome == SKIPPED else f" ({_duration(result.seconds)})"
        lines.append(f"{result.name}: {result.outcome}{took}")
        if result.error:
            lines.extend(f"  {line}" for line in result.error.splitlines())
        if result.prints and (verbose or result.outcome != PASS):
            lines.extend(f"  {line}" for line in result.prints)
    if shown:
        lines.append("-" * 80)
    total = len(results)
    for outcome in (PASS, FAIL, SKIPPED, ERROR):
        count = sum(1 for r in results if r.outcome == outcome)
        if count or (outcome == PASS and not total):
            lines.append(f"{outcome}: {count}/{total}")
    return "\n".join(lines)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"
