"""Where a Converse body keeps what is not its text (`formats/bodies/attachments.py`): a `document` block
(its `source.bytes` in base64 read by its `format`; an `s3Location` a reference; a `text` or
`content` source is text of the body), `image`, `video` and `audio` blocks."""

from __future__ import annotations

from itertools import chain
from typing import Any

from tollgate.formats.bodies import attachments as common

MARKERS = (b'"document"', b'"image"', b'"video"', b'"audio"')
# A document's `format`, as the media type the guardrails decide by.
_MEDIA_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "html": "text/html",
    "pdf": "application/pdf",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_MEDIA = {"image": common.IMAGE, "video": common.VIDEO, "audio": common.AUDIO}


def visit(obj: dict[str, Any], path: common.Path, found: common.Attachments) -> None:
    for key, block in obj.items():
        if not isinstance(block, dict) or not isinstance(block.get("source"), dict):
            continue  # a content block is {kind: {…, source: {…}}}
        source = block["source"]
        if key == "document":
            data = common.text(source.get("bytes"))
            if data is not None:
                fmt = common.text(block.get("format"))
                media_type = _MEDIA_TYPES.get(fmt, "application/octet-stream") if fmt else None
                found.inline.append(
                    common.Inline((*path, key, "source", "bytes"), data, media_type, common.text(block.get("name")))
                )
            elif "s3Location" in source:
                found.cannot_read(common.FILE_REFERENCE)
        elif key in _MEDIA:
            found.cannot_read(_MEDIA[key])


def attachments(data: dict[str, Any]) -> common.Attachments:
    """What the body carries besides its text."""
    return common.walk(data, visit)


def _text(part: Any) -> str | None:
    return common.text(part.get("text")) if isinstance(part, dict) else None


def runs(data: dict[str, Any]) -> common.TextRuns:
    """Adjacent text blocks of messages' content, and of the system prompt."""
    return common.text_runs(
        chain(common.items(data, "messages", "content"), [(("system",), data.get("system"), "system")]), _text
    )
