"""A compacted conversation (`POST …/responses/compact`, as Codex signed in with ChatGPT called it
before it compacted in its Responses stream) read by the answer guardrails: one JSON object, the
conversation's new `output` (the messages kept, and a `compaction` item whose `encrypted_content`
only OpenAI can read, as a reasoning item's). Each item is read as a whole Responses answer's
(`answer_guard.py`: every string but ids, states and opaque data), each value replaced in
place or the answer refused. What Tollgate does not know the shape of (a field at the top it does
not know, an item of a type it does not know) is refused unread: a compaction's answer goes back
into the model's context whole, and where text sits is not Tollgate's to guess. Plain code,
knowing nothing of mitmproxy."""

from __future__ import annotations

from tollgate.formats.answer_reading.events import UnreadStream
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, whole_object
from tollgate.formats.openai_responses.answer_guard import denied_event, guard_responses_json

# The object's fields (OpenAI's compacted response): its id and object type, when it was made,
# the tokens it took, and the compacted conversation.
FIELDS = frozenset(("id", "object", "created_at", "usage", "output"))
# The items a compacted conversation holds (Codex's `ResponseItem`s): what the conversation kept
# (its messages, reasoning, tool calls and their outputs, searches) and the compaction itself.
ITEMS = frozenset(
    (
        "message",
        "reasoning",
        "compaction",
        "compaction_summary",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "web_search_call",
    )
)


def guard_compaction_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A compacted conversation read: the body as it goes on (redacted, or as it came where nothing
    is), the kind of a value to deny (the answer is then refused; `unread` where it is of a shape
    not known), and the counts."""
    if not known_shape(whole_object(body)):
        return body, UNREAD, {}
    return guard_responses_json(compiled, body)


def known_shape(obj: object) -> bool:
    """Whether a compacted conversation is of the shape known: an object of `FIELDS` only, its
    `output` a list of objects each of a type of `ITEMS`, nothing but numbers in its time and usage."""
    if not isinstance(obj, dict) or not FIELDS.issuperset(obj) or not isinstance(obj.get("output"), list):
        return False
    if any(not isinstance(item, dict) or item.get("type") not in ITEMS for item in obj["output"]):
        return False
    opaque = all(isinstance(obj.get(name), str | None) for name in ("id", "object"))
    return opaque and _numbers(obj.get("created_at")) and _numbers(obj.get("usage"))


def _numbers(value: object) -> bool:
    """Whether a value holds no string at any depth (a usage's counts and their details)."""
    if isinstance(value, dict):
        return all(_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return not isinstance(value, str)


# One JSON object, never streamed (a stream stops unread).
ANSWER = AnswerFormat(UnreadStream, guard_compaction_json, denied_event, stream_types=frozenset())
