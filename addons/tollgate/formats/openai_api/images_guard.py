"""OpenAI's image generations (`/v1/images/generations`, and Azure's and the OpenAI-compatible APIs')
read by the answer guardrails: each image's `revised_prompt` (DALL-E 3 writes the prompt it drew
from anew: text a model wrote), read whole in the JSON answer, and every other string of it (an id,
a member not known, its keys too), each value replaced in place or the answer refused. The images
themselves (`b64_json`, `url`) and the counts are not text. A streamed generation
(partial images, as server-sent events) is not read: where an answer rule applies, it is refused
before it goes upstream (`unread_answers.py`). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tollgate.formats.answer_reading.events import UnreadStream
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, whole_object
from tollgate.formats.answer_reading.string_places import Place, read_places, strings_in
from tollgate.formats.openai_chat.answer_guard import denied_event

REVISED = "revised_prompt"
# The opaque places of an image generation's answer (docs/guardrails.md, "Opaque places"): an image
# itself (base64, or its address), and the answer's images and counts (each image read on its own).
IMAGE_OPAQUE = frozenset(("b64_json", "url"))
ANSWER_OPAQUE = frozenset(("data", "usage"))


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
    if any(not isinstance(image.get(REVISED), str | None) for image in images):
        return body, UNREAD, {}
    counts: Counter[str] = Counter()
    changed, denied = read_places(compiled, _places(obj, images), counts, set())
    if denied is not None:
        return body, denied, dict(counts)
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)


def _places(obj: dict[str, Any], images: list[dict[str, Any]]) -> list[Place]:
    """Every string of the answer but at its opaque places (`IMAGE_OPAQUE`, `ANSWER_OPAQUE`): each
    image's revised prompt first, then the rest (a member not known, its keys too)."""
    places: list[Place] = [(image, REVISED, False) for image in images if image.get(REVISED)]
    for image in images:
        for key in image:
            if key not in IMAGE_OPAQUE and key != REVISED:
                places += [(image, key, True), *strings_in(image, key)]
    for key in obj:
        if key not in ANSWER_OPAQUE:
            places += [(obj, key, True), *strings_in(obj, key)]
    return places


# Read whole only: a stream (none asked for, the asked ones refused before they go) stops unread.
ANSWER = AnswerFormat(UnreadStream, guard_images_json, denied_event, stream_types=frozenset())
