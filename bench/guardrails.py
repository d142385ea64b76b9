"""How fast the guardrails read a request body, in process on one core: Tollgate's scan (the
default detectors, `secrets` and `pii`, with `tollgate_keys`; and `tollgate_keys` alone) against
the other ways to read the same bodies, and how often the default detectors fire on clean text.

    .venv/bin/python bench/guardrails.py                  # 100 KB and 1 MB bodies, every engine (~1 min)
    .venv/bin/python bench/guardrails.py --repeat 9 --sizes 1000000
    .venv/bin/python bench/guardrails.py --corpus         # findings per MB of clean text (docs, source, logs)

Bodies are shaped like a coding agent's turn (Anthropic's messages): a system prompt of prose,
then tool calls whose results are source files, log excerpts and documentation, and last a tool
result holding a `.env` with an AWS key pair, a GitHub token, a database URL's password and an
e-mail address. Each engine must find those in every body (the figure of an engine that does
not is marked). Each cell is the best of `--repeat` passes of the scanning thread's CPU time (a
shared machine's waits left out); the engines take turns within a round.

Engines:
- tollgate: the scan as the proxy runs it (Hyperscan's one pass over the detectors' anchors, the
  exact patterns around them), from the body to its findings' offsets;
- tollgate-re: the same scan with Python's `re` finding the anchors (no Hyperscan);
- re-combined: Python's `re` over one pattern, every detector's pattern joined by `|`;
- aho-corasick: `ahocorasick_rs` finding the detectors' literal anchors in one pass, Python's
  `re` the others (the digit shapes of `pii`), then the exact patterns around them;
- hyperscan-pass: Hyperscan's pass alone, what the scan costs at the least;
- detect-secrets: Yelp's detect-secrets with its default plugins, over the body's decoded lines
  (secrets only: it has no personal-data plugins).
`ahocorasick_rs` and `detect-secrets` are not Tollgate's dependencies: a row whose package is
missing says so (pip install ahocorasick-rs detect-secrets)."""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT / "tests"))

from support.guardrail_samples import AWS_KEY_ID, AWS_SECRET, EMAIL, crc_token  # noqa: E402
from tollgate.governance.guardrails import detectors, engine, text  # noqa: E402
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule  # noqa: E402
from tollgate.governance.guardrails.rules import Guardrails  # noqa: E402

DEFAULT_RULES = [GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})]
# Tollgate's own keys as a small deployment has them: a few upstream keys and a dozen virtual keys.
OWN_KEYS = [f"sk-upstream-{i:02d}-" + "x" * 40 for i in range(4)] + [
    f"vk-client-{i:02d}-" + "y" * 30 for i in range(12)
]
PLANTED = {
    "secrets.aws_access_key_id",
    "secrets.aws_secret_access_key",
    "secrets.github_token",
    "secrets.url_password",
    "pii.email",
}


def site_packages() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages")))


def sources() -> list[str]:
    """Source files to paste as tool results: the project's own, then mitmproxy's."""
    files = sorted((ROOT / "addons" / "tollgate").rglob("*.py")) + sorted((site_packages() / "mitmproxy").rglob("*.py"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def log_lines(rng: random.Random, n: int) -> str:
    levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"]
    lines = [
        f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}Z {rng.choice(levels)}"
        f" api-{i % 5} req={rng.getrandbits(64):016x} GET /v1/orders/{rng.randrange(10**6, 10**9)}"
        f" status={rng.choice([200, 200, 201, 404, 500])} dur_ms={rng.randrange(1, 3000)}"
        f" user={rng.randrange(10**4, 10**7)} ts={1764100000000 + i * 37}"
        for i in range(n)
    ]
    return "\n".join(lines)


def env_file() -> str:
    return (
        "# .env\nNODE_ENV=production\nPORT=8080\n"
        f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\nAWS_REGION=eu-west-1\n"
        f"GITHUB_TOKEN={crc_token('gh' + 'p_')}\nDATABASE_URL=postgres://app:{'Hunter2' + '-prod-pw'}@db.internal:5432/app\n"
        f"ADMIN_EMAIL={EMAIL}\nFEATURE_FLAGS=a,b,c\n"
    )


def agent_body(size: int, seed: int = 53) -> bytes:
    """A coding agent's turn of about `size` bytes of JSON."""
    rng = random.Random(seed)
    prose = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    code = sources()
    logs = log_lines(rng, 4000)
    system = prose[:12000]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Fix the failing test in the orders service."}]
    budget = size - len(json.dumps(system)) - 2000
    i = 0
    while len(json.dumps(messages)) < budget:
        kind = i % 4
        if kind in (0, 1):
            result = code[(i * 7919) % len(code)]
        elif kind == 2:
            start = rng.randrange(0, len(logs) - 8000)
            result = logs[start : start + 8000]
        else:
            start = rng.randrange(0, len(prose) - 6000)
            result = prose[start : start + 6000]
        result = result[: max(200, budget - len(json.dumps(messages)))]
        tool_id = f"toolu_{i:04d}"
        messages.append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "read", "input": {"i": i}}]}
        )
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": result}]}
        )
        i += 1
    messages.append(
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_env", "name": "read", "input": {}}]}
    )
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_env", "content": env_file()}]}
    )
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8192, "system": system, "messages": messages}
    return json.dumps(body).encode()


