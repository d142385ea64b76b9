"""A console's answers as a client without a browser sees them: redirects not followed, every
header field's values kept (by lower-case name)."""

from __future__ import annotations

import urllib.error
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetched(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float
) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, fields (by lower-case name, every value) and body of `request` through `opener`
    (built with `NoRedirect`): an error status is an answer like another."""
    try:
        answer = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        answer = e
    with answer:
        fields: dict[str, list[str]] = {}
        for name, value in answer.headers.items():
            fields.setdefault(name.lower(), []).append(value)
        return answer.status, fields, answer.read()
