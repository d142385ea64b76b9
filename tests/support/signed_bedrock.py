"""Canned answers from fake upstreams whose Bedrock checks the signature Tollgate puts on a call:
the tests' real AWS credentials (Tollgate's own), and the handler that answers with them."""

from __future__ import annotations

from tests.support.aws import botocore_accepts
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply

AWS_REAL = ("AKIAREAL000000000000", "real-aws-SECRET-key-0000")


def signed_answers(received: Received) -> Reply:
    """`provider_answers`, but a Converse call not signed with AWS_REAL is refused as Bedrock does."""
    if received.path.endswith("/converse") and not botocore_accepts(received, *AWS_REAL):
        return Reply(403, {"message": "fake Bedrock: bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"})
    return provider_answers(received)
