"""What a request body carries besides its text: documents inline (a file's bytes in base64, which
the guardrails may decode and read) and content Tollgate cannot read (an image, audio, a file named by
its id or URL). Each wire format says where its bodies keep them (its `attachments.py`); this module
is what they share: the walk over a body's JSON and what it finds. Plain data, knowing nothing of
mitmproxy nor of the guardrails.

The names of what Tollgate cannot read, as the policy's and the audit's `unread` list them:"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# An image, inline or by URL or file id: no detector reads an image.
IMAGE = "image"
AUDIO = "audio"
VIDEO = "video"
# A document inline that Tollgate does not read: a PDF, a binary or unknown type, base64 that does
# not decode, text that is not UTF-8 (the guardrails decide, `guardrails/documents.py`).
DOCUMENT = "document"
# Content named by reference, which the provider fetches or holds: a file id, a file's or a
# document's URL, Gemini's `fileUri`, an S3 location.
FILE_REFERENCE = "file_reference"
# A batch's requests in a file the provider holds (OpenAI's `input_file_id`).
BATCH_FILE = "batch_file"

Path = tuple[str | int, ...]  # where a value is in the body's JSON: keys and indices


@dataclass(frozen=True, slots=True)
class Inline:
    """A document whose bytes are in the body: the string at `path` (base64, or a `data:` URL of
    base64), its media type and its file name where the body gives them."""

    path: Path
    value: str
    media_type: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class Attachments:
    """What a body carries besides its text: documents inline, and the names of what cannot be read
    (each once, in the order found)."""

    inline: list[Inline] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    def cannot_read(self, what: str) -> None:
        if what not in self.unread:
            self.unread.append(what)


# A content block's reader: given an object of the body and its path, what it adds. A format names
# its markers too: the keys and types (as JSON writes them) without which a body holds nothing its
# walk finds. The guardrails' one pass over the body looks for them (`Scan.may_attach`): most bodies
# hold none and are not walked.
Visit = Callable[[dict[str, Any], Path, Attachments], None]


def walk(data: Any, visit: Visit) -> Attachments:
    """Every object of a body's JSON visited in document order (a tool result's content and a batch's
    requests as well as a message's parts)."""
    found = Attachments()
    for obj, path in _objects(data, ()):
        visit(obj, path, found)
    return found


def _objects(value: Any, path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    if isinstance(value, dict):
        yield value, path
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _objects(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from _objects(item, (*path, i))


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# Adjacent text parts, which a model reads as one text: those of one message, and the last of one
# message with the first of the next where both are the same speaker's (consecutive user messages,
# which Anthropic's API merges into one turn; parallel tool results). Each run of them, as the
# paths and values of their strings (a run of one is left out).
TextRuns = list[list[tuple[Path, str]]]
# A message: where its content is, the content (a string, or a list of parts) and its speaker.
Message = tuple[Path, Any, Any]


def text_runs(messages: Iterable[Message], text_of: Callable[[Any], str | None]) -> TextRuns:
    """The runs of two or more adjacent text parts in `messages`; `text_of` gives a part's text,
    None for a part of another kind, which ends a run, as another speaker does."""
    runs: TextRuns = []
    run: list[tuple[Path, str]] = []
    speaker: Any = None
    for path, content, who in messages:
        if who != speaker:
            if len(run) > 1:
                runs.append(run)
            run, speaker = [], who
        if type(content) is str:
            run.append((path, content))
            continue
        # Not a list of parts: no text, and the run ends.
        for i, part in enumerate(content if type(content) is list else (None,)):
            value = text_of(part)
            if value is not None:
                run.append(((*path, i, "text"), value))
                continue
            if len(run) > 1:
                runs.append(run)
            run = []
    if len(run) > 1:
        runs.append(run)
    return runs


def items(data: dict[str, Any], key: str, content: str) -> Iterator[Message]:
    """Each message of `data[key]`: the path of its `content`, the content and its `role`."""
    values = data.get(key)
    if isinstance(values, list):
        for i, value in enumerate(values):
            if isinstance(value, dict):
                yield (key, i, content), value.get(content), value.get("role")
