"""OpenAI's image generations (`/v1/images/generations`, and Azure's and the OpenAI-compatible APIs')
read by the answer guardrails: each image's `revised_prompt` (DALL-E 3 writes the prompt it drew
from anew: text a model wrote), read whole in the JSON answer, each value replaced in place or the
answer refused. The images themselves (`b64_json`, `url`) are not text. A streamed generation
(partial images, as server-sent events) is not read: where an answer rule applies, it is refused
before it goes upstream (`unread_answers.py`). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter

from tollgate.formats.answer_reading.events import UnreadStream, read_whole
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, whole_object
from tollgate.formats.openai_chat.answer_guard import denied_event

REVISED = "revised_prompt"


def guard_images_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole image generation's answer read: the body as it goes on (redacted, or as it came where
    nothing is), the kind of a value to deny (the answer is then refused; `unread` where it is no
    JSON object, or its images or a revised prompt of another shape), and the counts."""
    obj = whole_object(body)
    if obj is None:
        return body, UNREAD, {}
    images = obj.get("data", [])
    if not isinstance(images, list) or not all(isinstance(image, dict) for image in images):
        return body, UNREAD, {}
    counts: Counter[str] = Counter()
    changed = False
    for image in images:
        value = image.get(REVISED)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            return body, UNREAD, dict(counts)
        sent, denied, found = read_whole(compiled, value, False)
        counts.update(found)
        if denied is not None:
            return body, denied, dict(counts)
        if sent != value:
            image[REVISED] = sent
            changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)


# Read whole only: a stream (none asked for, the asked ones refused before they go) stops unread.
ANSWER = AnswerFormat(UnreadStream, guard_images_json, denied_event, stream_types=frozenset())
