"""Where an InvokeModel body keeps what is not its text (`formats/bodies/attachments.py`): Claude's body
as Anthropic's Messages keeps it, Nova's as Converse does."""

from __future__ import annotations

from typing import Any

from tollgate.formats.anthropic_messages import attachments as anthropic
from tollgate.formats.bedrock_converse import attachments as converse
from tollgate.formats.bodies.attachments import Attachments, Path, TextRuns, walk

MARKERS = tuple(dict.fromkeys(anthropic.MARKERS + converse.MARKERS))


def _visit(obj: dict[str, Any], path: Path, found: Attachments) -> None:
    anthropic.visit(obj, path, found)
    converse.visit(obj, path, found)


def attachments(data: dict[str, Any]) -> Attachments:
    """What the body carries besides its text."""
    return walk(data, _visit)


def runs(data: dict[str, Any]) -> TextRuns:
    """Claude's text blocks as Anthropic's, Nova's as Converse's."""
    return anthropic.runs(data) or converse.runs(data)
