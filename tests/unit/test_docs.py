"""What the docs and the code's comments say agrees with the repository and the code."""

from __future__ import annotations

import re
import shutil
import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollgate.configuration.config import LEDGER_FILE, AuditConfig
from tollgate.governance.guardrails.detectors import KINDS
from tollgate.records.audit.auditlog import BATCH_DELAY

ROOT = Path(__file__).resolve().parents[2]
_CITED = re.compile(r"[A-Za-z0-9_./-]+\.md\b")


@pytest.mark.parametrize("folder", ["addons", "bench"])
def test_every_cited_document_is_in_the_repository(folder: str) -> None:
    missing = {
        f"{source.relative_to(ROOT)}: {name}"
        for source in (ROOT / folder).rglob("*.py")
        for name in _CITED.findall(source.read_text(encoding="utf-8"))
        if not (ROOT / name).is_file()
    }
    assert not missing


@pytest.mark.parametrize(
    ("document", "passage"),
    [
        ("docs/performance.md", r"\*\*Audit writes in batches\.\*\*.*?(?=\n- )"),
        ("docs/audit.md", r"A thread of its\s+own writes the file.*?\."),
    ],
)
def test_the_docs_give_the_audit_writers_batch_delay_as_the_code_has_it(document: str, passage: str) -> None:
    text = re.search(passage, (ROOT / document).read_text(encoding="utf-8"), re.DOTALL)
    assert text is not None
    assert {float(ms) for ms in re.findall(r"(\d+) ms", text.group())} == {BATCH_DELAY * 1000}


def test_what_tollgate_writes_in_a_checkout_is_ignored_by_git() -> None:
    # Run from the checkout, Tollgate writes its audit and, beside it, the ledger's SQLite files
    # (with its write-ahead log); logrotate leaves the audit's older files there too.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    audit = AuditConfig().path
    written = [audit, f"{audit}.1", f"{audit}.2.gz", LEDGER_FILE, f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm"]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *written],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    tracked = [line.split("\t")[1] for line in done.stdout.splitlines() if line.startswith("::")]
    assert tracked == [], done.stdout


def test_the_architectures_map_names_modules_that_exist() -> None:
    """Each module in the first column of docs/architecture.md's map is where it says, under its
    section's folder (`### \\`proxy/\\`: …`) or the package's top."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("## Where each concern lives") : text.index("## Layers")]
    package = ROOT / "addons" / "tollgate"
    named, missing = 0, []
    for part in re.split(r"\n### ", section)[1:]:
        heading, _, body = part.partition("\n")
        folder = re.match(r"`([a-z_]+/)`", heading)
        base = package / folder.group(1) if folder else package
        for row in re.findall(r"^\| ([^|]+) \|", body, re.MULTILINE):
            for name in re.findall(r"`([a-z_/<>]+(?:\.py|/))`", row):
                if "<" in name:
                    continue
                named += 1
                if not (base / name).exists():
                    missing.append(f"{heading}: {name}")
    assert named > 60 and missing == []


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = _slug(heading.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.slow
def test_every_link_between_the_docs_lands() -> None:
    """Each relative link of the README and the docs names a file that exists, and a heading of it
    where it names one: pages split or headings renamed leave no link behind."""
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for document in documents:
        text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.DOTALL)
        text = re.sub(r"`[^`\n]*`", "", text)  # code, where `f(…)` is no link
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


# The page that documents each top-level key of tollgate.yaml.
_PAGES = {
    "providers": "providers.md",
    "clients": "identity.md",
    "allow_anonymous": "identity.md",
    "identity": "identity.md",
    "overrides": "routing.md",
    "rollup": "routing.md",
    "prices": "limits.md",
    "limits": "limits.md",
    "ledger": "limits.md",
    "policy": "policy.md",
    "guardrails": "guardrails.md",
    "audit": "audit.md",
    "metrics": "metrics.md",
    "mcp": "mcp.md",
    "subscriptions": "subscriptions.md",
    "drain_s": "fleet.md",
    "egress": "egress.md",
    "console": "console.md",
    "agents": "agents.md",
    "reconcile": "reconcile.md",
}


def _keys(model: type, prefix: str) -> Iterator[str]:
    """Every key a model reads, dotted; a list's or a mapping's entries by their own keys."""
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        yield key
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _keys(kind, f"{key}.")
            else:
                stack.extend(typing.get_args(kind))


def _configuration_keys() -> list[str]:
    from tollgate.configuration.config import PROVIDERS, Config

    keys = [k for k in _keys(Config, "") if not k.startswith("providers.")]
    keys += [k for p in PROVIDERS.values() for k in _keys(p.settings_model, f"providers.{p.name}.")]
    return sorted(set(keys))


def test_every_configuration_key_is_documented() -> None:
    """Each key tollgate.yaml takes is named on the page of its top-level key (in code, as
    `key`, `a.key`, or `key:` in an example), and the index's overview lists every top-level key:
    a key added to the model without its documentation fails here."""
    from tollgate.configuration.config import Config

    docs = ROOT / "docs"
    index = (docs / "configuration.md").read_text(encoding="utf-8")
    overview = index[index.index("## Keys") :]
    assert [k for k in Config.model_fields if not re.search(rf"^{k}:", overview, re.MULTILINE)] == []
    assert [k for k in Config.model_fields if k not in _PAGES] == []
    undocumented = []
    for key in _configuration_keys():
        page = (docs / _PAGES[key.split(".")[0]]).read_text(encoding="utf-8")
        leaf = re.escape(key.rsplit(".", 1)[-1])
        if not re.search(
            rf"`(?:[\w<>\[\].]*\.)?{leaf}[`:\[ =]|^\s*(?:- )?{leaf}:|[{{,] ?{leaf}[:,}}]", page, re.MULTILINE
        ):
            undocumented.append(f"{key} ({_PAGES[key.split('.')[0]]})")
    assert undocumented == []


def test_the_readme_stays_within_200_lines_and_keeps_its_first_screen() -> None:
    """What a newcomer reads first: what Tollgate is, its two commands and the demo; the rest is in
    docs/, which the README links to."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:3] == [
        "## Two commands",
        "## Without a key: `./run.sh demo`",
        "## Five minutes to a governed call",
    ]


def test_every_built_in_detector_has_a_row_in_the_guardrails_docs() -> None:
    text = (ROOT / "docs" / "guardrails.md").read_text(encoding="utf-8")
    assert [kind for kind in KINDS if f"`{kind}`" not in text] == []


def test_the_readmes_five_minutes_install_the_sdk_they_call() -> None:
    """A newcomer's python3 has no openai package: the steps install it, in a venv, before the proxy's
    environment is exported (so that pip reaches PyPI directly) and before the first call."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    steps = readme[readme.index("## Five minutes to a governed call") :].splitlines()
    first = {
        what: next(i for i, line in enumerate(steps) if what in line)
        for what in ("python3 -m venv", "pip install openai", '"$(./run.sh env)"', "from openai import")
    }
    assert (
        first["python3 -m venv"]
        <= first["pip install openai"]
        < first['"$(./run.sh env)"']
        < first["from openai import"]
    )
