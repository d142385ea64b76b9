"""Reading a request exactly as its provider reads it: what cannot be read so is refused (`Unreadable`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


class Unreadable(ValueError):
    """A request Tollgate cannot read exactly as the provider would read it: refused, never guessed
    at. The message says what is wrong, never what the request holds; `endpoint` is the endpoint its
    path names, where the path was read before the fault was found (the audit shows it)."""

    endpoint: str | None = None

    def at(self, endpoint: str | None) -> Unreadable:
        """This fault, found while reading a request of that endpoint."""
        self.endpoint = self.endpoint or endpoint
        return self


def request_model(data: dict[str, Any], key: str = "model") -> str | None:
    """A request body's model name: a string in valid Unicode, else refused (a lone surrogate reads
    as another name to a parser that replaces it)."""
    value = data.get(key)
    if value is None or (type(value) is str and (value.isascii() or _is_unicode(value))):
        return value
    raise Unreadable(f"'{key}' is not a string" if type(value) is not str else f"'{key}' is not valid Unicode")


def request_text(value: Any, name: str) -> str | None:
    """A string the request sets (a service tier): absent or null is None; anything else but a
    string in valid Unicode is refused."""
    if value is None or (type(value) is str and (value.isascii() or _is_unicode(value))):
        return value
    raise Unreadable(f"'{name}' is not a string" if type(value) is not str else f"'{name}' is not valid Unicode")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_INT64 = 2**63


def request_int(value: Any, name: str) -> int | None:
    """An integer the request asks for (a token limit), read as the provider reads it: a JSON integer,
    a float with no fraction, or a string of digits; None when absent. Anything else, or a number
    beyond 64 bits (the policy engine wraps those), is refused rather than read as absent."""
    if value is None:
        return None
    if type(value) is int:
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20
    ):
        number = int(value)
    else:
        raise Unreadable(f"'{name}' is not an integer")
    if not -_INT64 <= number < _INT64:
        raise Unreadable(f"'{name}' is out of range")
    return number


def request_count(value: Any, name: str) -> int:
    """How many of something a request asks for (`n`, `candidateCount`): 1 when absent; an integer
    as `request_int` reads it, at least 1 (the providers refuse fewer), else refused."""
    number = request_int(value, name)
    if number is None:
        return 1
    if number < 1:
        raise Unreadable(f"'{name}' is out of range")
    return number


def request_flag(value: Any, name: str) -> bool:
    """A boolean the request sets (`stream`): absent or null is false; anything but a boolean is
    refused (a server that reads "true" would stream what Tollgate took for a whole answer)."""
    if value is None:
        return False
    if type(value) is bool:
        return value
    raise Unreadable(f"'{name}' is not a boolean")


# A path in canonical form: segments of unreserved characters (and '%' where a provider takes it),
# no empty, '.' or '..' segment, no trailing '/', no ';' parameters.
_CANONICAL_PATH = re.compile(r"(?:/[A-Za-z0-9._~:@%-]+)+")


def path_segments(path: str, percent: bool = False) -> list[str]:
    """The segments of a path in canonical form, else refused: a server that normalises paths
    serves `//v1/./chat/completions/` as `/v1/chat/completions`, which Tollgate would have misread."""
    if _CANONICAL_PATH.fullmatch(path) is None:
        raise Unreadable(_path_problem(path))
    segments = path[1:].split("/")
    if "." in segments or ".." in segments:
        raise Unreadable("the path has a '.' or '..' segment")
    if not percent and "%" in path:
        raise Unreadable("the path is percent-encoded")
    return segments


def _path_problem(path: str) -> str:
    if not path.startswith("/"):
        return "the path does not start with '/'"
    if "//" in path:
        return "the path has an empty segment ('//')"
    if path.endswith("/"):
        return "the path ends in '/'"
    if ";" in path:
        return "the path has ';' parameters"
    return "the path has characters outside A-Z a-z 0-9 . _ ~ : @ % -"


def words(*names: str) -> dict[str, str]:
    """A provider's fixed path words by their lower-case form, for `check_case`."""
    return {name.lower(): name for name in names}


def check_case(segments: Iterable[str], fixed: Mapping[str, str]) -> None:
    """Refuse a segment that is one of the provider's fixed words in another letter case: a
    server that ignores case would serve an endpoint Tollgate did not recognise."""
    for segment in segments:
        word = fixed.get(segment.lower())
        if word is not None and segment != word:
            raise Unreadable(f"'{segment}' is not written '{word}'")


def as_int(value: Any) -> int | None:
    if type(value) is int:  # what JSON gives nearly always: one test
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def largest(*values: int | None) -> int | None:
    """The largest of the values given (a limit set twice binds at the larger), or None."""
    given = [v for v in values if v is not None]
    return max(given) if given else None


# The facts of a body streamed unread, as the policy input's `unread` names them.
UNREAD_BODY = ("model", "request")
UNREAD_FACTS = ("request",)
# A call whose model the provider takes from elsewhere: a batch's file, an Assistant, its default.
UNREAD_MODEL = ("model",)
# What a request uses that the provider keeps and Tollgate cannot read, each of which may give the
# model tools and a system prompt (`RequestFacts.unseen`): a stored prompt (OpenAI's `prompt: {id}`,
# a Bedrock prompt ARN as the model), a cached content (Gemini's and Vertex AI's `cachedContent`),
# an Assistant (an OpenAI run), and a Realtime session's later events (`session.update`).
STORED_PROMPT = "stored_prompt"
CACHED_CONTENT = "cached_content"
ASSISTANT = "assistant"
SESSION_UPDATES = "session_updates"


def count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None
