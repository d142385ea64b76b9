"""Which of a tool call's argument values came from outside content: the taint index of one
conversation and its look-ups.

Strings compare with case folded and white space removed. An argument value is tainted when it, or
one of its tokens (a maximal run of at least 8 characters without white space, a URL, an e-mail
address, an IBAN or a phone number inside it), appears in outside content and not in trusted text.
Values shorter than `taint_min_chars`, numbers and booleans are not compared as values (a number's
runs of 8 or more characters are: an account or a phone number), but for one case: outside prose
that quotes the value as a word by itself ("delete the file with ID '13'"). A short id a listing
holds (`id: '13'`, `["13", "14"]`) is not prose and taints nothing: ids are how an agent names the
things it read about; a stranger's sentence handing one over is how it is told which to act on.

Softer trust never untaints: the results of `trusted_tools`, an `item_tools` result's items
`owners` wrote, and the one-word names a `name_tools` result lists, are left out of the index, so a
value other outside content holds is still found there. But for the assistant's own text: a value
it holds that is a name a `name_tools` result lists, and that no other outside content holds, is the
assistant naming that item again (a channel it read messages from, named again to post there), as
it copies the user's text; it taints nothing. Not so for `trusted_tools`' results: there an agent
told to pick one of the owner's records (the dearest hotel of a catalogue) would pick it unseen,
and the assistant's copy of it (the names it asked prices for) is what still shows it.

Bounded: at most `MAX_INDEX_CHARS` characters of folded outside content per conversation (about
8 MB, some 20 MB of memory with what decoding adds). Past the bound the conversation's index is
full, and a value that trusted text does not hold counts as tainted by `unindexed`: what was not
read cannot clear anything."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from tollgate.formats.provenance import ASSISTANT, UNKNOWN, Provenance
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.decoded import MAX_NODES, decoded_texts, leaves, structure, unescaped
from tollgate.governance.agents.one_pass import PIECE_PASS
from tollgate.governance.agents.patterns_held import PatternsHeld
from tollgate.governance.agents.text_memo import TextMemo
from tollgate.governance.guardrails.engine import HYPERSCAN

MAX_INDEX_CHARS = 8_000_000
UNINDEXED = "unindexed"
_SEP = "\x00"  # between pieces: folded text holds no NUL a value could match across

_RUN = re.compile(r"\S{8,}")
_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s<>\"'`]+")
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"(?i)\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?\b")  # in groups of 4, or none
_PHONE = re.compile(r"\+?\d[\d ().-]{6,}\d")
_WORD = re.compile(r"\w+")
# The fewest characters of a run, an IBAN (12) and a phone number (8); a URL holds `://` and an
# e-mail address `@`.
_SHORTEST_RUN = 8
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)*")
_EDGES = ".,;:!?()[]{}<>\"'`"
# A literal prose quotes: its quotes after a word and a space (not after `key:`, `-`, `,` or `[`,
# as a listing writes its values), followed by a space, punctuation or the end. The opening quote
# comes first and what precedes it is looked behind from there: the search then skips to each quote
# instead of trying a look-behind at every character (some 4 times as fast).
_OPENING = "['\"`\u2018\u201c]"
_QUOTED = re.compile(
    rf"({_OPENING})(?<=[\w)][ \t]{_OPENING})"
    r"([^\s'\"`\u2018\u2019\u201c\u201d]{1,32})['\"`\u2019\u201d](?=[\s.,;:!?)]|$)"
)
# Where `_QUOTED` may match, found in one pass with Hyperscan: most tool results (JSON writes `": "`
# and `", "`) hold none, and the search, a few microseconds a kilobyte, is not run over them.
_MAY_QUOTE_PATTERN = "[\\w)][ \\t](?:['\"`]|\u2018|\u201c)"
_MAY_QUOTE = PatternsHeld([_MAY_QUOTE_PATTERN]) if HYPERSCAN else None
# The same, in a tool result's one pass (`one_pass`) with the other readers' sets.
_PIECE_MAY_QUOTE = PIECE_PASS.patterns([_MAY_QUOTE_PATTERN]) if PIECE_PASS is not None else None
_PROSE_WORDS = 3  # a text of fewer words is a value, not prose
MAX_NAME_CHARS = 64  # a longer word in a `name_tools` result is no name
_SPACE = re.compile(r"\s")


_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def folded(text: str) -> str:
    """How strings compare: case folded, white space removed."""
    if text.isascii():  # the same, many times as fast: ASCII's case folding is its lower case
        # Lowered and its white space dropped in one pass over the bytes.
        return text.encode("ascii").translate(_ASCII_LOWER, _ASCII_SPACE).decode("ascii")
    return "".join(text.casefold().split())


def tokens(value: str) -> Iterator[str]:
    """The parts of a value that are compared by themselves: runs of 8+ characters without white
    space (and the same with their punctuation trimmed), URLs, e-mail addresses, IBANs, phone numbers."""
    # Each pattern only where it can match (a search of the value in C): most values (a name, a
    # number, a short word) hold no token, and are looked through by none.
    long = len(value) >= _SHORTEST_RUN
    if long:
        for match in _RUN.finditer(value):
            run = match.group(0)
            yield run
            trimmed = run.strip(_EDGES)
            if trimmed != run and len(trimmed) >= 8:
                yield trimmed
    patterns = [_URL] if "://" in value else []
    if "@" in value:
        patterns.append(_EMAIL)
    if long:
        patterns.extend((_IBAN, _PHONE))
    for pattern in patterns:
        for match in pattern.finditer(value):
            yield match.group(0).rstrip(_EDGES)


def matches(name: str, globs: list[str]) -> bool:
    folded_name = name.casefold()
    return any(fnmatchcase(folded_name, glob.casefold()) for glob in globs)


@dataclass(slots=True)
class TaintIndex:
    """A conversation's trusted text and outside content, folded, the latter by the tool it came from."""

    min_chars: int = 5
    trusted: str = ""
    outside: dict[str, str] = field(default_factory=dict)
    trusted_words: set[str] = field(default_factory=set)  # the trusted text's words, case folded
    # Short literals outside prose quotes, folded, by the tools that quote them.
    quoted: dict[str, set[str]] = field(default_factory=dict)
    # The names `name_tools`' results list, folded: a value the assistant's text holds only as a
    # copy of one of these taints nothing.
    soft: str = ""
    soft_size: int = 0
    size: int = 0
    full: bool = False

    @classmethod
    def build(cls, provenance: Provenance, settings: AgentsSettings) -> TaintIndex:
        index = cls(min_chars=settings.taint_min_chars)
        # The system prompt and the user's text are sent again at every turn: each is read once.
        trusted = [_TRUSTED.get(text, _trusted_read) for text in provenance.trusted]
        index.trusted = _SEP.join(whole for whole, _ in trusted)
        index.trusted_words = set().union(*(words for _, words in trusted))
        parts: dict[str, list[str]] = {}
        soft: list[str] = []
        for piece in provenance.outside:
            softly = piece.tool not in (ASSISTANT, UNKNOWN)
            if softly and matches(piece.tool, settings.trusted_tools):
                continue
            items = softly and matches(piece.tool, settings.item_tools)
            names = softly and not items and matches(piece.tool, settings.name_tools)
            if items:
                whole, quoted = _read(item_texts(piece.text, settings))
            elif names:
                texts, listed = name_texts(piece.text)
                index._soften(soft, folded(_SEP.join(listed)))
                whole, quoted = _read(texts)
            else:  # a result sent again (an agent sends them all at every turn) is read once
                whole, quoted = _DECODED.get(piece.text, _decoded_read)
            for literal in quoted:
                index.quoted.setdefault(literal, set()).add(piece.tool)
            held = parts.setdefault(piece.tool, [])
            if index.size + len(whole) + 1 <= MAX_INDEX_CHARS:
                index.size += len(whole) + 1
                held.append(whole)
                continue
            if items:
                texts = item_texts(piece.text, settings)
            else:
                texts = name_texts(piece.text)[0] if names else decoded_texts(piece.text)
            for raw in texts:  # the text that reaches the bound
                text = folded(raw)
                if index.size + len(text) > MAX_INDEX_CHARS:
                    index.full = True
                    break
                index.size += len(text) + 1
                held.append(text)
            if index.full:
                break
        index.outside = {tool: _SEP.join(texts) for tool, texts in parts.items() if texts}
        index.soft = _SEP.join(soft)
        return index

    def _soften(self, soft: list[str], text: str) -> None:
        """A result's names kept, within a bound of its own as large as the index's (past it, left
        out: the assistant's copies of them are then tainted, as without it)."""
        if text and self.soft_size + len(text) + 1 <= MAX_INDEX_CHARS:
            self.soft_size += len(text) + 1
            soft.append(text)

    def sources(self, value: Any) -> list[str]:
        """The tools whose results hold this value or one of its tokens (trusted text not holding
        it): empty when the value is not tainted."""
        if isinstance(value, bool) or value is None:
            return []
        text = value if isinstance(value, str) else str(value)
        whole = folded(text)
        number = _NUMBER.fullmatch(whole) is not None
        found: set[str] = set()
        if len(whole) < self.min_chars or number:
            quoting = self.quoted.get(whole)
            if quoting and whole not in self.trusted_words:
                found.update(quoting)
        if whole in self.trusted:
            # Each token is a piece of the value, so folded a piece of the folded value: trusted
            # text that holds the value holds every token too (a value the user typed, mostly).
            return sorted(found)
        candidates = [t for t in (folded(t) for t in tokens(text)) if len(t) >= self.min_chars]
        if isinstance(value, str) and len(whole) >= self.min_chars and not number:
            candidates.append(whole)
        for candidate in dict.fromkeys(candidates):  # a word a value repeats is looked up once
            if candidate in self.trusted:
                continue
            held = [tool for tool, text in self.outside.items() if candidate in text]
            if held == [ASSISTANT] and not self.full and candidate in self.soft:
                continue  # the assistant naming a listed item again, and nothing else holding it
            found.update(held)
            if not held and self.full:
                found.add(UNINDEXED)
        return sorted(found)


