"""How the default detectors (`secrets` and `pii`) do on labelled cases others wrote: presidio's
recognizer tests (cards, US SSNs, IBANs, phones, e-mail addresses) and detect-secrets' plugin
tests (lines a plugin should flag or not). Nothing of theirs is kept here: the benchmark reads
their test files, with Python's `ast`, from a copy the user fetched (a checkout, or a bare git
directory read at its HEAD), and checks that copy's commit against the one these figures are for.

    git clone https://github.com/microsoft/presidio /tmp/presidio
    git -C /tmp/presidio checkout 0aa9f8e44275cb52c00fbbebe19168e934e1f076
    git clone https://github.com/Yelp/detect-secrets /tmp/detect-secrets
    git -C /tmp/detect-secrets checkout 5e141933554a0b74e7341841f318be21e895339c
    .venv/bin/python bench/public_tests.py --presidio /tmp/presidio --detect-secrets /tmp/detect-secrets
    .venv/bin/python bench/public_tests.py ... --markdown     # the tables for docs/guardrails.md
    .venv/bin/python bench/public_tests.py ... --misses       # each case missed or wrongly flagged

Each text is a user message of an OpenAI chat request, JSON-encoded as a client sends it, scanned
as the request guardrails read a body (`detect: [secrets, pii]`, as `detection.py` builds them).

Presidio's cases are the rows of its tests' `parametrize` tables: a text, how many entities its
recognizer finds there, and where. An expected entity counts as found when a finding of our kind
overlaps its span; a text that expects none counts against precision when our kind flags it.
Some rows test what our kinds do not claim, and are counted apart, each with its reason:
a country's national form without its `+` code (an Israeli `09-…`, a Japanese `090-…`, a Chinese
mobile's bare 11 digits: presidio reads them with a region set), an SSN or phone as bare digits
or with its separators misplaced (presidio's "weak" matches, which its context words lift), the
rows of a recognizer configured for one region (Turkey's, the Philippines': their negatives are
numbers another region writes so), and the North American numbers 555-0100 to 555-0199, kept for
fiction, which `pii.phone` leaves on purpose. The phone tests' rows of a leniency other than the
recognizer's default (1) are left out: the same text, judged otherwise.

Detect-secrets' cases are its plugins' `(line, should_flag)` tables: the share of lines that
should be flagged that some kind of ours flags, and of those that should not."""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(BENCH))

from detection import RULES  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402

PRESIDIO_COMMIT = "0aa9f8e44275cb52c00fbbebe19168e934e1f076"
DETECT_SECRETS_COMMIT = "5e141933554a0b74e7341841f318be21e895339c"
TESTS = "presidio-analyzer/tests/"
# Each test file read, and the kind of ours its entity is.
PRESIDIO_FILES = {
    "test_credit_card_recognizer.py": "pii.payment_card",
    "test_us_ssn_recognizer.py": "pii.us_ssn",
    "test_iban_recognizer.py": "pii.iban",
    "test_phone_recognizer.py": "pii.phone",
    "test_tr_phone_number_recognizer.py": "pii.phone",
    "test_ph_mobile_number_recognizer.py": "pii.phone",
    "test_email_recognizer.py": "pii.email",
}
# Recognizers configured for one region: their rows are that region's reading of a number.
ONE_REGION = {
    "test_tr_phone_number_recognizer.py": "Turkey's",
    "test_ph_mobile_number_recognizer.py": "the Philippines'",
}
DEFAULT_LENIENCY = 1


