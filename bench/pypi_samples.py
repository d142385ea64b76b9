"""Labelled samples that others published, fetched from PyPI at bench time (`pip download` of a
package's source distribution, no dependency, into a cache directory): nothing of them is kept in
this repository.

- python-stdnum: its IBAN tests' samples, those of the IBAN registry (valid) and those it
  mangled (broken checksums, wrong lengths, letters where digits go: invalid); the valid ones
  written as ISO 13616 writes an IBAN (its electronic form, or its print form in groups of four)
  apart from those written loosely (other groupings, dashes, dots, lower case), which stdnum
  reads too; its US SSN module's examples (one valid, three not).
- phonenumbers (Google's libphonenumber in Python): each region's example fixed-line and mobile
  number, written as the library writes them in international format (a `+`, the country code,
  the number in its groups).

Source distributions of secret scanners hold no labelled samples of credentials (detect-secrets
1.5.0, credsweeper 1.19.5, whispers 2.4.0 and presidio-analyzer 2.2.366 ship none), so the
credentials are measured from their issuers' documented formats (`detection.py`)."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = {"python-stdnum": "2.2", "phonenumbers": "9.0.43"}


@dataclass
class Labelled:
    """One kind's samples: those that are one (`true`; `loose`: written in no standard form) and
    those that look like one and are not (`false`)."""

    true: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    loose: list[str] = field(default_factory=list)


# An IBAN as ISO 13616 writes it: electronic (no space) or printed (groups of four, one space).
_IBAN_FORM = re.compile(r"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]+|(?: [A-Z0-9]{4})*(?: [A-Z0-9]{1,3})?)")


def fetch(name: str, version: str, cache: Path) -> Path:
    """The package's source tree, downloaded and unpacked in `cache` once."""
    root = cache / f"{name.replace('-', '_')}-{version}"
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    subprocess.run(
        [*pip, "--dest", str(cache), f"{name}=={version}"],
        check=True,
        timeout=300,
    )
    archive = next(cache.glob(f"{name.replace('-', '_')}-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return root


_BLOCK = re.compile(r">>> numbers = '''\n(?P<lines>(?:\.\.\. .*\n)+?)\.\.\. '''\n>>> (?P<check>.*)\n")


def ibans(stdnum: Path) -> Labelled:
    """The IBAN tests' numbers: a block checked to hold no invalid number is of true samples, a
    block checked to hold no valid one of false samples (the country-specific block is neither)."""
    out = Labelled()
    for block in _BLOCK.finditer((stdnum / "tests" / "test_iban.doctest").read_text()):
        numbers = [line[4:].strip() for line in block["lines"].splitlines() if line[4:].strip()]
        check = block["check"]
        if "check_country" in check:
            continue
        if "if x and iban.is_valid" in check:
            out.false.extend(numbers)
        else:
            for number in numbers:
                (out.true if _IBAN_FORM.fullmatch(number) else out.loose).append(number)
    return out


def ssns(stdnum: Path) -> Labelled:
    """The US SSN module's examples: `validate` given a number that it returns is valid; one it
    raises on is not."""
    text = (stdnum / "stdnum" / "us" / "ssn.py").read_text()
    out = Labelled()
    for m in re.finditer(r">>> validate\('([^']+)'\).*\n(.*)\n", text):
        (out.false if m[2].startswith("Traceback") else out.true).append(m[1])
    return out


def phones(phonenumbers_root: Path) -> Labelled:
    """Every region's example fixed-line and mobile numbers, in international format."""
    sys.path.insert(0, str(phonenumbers_root))
    try:
        import phonenumbers  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(phonenumbers_root))
    out = Labelled()
    kinds = (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.true.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    out.true = sorted(set(out.true))
    return out


def labelled(cache: Path) -> dict[str, Labelled]:
    """The samples by kind (`pii.iban`, `pii.us_ssn`, `pii.phone`)."""
    stdnum = fetch("python-stdnum", PACKAGES["python-stdnum"], cache)
    numbers = fetch("phonenumbers", PACKAGES["phonenumbers"], cache)
    return {"pii.iban": ibans(stdnum), "pii.us_ssn": ssns(stdnum), "pii.phone": phones(numbers)}
