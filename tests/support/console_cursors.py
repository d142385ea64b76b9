"""The console's views asked with cursors as record numbers: `after` sealed for the viewer, the
answer's `cursor` read back, so that answers of two consoles (two keys, fresh nonces) compare.

Over PostgreSQL a cursor is a row's id: the rows of a test are sent once, in order, their ids
1, 2, … — record number n is id n + 1, read back as such."""

from __future__ import annotations

from typing import Any

from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import Query, Views


def answer(views: Views, path: str, query: Query, viewer: Viewer = TOKEN_HOLDER) -> Any:
    asked = {k: list(v) for k, v in query.items()}
    shift = 0 if views.table is None else 1
    if "after" in asked:
        asked["after"] = [
            views.cursors.seal(max(int(v), -1) + shift, viewer) if v.lstrip("-").isdigit() else v
            for v in asked["after"]
        ]
    found = views.answer(path, asked, viewer)
    if isinstance(found, dict) and "cursor" in found:
        found = {**found, "cursor": views.cursors.open(found["cursor"], viewer) - shift}
    return found