class Source:
    """A project's files as the user fetched them: a checkout, or a git directory (its HEAD)."""

    def __init__(self, path: Path, pinned: str, name: str) -> None:
        self.path = path
        self.bare = not (path / ".git").exists() and (path / "HEAD").is_file()
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        self.commit = commit or "unknown"
        if commit != pinned:
            print(f"warning: {name} at {self.commit}, not {pinned}: figures may differ", file=sys.stderr)

    def read(self, name: str) -> str:
        if not self.bare and (self.path / name).is_file():
            return (self.path / name).read_text(encoding="utf-8")
        return subprocess.run(
            ["git", "-C", str(self.path), "show", f"HEAD:{name}"], capture_output=True, text=True, check=True
        ).stdout

    def names(self, folder: str) -> list[str]:
        if not self.bare and (self.path / folder).is_dir():
            return sorted(str(p.relative_to(self.path)) for p in (self.path / folder).glob("*.py"))
        out = subprocess.run(
            ["git", "-C", str(self.path), "ls-tree", "--name-only", "HEAD", folder.rstrip("/") + "/"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return sorted(n for n in out.split() if n.endswith(".py"))


class _Unknown(Exception):
    pass


class _Values:
    """The values a test module's tables are written with: literals, module and class constants,
    `str.format`, `+`, `*`, slices, `textwrap.dedent`. Anything else makes its row unread."""

    def __init__(self, tree: ast.Module) -> None:
        self.names: dict[str, object] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    self.names.setdefault(node.targets[0].id, self.eval(node.value))
                except _Unknown:
                    pass

    def eval(self, node: ast.expr) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple | ast.List):
            return tuple(self.eval(e) for e in node.elts)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise _Unknown(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.eval(node.operand)  # type: ignore[operator]
        if isinstance(node, ast.BinOp):
            a, b = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Add):
                return a + b  # type: ignore[operator]
            if isinstance(node.op, ast.Mult):
                return a * b  # type: ignore[operator]
            raise _Unknown("operator")
        if isinstance(node, ast.Subscript):
            value = self.eval(node.value)
            if isinstance(node.slice, ast.Slice):
                lo = self.eval(node.slice.lower) if node.slice.lower else None
                hi = self.eval(node.slice.upper) if node.slice.upper else None
                return value[lo:hi]  # type: ignore[index]
            return value[self.eval(node.slice)]  # type: ignore[index]
        if isinstance(node, ast.JoinedStr):
            return "".join(
                str(self.eval(v.value)) if isinstance(v, ast.FormattedValue) else str(self.eval(v)) for v in node.values
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format":
                base = self.eval(node.func.value)
                args = [self.eval(a) for a in node.args]
                kwargs = {k.arg: self.eval(k.value) for k in node.keywords if k.arg}
                return base.format(*args, **kwargs)  # type: ignore[attr-defined]
            if node.func.attr == "dedent" and node.args:
                return textwrap.dedent(self.eval(node.args[0]))  # type: ignore[arg-type]
        raise _Unknown(ast.dump(node)[:40])


def tables(source: str) -> Iterator[tuple[str, list[str], list[tuple[object, ...]], int]]:
    """Each `parametrize` table of a test module: (test, argument names, rows read, rows unread)."""
    tree = ast.parse(source)
    values = _Values(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                continue
            if len(deco.args) < 2 or not isinstance(deco.args[0], ast.Constant):
                continue
            names = [n.strip() for n in str(deco.args[0].value).split(",") if n.strip()]
            if not isinstance(deco.args[1], ast.List | ast.Tuple):
                continue
            rows, unread = [], 0
            for element in deco.args[1].elts:
                try:
                    row = values.eval(element)
                except (_Unknown, TypeError, ValueError, IndexError, KeyError):
                    unread += 1
                    continue
                rows.append(row if isinstance(row, tuple) and len(names) > 1 else (row,))
            yield node.name, names, rows, unread


def body_of(text: str) -> tuple[bytes, Callable[[int], int]]:
    """An OpenAI chat request whose user message is `text`, and where its i-th character begins."""
    head = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ""}]})
    cut = head.index('"content": "') + len('"content": "')
    offsets, at = [], cut
    for c in text:
        offsets.append(at)
        at += len(json.dumps(c)[1:-1].encode())
    offsets.append(at)
    encoded = json.dumps(text)[1:-1]
    body = (head[:cut] + encoded + head[cut:]).encode()
    return body, lambda i: offsets[i]


@dataclass
class Case:
    """One row of a presidio table."""

    file: str
    kind: str
    text: str
    spans: list[tuple[int, int]]  # expected entities (their span, or (-1, -1) where none is given)
    row: int


@dataclass
class Tally:
    expected: int = 0
    found: int = 0
    negatives: int = 0
    flagged: int = 0
    apart: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[str] = field(default_factory=list)


