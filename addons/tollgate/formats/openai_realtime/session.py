"""A Realtime session's opening: the model its query names, the API keys a browser offers as
WebSocket subprotocols, and the settings a client secret's request gives the session it opens."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.openai_responses import read_tools
from tollgate.formats.request_facts import RequestFacts

REALTIME = "realtime"  # a WebSocket session (GET /v1/realtime?model=…, upgraded)


def realtime_model(query: str) -> str:
    """The model a Realtime session asks for: the query's one `model` parameter, decoded as servers
    decode a query string. Unreadable (saying what is wrong, never what was sent) where that is not
    exactly one printable name, or where servers could read the query differently."""
    if ";" in query:  # some servers split parameters at ";" as well as at "&"
        raise Unreadable("a Realtime session's query holds a ';'")
    models = []
    for parameter in query.split("&"):
        name, _, value = parameter.partition("=")
        name = unquote_plus(name, errors="replace")
        if name.lower() == "model":
            if name != "model":
                raise Unreadable("a Realtime session's query names its model in another case")
            models.append(value)
    if len(models) != 1:
        raise Unreadable("a Realtime session names exactly one model in its query (?model=…)")
    try:
        model = unquote_plus(models[0], errors="strict")
    except UnicodeDecodeError:
        raise Unreadable("a Realtime session's model is not UTF-8") from None
    if not model or not model.isprintable():
        raise Unreadable("a Realtime session's model is empty or not printable")
    return model


# A browser cannot set headers on a WebSocket: it sends its key as one of the offered subprotocols.
INSECURE_KEY_PREFIX = "openai-insecure-api-key."


def insecure_keys(subprotocols: str) -> tuple[list[str], str]:
    """The API keys among a WebSocket's offered subprotocols (`Sec-WebSocket-Protocol: realtime,
    openai-insecure-api-key.<key>, …`), and the header's value without them. Matched in any case: a
    key in any spelling is a key, never to be shown or forwarded."""
    keys, rest = [], []
    for offered in subprotocols.split(","):
        entry = offered.strip()
        if entry[: len(INSECURE_KEY_PREFIX)].lower() == INSECURE_KEY_PREFIX:
            keys.append(entry[len(INSECURE_KEY_PREFIX) :])
        elif entry:
            rest.append(entry)
    return keys, ", ".join(rest)


def read_settings(data: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
    """A Realtime session's settings, the body's own or its `session`'s (a client secret's): its
    holder then calls OpenAI directly, with the tools and instructions they give. Returns the object
    that names the session's model: a client secret's `session` where it names one (the policy
    decides on that model), else the body."""
    session = data.get("session")
    settings = session if isinstance(session, dict) else data
    facts.has_system = bool(settings.get("instructions"))
    read_tools(settings, facts)
    return session if isinstance(session, dict) and "model" in session else data
