"""The event list's cursors (`/api/events`'s `cursor` and `after`), sealed: a cursor is the last
record looked at, and that number, read by a person who may see only some of the records, would
tell how many records the whole audit holds and how fast it grows with other people's calls.

A cursor is the record's number sealed with AES-GCM (a fresh nonce each, so that two cursors of the
same place do not look alike), the viewer it was given to bound in as associated data: it means
something only to that person, and one changed, made up, or given to another is refused. The key is
derived (HKDF-SHA256) from `console.cursor_secret`, shared by every replica of the console so that a
page's cursor holds whichever one answers; without it, a random key per process (cursors then end
with the console, and a page starts over from its latest records). Plain code: no HTTP."""

from __future__ import annotations

import base64
import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tollgate.console.viewer import Viewer

FIRST = "first"  # `after=first`: from the first record the viewer may see (a walk from the start)
NONCE = 12
_NUMBER = struct.Struct(">q")
_SEALED = NONCE + _NUMBER.size + 16  # nonce, number, tag
_INFO = b"tollgate console cursor v1"


class BadCursor(ValueError):
    """A cursor this console did not give to this viewer; its message says so in plain words."""


def _bound(viewer: Viewer) -> bytes:
    """Who a cursor is given to: the role, the e-mail and the groups led (a person whose role
    changes at a new sign-in starts over)."""
    return "\x00".join([viewer.role, viewer.email or "", *sorted(viewer.leads)]).encode()


class Cursors:
    def __init__(self, secret: str | None = None) -> None:
        material = secret.encode() if secret is not None else os.urandom(32)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(material)
        self._aead = AESGCM(key)

    def seal(self, number: int, viewer: Viewer) -> str:
        nonce = os.urandom(NONCE)
        sealed = nonce + self._aead.encrypt(nonce, _NUMBER.pack(number), _bound(viewer))
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, text: str, viewer: Viewer) -> int:
        """The record number of a cursor given to `viewer`; -1 for `first`; BadCursor otherwise."""
        if text == FIRST:
            return -1
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise BadCursor("after: not a cursor this console gave you") from None
        if len(raw) != _SEALED:
            raise BadCursor("after: not a cursor this console gave you")
        try:
            plain = self._aead.decrypt(raw[:NONCE], raw[NONCE:], _bound(viewer))
        except InvalidTag:
            raise BadCursor(
                "after: not a cursor this console gave you (changed, given to another person, or from before a"
                " restart without console.cursor_secret): ask again without after"
            ) from None
        return int(_NUMBER.unpack(plain)[0])
