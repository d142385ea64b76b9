"""Where a Messages body keeps what is not its text (`formats/bodies/attachments.py`): `document` blocks
(a base64 source is read; a `text` or `content` source is text of the body and read with it; a
`url` or `file` source is a reference), `image` blocks and `container_upload` blocks (a file id),
in messages, tool results and a batch's requests alike."""

from __future__ import annotations

from itertools import chain
from typing import Any

from tollgate.formats.bodies import attachments as common

MARKERS = (b'"document"', b'"image"', b'"container_upload"')


def visit(obj: dict[str, Any], path: common.Path, found: common.Attachments) -> None:
    kind = obj.get("type")
    if kind == "document":
        source = obj.get("source")
        source_type = source.get("type") if isinstance(source, dict) else None
        if source_type == "base64" and isinstance(source, dict):
            data = common.text(source.get("data"))
            if data is not None:
                found.inline.append(
                    common.Inline((*path, "source", "data"), data, common.text(source.get("media_type")), None)
                )
        elif source_type in ("url", "file"):
            found.cannot_read(common.FILE_REFERENCE)
    elif kind == "image":
        found.cannot_read(common.IMAGE)
    elif kind == "container_upload":
        found.cannot_read(common.FILE_REFERENCE)


def attachments(data: dict[str, Any]) -> common.Attachments:
    """What the body carries besides its text."""
    return common.walk(data, visit)


def _text(part: Any) -> str | None:
    return common.text(part.get("text")) if isinstance(part, dict) and part.get("type") == "text" else None


def runs(data: dict[str, Any]) -> common.TextRuns:
    """Adjacent text blocks of messages' content, and of the system prompt."""
    return common.text_runs(
        chain(common.items(data, "messages", "content"), [(("system",), data.get("system"), "system")]), _text
    )