def presidio_cases(src: Source) -> tuple[list[Case], int]:
    cases: list[Case] = []
    unread = 0
    for name, kind in PRESIDIO_FILES.items():
        for _test, names, rows, skipped in tables(src.read(TESTS + name)):
            unread += skipped
            text_at = next((i for i, n in enumerate(names) if n in ("text", "iban")), None)
            count_at = next((i for i, n in enumerate(names) if n == "expected_len"), None)
            if text_at is None or count_at is None:
                continue
            spans_at = next((i for i, n in enumerate(names) if n in ("expected_res", "expected_positions")), None)
            leniency_at = names.index("leniency") if "leniency" in names else None
            for i, row in enumerate(rows):
                if leniency_at is not None and row[leniency_at] != DEFAULT_LENIENCY:
                    continue
                count = int(row[count_at])  # type: ignore[call-overload]
                given = list(row[spans_at]) if spans_at is not None else []  # type: ignore[call-overload]
                spans = [tuple(s) for s in given[:count]] + [(-1, -1)] * max(0, count - len(given))
                cases.append(Case(name, kind, str(row[text_at]), spans, i))  # type: ignore[misc]
    return cases, unread


_SEP = r"[-. ]"


def apart(case: Case, value: str) -> str | None:
    """Why our kind does not claim this expected entity (None: it claims it)."""
    if case.file in ONE_REGION:
        if value.startswith("+"):
            return None
        return f"a national form as {ONE_REGION[case.file]} recognizer reads it"
    if case.kind == "pii.phone":
        digits = re.sub(r"\D", "", value)
        if not value.startswith("+") and re.fullmatch(r"\(?[2-9]\d\d\)?[-. ]?\d{3}[-. ]\d{4}", value) is None:
            if value.startswith("0") or len(digits) == 11:
                return "a national form without its + code (a region's reading)"
            return "digits without + or separators in place"
        if not value.startswith("+") and digits[3:8].startswith("55501"):
            return "555-0100 to 555-0199, kept for fiction"
        if value.startswith("+1") and digits[4:9].startswith("55501"):
            return "555-0100 to 555-0199, kept for fiction"
    if case.kind == "pii.us_ssn" and re.fullmatch(r"\d{3}([-. ])\d{2}\1\d{4}", value) is None:
        return "bare digits or separators misplaced (a weak match, lifted by context words)"
    return None


def negatives_apart(case: Case) -> str | None:
    if case.file in ONE_REGION:
        return f"a negative of {ONE_REGION[case.file]} recognizer"
    return None


def run_presidio(guard: Guardrails, cases: list[Case]) -> dict[str, Tally]:
    out: dict[str, Tally] = defaultdict(Tally)
    for case in cases:
        tally = out[case.kind]
        body, at = body_of(case.text)
        found = [(f.start, f.end) for f in guard.scan_all(body).findings if f.kind == case.kind]
        where = f"{case.file}#{case.row}"
        if not case.spans:
            reason = negatives_apart(case)
            if reason is not None:
                tally.apart[f"negatives: {reason}"][0] += bool(found)
                tally.apart[f"negatives: {reason}"][1] += 1
                continue
            tally.negatives += 1
            if found:
                tally.flagged += 1
                tally.misses.append(f"flagged {where}: {case.text!r}")
            continue
        for s, e in case.spans:
            if s < 0:
                hit, value = bool(found), case.text
            else:
                lo, hi = at(s), at(e)
                hit, value = any(fs < hi and lo < fe for fs, fe in found), case.text[s:e]
            reason = apart(case, value)
            if reason is not None:
                tally.apart[reason][0] += hit
                tally.apart[reason][1] += 1
                continue
            tally.expected += 1
            tally.found += hit
            if not hit:
                tally.misses.append(f"missed {where}: {value!r} in {case.text!r}")
    return out


def detect_secrets_cases(src: Source) -> tuple[dict[str, list[tuple[str, bool]]], int]:
    """Each plugin test's `(line, should_flag)` rows, by file."""
    out: dict[str, list[tuple[str, bool]]] = {}
    unread = 0
    for name in src.names("tests/plugins"):
        for _test, names, rows, skipped in tables(src.read(name)):
            if "should_flag" not in names:
                continue
            unread += skipped
            line_at = next(i for i, n in enumerate(names) if n in ("payload", "line"))
            flag_at = names.index("should_flag")
            rows_read = [(str(r[line_at]), bool(r[flag_at])) for r in rows if isinstance(r[line_at], str)]
            out.setdefault(Path(name).name, []).extend(rows_read)
    return out, unread


