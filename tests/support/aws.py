"""The fake Bedrock's own SigV4 check, with botocore over what it received: independent of
Tollgate's verifier, which is Tollgate's own code; and a request signed as the AWS SDK for
JavaScript signs over HTTP/2, which neither botocore nor Tollgate's code makes."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

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


def signed_over_authority(
    *,
    access_key: str,
    secret_key: str,
    authority: str,
    path: str,
    body: bytes,
    amz_date: str,
    region: str = "us-east-1",
    service: str = "bedrock",
) -> dict[str, str]:
    """The headers the AWS SDK for JavaScript sends over HTTP/2 (its `:authority` with them), signed
    as it signs: `:authority` in place of `host`. The canonical request is written out here by hand,
    the way the SDK's signer (@smithy/signature-v4) writes it, path segments encoded once more."""
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        ":authority": authority,
        "content-type": "application/json",
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
    }
    canonical_path = "/".join(quote(segment, safe="-_.~") for segment in path.split("/"))
    lines = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers))
    signed = ";".join(sorted(headers))
    canonical = f"POST\n{canonical_path}\n\n{lines}\n{signed}\n{payload}"
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return {**headers, "authorization": authorization}
