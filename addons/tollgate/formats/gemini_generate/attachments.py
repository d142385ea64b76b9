"""Where a generateContent body keeps what is not its text (`formats/bodies/attachments.py`): a part's
`inlineData` (`inline_data`: its bytes in base64 and their `mimeType`) and `fileData` (`file_data`:
a `fileUri`, a reference), under either spelling as Gemini reads them."""

from __future__ import annotations

from itertools import chain
from typing import Any

from tollgate.formats.bodies import attachments as common

MARKERS = (b'inlineData"', b'inline_data"', b'fileData"', b'file_data"')


def _visit(obj: dict[str, Any], path: common.Path, found: common.Attachments) -> None:
    for key in ("inlineData", "inline_data"):
        inline = obj.get(key)
        if isinstance(inline, dict) and "data" in inline:
            data = common.text(inline.get("data"))
            media_type = common.text(inline.get("mimeType", inline.get("mime_type")))
            name = common.text(inline.get("displayName", inline.get("display_name")))
            if data is not None:
                found.inline.append(common.Inline((*path, key, "data"), data, media_type, name))
    for key in ("fileData", "file_data"):
        if isinstance(obj.get(key), dict):
            found.cannot_read(common.FILE_REFERENCE)


def attachments(data: dict[str, Any]) -> common.Attachments:
    """What the body carries besides its text."""
    return common.walk(data, _visit)


def _text(part: Any) -> str | None:
    return common.text(part.get("text")) if isinstance(part, dict) and not part.get("thought") else None


def runs(data: dict[str, Any]) -> common.TextRuns:
    """Adjacent text parts of contents' parts, and of the system instruction's."""
    system = [
        ((key, "parts"), data[key].get("parts"), "system")
        for key in ("systemInstruction", "system_instruction")
        if isinstance(data.get(key), dict)
    ]
    return common.text_runs(chain(common.items(data, "contents", "parts"), system), _text)
