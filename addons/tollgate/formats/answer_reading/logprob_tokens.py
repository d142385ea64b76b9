"""Whether an answer's log probabilities spell exactly the text they come with. Their tokens (the
chosen ones and the alternatives) are the model's text itself: the answer guardrails read them by
reading that text, so tokens that spell anything else (text that comes in another event, more than
the event's text, an alternative the model did not choose) would go on unread. An event (or a
whole answer) whose tokens do not spell exactly its own text stops the answer as unreadable
(`unread`); one whose tokens do is read with its text, and loses them where its text is written
anew. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from typing import Any

# A token of bytes that are not whole UTF-8 characters, as OpenAI names it: `bytes:\xe2\x80`.
_BYTES_TOKEN = re.compile(r"bytes:((?:\\x[0-9a-f]{2})+)")


def token_bytes(token: Any, given: Any = None) -> bytes | None:
    """The bytes a token spells (its `bytes` where given, which its `token` must name); None where
    it is of another shape or names other bytes than its `bytes`."""
    if not isinstance(token, str):
        return None
    named = _named(token)
    if given is None:
        return named
    if not isinstance(given, list) or not all(type(b) is int and 0 <= b < 256 for b in given):
        return None
    data = bytes(given)
    return data if named == data or token.encode() == data else None


def _named(token: str) -> bytes:
    found = _BYTES_TOKEN.fullmatch(token)
    return token.encode() if found is None else bytes.fromhex(found.group(1).replace("\\x", ""))


def openai_spells(entries: Any, text: Any) -> bool:
    """Whether OpenAI's log probabilities (chat's `logprobs.content` or `.refusal`, Responses'
    `logprobs`: entries of `token`, `bytes` and `top_logprobs`) spell exactly `text` (None or
    absent: none). An alternative in `top_logprobs` must be its entry's token."""
    if entries is None:
        return True
    if not isinstance(entries, list) or not isinstance(text, str | None):
        return False
    spelled = []
    for entry in entries:
        if not isinstance(entry, dict):
            return False
        data = token_bytes(entry.get("token"), entry.get("bytes"))
        tops = entry.get("top_logprobs")
        if data is None or not isinstance(tops, list | None):
            return False
        for top in tops or ():
            if not isinstance(top, dict) or token_bytes(top.get("token"), top.get("bytes")) != data:
                return False
        spelled.append(data)
    return b"".join(spelled) == (text or "").encode()


# The keys of chat's `logprobs` whose tokens spell a text of the choice's delta (or message).
CHAT_LOGPROBS = {"content": "content", "refusal": "refusal"}


def chat_spells(logprobs: Any, holder: Any) -> bool:
    """Whether a chat choice's `logprobs` spell exactly its delta's (or message's) text, each of
    its keys the text it names, and carry no token elsewhere."""
    if not logprobs:
        return True
    if not isinstance(logprobs, dict) or not isinstance(holder, dict):
        return False
    for name, value in logprobs.items():
        field = CHAT_LOGPROBS.get(name)
        if field is None:
            if value is not None:
                return False
        elif not openai_spells(value, holder.get(field)):
            return False
    return True


def completions_spells(logprobs: Any, text: Any) -> bool:
    """Whether a Completions choice's `logprobs` spell exactly its `text`: `tokens` joined, and each
    of `top_logprobs` (a token → log probability map per token) of its token alone."""
    if not logprobs:
        return True
    if not isinstance(logprobs, dict) or not isinstance(text, str | None):
        return False
    tokens = logprobs.get("tokens") or []
    tops = logprobs.get("top_logprobs") or []
    if not isinstance(tokens, list) or not isinstance(tops, list) or len(tops) > len(tokens):
        return False
    spelled = [token_bytes(token) for token in tokens]
    if any(data is None for data in spelled):
        return False
    for token, top in zip(tokens, tops, strict=False):
        if top is not None and (not isinstance(top, dict) or any(key != token for key in top)):
            return False
    return b"".join(spelled) == (text or "").encode()  # type: ignore[arg-type]


def gemini_spells(logprobs: Any, parts: Any) -> bool:
    """Whether a Gemini candidate's `logprobsResult` spell exactly the text of its parts: its
    `chosenCandidates`' tokens joined, and each of `topCandidates` of the chosen token alone."""
    if not logprobs:
        return True
    if not isinstance(logprobs, dict):
        return False
    chosen = logprobs.get("chosenCandidates") or []
    tops = logprobs.get("topCandidates") or []
    if not isinstance(chosen, list) or not isinstance(tops, list) or len(tops) > len(chosen):
        return False
    tokens: list[str] = []
    for candidate in chosen:
        token = candidate.get("token") if isinstance(candidate, dict) else None
        if not isinstance(token, str):
            return False
        tokens.append(token)
    for token, top in zip(tokens, tops, strict=False):
        if not isinstance(top, dict) or not isinstance(alternatives := top.get("candidates"), list | None):
            return False
        if any(not isinstance(a, dict) or a.get("token") != token for a in alternatives or ()):
            return False
    texts = [p.get("text") for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    return "".join(tokens) == "".join(t for t in texts if isinstance(t, str))
