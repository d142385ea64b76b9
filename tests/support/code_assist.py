"""A call to Gemini Code Assist's endpoint as its CLI makes it, from the clients' venv: one method
(`generateContent`, or `streamGenerateContent` as server-sent events), its body, its OAuth token."""

from __future__ import annotations

from typing import Any

CALL = """
import json, urllib.error, urllib.request
query = "?alt=sse" if METHOD == "streamGenerateContent" else ""
request = urllib.request.Request(URL + ":" + METHOD + query, data=json.dumps(BODY).encode(), method="POST",
    headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as r:
        report(status=r.status, body=r.read().decode())
except urllib.error.HTTPError as e:
    report(status=e.code, body=e.read().decode())
"""


def code_assist_run(gw: Any, method: str, body: dict[str, Any], url: str, token: str) -> dict[str, Any]:
    """`method` of `url` with `body`, as `token`, through the gateway: the status and the body."""
    return gw.run(f"METHOD, BODY, URL, TOKEN = {method!r}, {body!r}, {url!r}, {token!r}\n" + CALL)
