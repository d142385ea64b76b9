"""A time-stamp reply's certificates put in DER order (`der_order`), on replies of a real TSA
(OpenSSL's `openssl ts -reply`, tests/support/tsa.py) that sends its chain and one that does not."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from cryptography import x509
from rfc3161_client import VerifierBuilder, decode_timestamp_response
from tests.support.tsa import REJECTION, Tsa, openssl_verify, tsa_fixture

from tollgate.records.audit.anchors import request_for
from tollgate.records.audit.der_order import reply_in_der_order, token_in_der_order, token_of

CHAIN = "6a" * 32


chained = tsa_fixture("chained", listening=False, chain=True)
alone = tsa_fixture("alone", listening=False)


def _elements(data: bytes) -> list[bytes]:
    """The DER elements one after the other in `data` (definite lengths)."""
    found, at = [], 0
    while at < len(data):
        length, start = data[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, start = int.from_bytes(data[start : start + count], "big"), start + count
        found.append(data[at : start + length])
        at = start + length
    return found


def _certificates_field(reply: bytes) -> bytes:
    """The encoded certificates of the reply's SignedData, one after the other, as the reply has them."""
    response = decode_timestamp_response(reply_in_der_order(reply))
    certificates = [bytes(c) for c in response.signed_data.certificates]
    start = min(reply.find(c) for c in certificates)
    return reply[start : start + sum(map(len, certificates))]


def test_a_reply_with_its_chain_is_refused_by_the_library_as_sent_and_read_once_ordered(
    chained: Tsa, tmp_path: Path
) -> None:
    query, _nonce = request_for(CHAIN)
    reply = chained.reply_to(query)
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        decode_timestamp_response(reply)  # as OpenSSL sends it: the signer's certificate first
    ordered = reply_in_der_order(reply)
    assert len(ordered) == len(reply) and ordered != reply  # the set's elements moved, nothing else
    response = decode_timestamp_response(ordered)
    assert len(response.signed_data.certificates) == 3
    sent, read = _elements(_certificates_field(reply)), _elements(_certificates_field(ordered))
    assert read == sorted(sent) and sent != read
    assert {bytes(c) for c in response.signed_data.certificates} == set(sent)
    roots = x509.load_pem_x509_certificates(chained.ca_file.read_bytes())
    assert VerifierBuilder(roots=roots).build().verify(response, hashlib.sha256(CHAIN.encode()).digest())
    # The token as the TSA sent it, and as ordered: OpenSSL verifies both; ordered, they are one.
    token = token_of(reply)
    assert token is not None and token in reply and token != response.time_stamp_token()
    assert token_in_der_order(token) == response.time_stamp_token()
    for der in (token, response.time_stamp_token()):
        done = openssl_verify(der, CHAIN.encode(), chained.ca_file, tmp_path)
        assert (done.returncode, done.stdout) == (0, "Verification: OK\n"), done.stderr


def test_any_order_of_the_certificates_reads_as_one(chained: Tsa) -> None:
    reply = chained.reply_to(request_for(CHAIN)[0])
    field = _certificates_field(reply)
    at = reply.find(field)
    ordered = reply_in_der_order(reply)
    for order in itertools.permutations(_elements(field)):
        shuffled = reply[:at] + b"".join(order) + reply[at + len(field) :]
        assert reply_in_der_order(shuffled) == ordered
        token = token_of(shuffled)
        assert token is not None and token_in_der_order(token) == token_of(ordered)


def test_a_reply_with_its_own_certificate_alone_is_left_as_it_is(alone: Tsa) -> None:
    reply = alone.reply_to(request_for(CHAIN)[0])
    assert reply_in_der_order(reply) == reply
    response = decode_timestamp_response(reply)
    assert len(response.signed_data.certificates) == 1
    assert token_of(reply) == response.time_stamp_token() == token_in_der_order(response.time_stamp_token())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a time-stamp reply",
        b"\x30\x80\x30\x03\x02\x01\x00\x00\x00",  # BER's indefinite length
        b"\x30\x84\xff\xff\xff\xff\x30",  # a length past the end
        b"\x30\x05\x30\x03\x02\x01\x00",  # granted, its token missing
        REJECTION,
    ],
)
def test_what_cannot_be_read_is_left_to_the_library(data: bytes, chained: Tsa) -> None:
    assert reply_in_der_order(data) == data
    assert token_in_der_order(data) == data
    assert token_of(data) is None
    reply = chained.reply_to(request_for(CHAIN)[0])
    for cut in (len(reply) - 1, len(reply) // 2, 40):  # cut short: as it is
        assert reply_in_der_order(reply[:cut]) == reply[:cut]
