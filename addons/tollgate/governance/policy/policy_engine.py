"""OPA's engine, on Tollgate's policies: Rego sources compiled together, a query evaluated on an
input document, and a decision read from a deny rule, `data.tollgate.deny` or another kind's
(`Rules`). What the policy's worker
process runs (`policy_worker`); the proxy holds a `Policy` (`policy`), which never loads the engine.

The engine is OPA itself (`opa-golib-python-bindings`, which embeds OPA's Go packages): a decision
is the one `opa eval --strict-builtin-errors` gives for the same policy and input.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The rule that decides an LLM call; each other kind of decision has its own (`policy.DecisionKind`).
CALL_RULE = "data.tollgate.deny"
# What compiles every module (OPA compiles them when a query is first prepared) and reads nothing.
COMPILE_QUERY = "x := 1"
# Where the engine comes from, and how to install it: its releases ask for Python 3.14 although
# they run on 3.12 and 3.13 (the library is Go's, loaded through ctypes).
ENGINE = "opa-golib-python-bindings"
INSTALL_ENGINE = f"pip install --no-deps --ignore-requires-python '{ENGINE}==0.4.4'"
# OPA's own words before the errors it lists.
_ERROR_PREAMBLE = re.compile(r"^(?:bundle activation failed: )?\d+ errors? occurred:\s*")
POLICY_ERROR = "policy error"


class PolicyError(Exception):
    """A policy that cannot be loaded; the message names the file."""


@dataclass(frozen=True, slots=True)
class Decision:
    deny_reasons: tuple[str, ...]
    error: str | None = None

    @property
    def allowed(self) -> bool:
        return not self.deny_reasons


def engine_version() -> str:
    """The engine's release, as installed (`opa-golib-python-bindings`, with OPA 1.20.2 inside)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(ENGINE)
    except PackageNotFoundError:
        return "not installed"


class Rules:
    """Rego sources compiled together by OPA's engine, evaluated on input documents: in the policy's
    worker process for the proxy's calls, in this process for the command line."""

    def __init__(self, sources: Mapping[str, str], prints: Callable[[str, str], None] | None = None) -> None:
        """`prints` is given each `print()` call's message and location; without it they are dropped
        (the proxy's console would show what a call's input holds)."""
        # Loaded with the first policy: Tollgate without one never needs it.
        try:
            from opa_bindings import OpaEngine
            from opa_bindings.engine import OpaError
        except ImportError:
            raise PolicyError(f"OPA's engine is not installed ({ENGINE}): {INSTALL_ENGINE}") from None
        self._error = OpaError
        self._engine = OpaEngine()
        self._engine.print_handler = prints or _drop
        try:
            for name, source in sources.items():
                self._engine.add_policy(name, source)
            self._engine.eval_query(COMPILE_QUERY)
        except OpaError as e:
            raise PolicyError(describe_compile_error(e.message, list(sources))) from None

    def query(self, query: str, document: Any) -> list[dict[str, Any]]:
        """A query's bindings, one dict per result (none: undefined); `PolicyError` in OPA's words
        when it fails."""
        try:
            return self._engine.eval_query(query, document)
        except self._error as e:
            raise PolicyError(_first_line(e.message)) from None

    def evaluate(self, document: Any, rule: str = CALL_RULE) -> Decision:
        """A deny rule (`data.tollgate.deny`, an LLM call's; `data.tollgate.mcp.deny`, …) on an input
        document: the reasons it gives, sorted."""
        query = query_of(rule)
        try:
            results = self._engine.eval_query(query, document)
        except self._error as e:
            return Decision((POLICY_ERROR,), f"policy evaluation failed: {_first_line(e.message)}")
        if not results:  # no deny rule holds, or none is written
            return Decision(())
        (found,) = results
        reasons = found["deny"]
        if not found["whole"] or not all(isinstance(r, str) for r in reasons):
            return Decision((POLICY_ERROR,), f"{rule} is not a set of strings")
        return Decision(tuple(sorted(reasons)))


@functools.cache  # the same few rules, evaluation after evaluation
def query_of(rule: str) -> str:
    """The query that reads a deny rule: the rule itself, not `data` (which OPA would evaluate whole,
    every rule of every package), so that an undefined `deny` has no reasons; `is_set`, so that a
    `deny` that is an array or anything else is a policy error, not reasons."""
    return f"deny := {rule}; whole := is_set(deny)"


def describe_compile_error(message: str, names: Sequence[str]) -> str:
    """OPA's report of a policy that does not compile, one error a line (`file:line: kind: what`),
    without the source excerpts it adds under a parse error."""
    text = _ERROR_PREAMBLE.sub("", message.strip())
    errors = [line for line in text.splitlines() if any(line.startswith(f"{name}:") for name in names)]
    if not errors:
        return f"{', '.join(names) or 'policy'}: does not compile: {_first_line(text)}"
    return "\n".join(errors)


def _first_line(message: str) -> str:
    text = _ERROR_PREAMBLE.sub("", message.strip())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


def _drop(message: str, location: str) -> None:
    pass