def run_detect_secrets(guard: Guardrails, cases: dict[str, list[tuple[str, bool]]]) -> dict[str, list[int]]:
    """Per file: [should-flag lines flagged, should-flag lines, should-not flagged, should-not]."""
    out: dict[str, list[int]] = {}
    for name, rows in sorted(cases.items()):
        tally = [0, 0, 0, 0]
        for line, should in rows:
            flagged = bool(guard.scan_all(body_of(line)[0]).findings)
            tally[0 if should else 2] += flagged
            tally[1 if should else 3] += 1
        out[name] = tally
    return out


def _share(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presidio", type=Path, help="presidio's checkout or git directory")
    parser.add_argument("--detect-secrets", type=Path, help="detect-secrets' checkout or git directory")
    parser.add_argument("--markdown", action="store_true", help="tables for docs/guardrails.md")
    parser.add_argument("--misses", action="store_true", help="each case missed or wrongly flagged")
    args = parser.parse_args()
    if not args.presidio and not args.detect_secrets:
        parser.error("give --presidio DIR, --detect-secrets DIR or both")
    guard = Guardrails(RULES)
    if args.presidio:
        src = Source(args.presidio, PRESIDIO_COMMIT, "presidio")
        cases, unread = presidio_cases(src)
        result = run_presidio(guard, cases)
        print(f"presidio {src.commit[:12]}: {len(cases)} rows of {len(PRESIDIO_FILES)} test files ({unread} unread)")
        if args.markdown:
            print(
                "\n| kind | recall | entities found | negatives flagged | with the rows apart |\n|---|---|---|---|---|"
            )
        for kind, t in sorted(result.items()):
            hit = t.found + sum(h for r, (h, _) in t.apart.items() if not r.startswith("negatives"))
            n = t.expected + sum(m for r, (_, m) in t.apart.items() if not r.startswith("negatives"))
            if args.markdown:
                print(
                    f"| `{kind}` | {_share(t.found, t.expected)} | {t.found} of {t.expected}"
                    f" | {t.flagged} of {t.negatives} | {_share(hit, n)} ({hit} of {n}) |"
                )
            else:
                print(
                    f"  {kind:18s} recall {_share(t.found, t.expected)} ({t.found} of {t.expected})"
                    f"  negatives flagged {t.flagged} of {t.negatives}"
                    f"  (with the rows apart: {_share(hit, n)}, {hit} of {n})"
                )
        print("\nrows counted apart, not claimed by our kind (found or flagged, of rows):")
        if args.markdown:
            print("\n| kind | why apart | found |\n|---|---|---|")
        for kind, t in sorted(result.items()):
            for reason, (hit, n) in sorted(t.apart.items()):
                print(
                    f"| `{kind}` | {reason} | {hit} of {n} |"
                    if args.markdown
                    else f"  {kind:18s} {reason}: {hit} of {n}"
                )
        if args.misses:
            for kind, t in sorted(result.items()):
                for miss in t.misses:
                    print(f"  {kind}: {miss}")
    if args.detect_secrets:
        src = Source(args.detect_secrets, DETECT_SECRETS_COMMIT, "detect-secrets")
        ds, unread = detect_secrets_cases(src)
        result_ds = run_detect_secrets(guard, ds)
        total = [sum(t[i] for t in result_ds.values()) for i in range(4)]
        print(
            f"\ndetect-secrets {src.commit[:12]}: {sum(len(r) for r in ds.values())} lines of {len(ds)} plugin tests"
            f" ({unread} unread)"
        )
        print(
            f"  should flag: {total[0]} of {total[1]} flagged ({_share(total[0], total[1])});"
            f" should not: {total[2]} of {total[3]} flagged ({_share(total[2], total[3])})"
        )
        if args.markdown:
            print("\n| plugin test | should flag: flagged | should not: flagged |\n|---|---|---|")
        for name, (a, b, c, d) in result_ds.items():
            if args.markdown:
                print(f"| `{name}` | {a} of {b} | {c} of {d} |")
            else:
                print(f"  {name:32s} should flag {a} of {b}  should not {c} of {d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
