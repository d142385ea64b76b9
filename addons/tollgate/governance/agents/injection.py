"""Injection signals: what in outside content (a tool's result, read as text) addresses the model,
hides text from the person reading it, or asks for data to be sent to a foreign host. `signals`
returns counts per kind, never the text: what a finding covers is content and stays out of records.

- `injection.instructions`: text that addresses the model or tells it to set aside its task
  ("ignore all previous instructions", "before you can solve the task", "this is an important
  message from", `<INFORMATION>`, `###(system_message)`, role markers such as `<|im_start|>`, "you
  are now an unrestricted assistant", "new instructions:"). Phrases, never bare words a codebase is
  full of (`TODO:`, "system", "instructions"). Read with letter case folded, format characters
  (Unicode's Cf) and variation selectors removed, compatibility forms folded (NFKC: full-width
  letters), and any run of white space, `*`, `~` or a written `\\n`, `\\t`, `\\r` between words.
- `injection.hidden`: a run of Unicode tag characters (U+E0000–E007F; not an emoji's subdivision
  flag), a run of bidi embeddings, overrides or isolates (U+202A–202E, U+2066–2069), a run of two or
  more zero-width characters or of variation selectors (a single one joins an emoji or a script's
  letters), and an HTML comment (`<!-- … -->`, or markdown's `[//]: # (…)`) holding instructions or
  text addressed to an AI reader.
- `injection.exfil_link`: a markdown image or link (inline, a reference definition, or an autolink)
  to a host the globs do not allow, whose URL has a slot for data to be written in: `{…}`, `[…]`,
  `<…>` (or their %-escapes), `$NAME`, `%s`, `...`, a word such as `PASSWORD` or `USER_DATA` in
  capitals, or a query ending in `=`. Web pages and mail are full of links with queries and tokens
  to foreign hosts (tracking, badges); what sets an exfiltration link in outside content apart is
  the slot it asks the model to fill.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence

from tollgate.governance.agents.link_hosts import LinkHosts, read_url
from tollgate.governance.agents.one_pass import PIECE_PASS
from tollgate.governance.agents.patterns_held import PatternsHeld
from tollgate.governance.agents.text_memo import TextMemo
from tollgate.governance.agents.words_held import WordsHeld
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.text import FORMAT_RANGES

INSTRUCTIONS, HIDDEN, EXFIL_LINK = "injection.instructions", "injection.hidden", "injection.exfil_link"
KINDS = (INSTRUCTIONS, HIDDEN, EXFIL_LINK)

# Read as nothing before phrases are looked for: format characters and variation selectors.
_INVISIBLE_RUN = re.compile(
    "[" + "".join(f"{chr(first)}-{chr(last)}" for first, last in FORMAT_RANGES) + "\ufe00-\ufe0f\U000e0100-\U000e01ef]+"
)
# Between two words of a phrase.
_GAP = r"(?:[\s*~]|\\[nrt])+"

_AI = (
    r"(?:ai|llm|assistant|chatbot|language model|large language model|ai model|ai assistant|ai agent|"
    r"gpt|chatgpt|claude|gemini|llama|mistral|copilot)"
)
_TOLD = r"(?:\w*structions?|directions|directives|rules|prompts?|guidelines|commands|context|tasks?|orders|guidance)"
_VERBS = ("ignore", "disregard", "forget", "override", "bypass", "neglect", "set aside")
_TOLD_BEFORE = (
    rf"(?:all |any )?(?:of )?(?:the |your |my |these |those |this )?(?:previous|prior|above|earlier|preceding|"
    rf"foregoing|original|initial|former|system|existing) (?:\w+ )?{_TOLD}\b"
)
# Each phrase as the words it may begin with and the pattern of the rest (a space is a gap): a
# phrase's pattern is run only over a text holding its lead's words (all found in one pass), and
# begins with them.
_PHRASES: list[tuple[tuple[str, ...], str]] = [
    # setting aside what it was told
    (_VERBS, f" {_TOLD_BEFORE}"),
    (("ignore", "disregard", "forget"), rf" (?:all )?(?:your|my) {_TOLD}\b"),
    (
        ("ignore", "disregard", "forget"),
        r" (?:everything|all) (?:you (?:were|have been) told|above|before|so far|previously)\b",
    ),
    # AgentDojo's "important instructions" and its kin
    (
        ("before you",),
        r" (?:can )?(?:solve|do|complete|start|continue|finish|answer|proceed with|work on|begin|"
        r"carry on with|respond to) (?:the|your|this|my|that) (?:\w+ )?(?:task|request|question|job|assignment)\b",
    ),
    (("after you",), r" do that,? you can (?:solve|do|complete|continue|finish)\b"),
    (
        ("this is",),
        r" an? (?:very )?(?:important|urgent|critical|priority) (?:message|instruction|notice|note|update) from\b",
    ),
    (("to you",), rf",? (?:the |an? )?{_AI}\b"),
    (("<information>", "</information>"), ""),
    # role markers and a system message's dress
    (
        ("##(system", "## (system", "##[system", "## [system"),
        r"(?: |_|-)?(?:message|prompt|instructions?|override|note) ?[)\]]",
    ),
    (("[",), r" ?(?:system|admin|developer) (?:message|note|override|instructions?|prompt) ?\]"),
    (("<|",), r"(?:im_start|im_end|im_sep|start_header_id|end_header_id|eot_id|system|user|assistant)\|>"),
    (("<start_of_turn>", "<end_of_turn>"), ""),
    # a new role or a new task
    (
        ("you are now",),
        rf" (?:in )?(?:an? |the |my )?(?:\w+ )?(?:{_AI}|agent|bot|persona|character|dan|"
        rf"(?:developer|god|admin|debug|jailbreak|unrestricted) mode)\b",
    ),
    (("you are no longer",), r" (?:an? |the )?(?:ai|assistant|bound|restricted|limited|required to|allowed to)\b"),
    (("from now on",), r",? you (?:are|will|must|should|shall|have to)\b"),
    (
        ("new", "updated", "revised", "real", "actual", "true", "secret", "hidden", "override", "overriding", "urgent"),
        r" (?:system )?instructions? ?:",
    ),
    (
        ("your",),
        r" (?:new|real|actual|true|only|updated) (?:task|goal|objective|instructions?|mission|job|priority)"
        r" (?:is|are|now)\b",
    ),
    # addressing the model
    (
        ("attention", "note", "message", "important", "instruction", "instructions", "notice"),
        rf" (?:to|for) (?:the |all |any )?{_AI}s?\b",
    ),
    (("dear", "hey", "hello", "hi"), rf",? {_AI}\b"),
    (("if you are",), rf" an? {_AI}\b"),
    (("do not", "don't", "dont", "never"), r" (?:tell|inform|notify|alert|let) the user\b"),
    (("stop what",), r" you(?:'re| are) doing\b"),
    (
        ("reveal", "print", "output", "repeat", "leak", "disclose"),
        r" (?:your|the) (?:system prompt|initial instructions|hidden instructions|original instructions)\b",
    ),
]
# Markers read in their letter case: `[INST]` is Llama's, `[inst]` a variable.
_CASED_MARKERS = re.compile(r"\[/?INST\]|<</?SYS>>")


def _phrase(pattern: str) -> str:
    """A phrase's pattern with its spaces read as gaps (` ?` as an optional one)."""
    return pattern.replace(" ?", "\0").replace(" ", _GAP).replace("\0", f"(?:{_GAP})?")