def _trusted_read(text: str) -> tuple[str, frozenset[str]]:
    """A trusted text folded, and its words (case folded; trimmed of punctuation and split at it too)."""
    words: set[str] = set()
    for word in unescaped(text).casefold().split():
        words.update((word, word.strip(_EDGES), *_WORD.findall(word)))
    return folded(unescaped(text)), frozenset(words)


_TRUSTED: TextMemo[tuple[str, frozenset[str]]] = TextMemo(size=lambda read: len(read[0]) + sum(map(len, read[1])))


def _read(texts: list[str]) -> tuple[str, frozenset[str]]:
    """A piece's texts folded at once (the separator is kept: no text spans it), and the short
    literals its prose quotes."""
    return folded(_SEP.join(texts)), frozenset(literal for raw in texts for literal in quoted_literals(raw))


def _decoded_read(text: str) -> tuple[str, frozenset[str]]:
    texts = decoded_texts(text)
    # The result itself (the first of its texts) looked for quotes in the pass it was read in already.
    may = bool(_PIECE_MAY_QUOTE.held(text)) if _PIECE_MAY_QUOTE is not None else None
    literals = frozenset(
        literal for i, raw in enumerate(texts) for literal in quoted_literals(raw, may if i == 0 else None)
    )
    return folded(_SEP.join(texts)), literals


