"""How large a head may be: HTTP/1's found in a buffer without holding more than the bound, and
HTTP/2's header list kept to the bound by a decoder whose compression state stays whole."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import OversizedHeaderListError
from hpack.struct import NeverIndexedHeaderTuple

from tollgate.proxy import heads
from tollgate.proxy.heads import MAX_REQUEST_HEAD, BoundedDecoder, http1_first_line, http1_head_past

LIMIT = 1024


@pytest.mark.parametrize(
    ("data", "past"),
    [
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, True),  # no end of head within the bound
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 900, False),  # not past the bound yet: more may end it
        (b"GET / HTTP/1.1\r\nX: a\r\n\r\n" + b"body" * 1000, False),  # a small head, then its body
        (b"GET / HTTP/1.1\nX: a\n\n" + b"body" * 1000, False),  # bare line feeds, as h11 reads them
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 1010 + b"\r\n\r\n" + b"b" * 100, True),  # it ends past the bound
        (b"\r\n" * 600 + b"GET / HTTP/1.1\r\n\r\n", True),  # blank lines before the head count too
    ],
)
def test_an_http1_head_is_past_the_bound_when_no_blank_line_ends_it_within(data: bytes, past: bool) -> None:
    assert http1_head_past(bytearray(data), LIMIT) is past


def test_the_first_line_of_an_http1_head_is_read_only_within_the_bound() -> None:
    assert http1_first_line(b"\r\nPOST /v1/x?k=1 HTTP/1.1\r\nX: " + b"a" * 2000, LIMIT) == b"POST /v1/x?k=1 HTTP/1.1"
    assert http1_first_line(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n", LIMIT) is None


def test_the_bound_is_64_kib() -> None:
    assert MAX_REQUEST_HEAD == 65536


def reference(blocks: list[bytes]) -> list[list[tuple[bytes, bytes]]]:
    decoder = hpack.Decoder(max_header_list_size=1 << 30)
    return [[tuple(h) for h in decoder.decode(b, raw=True)] for b in blocks]  # type: ignore[misc]


def test_a_block_within_the_bound_decodes_as_hpack_does() -> None:
    encoder = hpack.Encoder()
    headers = [(":method", "POST"), (":path", "/v1/chat"), ("authorization", "Bearer x"), ("x-a", "é" * 10)]
    blocks = [encoder.encode(headers), encoder.encode(headers)]  # the second leans on the table
    decoder = BoundedDecoder(LIMIT)
    assert [decoder.decode(b, raw=True) for b in blocks] == reference(blocks)
    assert not decoder.cut


def test_the_fields_past_the_bound_are_dropped_and_the_table_stays_in_step_with_the_encoder() -> None:
    encoder = hpack.Encoder()
    first = [
        (":method", "POST"),
        (":path", "/v1/chat"),
        ("x-kept", "1"),
        ("x-big", "b" * 3000),  # crosses the bound: dropped, and everything after it
        ("x-after", "small, indexed"),  # added to the table though dropped
        ("x-huge-indexed", "h" * 5000),  # larger than the table: it empties it
        ("x-late", "late"),
    ]
    second = [(":method", "POST"), (":path", "/v1/chat"), ("x-late", "late"), ("x-kept", "1")]
    blocks = [encoder.encode(first), encoder.encode(second)]
    decoder = BoundedDecoder(LIMIT)
    kept = decoder.decode(blocks[0], raw=True)
    assert decoder.cut
    assert kept == [(b":method", b"POST"), (b":path", b"/v1/chat"), (b"x-kept", b"1")]
    assert decoder.decode(blocks[1], raw=True) == reference(blocks)[1]
    assert not decoder.cut


def test_a_huffman_coded_field_certainly_past_the_bound_is_dropped_undecoded(monkeypatch) -> None:
    decoded: list[int] = []
    real = heads.decode_huffman
    monkeypatch.setattr(heads, "decode_huffman", lambda data: decoded.append(len(data)) or real(data))
    encoder = hpack.Encoder()
    # 30000 bytes at 5 bits each: 18750 coded bytes, which decode to no fewer than 5000 (30 bits
    # each): past the bound, and too large for the table (4096) whatever they decode to.
    block = encoder.encode([(":method", "GET"), ("x-big", "a" * 30000), ("x-next", "n")])
    decoder = BoundedDecoder(LIMIT)
    assert decoder.decode(block, raw=True) == [(b":method", b"GET")] and decoder.cut
    assert max(decoded) < 100  # the small fields only
    follow = encoder.encode([(":method", "GET"), ("x-next", "n")])
    assert decoder.decode(follow, raw=True) == [(b":method", b"GET"), (b"x-next", b"n")]


def test_a_field_never_to_be_indexed_stays_so() -> None:
    block = hpack.Encoder().encode([(":method", "GET"), NeverIndexedHeaderTuple("authorization", "Bearer x")])
    (_, auth) = BoundedDecoder(LIMIT).decode(block, raw=True)
    assert isinstance(auth, NeverIndexedHeaderTuple) and auth == (b"authorization", b"Bearer x")


def test_a_block_of_many_fields_past_the_bound_ends_the_connection() -> None:
    block = hpack.Encoder().encode([(":method", "GET"), ("x-big", "b" * 2000)] + [("y", "z")] * 50)
    with pytest.raises(OversizedHeaderListError):
        BoundedDecoder(LIMIT, after_cut=10).decode(block, raw=True)
    assert len(BoundedDecoder(LIMIT, after_cut=60).decode(block, raw=True)) == 1


def test_a_block_of_many_small_fields_decodes_as_hpack_does() -> None:
    # hpack copies the rest of the block for each literal field; this decoder reads a view of it.
    block = hpack.Encoder().encode([(f"x-{i}", str(i)) for i in range(3000)])
    assert BoundedDecoder(1 << 20).decode(block, raw=True) == reference([block])[0]
