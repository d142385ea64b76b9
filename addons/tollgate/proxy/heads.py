"""How large a message's head may be, and how to tell one past it without holding more of it: HTTP/1's
head (its first line and header fields, up to the blank line) read from a buffer, and HTTP/2's
header list decoded from HPACK (its fields past the bound decoded, so that the connection's
compression state stays whole, and dropped)."""

from __future__ import annotations

import re

import hpack
from hpack.exceptions import HPACKDecodingError, OversizedHeaderListError
from hpack.hpack import decode_integer
from hpack.huffman_table import decode_huffman
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple

# A request's head (request line or pseudo-header fields, and header fields) may be this large in
# all; past it, the request is refused (431) before more of it is held. Far above what any SDK
# sends (a few KiB) and below what a proxy can hold for many connections at once.
MAX_REQUEST_HEAD = 64 * 1024
# The same bound for an upstream's answer: a provider's answer head is a few KiB.
MAX_RESPONSE_HEAD = MAX_REQUEST_HEAD

_LEADING_BLANK_LINES = re.compile(rb"[\r\n]*")
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, as h11 (mitmproxy's reader) finds it


def http1_head_past(data: bytes | bytearray, limit: int) -> bool:
    """Whether the HTTP/1 head at the start of `data` (blank lines before it included) is past
    `limit` bytes: more than that has come, and no blank line ends the head within them."""
    if len(data) <= limit:
        return False
    start = _LEADING_BLANK_LINES.match(data).end()  # type: ignore[union-attr]  # matches the empty string
    return _BLANK_LINE.search(data, start, limit) is None


def http1_first_line(data: bytes | bytearray, limit: int) -> bytes | None:
    """The first line of the HTTP/1 head at the start of `data`, without its line end, when it ends
    within `limit` bytes; None when it does not."""
    start = _LEADING_BLANK_LINES.match(data).end()  # type: ignore[union-attr]
    end = data.find(b"\n", start, limit)
    return None if end == -1 else bytes(data[start:end]).removesuffix(b"\r")


class BoundedDecoder(hpack.Decoder):
    """hpack's decoder, keeping of each header block the fields that fit in `limit` bytes as RFC
    9113 counts a header list (name, value and 32 per field): the first field that does not fit and
    those after it are decoded only as far as the dynamic table needs (the peer's encoder counts on
    it for the next blocks, so the connection goes on) and dropped. `cut` says whether the last
    block was. Past the bound, a block of more than `after_cut` further fields is refused
    (`OversizedHeaderListError`, which ends the connection as hpack's own bound does): a block of
    countless tiny fields is not worth decoding for the one request it carries.

    hpack decodes each literal field from a copy of the rest of the block; here from a view of it,
    so that a block of many fields costs time in proportion to its size."""

    def __init__(self, limit: int, after_cut: int = 1024) -> None:
        super().__init__(max_header_list_size=limit)
        self.limit = limit
        self.after_cut = after_cut
        self.cut = False
        self._size = 0  # of the fields kept
        self._dropped = 0  # fields dropped

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        self.cut, self._size, self._dropped = False, 0, 0
        # Never hpack's own bound (h2 sets it to the one it announces): the fields kept stay within ours.
        self.max_header_list_size = max(self.max_header_list_size, self.limit)
        return list(super().decode(data, raw))

    def _decode_indexed(self, data: bytes | memoryview) -> tuple[HeaderTuple, int]:
        header, consumed = super()._decode_indexed(data)
        return self._kept(header, len(header[0]) + len(header[1])), consumed  # type: ignore[return-value]

    def _decode_literal(self, data: bytes | memoryview, should_index: bool) -> tuple[HeaderTuple, int]:
        view = data if isinstance(data, memoryview) else memoryview(data)
        first = view[0]
        if should_index:
            name_index, never_indexed = first & 0x3F, False
        else:
            name_index, never_indexed = first & 0x0F, bool(first & 0x10)
        name: bytes | _Coded
        if name_index:
            index, at = decode_integer(view, 6 if should_index else 4)
            name = self.header_table.get_by_index(index)[0]
        else:
            name, at = _coded(view, 1)
        value: bytes | _Coded
        value, at = _coded(view, at)
        least = 32 + _least(name) + _least(value)  # its size as decoded, at the fewest
        if not self.cut and least + self._size <= self.limit:
            name, value = _text(name), _text(value)  # it may fit: its decoded size says
            kept = self._kept(HeaderTuple(name, value), len(name) + len(value))
        else:
            kept = self._kept(None, None)
        if should_index:
            if least > self.header_table.maxsize:
                # Too large for the table whatever it decodes to: adding it empties the table, as
                # adding its coded bytes (no shorter than its least decoded size) does.
                self.header_table.add(_bytes(name), _bytes(value))
            else:
                self.header_table.add(_text(name), _text(value))
        if kept is not None and never_indexed:
            kept = NeverIndexedHeaderTuple(*kept)
        return kept, at  # type: ignore[return-value]  # None: dropped (hpack's loop skips it)

    def _kept(self, header: HeaderTuple | None, size: int | None) -> HeaderTuple | None:
        if header is not None and size is not None and not self.cut and self._size + 32 + size <= self.limit:
            self._size += 32 + size
            return header
        self.cut = True
        self._dropped += 1
        if self._dropped > self.after_cut + 1:
            raise OversizedHeaderListError(f"a header list past {self.limit} bytes, of too many fields to read")
        return None


class _Coded:
    """A string field as it came: its bytes, Huffman-coded or not, decoded only when needed."""

    __slots__ = ("data", "huffman")

    def __init__(self, data: memoryview, huffman: bool) -> None:
        self.data, self.huffman = data, huffman


def _coded(view: memoryview, at: int) -> tuple[_Coded, int]:
    """The string field at `at`, and where the next field starts."""
    length, used = decode_integer(view[at:], 7)
    start = at + used
    if start + length > len(view):
        raise HPACKDecodingError("Truncated header block")
    return _Coded(view[start : start + length], bool(view[at] & 0x80)), start + length


def _least(field: bytes | _Coded) -> int:
    """The fewest bytes the field decodes to: a Huffman code is at most 30 bits a byte."""
    if isinstance(field, bytes):
        return len(field)
    return len(field.data) * 8 // 30 if field.huffman else len(field.data)


def _text(field: bytes | _Coded) -> bytes:
    if isinstance(field, bytes):
        return field
    return decode_huffman(field.data) if field.huffman else field.data.tobytes()


def _bytes(field: bytes | _Coded) -> bytes:
    return field if isinstance(field, bytes) else field.data.tobytes()
