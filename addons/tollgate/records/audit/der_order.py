"""A time-stamp reply's certificates put in DER order, so that `rfc3161-client` reads the replies
that verifiers (`openssl ts -verify`) accept.

A `SignedData`'s `certificates` (and `crls`) are a `SET OF`: DER sorts its elements by their
encodings, and `rfc3161-client` refuses a set that is not sorted (`InvalidSetOrdering`). Many TSAs
send the signer's certificate first and then its chain (OpenSSL's `ts -reply` with `certs =`), in
no sorted order. Their order means nothing, and the signature does not cover them (it covers the
signed attributes, which name the signer's certificate by its hash): sorting them changes neither
what is signed nor who signed it. The elements are moved within their set, which keeps every
length, so nothing around them changes. Anything this module cannot read is left as it is, for the
library to say what is wrong with it."""

from __future__ import annotations

SEQUENCE, OID = 0x30, 0x06
EXPLICIT_0 = 0xA0  # ContentInfo's content; SignedData's certificates (IMPLICIT SET OF)
IMPLICIT_1 = 0xA1  # SignedData's crls (IMPLICIT SET OF)
MAX_LENGTH_OCTETS = 4  # a length past 4 GiB is no reply


class _Unreadable(Exception):
    """Not the DER this module reads: left to the library."""


def _element(data: bytes | bytearray, at: int, end: int) -> tuple[int, int, int]:
    """The DER element at `at`, within `end`: its tag, where its content starts, where it ends."""
    if at + 2 > end:
        raise _Unreadable
    tag, length = data[at], data[at + 1]
    if tag & 0x1F == 0x1F:  # a tag number of more than one byte: none in these structures
        raise _Unreadable
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > MAX_LENGTH_OCTETS or start + count > end:  # 0: BER's indefinite length
            raise _Unreadable
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > end:
        raise _Unreadable
    return tag, start, start + length


def _expect(data: bytes | bytearray, at: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = _element(data, at, end)
    if found != tag:
        raise _Unreadable
    return start, stop


def _sort_set(data: bytearray, start: int, end: int) -> None:
    """The elements of the set whose content is data[start:end], in DER order, in place."""
    elements = []
    at = start
    while at < end:
        stop = _element(data, at, end)[2]
        elements.append(bytes(data[at:stop]))
        at = stop
    data[start:end] = b"".join(sorted(elements))


def _sort_token(data: bytearray, at: int, end: int) -> None:
    """The TimeStampToken (a ContentInfo holding a SignedData) at `at`, its sets sorted in place."""
    start, stop = _expect(data, at, end, SEQUENCE)
    content = _expect(data, start, stop, OID)[1]
    start, stop = _expect(data, content, stop, EXPLICIT_0)
    at, end = _expect(data, start, stop, SEQUENCE)  # SignedData
    while at < end:
        tag, start, stop = _element(data, at, end)
        if tag in (EXPLICIT_0, IMPLICIT_1):  # certificates, crls
            _sort_set(data, start, stop)
        at = stop


def token_in_der_order(token: bytes) -> bytes:
    """A TimeStampToken (DER) with its certificates and CRLs in DER order; as it is when it cannot
    be read."""
    data = bytearray(token)
    try:
        _sort_token(data, 0, len(data))
    except _Unreadable:
        return token
    return bytes(data)


def reply_in_der_order(reply: bytes) -> bytes:
    """A TimeStampResp (DER) whose token's certificates and CRLs are in DER order; as it is when it
    cannot be read, or holds no token."""
    data = bytearray(reply)
    try:
        start, end = _expect(data, 0, len(data), SEQUENCE)
        at = _expect(data, start, end, SEQUENCE)[1]  # PKIStatusInfo
        if at < end:
            _sort_token(data, at, end)
    except _Unreadable:
        return reply
    return bytes(data)


def token_of(reply: bytes) -> bytes | None:
    """The TimeStampToken of a TimeStampResp, its bytes as the TSA sent them (None: none, or the
    reply cannot be read)."""
    try:
        start, end = _expect(reply, 0, len(reply), SEQUENCE)
        at = _expect(reply, start, end, SEQUENCE)[1]
        if at >= end:
            return None
        stop = _element(reply, at, end)[2]
    except _Unreadable:
        return None
    return reply[at:stop]