_DECODED: TextMemo[tuple[str, frozenset[str]]] = TextMemo(size=lambda read: len(read[0]))


def quoted_literals(text: str, may: bool | None = None) -> set[str]:
    """The literals a piece of prose quotes as words by themselves, folded; none in a text of
    fewer than `_PROSE_WORDS` words (a value, not prose). `may`: whether it may quote one, where
    that was looked for already."""
    if not any(q in text for q in "'\"`\u2018\u201c") or len(text.split(maxsplit=_PROSE_WORDS)) < _PROSE_WORDS:
        return set()
    if may is None and _MAY_QUOTE is not None:
        may = bool(_MAY_QUOTE.held(text))
    if may is False:
        return set()
    return {folded(m.group(2)) for m in _QUOTED.finditer(text)}


def item_texts(text: str, settings: AgentsSettings) -> list[str]:
    """An `item_tools` result's texts, the items `owners` wrote left out; a result with no
    structure is indexed whole."""
    value = structure(text)
    if value is None:
        plain = unescaped(text)
        value = structure(plain) if plain != text else None
    if value is None:
        return decoded_texts(text)
    fields = {f.casefold() for f in settings.item_fields}
    out: list[str] = []
    budget = MAX_NODES
    # Each node with whether an owner wrote it: an owner's item's own strings are left out, the
    # items nested in it (a stranger's reply quoted in a thread) judged by themselves.
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack and budget > 0:
        budget -= 1
        node, owned = stack.pop()
        if isinstance(node, dict):
            written_by = [v for k, v in node.items() if isinstance(k, str) and k.casefold() in fields]
            if written_by:
                owned = all(_names_owner(v, settings.owners) for v in written_by)
            for key, item in node.items():
                if isinstance(key, str) and not owned:
                    out.append(key)
                stack.append((item, owned))
        elif isinstance(node, (list, tuple)):
            stack.extend((item, owned) for item in node)
        elif not owned:
            out.extend(leaves(node))
    return out


