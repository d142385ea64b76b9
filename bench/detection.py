"""How well the default detectors (`secrets` and `pii`) find what they claim, per kind: recall over
labelled samples made at bench time from each format as its issuer documents it, written in the
ways an agent's turn carries them (a `.env` line, a JSON value, a CSV field, a sentence, after an
escaped line end), and precision against a clean corpus: the project's docs and source and the
installed packages' source (site-packages), read as text, where every finding counts as false.

    .venv/bin/python bench/detection.py                 # 40 samples a kind, ~30 MB of clean text
    .venv/bin/python bench/detection.py --samples 100 --corpus-mb 60 --markdown

And recall over samples others published, labelled: python-stdnum's IBAN and SSN test samples and
libphonenumber's example numbers, fetched from PyPI at bench time (`pypi_samples.py`; `--no-pypi`
to leave them out). Nothing here is a copy of another project's test data: the samples are made
from the formats, or fetched when the benchmark runs."""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT / "tests"))

import gitleaks_rules  # noqa: E402
import handwritten  # noqa: E402
import pypi_samples  # noqa: E402
from support import guardrail_samples as samples  # noqa: E402
from tollgate.governance.guardrails import credential_kinds, detectors  # noqa: E402
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402

RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})]
# How a value is written in a turn: `{}` is the value (after its name, for a kind known by one).
WRITTEN = [
    "{}\n",
    '{{"key": "{}"}}',
    "alice,{},12/29\n",
    "here it is: {}, thanks.",
    "\\n{}\\n",
    "[{}]",
]


def _rng_value(rng: random.Random, kind: str) -> Callable[[], str]:
    """A maker of true samples of `kind`."""
    if kind == "pii.payment_card":
        brands = ["4", "51", "55", "2221", "34", "37", "6011", "65", "3530", "36"]

        def card() -> str:
            prefix = rng.choice(brands)
            length = 15 if prefix in ("34", "37") else 14 if prefix == "36" else 16
            digits = samples.luhn_complete(prefix + "".join(rng.choices(string.digits, k=length - len(prefix) - 1)))
            return rng.choice([digits, " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))])

        return card
    if kind == "pii.iban":
        countries = {"DE": 18, "GB": 18, "FR": 23, "NL": 14, "ES": 20, "IT": 23, "BE": 12, "CH": 17}

        def iban() -> str:
            country = rng.choice(list(countries))
            bban = "".join(rng.choices(string.digits, k=countries[country]))
            value = samples.iban(country, bban)
            return rng.choice([value, " ".join(value[i : i + 4] for i in range(0, len(value), 4))])

        return iban
    if kind == "pii.email":
        return lambda: (
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
            + rng.choice(["", ".", "+", "_"])
            + "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 6)))
            + "@"
            + rng.choice(["acme-corp", "mail", "xn--bcher-kva", "corp-mail"])
            + rng.choice([".com", ".io", ".de", ".co.uk", ".xn--p1ai"])
        )
    if kind == "pii.phone":
        return lambda: rng.choice(
            [
                f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                f"+1 {rng.randint(201, 989)} {rng.randint(201, 989)} {rng.randint(1000, 9999)}",
                f"({rng.randint(201, 989)}) {rng.randint(201, 989)}-{rng.randint(1000, 9999)}",
                f"+49 30 {rng.randint(10000000, 99999999)}",
            ]
        )
    if kind == "pii.us_ssn":
        return lambda: f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == "secrets.github_token":
        return lambda: samples.crc_token(rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]))
    if kind == "secrets.npm_token":
        return lambda: samples.crc_token("npm_")
    table = [(p, r) for k, p, r in credential_kinds.PREFIXED if k == kind]
    if table:
        return lambda: samples.from_pattern(b"".join(rng.choice(table)), rng)
    named = [v for k, _, v in credential_kinds.NAMED if k == kind]
    if named:
        return lambda: samples.from_pattern(rng.choice(named), rng)
    value = samples.SAMPLES[kind][0]
    return lambda: value


