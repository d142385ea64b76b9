"""A configuration's `guardrails:` compiled once (`Guardrails.of(config)`): given a request body
and the call's provider, model, client and groups, what the matching rules' detectors and
`tollgate_keys` find in it, each finding with its action (the strongest of the matching rules
that name its kind: deny, then redact, then audit; `tollgate_keys` always deny), and the body with
the findings to redact replaced. Plain Python, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from tollgate.common.config_base import unexpanded
from tollgate.formats.answer_reading.scanning import PLACEHOLDER
from tollgate.formats.bodies.attachments import TextRuns
from tollgate.formats.bodies.json_paths import string_spans
from tollgate.formats.registry import WIRE_FORMATS
from tollgate.governance.guardrails import detectors, joined, text
from tollgate.governance.guardrails.answer import HOLD_BYTES, AnswerDetectors
from tollgate.governance.guardrails.documents import Document
from tollgate.governance.guardrails.engine import Engine, Found
from tollgate.governance.guardrails.guardrails_settings import STRENGTH, GuardrailRule
from tollgate.governance.matching import matches


class ConfiguredGuardrails(Protocol):
    """What of a configuration (`core.config.Config`) its guardrails are made of: its rules, and
    the keys of its own it holds anywhere (`own_secrets` walks it, as the pydantic model it is)."""

    @property
    def guardrails(self) -> tuple[GuardrailRule, ...]: ...


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector found: its kind, the span of the body it is (`start` is the byte where it
    begins; in a document's text, for one found in `Scan.documents[document]`) and what the rules do
    with it. Never the value."""

    kind: str
    start: int
    end: int
    action: str
    document: int | None = None
    # Its other pieces, where it is split across adjacent text parts (`joined.py`): each redacted.
    also: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Scan:
    """What the rules that apply to one call found in its body."""

    findings: tuple[Finding, ...]
    unread: Literal["deny", "allow"]  # what the matching rules do with what cannot be read
    documents: tuple[Document, ...] = ()  # the documents read, which findings may be in
    # The body holds a key or type under which a wire format keeps documents or content by
    # reference (`WireFormat.attachment_markers`): it is worth walking (most bodies are not).
    may_attach: bool = False

    def counts(self) -> dict[str, int]:
        """Occurrences by kind (the policy's `input.findings`, the audit's `findings`)."""
        return dict(Counter(f.kind for f in self.findings))

    @property
    def denied(self) -> bool:
        return any(f.action == "deny" for f in self.findings)

    def denied_counts(self) -> dict[str, int]:
        """The kinds and counts a refusal names."""
        return dict(Counter(f.kind for f in self.findings if f.action == "deny"))

    def found_in(self, body: bytes, path: tuple[str | int, ...]) -> str | None:
        """The kind of the first finding in the string at `path` of a JSON body (its `model`), or
        None: a name that holds a secret is recorded as its placeholder, never as it is."""
        located = string_spans(body, (path,)) if self.findings else {}
        if path not in located:
            return None
        start, end = located[path]
        for f in self.findings:
            if f.document is None and any(start < e and s < end for s, e in ((f.start, f.end), *f.also)):
                return f.kind
        return None

    def redact(self, body: bytes) -> tuple[bytes, int]:
        """`body` with every finding whose action is redact replaced by `[REDACTED:<kind>]`, and the
        number of replacements (overlapping findings make one). A document with such findings is
        written anew in its string, redacted and encoded as it came; the rest of the body is left
        as it is. ValueError when a document's string cannot be found in the body."""
        spans = [
            (s, e, f.kind)
            for f in self.findings
            if f.action == "redact" and f.document is None
            for s, e in ((f.start, f.end), *f.also)
        ]
        in_documents: dict[int, list[tuple[int, int, str]]] = {}
        for f in self.findings:
            if f.action == "redact" and f.document is not None:
                in_documents.setdefault(f.document, []).append((f.start, f.end, f.kind))
        if not in_documents:
            return text.replace(body, spans) if spans else (body, 0)
        located = string_spans(body, (self.documents[i].path for i in in_documents))
        edits: list[tuple[int, int, bytes]] = []
        replaced = 0
        for i, found in in_documents.items():
            document = self.documents[i]
            if document.path not in located:
                raise ValueError("a document's string is not where its path says")
            start, end = located[document.path]
            redacted, n = text.replace(document.text, found)
            edits.append((start + 1, end - 1, document.encoded(redacted)))  # inside its quotes
            replaced += n
        # A match in a document's base64 as the body writes it goes with the document written anew.
        inside = [(s, e) for s, e, _ in edits]
        for s, e, kind in text.merged(spans):
            if not any(a <= s and e <= b for a, b in inside):
                edits.append((s, e, PLACEHOLDER.format(kind=kind).encode()))
                replaced += 1
        return text.rewrite(body, edits), replaced


