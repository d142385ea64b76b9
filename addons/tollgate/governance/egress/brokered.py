"""Brokered credentials (`egress.credentials`): an agent holds a placeholder (`virtual`) for a
token of another API; Tollgate puts the real token (`value`) in its place in one header of requests
to that API's host, and refuses the placeholder anywhere else. Plain Python over header fields and
URLs, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from tollgate.common.config_base import Strict

# A header name, as HTTP/1.1 allows one (RFC 9110's token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that carry the hop or the body's framing, which a credential must not replace.
_RESERVED = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "proxy-authorization")
)
# A host name written out: labels of letters, digits, '-' and '_'.
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")
# As the guardrails' `tollgate_keys` look for Tollgate's own secrets: shorter ones would be found in
# ordinary text (detectors.OWN_KEY_MIN).
PLACEHOLDER_MIN = 12
# How the token is written in the file: read from the environment, never the file.
ENVIRONMENT_VALUE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# What the audit and a refusal call a placeholder found where it does not belong.
MISPLACED = "placeholder misplaced"
SCRUBBED = b"[PLACEHOLDER]"


class BrokeredCredential(Strict):
    """`egress.credentials[]`: requests to `host` (on any port) carrying `virtual` in `header`
    have it replaced by `value`."""

    host: str
    header: str
    virtual: str = Field(min_length=PLACEHOLDER_MIN, repr=False)
    value: str = Field(min_length=1, repr=False)

    @field_validator("host")
    @classmethod
    def _a_host_name(cls, value: str) -> str:
        name = value.strip().lower().removesuffix(".")
        if not _HOST.fullmatch(name):
            raise ValueError(f"{value!r} is not a host name (write it out, e.g. api.github.com)")
        return name

    @field_validator("header")
    @classmethod
    def _a_header_name(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{value!r} is not a header name")
        if value.lower() in _RESERVED:
            raise ValueError(f"{value} is not a credential's header")
        return value.lower()

    @field_validator("virtual")
    @classmethod
    def _no_space(cls, value: str) -> str:
        if value != value.strip() or any(c in value for c in "\r\n"):
            raise ValueError("a placeholder has no leading or trailing space and no line break")
        return value


def credentials_unique(credentials: Sequence[BrokeredCredential]) -> None:
    """Each placeholder stands for one token, and a host's header takes one placeholder's token
    at most once (ValueError naming the entry, never the placeholder)."""
    seen: dict[str, int] = {}
    for i, c in enumerate(credentials):
        if c.virtual in seen:
            raise ValueError(f"entries {seen[c.virtual]} and {i} have one placeholder: each stands for one token")
        if c.virtual == c.value:
            raise ValueError(f"entry {i}'s virtual is its token: give the agent a placeholder")
        seen[c.virtual] = i


def values_from_environment(data: Any) -> None:
    """Before `${NAME}`s are expanded: each `egress.credentials[].value` is one, so that the
    token is read from the environment, never kept in the file. ValueError naming the field."""
    egress = data.get("egress") if isinstance(data, dict) else None
    credentials = egress.get("credentials") if isinstance(egress, dict) else None
    if not isinstance(credentials, list):
        return
    for i, entry in enumerate(credentials):
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, str) and not ENVIRONMENT_VALUE.fullmatch(value.strip()):
            raise ValueError(
                f"egress.credentials.{i}.value: write the token as ${{NAME}}, read from the environment, not in"
                " the file"
            )


@dataclass(frozen=True, slots=True)
class Brokering:
    """What becomes of one request's head: the header fields to send (None: as they came), how
    many placeholders were replaced by their tokens, and whether it holds a placeholder where it
    does not belong (then it is refused, and nothing is replaced)."""

    fields: list[tuple[bytes, bytes]] | None
    brokered: int
    misplaced: bool


NOTHING = Brokering(None, 0, False)


class Brokered:
    """The configured credentials, by host, and every placeholder compiled into one pattern: a
    request to no credential's host pays a search of its header values and URL for them."""

    def __init__(self, credentials: Iterable[BrokeredCredential]) -> None:
        self.credentials = tuple(credentials)
        self.by_host: dict[str, tuple[BrokeredCredential, ...]] = {}
        for c in self.credentials:
            self.by_host[c.host] = (*self.by_host.get(c.host, ()), c)
        self.hosts = frozenset(self.by_host)
        # The headers a request to each host may carry once at most: Authorization, and the ones
        # its credentials go in (lower case, `-` for `_`).
        self._single = {
            host: frozenset((b"authorization", *(c.header.encode() for c in credentials)))
            for host, credentials in self.by_host.items()
        }
        placeholders = sorted({c.virtual.encode() for c in self.credentials}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(map(re.escape, placeholders))) if placeholders else None

    def __bool__(self) -> bool:
        return bool(self.credentials)

    def __repr__(self) -> str:  # never a placeholder or a token in a message
        return f"<Brokered: {len(self.credentials)} credentials for {len(self.hosts)} hosts>"

    def allow_hosts(self) -> list[str]:
        """mitmproxy `allow_hosts` patterns for the credentials' hosts, on any port: their
        connections are decrypted, so that the placeholder can be replaced."""
        return [rf"^{re.escape(host)}\.?:\d+$" for host in sorted(self.hosts)]

    def holds_placeholder(self, fields: Iterable[tuple[bytes, bytes]], url: bytes) -> bool:
        """Whether a placeholder is in the URL or in any header field's value (one search over
        them all: a header value holds no line break)."""
        pattern = self._pattern
        if pattern is None:
            return False
        return pattern.search(b"\n".join((url, *(value for _, value in fields)))) is not None

    def repeated_header(self, host: str, fields: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The name (as `Authorization` is written) of a header that a request to `host` carries
        more than once, of Authorization and those its credentials go in; None where there is none.
        A server reads one of two, and Tollgate cannot know which: the token put in one, the
        agent's own credential could go in the other. Read in any letter case and with `_` for
        `-`, as many servers read a header's name."""
        single = self._single.get(host)
        if single is None:
            return None
        seen: set[bytes] = set()
        for name, _ in fields:
            loose = name.lower().replace(b"_", b"-")
            if loose in single:
                if loose in seen:
                    return "-".join(part.capitalize() for part in loose.decode().split("-"))
                seen.add(loose)
        return None

    def scrubbed(self, data: bytes) -> bytes:
        """`data` with every placeholder replaced by `[PLACEHOLDER]`: a refused request's URL and
        header values as the flow keeps them (mitmdump prints its URL)."""
        return data if self._pattern is None else self._pattern.sub(SCRUBBED, data)

    def broker(self, host: str, fields: Sequence[tuple[bytes, bytes]], url: bytes) -> Brokering:
        """A request to `host` (lower case, no trailing dot): each credential of the host whose
        placeholder is in its header has it replaced by the token. A placeholder anywhere else (in
        the URL, in another header, a placeholder of another host's) is misplaced."""
        pattern = self._pattern
        if pattern is None:
            return NOTHING
        if not self.holds_placeholder(fields, url):
            return NOTHING  # most requests: none to replace
        if pattern.search(url) is not None:
            return Brokering(None, 0, True)
        own = {c.virtual.encode(): c for c in self.by_host.get(host, ())}
        brokered = 0
        written: list[tuple[bytes, bytes]] = []
        for name, value in fields:
            found = [m.group() for m in pattern.finditer(value)]
            if not found:
                written.append((name, value))
                continue
            header = name.decode("latin-1").lower()
            for placeholder in found:
                c = own.get(placeholder)
                if c is None or c.header != header:
                    return Brokering(None, 0, True)
            replaced = pattern.sub(lambda m: own[m.group()].value.encode(), value)
            brokered += len(found)
            written.append((name, replaced))
        return Brokering(written if brokered else None, brokered, False)


NO_CREDENTIALS = Brokered(())


def brokered_of(credentials: Sequence[BrokeredCredential]) -> Brokered:
    return Brokered(credentials) if credentials else NO_CREDENTIALS