# -- the engines ------------------------------------------------------------------------------------------------

Engine = Callable[[bytes], set[str]]


def tollgate(use_hyperscan: bool, keys_only: bool = False) -> Engine:
    guard = Guardrails(() if keys_only else DEFAULT_RULES, OWN_KEYS, use_hyperscan=use_hyperscan)
    return lambda body: set(guard.scan_all(body).counts())


def _combinable(pattern: bytes) -> bytes:
    # One alternation takes no global flags, repeated group names or back-references.
    if pattern.startswith(b"(?i)"):
        pattern = b"(?i:" + pattern.removeprefix(b"(?i)") + b")"
    pattern = re.sub(rb"\(\?P<\w+>", b"(?:", pattern)
    return re.sub(rb"\(\?P=\w+\)", rb"[ -]", pattern)


def re_combined() -> Engine:
    found = detectors.builtin(detectors.KINDS)
    combined = re.compile(b"|".join(b"(" + _combinable(d.pattern.pattern) + b")" for d in found))
    kinds = [d.kind for d in found]

    def scan(body: bytes) -> set[str]:
        data = text.read(body).data
        return {kinds[m.lastindex - 1] for m in combined.finditer(data) if m.lastindex}

    return scan


def aho_corasick() -> Engine | str:
    try:
        import ahocorasick_rs
    except ImportError:
        return "ahocorasick-rs not installed"
    found = detectors.builtin(detectors.KINDS) + detectors.own_keys(OWN_KEYS, ())
    literal: list[bytes] = []
    owner: list[int] = []
    other: list[tuple[int, re.Pattern[bytes]]] = []
    for i, d in enumerate(found):
        for anchor in d.anchors:
            plain = _literals(anchor)
            if plain is None:
                other.append((i, re.compile(anchor)))
            else:
                literal += plain
                owner += [i] * len(plain)
    automaton = ahocorasick_rs.BytesAhoCorasick(literal)

    def scan(body: bytes) -> set[str]:
        data = text.read(body).data
        ends: list[list[int]] = [[] for _ in found]
        for index, _start, end in automaton.find_matches_as_indexes(data, overlapping=True):
            ends[owner[index]].append(end)
        for i, pattern in other:
            ends[i].extend(m.end() for m in pattern.finditer(data))
        out: set[str] = set()
        for d, at in zip(found, ends, strict=True):
            for end in at:
                lo, hi = max(0, end - d.reach - 4), min(len(data), end + d.reach + 4)
                if next(d.find(data, lo, hi), None) is not None:
                    out.add(d.kind)
                    break
        return out

    return scan


def _literals(anchor: bytes) -> list[bytes] | None:
    """The literals an anchor stands for (`[sr]k_live_` is two), or None for a pattern."""
    if anchor.startswith(b"(?i)"):
        return None
    expanded = [b""]
    for part in re.findall(rb"\[([^\]]+)\]|\\(.)|([^\\\[(){}?*+|^$.]+)|(.)", anchor):
        chars, escaped, plain, special = part
        if special:
            return None
        if chars:
            if b"-" in chars:
                return None
            expanded = [e + bytes([c]) for e in expanded for c in chars]
        else:
            expanded = [e + (escaped or plain) for e in expanded]
    return expanded


def hyperscan_pass() -> Engine | str:
    if not engine.HYPERSCAN:
        return "hyperscan not installed"
    found = detectors.builtin(detectors.KINDS) + detectors.own_keys(OWN_KEYS, ())
    anchors = engine.Engine(found, use_hyperscan=True).anchors

    def scan(body: bytes) -> set[str]:
        anchors(body)
        return set()

    return scan


