"""Injection signals and the answer's link rewriter, on text that holds no injection: their false
findings per MB and their speed.

Reads (a) the source and docs of every package installed in the running Python's site-packages
(`.py`, `.md`, `.rst`, `.txt` files) and (b) this repository's own docs and README, each file as one
tool result. Prints, for each corpus, the findings per MB of each `injection.*` kind, the files
with findings (with what matched, to judge them), and the MB/s of the signals; then the MB/s of
`LinkRewriter` over the docs and over Python source, fed in 64- and 4096-character chunks.

    .venv/bin/python bench/agents_injection.py
    .venv/bin/python bench/agents_injection.py --show 30     # more of the files with findings
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addons"))

from tollgate.governance.agents import injection  # noqa: E402
from tollgate.governance.agents.link_hosts import LinkHosts  # noqa: E402
from tollgate.governance.agents.links import LinkRewriter  # noqa: E402

SUFFIXES = {".py", ".md", ".rst", ".txt"}
MB = 1e6


def package_files() -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    return sorted(p for p in site.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def repo_docs() -> list[Path]:
    return sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def what_matched(text: str, kind: str, signals: injection.InjectionSignals) -> list[str]:
    """The matches of a kind in a text, shortened: for the bench's reader to judge, never a record."""
    if kind == injection.INSTRUCTIONS:
        return [m.group()[:80] for _, p in injection._COMPILED for m in p.finditer(injection.readable(text))][:3] + [
            m.group() for m in injection._CASED_MARKERS.finditer(text)
        ][:3]
    if kind == injection.HIDDEN:
        found = [
            ascii(m.group()[:16])
            for pattern in (injection._TAGS, injection._BIDI, injection._ZERO_WIDTH)
            for m in pattern.finditer(text)
        ]
        found += [m.group()[:80] for m in injection._COMMENT.finditer(text)]
        return found[:3]
    return [
        url[:100]
        for m in injection._LINK.finditer(text)
        if signals._exfil(url := next(g for g in m.groups() if g is not None))
    ][:3]


def run(name: str, files: list[Path], signals: injection.InjectionSignals, show: int) -> None:
    total = Counter()
    size = 0
    spent = 0.0
    flagged: list[tuple[Path, dict[str, int]]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        size += len(text.encode())
        start = time.perf_counter()
        found = signals.signals(text)
        spent += time.perf_counter() - start
        if found:
            total.update(found)
            flagged.append((path, found))
    print(f"\n{name}: {len(files)} files, {size / MB:.1f} MB, {size / MB / spent:.1f} MB/s")
    for kind in injection.KINDS:
        print(
            f"  {kind:24} {total[kind]:5} findings  {total[kind] / (size / MB):.3f} per MB  in {sum(kind in f for _, f in flagged)} files"
        )
    for path, found in flagged[:show]:
        text = path.read_text(encoding="utf-8")
        for kind in found:
            print(
                f"    {path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}  {kind}: {what_matched(text, kind, signals)}"
            )


def run_links(files: list[Path], name: str) -> None:
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    print(f"\nLinkRewriter over {name}:")
    size = sum(len(t.encode()) for t in texts)
    hosts = LinkHosts(["*.example.com", "github.com"])
    for chunk in (64, 4096):
        start = time.perf_counter()
        changed = 0
        for text in texts:
            rewriter = LinkRewriter(hosts)
            out = "".join(rewriter.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)) + rewriter.end()
            changed += out != text
        spent = time.perf_counter() - start
        print(
            f"  {chunk}-character chunks: {size / MB:.1f} MB in {spent:.2f} s, {size / MB / spent:.1f} MB/s ({changed} of {len(texts)} files had links off the list)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", type=int, default=15, help="files with findings to show per corpus")
    args = parser.parse_args()
    signals = injection.InjectionSignals(["*.example.com", "github.com"])
    run("installed packages' source and docs", package_files(), signals, args.show)
    run("this repository's docs", repo_docs(), signals, args.show)
    packages = package_files()
    run_links(
        repo_docs() + [p for p in packages if p.suffix in {".md", ".rst"}],
        "the docs and the packages' .md and .rst files",
    )
    run_links(
        [p for p in packages if p.suffix == ".py"][:2000], "2000 of the packages' .py files (brackets everywhere)"
    )


if __name__ == "__main__":
    main()