CLEAN = Scan((), "allow")
# How many names `shown_name` remembers before it forgets them all.
MAX_NAMES_SHOWN = 4096


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: GuardrailRule
    kinds: frozenset[str]


class Guardrails:
    """The rules and Tollgate's own keys, compiled: built once per configuration, not per call."""

    def __init__(
        self,
        rules: Iterable[GuardrailRule] = (),
        own_keys: Iterable[str] = (),
        own_key_digests: Iterable[str] = (),
        use_hyperscan: bool | None = None,
    ) -> None:
        rules = tuple(rules)
        # A request is read by the rules on `request` (the default); an answer by those on `answer`.
        self.rules = tuple(_Compiled(r, frozenset(r.kinds)) for r in rules if "request" in r.on)
        self.answer_rules = tuple(_Compiled(r, frozenset(r.kinds)) for r in rules if "answer" in r.on)
        own_keys, own_key_digests = tuple(own_keys), tuple(own_key_digests)
        # What it was compiled from: a reload whose rules and keys are the same keeps it. Holds
        # secrets: never in a message.
        self.made_of = (rules, own_keys, own_key_digests)
        own = detectors.own_keys(own_keys, own_key_digests)
        found: list[detectors.Detector] = list(own)
        custom: dict[str, detectors.Detector] = {}
        for rule in self.rules:
            for entry in rule.rule.detect:
                if entry.regex is not None:
                    custom[entry.name] = detectors.custom_regex(entry.name, re.compile(entry.regex.encode()))
                elif entry.terms is not None:
                    custom[entry.name] = detectors.custom_terms(entry.name, entry.terms)
        kinds = {k for rule in self.rules for k in rule.kinds}
        found += detectors.builtin(kinds)
        found += custom.values()
        # A detector that matches beyond ASCII reads every \uXXXX escape decoded.
        every_escape = not all(d.pattern.pattern.isascii() for d in found)
        self._keys = Engine(own, use_hyperscan, every_escape, MARKERS)
        self._all = Engine(found, use_hyperscan, every_escape, MARKERS) if self.rules else self._keys
        self._actions: dict[tuple[int, ...], dict[str, str]] = {}
        # Names a caller gives (a call's model), as the records show them (`shown_name`): read for
        # Tollgate's own keys and the built-in `secrets` detectors, compiled here with the rest
        # (about 0.1 s), not at the first call.
        self._names = Engine((*own, *detectors.builtin(detectors.GROUPS["secrets"])), use_hyperscan)
        self._shown: dict[str, str] = {}
        self._own = own
        self._use_hyperscan = use_hyperscan
        self._answers: dict[tuple[int, ...], AnswerDetectors] = {}
        # An answer's detectors compiled here, not at the first answer (on the event loop, holding
        # every stream in flight): for each set of answer rules a call may match, where they are
        # few; else for each rule alone and for all of them.
        for applying in _answer_sets(self.answer_rules):
            self._answer_detectors(applying)

    def answer(
        self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]
    ) -> AnswerDetectors | None:
        """The detectors an answer to this call is read with (the rules on `answer` that match it,
        and `tollgate_keys`, always denied), compiled once per set of rules; None when no rule
        on `answer` matches it."""
        applying = [r for r in self.answer_rules if matches(r.rule.match, provider, model, client, groups)]
        if not applying:
            return None
        return self._answer_detectors(applying)

    def answer_all(self) -> AnswerDetectors:
        """The detectors of every rule on `answer`, whatever its match, and `tollgate_keys`
        (`tollgate scan --answer`)."""
        return self._answer_detectors(list(self.answer_rules))

    def reads_answers(self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]) -> bool:
        """Whether a rule on `answer` matches the call."""
        return any(matches(r.rule.match, provider, model, client, groups) for r in self.answer_rules)

    def answer_to_compile(
        self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]
    ) -> Callable[[], AnswerDetectors] | None:
        """What compiles the detectors an answer to this call will be read with, where they are not
        compiled yet (a set of rules not compiled at load); None where they are, or no rule on
        `answer` matches the call. Called before the call goes upstream, the compile run in a
        worker thread (`Guard.answer_ready`), so that no answer waits on one on the event loop."""
        applying = [r for r in self.answer_rules if matches(r.rule.match, provider, model, client, groups)]
        if not applying or tuple(id(rule) for rule in applying) in self._answers:
            return None
        return lambda: self._answer_detectors(applying)

    def _answer_detectors(self, applying: list[_Compiled]) -> AnswerDetectors:
        key = tuple(id(rule) for rule in applying)
        found = self._answers.get(key)
        if found is None:
            kinds = {k for rule in applying for k in rule.kinds}
            chosen = [*self._own, *detectors.builtin(kinds), *_custom(applying).values()]
            hold = min((rule.rule.answer_hold_bytes for rule in applying), default=HOLD_BYTES)
            found = AnswerDetectors(chosen, self._action(applying), hold, self._use_hyperscan)
            # Compiled in a worker thread, or at once: either is the same set's.
            self._answers[key] = found
        return found

    @classmethod
    def of(
        cls, config: ConfiguredGuardrails, use_hyperscan: bool | None = None, previous: Guardrails | None = None
    ) -> Guardrails:
        """`config`'s rules and own keys compiled; `previous` itself when they are the same."""
        exact, digests = own_secrets(config)
        if previous is not None and previous.made_of == (tuple(config.guardrails), tuple(exact), tuple(digests)):
            return previous
        return cls(config.guardrails, exact, digests, use_hyperscan)

    def __repr__(self) -> str:  # its keys never in a message
        return f"<Guardrails: {len(self.rules)} rules, {len(self._keys.detectors)} own-key detectors>"

    @property
    def own_key_count(self) -> int:
        """How many of Tollgate's own keys it looks for (`tollgate_keys`): a count, never a key."""
        return len(self.made_of[1]) + len(self.made_of[2])

    @property
    def reads(self) -> bool:
        """Whether it reads any call or answer: it has rules, or Tollgate holds keys to look for."""
        return self.reads_requests or bool(self.answer_rules)

    @property
    def reads_requests(self) -> bool:
        """Whether it reads requests: it has rules on `request`, or Tollgate holds keys to look for."""
        return bool(self.rules) or bool(self._keys.detectors)

    @property
    def uses_hyperscan(self) -> bool:
        return self._all.uses_hyperscan

    def scan(
        self,
        body: bytes,
        provider: str,
        model: str | None,
        client: str | None,
        groups: tuple[str, ...],
        is_json: bool = True,
        documents: Sequence[Document] = (),
        runs: TextRuns | None = None,
    ) -> Scan:
        """What the rules matching this call (and `tollgate_keys`) find in its body, in the documents
        read of it (`documents.read`) and in the joins of its adjacent text parts (`runs`)."""
        applying = [r for r in self.rules if matches(r.rule.match, provider, model, client, groups)]
        return self._scan(body, applying, is_json, tuple(documents), runs)

    def unread(self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]) -> str:
        """What a call whose content cannot be read does (an upload streamed unread, a stored
        prompt): `deny` when a rule that matches it says so, else `allow`."""
        applying = (r for r in self.rules if matches(r.rule.match, provider, model, client, groups))
        return "deny" if any(r.rule.unread == "deny" for r in applying) else "allow"

    def answer_unread(self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]) -> str:
        """What an answer that cannot be read (a JSON answer past 16 MiB) does: `deny` when an
        answer rule that matches the call says so, else `allow`."""
        applying = (r for r in self.answer_rules if matches(r.rule.match, provider, model, client, groups))
        return "deny" if any(r.rule.unread == "deny" for r in applying) else "allow"

    def shown_name(self, name: str) -> str:
        """A name the caller gave (a call's model) as the audit, the console, the metrics and saved
        flows show it: each secret the built-in `secrets` detectors or `tollgate_keys` find in it,
        whatever the rules say, written as its kind (`[REDACTED:<kind>]`), never as its text. The
        same string where they find none. Remembered: a call's model is one of a few."""
        shown = self._shown.get(name)
        if shown is None:
            if len(self._shown) >= MAX_NAMES_SHOWN:
                self._shown.clear()
            shown = self._shown[name] = self._name_secrets(name)
        return shown

    def _name_secrets(self, name: str) -> str:
        data = name.encode("utf-8", "surrogateescape")
        read, found = self._names.scan(data, is_json=False)
        if not found:
            return name
        redacted, _ = text.replace(data, [(*read.to_body(s, e), kind) for kind, s, e in _once(found)])
        return redacted.decode("utf-8", "surrogateescape")

    def scan_all(self, body: bytes, is_json: bool = True) -> Scan:
        """What every rule, whatever its match, and `tollgate_keys` find (`tollgate scan`)."""
        return self._scan(body, list(self.rules), is_json, (), None)

    def _action(self, applying: list[_Compiled]) -> dict[str, str]:
        """What these rules do with each kind they name (the strongest of the rules that name it):
        made once per set of rules (a rule names a group's hundred kinds), not per call."""
        key = tuple(id(rule) for rule in applying)
        action = self._actions.get(key)
        if action is None:
            action = {detectors.OWN_KEYS: "deny"}
            for rule in applying:
                for kind in rule.kinds:
                    if STRENGTH[rule.rule.action] > STRENGTH.get(action.get(kind, ""), -1):
                        action[kind] = rule.rule.action
            self._actions[key] = action
        return action

    def _scan(
        self,
        body: bytes,
        applying: list[_Compiled],
        is_json: bool,
        documents: tuple[Document, ...],
        runs: TextRuns | None,
    ) -> Scan:
        unread: Literal["deny", "allow"] = "deny" if any(r.rule.unread == "deny" for r in applying) else "allow"
        engine = self._all if applying else self._keys
        if not engine.detectors:  # no rules apply and Tollgate holds no key: nothing to look for
            return Scan((), unread, documents)
        read, found, marked = engine.scan_marked(body, is_json)
        findings = self._found(read, found, is_json, applying, None)
        if runs:
            findings = _joined(engine, body, runs, findings, self._action(applying))
        for i, document in enumerate(documents):
            read, found = engine.scan(document.text, document.is_json)
            findings += self._found(read, found, document.is_json, applying, i)
        return Scan(tuple(findings), unread, documents, marked)

    def _found(
        self, read: text.ScannedText, found: list[Found], is_json: bool, applying: list[_Compiled], document: int | None
    ) -> list[Finding]:
        body = read.body
        if not found:
            return []
        action = self._action(applying)
        findings = []
        numbers = _JsonNumbers(body) if is_json else None
        for kind, s, e in _once(found):
            if kind in action:
                start, end = read.to_body(s, e)
                if numbers is None or not numbers.holds(start, end):
                    findings.append(Finding(kind, start, end, action[kind], document))
        findings.sort(key=_FINDING_ORDER)
        return findings