def recall(guard: Guardrails, n: int, rng: random.Random) -> dict[str, tuple[int, int]]:
    """Per kind: (found, written) over `n` samples, each in one of the ways it is written."""
    out: dict[str, tuple[int, int]] = {}
    for kind in sorted(samples.SAMPLES):
        make, context = _rng_value(rng, kind), samples.SAMPLES[kind][1]
        found = 0
        for i in range(n):
            value = make()
            name = context.split("{}")[0] if kind in samples.NAMED_KINDS or "AccountKey=" in context else ""
            if kind in {"secrets.url_password", "secrets.aws_secret_access_key"}:
                text = context.format(value)
            else:
                text = name + WRITTEN[i % len(WRITTEN)].format(value) if not name else name + value + "\n"
            if kind == "secrets.aws_secret_access_key":
                text = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\n" + text
            body = json.dumps({"messages": [{"role": "user", "content": f"Look at this.\n{text} Done."}]}).encode()
            if any(f.kind == kind for f in guard.scan_all(body).findings):
                found += 1
        out[kind] = (found, n)
    return out


def handwritten_recall(guard: Guardrails, n: int, rng: random.Random) -> dict[str, tuple[int, int]]:
    """Per kind of `handwritten.TEMPLATES`: (found, written) over `n` fills of each of its
    templates, written as `recall` writes them (a kind known by its name, on a line of its own)."""
    out: dict[str, tuple[int, int]] = {}
    for kind, templates in sorted(handwritten.TEMPLATES.items()):
        found = total = 0
        for template in templates:
            for i in range(n):
                value = handwritten.fill(template, rng)
                text = value + "\n" if "=" in template.split("{")[0] else WRITTEN[i % len(WRITTEN)].format(value)
                body = json.dumps({"messages": [{"role": "user", "content": f"Look at this.\n{text} Done."}]}).encode()
                found += any(f.kind == kind for f in guard.scan_all(body).findings)
                total += 1
        out[kind] = (found, total)
    # Formats with a checksum: made by the makers of that checksum.
    for kind, prefixes in (("secrets.github_token", ["ghp_", "gho_", "ghs_"]), ("secrets.npm_token", ["npm_"])):
        found = sum(
            any(
                f.kind == kind
                for f in guard.scan_all(
                    f"key: {samples.crc_token(rng.choice(prefixes))}\n".encode(), is_json=False
                ).findings
            )
            for _ in range(n)
        )
        hit, total = out.get(kind, (0, 0))
        out[kind] = (hit + found, total + n)
    return out


def published_recall(guard: Guardrails, cache: Path) -> dict[str, tuple[int, ...]]:
    """Per kind of `pypi_samples`: (true samples found, true samples, false samples found, false
    samples, loosely written true samples found, loose samples), each written in one of the ways
    `recall` writes a value."""
    out: dict[str, tuple[int, ...]] = {}

    def found(kind: str, values: list[str]) -> int:
        hits = 0
        for i, value in enumerate(values):
            text = WRITTEN[i % len(WRITTEN)].format(value)
            body = json.dumps({"messages": [{"role": "user", "content": f"Look at this.\n{text} Done."}]}).encode()
            hits += any(f.kind == kind for f in guard.scan_all(body).findings)
        return hits

    for kind, published in pypi_samples.labelled(cache).items():
        out[kind] = (
            found(kind, published.true),
            len(published.true),
            found(kind, published.false),
            len(published.false),
            found(kind, published.loose),
            len(published.loose),
        )
    return out


