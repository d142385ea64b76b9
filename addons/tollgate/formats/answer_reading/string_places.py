"""The strings of an answer's event read whole, where no channel's scanner reads them (its ids, a
member's name, what a format gives in one piece): where they are in the event's object, and each
read at once, a value to redact replaced in place. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from typing import Any

import orjson

from tollgate.formats.answer_reading.scanning import Scanners, Unpaired, scan_whole
from tollgate.formats.bodies.json_codec import keys_once, parse_json

# The keys whose strings hold no text at the top of an event (or of a choice's delta): a stream's
# random padding (OpenAI's `obfuscation`), signatures and encrypted data, opaque to a client. Below
# the top they are read as any string (a format names its own deeper opaque places). Ids and kinds
# are read (once a stream: they repeat, and a string read clean is not read again).
NOT_TEXT = frozenset(("obfuscation", "signature", "encrypted_content"))
NOTHING: frozenset[str] = frozenset()
# The names of the formats' own members: as keys they are no text a model wrote, and are not read
# (their values are).
KNOWN_KEYS = frozenset(
    (
        *("id", "type", "object", "created", "model", "system_fingerprint", "service_tier", "choices", "index"),
        *("delta", "message"),
        *("finish_reason", "logprobs", "content", "refusal", "reasoning", "reasoning_content", "role"),
        *("tool_calls", "function", "name", "arguments", "annotations", "url_citation", "title", "url"),
        *("start_index", "end_index", "reasoning_details", "text", "summary", "format", "data", "usage"),
        *("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "cached_tokens"),
        *("completion_tokens_details", "reasoning_tokens", "audio_tokens", "accepted_prediction_tokens"),
        *("rejected_prediction_tokens", "error", "code", "param", "stop_reason", "stop_sequence"),
        # Gemini's
        *("candidates", "parts", "thought", "thoughtSignature", "finishReason", "safetyRatings", "category"),
        *("probability", "blocked", "modelVersion", "responseId", "createTime", "usageMetadata", "modality"),
        *("promptTokenCount", "candidatesTokenCount", "totalTokenCount", "thoughtsTokenCount", "tokenCount"),
        *("cachedContentTokenCount", "promptTokensDetails", "candidatesTokensDetails", "avgLogprobs"),
        *("promptFeedback", "blockReason"),
        # Bedrock's
        *("contentBlockIndex", "start", "toolUse", "toolUseId", "input", "stopReason", "reasoningContent"),
        *("metrics", "latencyMs", "inputTokens", "outputTokens", "totalTokens", "output", "trace"),
        *("additionalModelResponseFields",),
    )
)
# The strings read whole and found clean that a guard remembers (an event's id, model, a member's
# name, repeated in each event, is read once): so many, each of at most CLEAN_SIZE characters.
CLEAN_KEPT = 1024
CLEAN_SIZE = 256
# A place of a string in an event's object: its holder, its key there (an object's key or a list's
# index), and whether the string is the key itself (an object's key, which cannot be replaced).
Place = tuple[Any, Any, bool]


def read_whole(compiled: Scanners, value: str, is_json: bool = False) -> tuple[str, str | None, dict[str, int]]:
    """One text read whole: as it goes on, the kind of a value to deny, and the counts."""
    read = scan_whole(compiled, value, is_json)
    return read.text, read.denied, dict(read.counts)


def strings_in(
    holder: Any, key: Any, skip: frozenset[str] = NOTHING, taken: Container[tuple[int, Any]] = ()
) -> Iterator[Place]:
    """Every string of the value at `holder[key]`, its objects' keys too, but under the keys `skip`
    names and at the places `taken` names (`(id(holder), key)`: read otherwise): each with its
    place."""
    stack: list[tuple[Any, Any]] = [(holder, key)]
    while stack:
        at, name = stack.pop()
        if taken and (id(at), name) in taken:
            continue
        value = at[name]
        kind = type(value)
        if kind is str:
            if value:
                yield at, name, False
        elif kind is dict:
            for k, v in value.items():
                if k not in skip:
                    yield value, k, True
                    if type(v) in (str, dict, list):
                        stack.append((value, k))
        elif kind is list:
            stack.extend((value, i) for i, v in enumerate(value) if type(v) in (str, dict, list))


def members_in(
    obj: dict[str, Any], read: frozenset[str], clean: Container[str] = (), skip: frozenset[str] = NOT_TEXT
) -> list[Place]:
    """Every string of an object but in the members `read` names (its format reads them), in its
    own members `skip` names (deeper, every string is read), the known keys and the strings in
    `clean`: each with its place. (A loop of its own, not `strings_in`'s: it runs for each event.)"""
    out: list[Place] = []
    for k in obj.keys() - skip:
        if k not in KNOWN_KEYS and k not in clean:
            out.append((obj, k, True))
        if k in read:
            continue
        v = obj[k]
        kind = type(v)
        if kind is str:
            if v and v not in clean:
                out.append((obj, k, False))
        elif kind is dict or kind is list:
            out.extend(strings_in(obj, k))
    return out


def unpaired(value: Any) -> bool:
    """Whether a JSON value's strings hold a surrogate not paired."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def answer_json(data: bytes) -> dict[str, Any] | None:
    """An event's JSON object as `parse_json` reads it (None: not one, or one that repeats a key);
    raises `Unpaired` where a string holds a surrogate not paired. What orjson reads holds none (it
    refuses them): only what it refuses is looked at."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        found = parse_json(data)
        if found is not None and unpaired(found):
            raise Unpaired("a string with a surrogate not paired") from None
        return found
    return value if type(value) is dict and keys_once(data, value) else None


def carries_text(node: Any, skipped: frozenset[str]) -> bool:
    """Whether a JSON value holds a string (but under the keys `skipped` names)."""
    if isinstance(node, str):
        return bool(node)
    if isinstance(node, list):
        return any(carries_text(item, skipped) for item in node)
    if isinstance(node, dict):
        return any(key not in skipped and carries_text(item, skipped) for key, item in node.items())
    return False


def sse_fields(block: bytes) -> list[Place]:
    """The strings of an event block's lines other than its data (its name, id, comments, a field
    not known), each a place read as a key is (it cannot be replaced: a value in one is denied).
    A block of one `data:` line, as most are, has none."""
    if block.startswith(b"data: ") and b"\n" not in block and b"\r" not in block:
        return []
    places: list[Place] = []
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.startswith(b"data:") or not line:
            continue
        places.append((None, line.decode("utf-8", "replace"), True))
    return places


def read_places(
    compiled: Scanners, places: Iterable[Place], counts: Counter[str], clean: set[str]
) -> tuple[bool, str | None]:
    """Strings each read whole at their places: a value to redact replaced in place; whether one
    was, and the kind of a value to deny (None: none). A value in an object's key cannot be
    replaced: it is denied whatever the rule's action. A string read clean is noted in `clean`
    (up to `CLEAN_KEPT` of them), and not read again."""
    changed = False
    for holder, key, is_key in places:
        value = key if is_key else holder[key]
        if value in clean or (is_key and value in KNOWN_KEYS):
            continue
        replaced, denied, found = read_whole(compiled, value)
        counts.update(found)
        if denied is None and is_key and replaced != value:
            denied = next(kind for kind in found if compiled.actions.get(kind) == "redact")
        if denied is not None:
            return changed, denied
        if replaced == value:
            # Only what nothing was found in: a finding recorded (`audit`) is counted each time.
            if not found and len(value) <= CLEAN_SIZE and len(clean) < CLEAN_KEPT:
                clean.add(value)
        elif not is_key:
            holder[key] = replaced
            changed = True
    return changed, None
