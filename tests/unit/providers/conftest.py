"""Fixtures of the provider tests."""

from __future__ import annotations

from typing import Any

import pytest

from .common import _Sent


@pytest.fixture(scope="module")
def bedrock_client() -> Any:
    botocore_session = pytest.importorskip("botocore.session")
    session = botocore_session.get_session()
    client = session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )

    def stop(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else (request.body or b"")
        raise _Sent(request.url, body)

    client.meta.events.register("before-send", stop)
    return client
