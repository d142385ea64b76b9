"""Where a JSON body's strings are, by their path: so that one string (a document's base64) can be
written anew and the rest of the body go on byte for byte as its client wrote it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from tollgate.formats.bodies.attachments import Path

# A string (its escapes whole) or a structural character; numbers, literals and spaces between.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]', re.S)


def string_spans(body: bytes, paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """The span of each string value at one of `paths` (its quotes included) in a JSON body that
    reads as one JSON value; a path that names no string is left out."""
    wanted = set(paths)
    found: dict[Path, tuple[int, int]] = {}
    if not wanted:
        return found
    # Each open container: [position, expecting a key] for an object (position: its current key),
    # [position] for an array (its current index).
    stack: list[list] = []
    for m in _TOKEN.finditer(body):
        token = m.group()
        first = token[:1]
        if first == b'"':
            if stack and len(stack[-1]) == 2 and stack[-1][1]:  # an object's key
                stack[-1][0] = json.loads(token)
                continue
            path = tuple(frame[0] for frame in stack)
            if path in wanted:
                found[path] = m.span()
                if len(found) == len(wanted):
                    break
        elif first == b"{":
            stack.append([None, True])
        elif first == b"[":
            stack.append([0])
        elif first in b"}]":
            stack.pop()
        elif first == b":":
            stack[-1][1] = False
        elif first == b",":
            frame = stack[-1]
            if len(frame) == 1:
                frame[0] += 1
            else:
                frame[1] = True
    return found
