"""How much of gitleaks' rule set the default detectors (`secrets` and `pii`) cover, measured on
gitleaks' own samples: each true sample and hard negative of each rule (`gitleaks_samples.py`) is
put as the user's message in an OpenAI chat request, JSON-encoded as the openai SDK sends it, and
the body is scanned as the request guardrails scan one (`Guardrails.scan_all`, the rules of
`detection.py`). A sample is found when some `secrets.*` kind is found in its body; a hard
negative is flagged likewise.

    .venv/bin/python bench/breadth.py --gitleaks ../gitleaks              # per rule, then the totals
    .venv/bin/python bench/breadth.py --gitleaks ../gitleaks --markdown   # the table for the docs

It also checks `gitleaks_rules.COVERS` (our kind: the gitleaks rules it finds, used by
`detection.py` where gitleaks is not at hand) against what is measured here, and says where they
differ."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import detection  # noqa: E402  (puts addons/ on the path)
import gitleaks_rules  # noqa: E402
import gitleaks_samples  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402

SECRET = "secrets."


def request_body(sample: str) -> bytes:
    """An OpenAI chat request whose user message is `sample`, as the openai SDK encodes it."""
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": sample}]}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class RuleResult:
    true: int = 0
    found: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # our kinds, over the samples found
    negatives: int = 0
    flagged: list[tuple[str, list[str]]] = field(default_factory=list)  # (negative, kinds)


@dataclass
class Measure:
    rules: dict[str, RuleResult]
    scanned_bytes: int  # the bodies, one a sample, and the CPU time their scans took
    cpu_seconds: float
    joined_bytes: int = 0  # one body holding every sample, a message each, and its scan's best time
    joined_seconds: float = 0.0


def secret_kinds(guard: Guardrails, sample: str, clock: list[float]) -> list[str]:
    body = request_body(sample)
    start = time.thread_time()
    findings = guard.scan_all(body).findings
    clock[0] += time.thread_time() - start
    clock[1] += len(body)
    return sorted({f.kind for f in findings if f.kind.startswith(SECRET)})


def measure(samples: dict[str, tuple[list[str], list[str]]], guard: Guardrails | None = None) -> Measure:
    guard = guard or Guardrails(detection.RULES)
    if guard.scan_all(request_body("Hello.")).findings:
        raise SystemExit("the request around the samples is itself found: the figures would be wrong")
    clock = [0.0, 0.0]
    out: dict[str, RuleResult] = {}
    for rule, (true, negatives) in sorted(samples.items()):
        result = out[rule] = RuleResult(true=len(true), negatives=len(negatives))
        for sample in true:
            kinds = secret_kinds(guard, sample, clock)
            if kinds:
                result.found += 1
                result.kinds.update(kinds)
        for sample in negatives:
            kinds = secret_kinds(guard, sample, clock)
            if kinds:
                result.flagged.append((sample, kinds))
    joined = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": sample}
                for true, negatives in samples.values()
                for sample in true + negatives
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        guard.scan_all(joined)
        best = min(best, time.thread_time() - start)
    return Measure(out, int(clock[1]), clock[0], len(joined), best)


def mapping_differences(rules: dict[str, RuleResult]) -> tuple[list[str], list[str]]:
    """(rules `gitleaks_rules.COVERS` names as covered whose samples are found under half,
    rules whose samples are found at half or more that it does not name)."""
    named = {rule for rules_ in gitleaks_rules.COVERS.values() for rule in rules_}
    half = {rule for rule, r in rules.items() if r.true and r.found * 2 >= r.true}
    measured = {rule for rule, r in rules.items() if r.true}
    return sorted((named & measured) - half), sorted(half - named)


def _shape(kinds: Counter[str]) -> str:
    return ", ".join(f"{k.removeprefix(SECRET)} {n}" for k, n in kinds.most_common()) or "-"


def report(m: Measure, markdown: bool, missed: int = 0) -> None:
    rules = m.rules
    with_samples = {r: x for r, x in rules.items() if x.true}
    true = sum(x.true for x in rules.values())
    found = sum(x.found for x in rules.values())
    half = sum(1 for x in with_samples.values() if x.found * 2 >= x.true)
    negatives = sum(x.negatives for x in rules.values())
    flagged = [(r, s, k) for r, x in rules.items() for s, k in x.flagged]
    if markdown:
        print("| gitleaks rule | samples found | our kinds that found them |\n|---|---|---|")
        for rule, x in rules.items():
            print(f"| `{rule}` | {x.found} / {x.true} | {_shape(x.kinds)} |")
        print()
    else:
        for rule, x in rules.items():
            print(f"{rule:48s} {x.found:4d} / {x.true:4d}  {_shape(x.kinds)}")
    print(f"rules: {len(rules)} ({len(rules) - len(with_samples)} with no true sample)")
    print(f"true samples: {true}; some secret kind found on {found} ({found / true:.1%}; issue 80's target: 80 %)")
    print(f"rules with at least half their samples found: {half} of {len(with_samples)}")
    print(f"hard negatives: {negatives}; flagged: {len(flagged)} (issue 80's target: at most 30)")
    for rule, sample, kinds in flagged:
        text = sample if len(sample) <= 100 else sample[:97] + "..."
        print(f"  {rule}: {', '.join(kinds)}: {json.dumps(text, ensure_ascii=False)}")
    print(
        f"scan, a request a sample: {m.scanned_bytes / 1e6:.2f} MB in {m.cpu_seconds:.2f} CPU-s,"
        f" {m.scanned_bytes / 1e6 / m.cpu_seconds:.0f} MB per CPU-second"
    )
    print(
        f"scan, every sample in one request: {m.joined_bytes / 1e6:.2f} MB in {m.joined_seconds:.3f} CPU-s,"
        f" {m.joined_bytes / 1e6 / m.joined_seconds:.0f} MB per CPU-second (best of 3)"
    )
    if missed:
        print(f"the {missed} rules with the most true samples not found:")
        for rule, x in sorted(rules.items(), key=lambda item: (item[1].found - item[1].true, item[0]))[:missed]:
            print(f"  {rule:48s} {x.true - x.found:4d} not found of {x.true}")
    claimed, unnamed = mapping_differences(rules)
    print(f"bench/gitleaks_rules.py names as covered, found on under half: {', '.join(claimed) or 'none'}")
    print(f"found on half or more, not named there: {', '.join(unnamed) or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gitleaks", type=Path, required=True, help="a checkout of gitleaks (docs/performance.md)")
    parser.add_argument("--markdown", action="store_true", help="the per-rule table in Markdown")
    parser.add_argument("--missed", type=int, default=30, metavar="N", help="list the N rules most missed")
    parser.add_argument(
        "--cache", type=Path, default=gitleaks_samples.CACHE, help="where the samples made from gitleaks are kept"
    )
    args = parser.parse_args()
    report(measure(gitleaks_samples.samples(args.gitleaks, args.cache)), args.markdown, args.missed)
    unread = {r: s.unread for r, s in gitleaks_samples.load(args.gitleaks, args.cache, quiet=True).items() if s.unread}
    print(f"parts of gitleaks' rules the Go reader left out: {sum(map(len, unread.values()))}")
    for rule, whys in sorted(unread.items()):
        print(f"  {rule}: {'; '.join(whys)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
