"""Where a link leads: the host a URL names, read as a markdown renderer and then a browser read it,
and whether a list of host globs (`common/host_globs.py`) allows it.

A URL is read after markdown's backslash escapes and HTML entities are decoded and the tabs and
line ends a browser drops are removed, since `https&#58;//evil.example` and `https\\://…` lead where
`https://…` does. A URL without a scheme or a leading `//` (`#part`, `docs/x`) names no host: it
leads to the page's own site and is allowed. A URL whose host is not a plain ASCII host name (an
IP literal in brackets, a name in another script, a scheme without a host such as `mailto:` or
`javascript:`) is never allowed: fail closed."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from tollgate.common.host_globs import glob_pattern

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# What a browser removes anywhere in a URL, and around it.
_DROPPED = re.compile(r"[\t\n\r]")
_AROUND = "".join(map(chr, range(33)))
# Markdown's backslash escapes of ASCII punctuation.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_WEB = ("http", "https")


@dataclass(frozen=True, slots=True)
class Url:
    """A URL as read: `host` is "" for a URL naming no host (relative), None for one naming a host
    that no glob can allow; `extra` says whether it carries more than its scheme and host (user
    information, a port, a path other than `/`, a query or a fragment); `ended` whether its host is
    known whole (what follows the host was seen)."""

    host: str | None
    extra: bool
    ended: bool


def read_url(url: str) -> Url:
    """The URL as a renderer and a browser read it."""
    if "\\" in url:
        url = _ESCAPE.sub(r"\1", url)
    if "&" in url:
        url = html.unescape(url)
    url = _DROPPED.sub("", url).strip(_AROUND)
    scheme = _SCHEME.match(url)
    if scheme:
        if scheme.group()[:-1].lower() not in _WEB:
            return Url(None, True, True)
        rest = url[scheme.end() :]
    elif len(url) >= 2 and url[0] in "/\\" and url[1] in "/\\":
        rest = url
    else:
        return Url("", bool(url), True)
    rest = rest.lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority, after = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    _, at, hostport = authority.rpartition("@")
    host, colon, port = hostport.partition(":")
    host = unquote(host).lower().removesuffix(".")
    known = host if _HOST_NAME.fullmatch(host) and (not colon or port.isdigit()) else None
    return Url(known, bool(at or colon or after not in ("", "/")), end is not None)


class LinkHosts:
    """The hosts links may lead to, by globs; a URL naming no host is allowed."""

    def __init__(self, allow: Sequence[str]) -> None:
        self._pattern = re.compile("|".join(f"(?:{glob_pattern(glob)})" for glob in allow) or "(?!)")

    def allows_host(self, host: str | None) -> bool:
        return host == "" or (host is not None and self._pattern.fullmatch(host) is not None)

    def allows(self, url: str) -> bool:
        return self.allows_host(read_url(url).host)
