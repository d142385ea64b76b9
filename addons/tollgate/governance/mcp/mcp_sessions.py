"""Who owns each MCP session (`McpSessions`): the caller whose `initialize` the server answered
with its `Mcp-Session-Id`, and who alone may name it after; a session's name in a shared store."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from tollgate.common.fingerprint import fingerprint

# The JSON-RPC method whose answer opens a session (its `Mcp-Session-Id`).
INITIALIZE = "initialize"
# How many MCP sessions' owners a process keeps in memory; past it the least recently used is
# forgotten, and its next request gets 404 (its client opens a new session), as from a server that
# ended it.
MAX_SESSIONS = 50_000
# How long a shared store (Redis) keeps a session's owner after it was last looked up there.
SESSION_TTL_S = 7 * 86400
# Why a request naming a session is refused (404, as a server answers for a session it does not know).
SESSION_OF_ANOTHER = "the MCP session belongs to another caller"
UNKNOWN_SESSION = "the MCP session was not opened through Tollgate"


def session_owner(client: str | None, own_credential: str | None = None) -> str:
    """Who owns the sessions a caller opens: its client's name; an anonymous caller, the
    fingerprint of the credential it presented to the server (anonymous callers without one share
    theirs)."""
    if client is not None:
        return f"client:{client}"
    return "anonymous" if own_credential is None else f"anonymous:{fingerprint(own_credential)}"


def shared_session_key(server: str, session: str) -> str:
    """A session's name in a shared store: not its id, which its holder presents as a credential."""
    return hashlib.sha256(f"{server}\n{session}".encode()).hexdigest()


class McpSessions:
    """The owner of each MCP session opened through this process (or looked up in the shared
    store), by server and `Mcp-Session-Id`: the caller whose `initialize` the server answered with
    it. Bounded: the least recently used is forgotten first."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()

    def owner(self, server: str, session: str) -> str | None:
        key = (server, session)
        owner = self._owners.get(key)
        if owner is not None:
            self._owners.move_to_end(key)
        return owner

    def bind(self, server: str, session: str, owner: str) -> str:
        """Bind a session to `owner` unless it is bound already; its owner now."""
        key = (server, session)
        known = self._owners.get(key)
        if known is not None:
            self._owners.move_to_end(key)
            return known
        self._owners[key] = owner
        if len(self._owners) > self._limit:
            self._owners.popitem(last=False)
        return owner

    def forget(self, server: str, session: str) -> None:
        self._owners.pop((server, session), None)

    def __len__(self) -> int:
        return len(self._owners)
