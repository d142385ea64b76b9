"""How many examples the heaviest property tests draw. `./run.sh test`, what CI runs, draws every
example they ask for; `./run.sh test unit`, the quick inner loop, sets TOLLGATE_EXAMPLES=quick and
they draw half as many (each still runs, on fewer drawn inputs). TOLLGATE_EXAMPLES=all gives the
unit run every example."""

from __future__ import annotations

import os

QUICK = os.environ.get("TOLLGATE_EXAMPLES") == "quick"


def examples(n: int) -> int:
    """`n`, or half of it (at least 10) in a quick run."""
    return max(10, n // 2) if QUICK else n
