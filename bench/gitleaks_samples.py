"""gitleaks' own labelled samples, per rule: the true samples each rule of its generator checks it
finds, and the hard negatives it checks it does not, as its Go source builds them
(`cmd/generate/config/rules/*.go`, the rules listed in `cmd/generate/config/main.go`).

Go is not needed: the rule functions are run by `gosubset.py`, a reader of the small part of Go
they use, with gitleaks' own helpers (`cmd/generate/config/utils/generate.go`, `patterns.go`) read
from the same checkout, and a random string for a regular expression made by `regex_sample.py`
from one seed per rule, so every run makes the same samples. What cannot be read (a statement,
or an element of a list of samples) is left out and counted per rule, never guessed.

Nothing of gitleaks is in this repository: the user fetches it (docs/performance.md says how);
the samples made from it are kept outside the checkout, in `~/.cache/tollgate-bench/`.

    .venv/bin/python bench/gitleaks_samples.py --gitleaks ../gitleaks     # counts per rule
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import regex_sample  # noqa: E402
from gosubset import GoFile, Interpreter, Package, Struct, Unreadable, parse  # noqa: E402

# gitleaks v8.30.0-27: the commit these figures are measured at.
PINNED = "b58d3f102cf3a2c84cb7f923d05c25c9b1aed84b"
# Bumped when what this module makes from the same commit changes, so the cache is made anew.
VERSION = 1
# Where the samples made are kept: beside what detection.py fetches from PyPI, outside the
# checkout (a copy under bench/ would be read as clean text by the clean-corpus test and benches).
CACHE = Path.home() / ".cache" / "tollgate-bench"
_MODULE = "github.com/zricethezav/gitleaks/v8"


@dataclass
class RuleSamples:
    function: str
    true: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # "line N: why", one per part left out


def commit_of(checkout: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# -- Go's library, as far as the rules use it -------------------------------------------------------------------


@dataclass(frozen=True)
class GoRegexp:
    pattern: str


class Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []


class Replacer:
    def __init__(self, *pairs: str) -> None:
        self.pairs = list(zip(pairs[::2], pairs[1::2], strict=True))

    def replace(self, text: str) -> str:
        # Go's Replacer tries the pairs at each position in order, left to right, without rescanning.
        out, i = [], 0
        while i < len(text):
            for old, new in self.pairs:
                if old and text.startswith(old, i):
                    out.append(new)
                    i += len(old)
                    break
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


class Encoding:
    def __init__(self, urlsafe: bool, padded: bool) -> None:
        self.urlsafe, self.padded = urlsafe, padded

    def encode(self, data: Any) -> str:
        raw = data if isinstance(data, bytes) else str(data).encode()
        out = (base64.urlsafe_b64encode if self.urlsafe else base64.b64encode)(raw).decode()
        return out if self.padded else out.rstrip("=")


def sprintf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        verb = m.group(2)
        if verb == "%":
            return "%"
        value = next(values)
        if verb == "q":
            return json.dumps(value, ensure_ascii=False)
        if verb == "x":
            return value.hex() if isinstance(value, bytes) else format(value, "x")
        if verb == "d":
            return str(int(value))
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return re.sub(r"%([-+# 0-9.]*)([sdvqx%])", one, fmt)


def _go_regex_search(pattern: str, text: str) -> bool:
    return re.search(regex_sample.python_pattern(pattern), text) is not None


def _contains_stop_word(allowlist: Struct, text: str) -> tuple[bool, str]:
    lowered = text.lower()
    for word in allowlist.get("StopWords") or []:
        if word in lowered:
            return True, word
    return False, ""


METHODS: dict[tuple[Any, str], Callable[..., Any]] = {
    (GoRegexp, "String"): lambda r: r.pattern,
    (GoRegexp, "MatchString"): lambda r, s: _go_regex_search(r.pattern, s),
    (Builder, "WriteString"): lambda b, s: b.parts.append(s),
    (Builder, "String"): lambda b: "".join(b.parts),
    (Replacer, "Replace"): lambda r, s: r.replace(s),
    (Encoding, "EncodeToString"): lambda e, data: e.encode(data),
    ("Allowlist", "ContainsStopWord"): _contains_stop_word,
}


def _library() -> dict[str, Package]:
    regexp = Package("regexp", {"MustCompile": GoRegexp, "QuoteMeta": re.escape})
    return {
        "fmt": Package("fmt", {"Sprintf": sprintf, "Sprint": lambda *a: "".join(map(str, a))}),
        "strings": Package(
            "strings",
            {
                "ToUpper": str.upper,
                "ToLower": str.lower,
                "Join": lambda items, sep: sep.join(items or []),
                "Repeat": lambda s, n: s * n,
                "ReplaceAll": lambda s, old, new: s.replace(old, new),
                "Contains": lambda s, sub: sub in s,
                "TrimSpace": str.strip,
                "NewReplacer": Replacer,
            },
        ),
        "encoding/base64": Package(
            "base64",
            {
                "StdEncoding": Encoding(False, True),
                "RawStdEncoding": Encoding(False, False),
                "URLEncoding": Encoding(True, True),
                "RawURLEncoding": Encoding(True, False),
            },
        ),
        "regexp": regexp,
        f"{_MODULE}/regexp": regexp,
        f"{_MODULE}/config": Package("config"),
    }


# -- running the rules ---------------------------------------------------------------------------------------------


def rule_functions(checkout: Path) -> list[str]:
    """The rule functions gitleaks' generator calls, in its order."""
    main = (checkout / "cmd/generate/config/main.go").read_text(encoding="utf-8")
    listed = main.split("configRules := []*config.Rule{", 1)[1].split("\n\t}", 1)[0]
    return re.findall(r"\brules\.(\w+)\(\)", listed)