def gitleaks_coverage() -> tuple[int, int]:
    """(gitleaks' rules whose credentials one of our kinds finds, gitleaks' rules)."""
    covered = {rule for rules in gitleaks_rules.COVERS.values() for rule in rules}
    unknown = covered - set(gitleaks_rules.GITLEAKS_RULE_IDS)
    missing = set(gitleaks_rules.COVERS) - set(detectors.KINDS)
    if unknown or missing:
        raise SystemExit(f"bench/gitleaks_rules.py names unknown rules {unknown} or kinds {missing}")
    return len(covered), len(gitleaks_rules.GITLEAKS_RULE_IDS)


def corpus(megabytes: float) -> list[Path]:
    """Clean text: the project's docs and source, then site-packages' source, up to `megabytes`."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    ours = [p for d in ("docs", "addons", "bench") for p in sorted((ROOT / d).rglob("*")) if p.suffix in (".md", ".py")]
    out, total = [], 0
    for path in ours + sorted(site.rglob("*.py")):
        if "test" in path.parts or total > megabytes * 1e6:
            continue  # packages' tests hold fixtures of keys on purpose
        out.append(path)
        total += path.stat().st_size
    return out


def clean_findings(guard: Guardrails, files: list[Path]) -> tuple[Counter[str], int]:
    found: Counter[str] = Counter()
    size = 0
    for path in files:
        data = path.read_bytes()
        size += len(data)
        found.update(f.kind for f in guard.scan_all(data, is_json=False).findings)
    return found, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="true samples a kind")
    parser.add_argument("--corpus-mb", type=float, default=30, help="MB of clean text")
    parser.add_argument("--markdown", action="store_true", help="a table for docs/performance.md")
    parser.add_argument("--no-pypi", action="store_true", help="leave out the samples fetched from PyPI")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "tollgate-bench", help="where PyPI's are kept"
    )
    args = parser.parse_args()
    guard = Guardrails(RULES)
    found = recall(guard, args.samples, random.Random(59))
    by_hand = handwritten_recall(guard, max(1, args.samples // 4), random.Random(61))
    false, size = clean_findings(guard, corpus(args.corpus_mb))
    rows = []
    for kind, (hit, n) in sorted(found.items()):
        wrong = false.get(kind, 0)
        hand = by_hand.get(kind)
        hand_recall = f"{hand[0] / hand[1]:.2f}" if hand else "-"
        rows.append((kind, hit / n, hand_recall, hit / (hit + wrong) if hit + wrong else 1.0, wrong))
    hits = sum(h for h, _ in found.values())
    wrong_all = sum(false.values())
    print(f"{len(rows)} kinds, {args.samples} samples each; clean corpus {size / 1e6:.1f} MB")
    print(
        f"all kinds: recall {hits / sum(n for _, n in found.values()):.3f}, precision {hits / (hits + wrong_all):.3f}"
    )
    hand_hits, hand_n = sum(h for h, _ in by_hand.values()), sum(n for _, n in by_hand.values())
    print(f"hand-written samples: {len(by_hand)} kinds, {hand_n} samples, recall {hand_hits / hand_n:.3f}")
    covered, rules = gitleaks_coverage()
    print(f"gitleaks' rules covered: {covered} of {rules}")
    if not args.no_pypi:
        print("published samples (PyPI: python-stdnum's tests, libphonenumber's examples):")
        for kind, (hit, n, wrong, m, loose, k) in sorted(published_recall(guard, args.cache).items()):
            written = f"; written loosely, {loose} of {k}" if k else ""
            print(f"  {kind:12s} recall {hit / n:.2f} ({hit} of {n}{written}); invalid samples found {wrong} of {m}")
    if args.markdown:
        print("\n| kind | recall | hand-written | precision | clean-corpus findings |\n|---|---|---|---|---|")
        for kind, r, h, p, w in rows:
            print(f"| `{kind}` | {r:.2f} | {h} | {p:.2f} | {w} |")
    else:
        for kind, r, h, p, w in rows:
            print(f"{kind:45s} recall {r:.2f}  hand-written {h:4s}  precision {p:.2f}  clean findings {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