def _compiled(lead: str, rest: str) -> tuple[str, re.Pattern[str]]:
    """A phrase beginning with `lead`: its first word, and its pattern (a word begins where no
    letter or digit comes before it, checked once the literal is found)."""
    first = lead.split(maxsplit=1)[0]
    word = re.escape(first)
    boundary = f"(?:(?<![a-z0-9]{word})|(?<=\\\\[nrt]{word}))" if first[0].isalnum() else ""
    return first, re.compile(word + boundary + _unbounded(lead, rest)[len(word) :])


def _unbounded(lead: str, rest: str) -> str:
    """A phrase's pattern without the look-behind at its first word: it matches wherever the
    phrase's pattern does."""
    return re.escape(lead.split(maxsplit=1)[0]) + _phrase("".join(" " + re.escape(w) for w in lead.split()[1:]) + rest)


_COMPILED = [_compiled(lead, rest) for leads, rest in _PHRASES for lead in leads]

# With Hyperscan, the phrases that may be in a text are found in one pass, and only their patterns
# run (`PatternsHeld`: most texts hold none).
_PHRASES_HELD = (
    PatternsHeld([_unbounded(lead, rest) for leads, rest in _PHRASES for lead in leads]) if HYPERSCAN else None
)
# Without it, what a text holds wherever a phrase is: each word of its lead (in `_COMPILED`'s
# order). A phrase's pattern runs only over a text holding them, all found in one pass.
_NEEDS = [frozenset(lead.split()) for leads, _ in _PHRASES for lead in leads]
_LEAD_WORDS = WordsHeld(word for needs in _NEEDS for word in needs)
# What a text holds where it may hold a comment, a link or a cased marker: found in the same pass.
_MARKS = WordsHeld(("<!--", "[//]:", "](", "]:", "<", "INST]", "SYS>>"))
# Both, in a tool result's one pass (`one_pass`) with the other readers' sets. The phrases are
# looked for there in the text as it is, letter case ignored: in an ASCII text, wherever its lower
# case (what they are read in) may hold one.
_PIECE_MARKS = PIECE_PASS.words(_MARKS.words) if PIECE_PASS is not None else None
_PIECE_PHRASES = (
    PIECE_PASS.patterns([_unbounded(lead, rest) for leads, rest in _PHRASES for lead in leads], caseless=True)
    if PIECE_PASS is not None
    else None
)

