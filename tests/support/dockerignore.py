""".dockerignore as Docker reads it, to lay out a build context as `docker build` would send it.

Docker's rules (its builder's pattern matcher): one pattern a line, `#` lines and blank lines
ignored, surrounding spaces and a leading `/` dropped; `*` any run of characters but `/`, `?` one
such character, `**` any number of directories (none included), `[…]` a class; `!` makes an
exception. A path is excluded when the last pattern that matches it or one of its parent
directories is not an exception."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    exception: bool
    regex: re.Pattern[str]


def rules(text: str) -> list[Rule]:
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        found.append(Rule(pattern, exception, re.compile(_regex(pattern))))
    return found


def _regex(pattern: str) -> str:
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i + 1)
            out += "[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return out + "$"


def excluded(path: str, rules: list[Rule]) -> bool:
    """Whether `path` (relative to the context, `/`-separated) stays out of the context."""
    parents = path.split("/")
    candidates = ["/".join(parents[: n + 1]) for n in range(len(parents))]
    verdict = False
    for rule in rules:
        if any(rule.regex.match(candidate) for candidate in candidates):
            verdict = not rule.exception
    return verdict


def context_files(root: Path, ignore_file: Path) -> list[str]:
    """The files (and symbolic links) under `root` that the build context holds, sorted."""
    active = rules(ignore_file.read_text(encoding="utf-8"))
    exceptions = [r.pattern for r in active if r.exception]
    kept = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        # An excluded directory is walked only when an exception may take something in it back.
        dirs[:] = [
            d
            for d in dirs
            if not excluded(prefix + d, active)
            or any(e.startswith(prefix + d + "/") or e[:1] in "*?[" for e in exceptions)
        ]
        kept += [prefix + f for f in files if not excluded(prefix + f, active)]
        kept += [prefix + d for d in dirs if (Path(folder) / d).is_symlink() and not excluded(prefix + d, active)]
    return sorted(kept)


def copy_context(root: Path, ignore_file: Path, target: Path) -> list[str]:
    """Copy the build context of `root` to `target` (modes kept, as COPY keeps them); its files."""
    files = context_files(root, ignore_file)
    for name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination, follow_symlinks=False)
    return files
