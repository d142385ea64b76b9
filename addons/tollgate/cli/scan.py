"""`tollgate scan`: a request body read by the guardrails as the proxy reads it, and what the
command and `tollgate scan --answer` (`answer_scan.py`) share: the configuration applied, the
input read, what is applied said in words."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from tollgate.cli.words import plural

if TYPE_CHECKING:
    from tollgate.configuration.config import Config, Unset
    from tollgate.governance.guardrails.rules import Guardrails


# Offsets printed per kind, at most: the count covers the rest.
OFFSETS_SHOWN = 20


def scan_body(source: str, config_path: Path | None) -> int:
    """Exit status 0 when the guardrails find nothing in the body, 1 when they find something (each
    kind on a line: count, action, offsets), 2 when the body or the configuration cannot be read.
    What it applied (the configuration, its rules, Tollgate's own keys) is said on standard error."""
    from tollgate.governance.guardrails.rules import Guardrails

    inputs = scan_inputs(config_path, source)
    if inputs is None:
        return 2
    config, found, unset, body = inputs
    guardrails = Guardrails.of(config)
    print(applied_text(guardrails, found, unset), file=sys.stderr)
    is_json = body.lstrip()[:1] in (b"{", b"[", b'"')
    result = guardrails.scan_all(body, is_json)
    name = "(stdin)" if source == "-" else source
    if not result.findings:
        nothing = "nothing found" if guardrails.reads else "nothing found: no rule or key applied"
        print(f"{name}: {nothing} ({plural(len(body), 'byte')}{', JSON' if is_json else ''})")
        return 0
    by_kind: dict[str, list[int]] = {}
    actions: dict[str, str] = {}
    for finding in result.findings:
        by_kind.setdefault(finding.kind, []).append(finding.start)
        actions[finding.kind] = finding.action
    total = len(result.findings)
    print(f"{name}: {plural(total, 'finding')} ({plural(len(body), 'byte')}{', JSON' if is_json else ''})")
    width = max(len(k) for k in by_kind)
    for kind, offsets in by_kind.items():
        shown = ", ".join(str(o) for o in offsets[:OFFSETS_SHOWN])
        more = f", … ({len(offsets) - OFFSETS_SHOWN} more)" if len(offsets) > OFFSETS_SHOWN else ""
        print(f"  {kind:<{width}}  {len(offsets):>4}  {actions[kind]:<6}  at {shown}{more}")
    return 1


class ScanInputs(NamedTuple):
    """What `tollgate scan` reads: its configuration, the file it came from, Tollgate's own keys
    whose variables are unset here (`scan_config`), and the bytes it scans (`read_source`)."""

    config: Config
    found: Path | None
    unset: list[Unset]
    data: bytes


def scan_inputs(config_path: Path | None, source: str) -> ScanInputs | None:
    """The configuration and the input read; None, said on standard error, where either cannot be."""
    loaded = scan_config(config_path)
    data = read_source(source) if loaded is not None else None
    return None if loaded is None or data is None else ScanInputs(*loaded, data)


def scan_config(config_path: Path | None) -> tuple[Config, Path | None, list[Unset]] | None:
    """The configuration `tollgate scan` applies (./tollgate.yaml when present and none is named),
    the file it came from, and Tollgate's own keys whose variables are unset here (not looked for);
    None, said on standard error, where it cannot be read."""
    from tollgate.configuration.config import Config, ConfigError, load_config
    from tollgate.configuration.records_settings import DSN_PLACES

    unset: list[Unset] = []
    try:
        if config_path is None:
            default = Path("tollgate.yaml")
            found = default if default.is_file() else None
            config = load_config(default, unset=unset) if found is not None else Config()
        else:
            found = config_path
            config = load_config(config_path, unset=unset)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    # A DSN left unset is no key the scan could not look for: it needs none, and says nothing of it.
    return config, found, [u for u in unset if u.where not in DSN_PLACES]


def read_source(source: str) -> bytes | None:
    """A file's bytes (`-`: standard input); None, said on standard error, where it cannot be read."""
    try:
        return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as e:
        print(f"error: {source}: cannot read: {e.strerror}", file=sys.stderr)
        return None


def applied_text(
    guardrails: Guardrails, config_path: Path | None, unset: Sequence[Unset] = (), on_answer: bool = False
) -> str:
    """What `tollgate scan` applies, in words: where its rules come from (those on `answer` where
    it reads an answer), the detectors they name, how many of Tollgate's own keys it looks for (a
    count, never a key) and the places of those it cannot, their variables unset here."""
    source = f"{config_path}" if config_path is not None else "no configuration (no ./tollgate.yaml, no --config)"
    applying = guardrails.answer_rules if on_answer else guardrails.rules
    names = sorted({entry.name for rule in applying for entry in rule.rule.detect})
    on = " on answer" if on_answer else ""
    rules = f"{plural(len(applying), 'guardrails rule')}{on}"
    rules = f"{rules} ({', '.join(names)})" if names else f"no guardrails rule{on}"
    keys = guardrails.own_key_count
    own = f"{plural(keys, 'key')} of Tollgate's own (tollgate_keys)" if keys else "no key of Tollgate's own"
    if unset:
        places = ", ".join(f"{u.where} (${{{u.name}}})" for u in unset)
        own += f"; not looked for, their variables unset: {places}"
    return f"applied: {source}: {rules}, {own}"