def name_texts(text: str) -> tuple[list[str], list[str]]:
    """A `name_tools` result's texts and the names it lists: each string (or key) of one word by
    itself, up to `MAX_NAME_CHARS`, is a name; every other string, and a result with no structure,
    is indexed as any result's."""
    value = structure(text)
    if value is None:
        plain = unescaped(text)
        value = structure(plain) if plain != text else None
    if value is None:
        return decoded_texts(text), []
    texts: list[str] = []
    names: list[str] = []
    for leaf in leaves(value):
        word = leaf.strip()
        if word and len(word) <= MAX_NAME_CHARS and not _SPACE.search(word):
            names.append(word)
        else:
            texts.append(leaf)
    return texts, names


def _names_owner(value: Any, owners: list[str]) -> bool:
    """Whether a field names an owner: every name and address it holds (a sender's name and address
    alike) matches one of `owners`, so that an owner's name beside a stranger's address is a stranger."""
    names = [n.strip() for n in _strings(value) if n.strip()]
    return bool(owners and names) and all(matches(name, owners) for name in names)


def _strings(value: Any, depth: int = 0) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (dict, list, tuple)):
        if depth > 4:  # a name deeper than this is no sender's: not the owner's
            return ["?"]
        inner = value.values() if isinstance(value, dict) else value
        return [s for v in list(inner)[:64] for s in _strings(v, depth + 1)]
    return [] if value is None else [str(value)]


def tainted_values(arguments: Any, index: TaintIndex) -> list[tuple[tuple[str | int, ...], list[str]]]:
    """Each tainted value of a call's arguments, by its path (keys and list positions), with the
    tools its outside content came from. Freeform input (a string) is one value at the empty path."""
    out: list[tuple[tuple[str | int, ...], list[str]]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), arguments)]
    budget = MAX_NODES
    while stack and budget > 0:
        budget -= 1
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(node))))
        else:
            found = index.sources(node)
            if found:
                out.append((path, found))
    return out