# Up to this many answer rules, every set of them a call may match is compiled at load (15 sets).
_ANSWER_SETS_AT_LOAD = 4


def _answer_sets(rules: tuple[_Compiled, ...]) -> Iterator[list[_Compiled]]:
    """The sets of answer rules compiled at load, each in the rules' order."""
    if len(rules) <= _ANSWER_SETS_AT_LOAD:
        for chosen in range(1, 1 << len(rules)):
            yield [rule for i, rule in enumerate(rules) if chosen >> i & 1]
        return
    for rule in rules:
        yield [rule]
    yield list(rules)


def _custom(rules: Iterable[_Compiled]) -> dict[str, detectors.Detector]:
    """The custom detectors these rules define, by name."""
    custom: dict[str, detectors.Detector] = {}
    for rule in rules:
        for entry in rule.rule.detect:
            if entry.regex is not None:
                custom[entry.name] = detectors.custom_regex(entry.name, re.compile(entry.regex.encode()))
            elif entry.terms is not None:
                custom[entry.name] = detectors.custom_terms(entry.name, entry.terms)
    return custom


def _joined(
    engine: Engine, body: bytes, runs: TextRuns, findings: list[Finding], action: dict[str, str]
) -> list[Finding]:
    """`findings` with what the joins of adjacent text parts hold that the body's scan did not find:
    a match split across two parts (which replaces a piece of it the body's scan found), or one
    beside a join (a pair's half, found by its partner across the join) of a kind the body's scan
    did not find. A match of a kind found already in one part is the body's own: the body is read
    again only for a new finding (rare), to map its pieces back."""
    data, segments = joined.joins(runs)
    if not segments:
        return findings
    read, matches = engine.scan(data, False)
    if not matches:  # most bodies
        return findings
    starts = [segment.at for segment in segments]
    seen = {f.kind for f in findings}
    kinds: list[str] = []
    new: list[list[joined.JoinedPiece]] = []
    for kind, s, e in _once(matches):
        if kind not in action:
            continue
        pieces = joined.pieces(data, segments, starts, *read.to_body(s, e))
        if not pieces or (kind in seen and len({p.path for p in pieces}) < 2):
            continue  # of a kind found already, in one part: the body's own
        kinds.append(kind)
        new.append(pieces)
    located = joined.body_spans(body, new) if new else None
    for kind, spans in zip(kinds, located or (), strict=False):
        (start, end), *more = spans
        covered = [
            f
            for f in findings
            if f.kind == kind and f.document is None and any(f.start < b and a < f.end for a, b in spans)
        ]
        if covered and not more:
            continue  # the body's scan found it
        findings = [f for f in findings if f not in covered]
        findings.append(Finding(kind, start, end, action[kind], None, tuple(more)))
    findings.sort(key=_FINDING_ORDER)
    return findings


