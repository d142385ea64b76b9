"""Where an OpenAI-format body keeps what is not its text (`formats/bodies/attachments.py`): Chat
Completions' `file` parts (`file_data`, `file_id`), `image_url` and `input_audio` parts; the
Responses API's `input_file` (`file_data`, `file_id`, `file_url`), `input_image` and `input_audio`
items; a batch's `input_file_id`."""

from __future__ import annotations

from itertools import chain
from typing import Any

from tollgate.formats.bodies import attachments as common

MARKERS = (b'"file"', b'"input_file', b'"image_url"', b'"input_image"', b'"input_audio"')


def _file(obj: dict[str, Any], path: common.Path, found: common.Attachments) -> None:
    """A file's fields: its bytes (`file_data`, a data URL or base64) or a reference to it."""
    data = common.text(obj.get("file_data"))
    if data is not None:
        found.inline.append(common.Inline((*path, "file_data"), data, None, common.text(obj.get("filename"))))
    if obj.get("file_id") is not None or obj.get("file_url") is not None:
        found.cannot_read(common.FILE_REFERENCE)


def _visit(obj: dict[str, Any], path: common.Path, found: common.Attachments) -> None:
    kind = obj.get("type")
    if kind == "file" and isinstance(obj.get("file"), dict):
        _file(obj["file"], (*path, "file"), found)
    elif kind == "input_file":
        _file(obj, path, found)
    elif kind in ("image_url", "input_image"):
        found.cannot_read(common.IMAGE)
    elif kind == "input_audio":
        found.cannot_read(common.AUDIO)
    if not path and obj.get("input_file_id") is not None:  # POST /v1/batches
        found.cannot_read(common.BATCH_FILE)


def attachments(data: dict[str, Any]) -> common.Attachments:
    """What the body carries besides its text."""
    return common.walk(data, _visit)


def _text(part: Any) -> str | None:
    if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
        return common.text(part.get("text"))
    return None


def runs(data: dict[str, Any]) -> common.TextRuns:
    """Adjacent text parts of chat messages' or Responses input items' content."""
    return common.text_runs(
        chain(common.items(data, "messages", "content"), common.items(data, "input", "content")), _text
    )
