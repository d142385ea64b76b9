"""A UTF-8 byte order mark before a stream's first byte, read past as its clients read it: the HTML
standard's event-stream decoding drops one (and so do the parsers that follow it: browsers'
EventSource, the JavaScript SDKs'), and a JSON text's readers skip one. Left in, it would make the
first event's first field another name (`\\ufeffdata`): an event Tollgate would not read and such a
client would."""

from __future__ import annotations

BOM = b"\xef\xbb\xbf"


class LeadingBom:
    """A stream's pieces without the one UTF-8 byte order mark it may begin with (it may come split
    across its first pieces). `done` once the stream's first three bytes are past: its owner then
    passes pieces on without asking."""

    __slots__ = ("_head", "done")

    def __init__(self) -> None:
        self._head = b""
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        head = self._head + chunk if self._head else chunk
        if len(head) < len(BOM) and BOM.startswith(head):
            self._head = head  # the start of a mark, or of text: the next piece tells
            return b""
        self._head, self.done = b"", True
        return head[len(BOM) :] if head.startswith(BOM) else head

    def flush(self) -> bytes:
        """What it held, where the stream ended within its first three bytes."""
        head, self._head, self.done = self._head, b"", True
        return head