def _go_files(folder: Path, names: list[str] | None = None) -> list[GoFile]:
    """The files parsed; one this reader cannot parse is left out, said so (its rules, unknown
    names, are then counted as left out)."""
    paths = [folder / n for n in names] if names else sorted(folder.glob("*.go"))
    out = []
    for path in paths:
        if path.name.endswith("_test.go"):
            continue
        try:
            out.append(parse(path.read_text(encoding="utf-8")))
        except Unreadable as e:
            print(f"warning: {path.name} left out: {e}", file=sys.stderr)
    return out


def generate(checkout: Path) -> dict[str, RuleSamples]:
    """Every listed rule's samples, as its function builds them; rule id: samples."""
    config = checkout / "cmd/generate/config"
    current: dict[str, Any] = {}

    def validate(rule: Any, true: Any, negatives: Any) -> Any:
        current["rule"], current["true"], current["negatives"] = rule, true, negatives
        return rule

    def new_secret(pattern: str) -> str:
        try:
            return regex_sample.make(pattern, current["rng"])
        except (ValueError, re.error, RecursionError) as e:
            raise Unreadable(f"sample of /{pattern}/: {e}") from e

    packages = _library()
    packages[f"{_MODULE}/cmd/generate/secrets"] = Package("secrets", {"NewSecret": new_secret})
    packages[f"{_MODULE}/cmd/generate/config/utils"] = Package(
        "utils",
        {"Validate": validate, "ValidateWithPaths": validate},
        _go_files(config / "utils", ["generate.go", "patterns.go"]),
    )
    packages["rules"] = Package("rules", {}, _go_files(config / "rules"))
    interpreter = Interpreter(packages, METHODS, {"strings.Builder": Builder})

    out: dict[str, RuleSamples] = {}
    for name in rule_functions(checkout):
        current.clear()
        current["rng"] = random.Random(f"gitleaks:{name}")
        samples = RuleSamples(name)
        interpreter.on_skip = lambda line, why, s=samples: s.unread.append(f"line {line}: {why}")
        interpreter.steps = 0
        returned = None
        try:
            returned = interpreter.call_function("rules", name, tolerant=True)
        except Unreadable as e:
            samples.unread.append(f"the function: {e}")
        rule = current.get("rule", returned)  # a rule with no samples is returned unchecked
        rule_id = rule.fields.get("RuleID") if isinstance(rule, Struct) else None
        if not isinstance(rule_id, str):
            samples.unread.append("no rule checked")
            out[f"?{name}"] = samples
            continue
        samples.true = _texts(current.get("true"), samples)
        samples.negatives = _texts(current.get("negatives"), samples)
        out[rule_id] = samples
    return out


def _texts(value: Any, samples: RuleSamples) -> list[str]:
    """A list of samples, or a map of path to sample (its samples, the paths aside)."""
    items = list(value.values()) if isinstance(value, dict) else list(value or [])
    texts = [v for v in items if isinstance(v, str)]
    if len(texts) < len(items):
        samples.unread.append(f"{len(items) - len(texts)} samples not text")
    return texts


# -- the cache ---------------------------------------------------------------------------------------------------


def load(checkout: Path, cache: Path = CACHE, quiet: bool = False) -> dict[str, RuleSamples]:
    """The samples of the checkout at `checkout`, made once per commit and kept in `cache`."""
    commit = commit_of(checkout)
    if commit != PINNED and not quiet:
        print(
            f"warning: {checkout} is at {commit or 'an unknown commit'}, not the pinned {PINNED[:12]};"
            " its figures are not the documented ones",
            file=sys.stderr,
        )
    path = cache / f"gitleaks-{(commit or 'unknown')[:12]}-v{VERSION}.json"
    if commit and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return {rule: RuleSamples(**fields) for rule, fields in data.items()}
    made = generate(checkout)
    if commit:
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({r: vars(s) for r, s in made.items()}, ensure_ascii=False), encoding="utf-8")
    return made


def shipped_rules(checkout: Path) -> set[str]:
    """The rule ids of the configuration gitleaks ships (`config/gitleaks.toml`), which may lag its
    generator by a rule."""
    text = (checkout / "config/gitleaks.toml").read_text(encoding="utf-8")
    return set(re.findall(r'^\s*id = "([^"]+)"', text, re.MULTILINE))


def samples(checkout: Path, cache: Path = CACHE) -> dict[str, tuple[list[str], list[str]]]:
    """Rule id: (true samples, hard negatives), for the rules of the configuration gitleaks ships."""
    shipped = shipped_rules(checkout)
    return {rule: (s.true, s.negatives) for rule, s in load(checkout, cache).items() if rule in shipped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gitleaks", type=Path, required=True, help="a checkout of gitleaks")
    parser.add_argument("--fresh", action="store_true", help="make the samples anew, not from the cache")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the samples made are kept")
    args = parser.parse_args()
    made = generate(args.gitleaks) if args.fresh else load(args.gitleaks, args.cache)
    shipped = shipped_rules(args.gitleaks)
    for rule, s in sorted(made.items()):
        note = "" if rule in shipped else "  (not in config/gitleaks.toml: left out of the figures)"
        print(f"{rule:50s} true {len(s.true):4d}  negatives {len(s.negatives):3d}  unread {len(s.unread)}{note}")
        for why in s.unread:
            print(f"    left out: {why}")
    kept = [s for rule, s in made.items() if rule in shipped]
    print(
        f"{len(made)} rules in the generator, {len(kept)} of them shipped; those have"
        f" {sum(len(s.true) for s in kept)} true samples, {sum(len(s.negatives) for s in kept)} hard negatives;"
        f" {sum(1 for s in kept if s.unread)} rules with a part left out"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
