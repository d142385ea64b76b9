"""The fake Bedrock's own SigV4 check, with botocore over what it received: independent of
Tollgate's verifier, which is Tollgate's own code."""

from __future__ import annotations

import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .fake_upstream import Received

_AUTH = re.compile(
    r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)"
)


def botocore_accepts(received: Received, access_key: str, secret_key: str, token: str | None = None) -> bool:
    m = _AUTH.search(received.headers.get("authorization", ""))
    if not m or m.group(1) != access_key:
        return False
    region, service, signed, given = m.group(3), m.group(4), m.group(5).split(";"), m.group(6)
    headers = {name: received.headers[name] for name in signed if name in received.headers}
    request = AWSRequest(
        method=received.method,
        url=f"https://{received.headers['host']}{received.path}",
        data=received.body,
        headers=headers,
    )
    request.context["timestamp"] = received.headers["x-amz-date"]
    auth = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request) == given