# Within a comment only: an AI reader named beside something it is to do.
_TO_AI_READER = re.compile(
    rf"\b{_phrase(_AI)}s?\b.{{0,80}}?"
    r"\b(?:must|should|shall|need to|have to|always|never|do not|don'?t|please|make sure)\b",
    re.DOTALL,
)

_TAGS = re.compile("[\U000e0000-\U000e007f]+")
# An emoji's subdivision flag: a black flag, tag letters and digits, a cancel tag (some tables
# write a joiner between them).
_FLAG = re.compile("\U0001f3f4(?:\u200d?[\U000e0030-\U000e0039\U000e0061-\U000e007a]){1,7}\u200d?\U000e007f")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]+")
_ZERO_WIDTH = re.compile("[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]{2,}|[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}")
_COMMENT = re.compile(r"<!--(.*?)(?:-->|\Z)|^\[//\]: ?# ?\((.*)\)$", re.DOTALL | re.MULTILINE)

_LINK = re.compile(
    r"\]\(\s*<([^<>\n]*)>"  # an inline destination in angle brackets
    r"|\]\(\s*([^\s)]+(?:\([^\s()]*\)[^\s)]*)*)"  # an inline destination
    r"|\]:[ \t]*\n?[ \t]*<?([^\s>]+)"  # a reference definition's
    r"|<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>"  # an autolink
)
_SLOT_WORDS = (
    r"DATA|SECRET|PASSWORD|PASSWD|TOKEN|INFO|EMAIL|CONTENT|CONVERSATION|HISTORY|CHAT|MESSAGE|SUMMARY|"
    r"HERE|CODE|BALANCE|IBAN|ADDRESS|INPUT|CONTEXT|NAME|NUMBER|PHONE"
)
_SLOT = re.compile(
    rf"\{{[^{{}}]*\}}|%7[bB]|\[[^\]]*\]|%5[bB]|<[^>]*>|%3[cC]|\$\{{?[A-Za-z_]|%[sd](?![0-9a-fA-F])|\.\.\.|…|=$|=&"
    rf"|(?<![A-Za-z0-9])[A-Z_]*(?:{_SLOT_WORDS})[A-Z_]*(?![a-z0-9])"
)


def ready() -> None:
    """The phrases' one pass made ready (compiled at its first use otherwise): before the proxy
    listens, not at the first call."""
    if _PHRASES_HELD is not None:
        _PHRASES_HELD.ready()
    if PIECE_PASS is not None:
        PIECE_PASS.ready()