_FINDING_ORDER = attrgetter("start", "end", "kind")  # in C: a key for each of a hostile body's findings
# Every wire format's markers: the one pass over a body says whether any may be worth walking.
MARKERS = tuple(dict.fromkeys(m for wire in WIRE_FORMATS.values() for m in wire.attachment_markers))
_STRUCTURE_BEFORE = frozenset(b":,[")
_STRUCTURE_AFTER = frozenset(b",]}")
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)


class _JsonNumbers:
    """Whether a span is a number of the JSON outside any string (a card number sent as one): no
    text the detectors read, and nothing a placeholder could replace. Asked in order of `start`,
    it reads the body's strings once, up to the last span asked about."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.strings = _JSON_STRING.finditer(body)
        self.string: tuple[int, int] = (-1, -1)

    def holds(self, start: int, end: int) -> bool:
        body = self.body
        if not body[start:end].isdigit():
            return False
        before = body[max(0, start - 64) : start].rstrip()[-1:]
        after = body[end : end + 64].lstrip()[:1]
        if (before and before[0] not in _STRUCTURE_BEFORE) or (after and after[0] not in _STRUCTURE_AFTER):
            return False
        # Digits between `,` and `,` are a number only outside a string ("alice,4111…,12/29").
        while self.string[1] <= start:
            m = next(self.strings, None)
            if m is None:
                self.string = (len(body), len(body) + 1)
                break
            self.string = m.span()
        return not self.string[0] < start < self.string[1]


def _once(found: list[Found]) -> Iterator[Found]:
    """Each match once: of one kind's matches that overlap (two patterns of a kind, or a pair's
    half found by name and beside its partner), the first and longest."""
    # By start, then the longest first: two stable sorts with keys in C, each merging the runs
    # the detectors found (a hostile body's hundreds of thousands in milliseconds).
    ordered = sorted(found, key=_END, reverse=True)
    ordered.sort(key=_START)
    last_end: dict[str, int] = {}
    for kind, s, e in ordered:
        if s < last_end.get(kind, -1):
            continue
        last_end[kind] = e
        yield kind, s, e


_START, _END = itemgetter(1), itemgetter(2)


# Settings that hold a secret of Tollgate's own: upstream keys, virtual keys, virtual AWS secrets,
# session and bearer tokens, JWT issuers' secrets, MCP servers' credentials, brokered credentials'
# tokens and the placeholders agents hold for them.
_SECRET_FIELDS = frozenset(
    (
        *("keys", "key", "secret_access_key", "session_token", "bearer_token", "bearer", "secret"),
        *("client_secret", "cursor_secret"),
    )
)
_SECRET_FIELDS_OF = {"McpHeader": frozenset(("value",)), "BrokeredCredential": frozenset(("virtual", "value"))}


def own_secrets(config: ConfiguredGuardrails) -> tuple[list[str], list[str]]:
    """Every secret of Tollgate's own its configuration holds, written out, and the SHA-256 (hex)
    of each virtual key written as `sha256:<hex>`."""
    exact: list[str] = []
    digests: list[str] = []
    for value in _secrets(config, None):
        if unexpanded(value):  # its variable unset, left as written by a read-only command: not a key
            continue
        if value.startswith("sha256:") and len(value) == 71:
            digests.append(value.removeprefix("sha256:"))
        else:
            exact.append(value)
    return exact, digests


def _secrets(node: Any, name: str | None) -> Iterator[str]:
    if isinstance(node, BaseModel):
        named = _SECRET_FIELDS | _SECRET_FIELDS_OF.get(type(node).__name__, frozenset())
        for field in type(node).model_fields:
            yield from _secrets(getattr(node, field), field if field in named else None)
        for field, value in (node.__pydantic_extra__ or {}).items():
            yield from _secrets(value, field if field in named else None)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _secrets(item, name)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _secrets(item, name)
    elif isinstance(node, str) and name is not None:
        yield node


@cache
def _plain() -> Guardrails:
    return Guardrails()


def shown_name(name: str, guardrails: Guardrails | None) -> str:
    """`Guardrails.shown_name` of a configuration's guardrails, or where it has none to run (no
    rules, no keys of its own) of the built-in `secrets` detectors alone."""
    return (guardrails or _plain()).shown_name(name)
