"""Content encodings undone within a bound: a stream decompressed piece by piece, a whole body at
once; a body that decodes past its bound, or not at all, is refused."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Any


class Undecodable(ValueError):
    """Encoded bytes that do not decode as their Content-Encoding says."""


class DecodedTooLarge(Undecodable):
    """Encoded bytes that decode to more than the limit set."""


def _is_zlib_header(head: bytes) -> bool:
    """Whether two bytes begin a zlib stream (RFC 1950: method 8, a header that is a multiple of 31)."""
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


class Decompressor:
    """Undoes a Content-Encoding piece by piece: gzip (several members one after another, as the
    format allows), deflate (zlib-wrapped as HTTP says, or raw as some servers send it), br and
    zstd (several frames). Anything else, bytes that do not decode, or bytes after a deflate or
    brotli stream's end, are `Undecodable`.

    With a `limit`, no call decodes to more than that: a few KiB of gzip can decode to megabytes
    and of brotli or zstd to gigabytes, so that a body is never decoded past what a reader takes."""

    def __init__(self, encoding: str, limit: int | None = None) -> None:
        encoding = encoding.strip().lower()
        self.limit = limit
        self._object: Any = None  # the decompression object of the member being read
        self._new: Callable[[], Any] | None = None  # one for the next member, where another may follow
        self._decode: Callable[[Any, bytes, int], bytes] = _zlib_decode  # (object, data, most out or -1)
        self._errors: tuple[type[Exception], ...] = (zlib.error,)
        self._head = b""  # deflate's first byte, until the second tells whether it is zlib-wrapped
        if encoding in ("gzip", "x-gzip"):
            self._new = lambda: zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            self._object = brotli.Decompressor()
            self._decode = _brotli_decode
            self._errors = (brotli.error,)
        elif encoding == "zstd":
            if sys.version_info >= (3, 14):
                from compression import zstd
            else:
                from backports import zstd  # a mitmproxy dependency before Python 3.14

            self._new = zstd.ZstdDecompressor
            self._decode = _zstd_decode
            self._errors = (zstd.ZstdError,)
        elif encoding != "deflate":
            raise Undecodable(f"cannot read a {encoding}-encoded body")
        if self._new is not None:
            self._object = self._new()

    def feed(self, chunk: bytes) -> bytes:
        if self._object is None:  # deflate: whether it is zlib-wrapped is told by its first two bytes
            self._head += chunk
            if len(self._head) < 2:
                return b""
            chunk, self._head = self._head, b""
            self._object = zlib.decompressobj(zlib.MAX_WBITS if _is_zlib_header(chunk) else -zlib.MAX_WBITS)
        out = []
        size = 0
        try:
            while chunk:
                if self.finished:
                    if self._new is None:
                        raise Undecodable("bytes follow the end of the encoded body")
                    self._object = self._new()  # the next member
                decoded = self._decode(self._object, chunk, -1 if self.limit is None else self.limit - size + 1)
                size += len(decoded)
                if self.limit is not None and size > self.limit:
                    raise DecodedTooLarge(f"the body decodes to more than {_size(self.limit)} at once")
                out.append(decoded)
                chunk = getattr(self._object, "unused_data", b"")  # empty until the member ends
        except self._errors as e:
            raise Undecodable(f"the body does not decode: {e}") from None
        return b"".join(out)

    @property
    def finished(self) -> bool:
        """Whether the bytes so far end where an encoded member (or the whole stream) ends."""
        if self._object is None:
            return False
        is_finished = getattr(self._object, "is_finished", None)  # brotli's
        return bool(is_finished()) if is_finished is not None else bool(self._object.eof)


def decode_whole(body: bytes, encoding: str, limit: int) -> bytes:
    """A whole body with its Content-Encoding undone (`identity`: as it is); `Undecodable` if it
    cannot be exactly, or `DecodedTooLarge` past `limit` bytes."""
    if not body or encoding.strip().lower() == "identity":
        return body
    decoder = Decompressor(encoding, limit)
    decoded = decoder.feed(body)
    if not decoder.finished:
        raise Undecodable("the body ends before its encoded data does")
    return decoded


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"


def _zlib_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.decompress(data, max(most, 0))  # zlib's 0: no limit
    return decoded


def _brotli_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.process(data) if most < 0 else decoder.process(data, output_buffer_limit=most)
    return decoded


def _zstd_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.decompress(data, most)
    return decoded