class InjectionSignals:
    """The injection kinds, with the hosts links in outside content may lead to."""

    def __init__(self, links_allow: Sequence[str] = ()) -> None:
        self._hosts = LinkHosts(links_allow)
        self._read: TextMemo[dict[str, int]] = TextMemo()  # a result sent again is read once

    def signals(self, text: str) -> dict[str, int]:
        """Counts per kind found in `text` (kinds not found are left out)."""
        return dict(self._read.get(text, self._signals))

    def _signals(self, text: str) -> dict[str, int]:
        phrases: Collection[int] | None = None
        if _PIECE_MARKS is not None and _PIECE_PHRASES is not None:
            marks = _PIECE_MARKS.held(text)
            phrases = _PIECE_PHRASES.held(text) if text.isascii() else None
        else:
            marks = _MARKS.held(text)
        found = {
            INSTRUCTIONS: count_instructions(text, marks, phrases),
            HIDDEN: count_hidden(text, marks),
            EXFIL_LINK: self.count_exfil_links(text, marks),
        }
        return {kind: n for kind, n in found.items() if n}

    def count_exfil_links(self, text: str, marks: Collection[str] | None = None) -> int:
        marks = _MARKS.held(text) if marks is None else marks
        if "](" not in marks and "]:" not in marks and "<" not in marks:
            return 0
        return sum(1 for m in _LINK.finditer(text) if self._exfil(next(g for g in m.groups() if g is not None)))

    def _exfil(self, url: str) -> bool:
        """Whether a link leads off the list with a slot for data; a host that is no host name
        receives nothing, but `mailto:` sends mail."""
        host = read_url(url).host
        mail = url[:7].lower() == "mailto:"
        if host == "" or (host is None and not mail) or self._hosts.allows_host(host):
            return False
        return has_slot(url)


def has_slot(url: str) -> bool:
    """Whether a URL has a place for data to be written in, past its host and before its fragment
    (which no server receives)."""
    start = url.find("//")
    rest = url[start + 2 :] if start >= 0 else url.partition(":")[2]
    cut = min((i for i in (rest.find(c) for c in "/?\\") if i >= 0), default=len(rest))
    return bool(_SLOT.search(rest[cut:].partition("#")[0]))


def readable(text: str) -> str:
    """The text as phrases are looked for in it: invisible characters removed, compatibility forms
    folded, letter case folded."""
    if not text.isascii():
        if _INVISIBLE_RUN.search(text):
            text = _INVISIBLE_RUN.sub("", text)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    return text.lower()


def count_instructions(text: str, marks: Collection[str] | None = None, phrases: Collection[int] | None = None) -> int:
    """Phrases found (one matched by two patterns counts twice). `marks`: the `_MARKS` the text
    holds, where they were found already; `phrases`: the phrases it may hold (any that its readable
    form holds among them), where they were looked for already."""
    marks = _MARKS.held(text) if marks is None else marks
    n = 0
    if phrases is None or phrases:  # most texts hold none: not made readable
        read = readable(text)
        if phrases is not None:
            run: Collection[int] = phrases
        elif _PHRASES_HELD is not None:
            run = _PHRASES_HELD.held(read)
        else:
            held = _LEAD_WORDS.held(read)
            run = [i for i, needs in enumerate(_NEEDS) if needs <= held]
        n = sum(sum(1 for _ in _COMPILED[i][1].finditer(read)) for i in run)
    if "INST]" in marks or "SYS>>" in marks:  # what each marker holds
        n += sum(1 for _ in _CASED_MARKERS.finditer(text))
    return n


def count_hidden(text: str, marks: Collection[str] | None = None) -> int:
    marks = _MARKS.held(text) if marks is None else marks
    n = 0
    if not text.isascii():
        if _TAGS.search(text):
            n += sum(1 for _ in _TAGS.finditer(_FLAG.sub("", text)))
        n += sum(1 for _ in _BIDI.finditer(text)) + sum(1 for _ in _ZERO_WIDTH.finditer(text))
    if "<!--" in marks or "[//]:" in marks:
        for m in _COMMENT.finditer(text):
            said = readable(m.group(1) if m.group(1) is not None else m.group(2))
            n += bool(count_instructions(said) or _TO_AI_READER.search(said))
    return n
