"""Where a Messages body keeps what is not its text (`formats/attachments.py`): `document` blocks
(a base64 source is read; a `text` or `content` source is text of the body and read with it; a
`url` or `file` source is a reference), `image` blocks and `container_upload` blocks (a file id),
in messages, tool results and a batch's requests alike."""

from __future__ import annotations

from itertools import chain
from typing import Any

from tollgate.formats.attachments import (
    FILE_REFERENCE,
    IMAGE,
    Attachments,
    Inline,
    Path,
    TextRuns,
    items,
    text,
    text_runs,
    walk,
)

MARKERS = (b'"document"', b'"image"', b'"container_upload"')


def visit(obj: dict[str, Any], path: Path, found: Attachments) -> None:
    kind = obj.get("type")
    if kind == "document":
        source = obj.get("source")
        source_type = source.get("type") if isinstance(source, dict) else None
        if source_type == "base64" and isinstance(source, dict):
            data = text(source.get("data"))
            if data is not None:
                found.inline.append(Inline((*path, "source", "data"), data, text(source.get("media_type")), None))
        elif source_type in ("url", "file"):
            found.cannot_read(FILE_REFERENCE)
    elif kind == "image":
        found.cannot_read(IMAGE)
    elif kind == "container_upload":
        found.cannot_read(FILE_REFERENCE)


def attachments(data: dict[str, Any]) -> Attachments:
    """What the body carries besides its text."""
    return walk(data, visit)


def _text(part: Any) -> str | None:
    return text(part.get("text")) if isinstance(part, dict) and part.get("type") == "text" else None


def runs(data: dict[str, Any]) -> TextRuns:
    """Adjacent text blocks of messages' content, and of the system prompt."""
    return text_runs(chain(items(data, "messages", "content"), [(("system",), data.get("system"), "system")]), _text)