def detect_secrets() -> Engine | str:
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return "detect-secrets not installed"

    def scan(body: bytes) -> set[str]:
        decoded = json.loads(body)
        out: set[str] = set()
        with default_settings():
            for string in _strings(decoded):
                for line in string.splitlines():
                    out.update(s.type for s in scan_line(line))
        return out

    return scan


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def measure(args: argparse.Namespace) -> None:
    bodies = {size: agent_body(size) for size in map(int, args.sizes.split(","))}
    engines: dict[str, Engine | str] = {
        "tollgate (secrets+pii+keys)": tollgate(engine.HYPERSCAN),
        "tollgate (tollgate_keys)": tollgate(engine.HYPERSCAN, keys_only=True),
        "tollgate-re (secrets+pii+keys)": tollgate(False),
        "tollgate-re (secrets+keys)": _secrets_only(False),
        "tollgate-re (tollgate_keys)": tollgate(False, keys_only=True),
        "re-combined (secrets+pii)": re_combined(),
        "aho-corasick (secrets+pii+keys)": aho_corasick(),
        "hyperscan-pass (anchors only)": hyperscan_pass(),
        "detect-secrets (secrets)": detect_secrets(),
    }
    if args.only:
        engines = {name: run for name, run in engines.items() if name.startswith(args.only)}
    print(f"hyperscan: {'installed' if engine.HYPERSCAN else 'not installed'}; best of {args.repeat}")
    print(f"{'engine':<34} " + " ".join(f"{f'{len(b) / 1e6:.2f} MB':>18}" for b in bodies.values()) + "  found")
    best: dict[tuple[str, int], float] = {}
    found: dict[str, set[str]] = {}
    for _ in range(args.repeat):
        for name, run in engines.items():
            if isinstance(run, str):
                continue
            for size, body in bodies.items():
                if name.startswith("detect-secrets") and size > 200_000 and not args.slow:
                    continue
                start = time.thread_time()
                found[name] = run(body)
                elapsed = time.thread_time() - start
                best[name, size] = min(best.get((name, size), float("inf")), elapsed)
    for name, run in engines.items():
        if isinstance(run, str):
            print(f"{name:<34} {run}")
            continue
        cells = []
        for size, body in bodies.items():
            elapsed = best.get((name, size))
            cells.append(
                f"{'-':>18}" if elapsed is None else f"{len(body) / elapsed / 1e6:>8.0f} MB/s{elapsed * 1e3:>5.1f}ms"
            )
        missed = (
            "" if ("keys" in name.split("(")[1] and "+" not in name) or "pass" in name else _missed(name, found[name])
        )
        print(f"{name:<34} " + " ".join(cells) + f"  {missed}")


def _secrets_only(use_hyperscan: bool) -> Engine:
    rule = GuardrailRule.model_validate({"detect": ["secrets"], "action": "redact"})
    guard = Guardrails([rule], OWN_KEYS, use_hyperscan=use_hyperscan)
    return lambda body: set(guard.scan_all(body).counts())


def _missed(name: str, found: set[str]) -> str:
    if name.startswith("detect-secrets"):
        return f"{len(found)} kinds: {', '.join(sorted(found))}"
    wanted = {k for k in PLANTED if "pii" in name or not k.startswith("pii.")}
    missing = wanted - found
    return "all planted" if not missing else f"MISSED {', '.join(sorted(missing))}"


# -- the clean corpus -------------------------------------------------------------------------------------------


def corpus() -> list[Path]:
    """Clean text: the project's docs and source (its tests make their secrets at run time), the
    installed packages' Python source, and the machine's logs."""
    files = sorted(ROOT.glob("docs/**/*.md")) + sorted((ROOT / "addons").rglob("*.py"))
    files += sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    files += sorted(site_packages().rglob("*.py"))
    files += sorted(p for p in Path("/var/log").rglob("*.log") if p.is_file())
    return files


def false_positives(args: argparse.Namespace) -> None:
    guard = Guardrails(DEFAULT_RULES, OWN_KEYS)
    total = third_party = 0
    counts: Counter[str] = Counter()
    where: dict[str, Counter[str]] = {}
    # Third-party code: the installed packages' source, each at the version `requirements` pins.
    theirs: list[tuple[str, str, bytes]] = []
    for path in corpus():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        total += len(data)
        installed = "site-packages/" in str(path)
        third_party += len(data) if installed else 0
        for finding in guard.scan_all(data, is_json=False).findings:
            counts[finding.kind] += 1
            where.setdefault(finding.kind, Counter())[_short(path)] += 1
            if installed and finding.kind.startswith("secrets."):
                theirs.append((finding.kind, _short(path), data[finding.start : finding.end][:60]))
    mb = total / 1e6
    print(f"clean corpus: {len(corpus())} files, {mb:.1f} MB; findings per MB: {sum(counts.values()) / mb:.3f}")
    for kind, n in counts.most_common():
        top = ", ".join(f"{p} ({c})" for p, c in where[kind].most_common(args.top))
        print(f"  {kind:<34} {n:>5}  {n / mb:.3f}/MB  in {top}")
    print(
        f"third-party code (the installed packages): {third_party / 1e6:.1f} MB; secret findings "
        f"{len(theirs)}, {len(theirs) / (third_party / 1e6):.3f} per MB (issue 80's target: at most 0.5)"
    )
    for kind, where_found, value in theirs:
        print(f"  {kind:<34} {where_found}: {value!r}")


def _short(path: Path) -> str:
    text_path = str(path)
    return (
        text_path.rsplit("site-packages/", maxsplit=1)[-1]
        if "site-packages/" in text_path
        else str(path.relative_to(ROOT))
        if path.is_relative_to(ROOT)
        else text_path
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated body sizes in bytes")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each cell is the best")
    parser.add_argument("--slow", action="store_true", help="detect-secrets on the large bodies too")
    parser.add_argument("--only", help="the engines whose name begins so (e.g. 'tollgate (')")
    parser.add_argument("--corpus", action="store_true", help="findings per MB of clean text instead")
    parser.add_argument("--top", type=int, default=3, help="with --corpus: files named per kind")
    args = parser.parse_args()
    if args.corpus:
        false_positives(args)
    else:
        measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
