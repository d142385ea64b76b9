"""Which documents inline the guardrails read, and how: a document whose media type (or, where it
has none or a generic one, whose file name) says it is text (`text/*`, JSON, XML, YAML, CSV, source
code, configuration) is decoded from base64 and read as UTF-8; so is one of any other declared type
whose bytes are text all the same (UTF-8, no control character but whitespace), since a type is
only what its sender says. Every other one (a PDF, an image, audio), and one whose base64 does not
decode, is named in `unread`. A document read is written back after a redaction as it came: base64,
behind the same `data:` prefix. Plain Python, knowing nothing of mitmproxy."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

from tollgate.formats.bodies.attachments import AUDIO, DOCUMENT, IMAGE, VIDEO, Attachments, Inline, Path

_BOM = b"\xef\xbb\xbf"
# Media types of text beyond text/*.
_TEXT_TYPES = frozenset(
    (
        "application/json", "application/x-ndjson", "application/jsonl", "application/xml", "application/yaml",
        "application/x-yaml", "application/toml", "application/csv", "application/javascript",
        "application/x-javascript", "application/typescript", "application/x-python", "application/x-sh",
        "application/x-shellscript", "application/sql", "application/graphql", "application/x-httpd-php",
        "application/x-tex", "application/xhtml+xml", "application/rtf", "application/x-ruby",
        "application/x-perl", "application/x-www-form-urlencoded",
    )
)  # fmt: skip
# Media types that say nothing of the content: its file name decides.
_GENERIC_TYPES = frozenset(("application/octet-stream", "binary/octet-stream", "application/unknown"))
# File name extensions of text: documents, data, configuration, source code.
_TEXT_EXTENSIONS = frozenset(
    (
        "txt", "text", "md", "markdown", "rst", "adoc", "csv", "tsv", "json", "jsonl", "ndjson", "xml", "yaml",
        "yml", "toml", "ini", "cfg", "conf", "config", "env", "properties", "log", "html", "htm", "css", "scss",
        "svg", "tex", "sql", "graphql", "proto", "py", "pyi", "ipynb", "js", "mjs", "cjs", "jsx", "ts", "tsx",
        "go", "rs", "java", "kt", "kts", "scala", "groovy", "gradle", "c", "h", "cc", "cpp", "cxx", "hpp", "cs",
        "fs", "swift", "m", "mm", "rb", "php", "pl", "pm", "lua", "r", "jl", "dart", "ex", "exs", "erl", "hs",
        "clj", "elm", "vue", "svelte", "sh", "bash", "zsh", "fish", "ps1", "bat", "cmd", "dockerfile", "tf",
        "tfvars", "hcl", "nix", "pem", "crt", "key", "pub", "patch", "diff", "lock", "mod", "sum", "gitignore",
        "npmrc", "pypirc", "netrc", "rtf",
    )
)  # fmt: skip
_MEDIA = {"image": IMAGE, "audio": AUDIO, "video": VIDEO}
# Bytes no text holds: the control characters but tab, line feed, form feed and carriage return.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# How much of a document declared not text is decoded first to tell whether its bytes are text: most
# that are not (an image, a PDF, audio) tell so in their first bytes, before the whole is decoded.
_HEAD = 4096  # base64 characters: a multiple of 4


@dataclass(frozen=True, slots=True)
class Document:
    """A document the guardrails read: its text (UTF-8, without a byte-order mark), where its string
    is in the body, and how it is written back (`prefix`, the `data:…;base64,` it came behind)."""

    path: Path
    text: bytes
    prefix: str = ""
    bom: bytes = b""
    is_json: bool = False

    def encoded(self, text: bytes) -> bytes:
        """`text` written as this document came: base64 behind its prefix."""
        return self.prefix.encode() + base64.b64encode(self.bom + text)


def read(attachments: Attachments) -> tuple[list[Document], list[str]]:
    """The documents of a body that the guardrails read, and the names of what they cannot read
    (the format's own, then each document not read: `image`, `audio`, `video` or `document`)."""
    documents: list[Document] = []
    unread = list(attachments.unread)
    for inline in attachments.inline:
        document = _read(inline)
        if isinstance(document, str):
            if document not in unread:
                unread.append(document)
        else:
            documents.append(document)
    return documents, unread


def _read(inline: Inline) -> Document | str:
    prefix, data, media_type = "", inline.value, inline.media_type
    if data.startswith("data:"):
        head, comma, data = data.partition(",")
        media, *options = head[5:].split(";")
        if not comma or "base64" not in options:
            return DOCUMENT  # a data URL of percent-encoded text: not read
        prefix, media_type = head + ",", media or media_type
    unread = _not_text(media_type, inline.filename)
    if unread is not None and not _begins_as_text(data):
        return unread
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return unread or DOCUMENT
    bom = _BOM if raw.startswith(_BOM) else b""
    text = raw[len(bom) :]
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return unread or DOCUMENT
    if unread is not None and _CONTROL.search(text) is not None:
        return unread
    is_json = _is_json(media_type, inline.filename)
    return Document(inline.path, text, prefix, bom, is_json)


def _begins_as_text(data: str) -> bool:
    """Whether a base64 document's first bytes are text (UTF-8, a character cut at the end aside;
    no control character but whitespace)."""
    try:
        head = base64.b64decode(data[:_HEAD], validate=True)
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return _CONTROL.search(head) is None


def _not_text(media_type: str | None, filename: str | None) -> str | None:
    """None for a text document; else the name it is unread under."""
    kind = (media_type or "").split(";")[0].strip().lower()
    if kind and kind not in _GENERIC_TYPES:
        top, _, sub = kind.partition("/")
        if top == "text" or kind in _TEXT_TYPES or sub.endswith(("+json", "+xml", "+yaml")):
            return None
        return _MEDIA.get(top, DOCUMENT)
    return None if _extension(filename) in _TEXT_EXTENSIONS else DOCUMENT


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    name = filename.rsplit("/", 1)[-1].lower()
    return name.rsplit(".", 1)[-1] if "." in name else name.lstrip(".")


def _is_json(media_type: str | None, filename: str | None) -> bool:
    kind = (media_type or "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json") or _extension(filename) == "json"
