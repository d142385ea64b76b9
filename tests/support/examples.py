"""How many examples property tests draw. `./run.sh test`, what CI runs, draws every example they
ask for; `./run.sh test unit`, the quick inner loop, sets TOLLGATE_EXAMPLES=quick and they draw a
fifth as many (each still runs, on fewer drawn inputs). TOLLGATE_EXAMPLES=all gives the unit run
every example."""

from __future__ import annotations

import os

from hypothesis import settings

QUICK = os.environ.get("TOLLGATE_EXAMPLES") == "quick"

# Property tests that name no count draw hypothesis's default (100), or a fifth of it when quick.
settings.register_profile("quick", max_examples=20)
if QUICK:
    settings.load_profile("quick")


def examples(n: int) -> int:
    """`n`, or a fifth of it (at least 10, at most `n`) in a quick run."""
    return min(n, max(10, n // 5)) if QUICK else n
