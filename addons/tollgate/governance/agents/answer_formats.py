"""The answer formats whose tool calls `agents` decides, each by what reads its request (where its
text came from, its tools' schemas) and what decides its answer, read whole or as its events come.
A format not here goes as it came."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollgate.formats import ANTHROPIC_MESSAGES, CLAUDE_ON_VERTEX, OPENAI_CHAT
from tollgate.formats.anthropic_messages.provenance import read_provenance as messages_provenance
from tollgate.formats.openai_chat.provenance import read_provenance as chat_provenance
from tollgate.formats.provenance import Provenance
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, read_request
from tollgate.governance.agents.chat_calls import chat_schemas, decided_chat_answer
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.messages_calls import decided_messages_answer, messages_schemas
from tollgate.governance.agents.messages_stream import HeldMessagesCalls
from tollgate.governance.agents.settings import AgentsSettings


@dataclass(frozen=True, slots=True)
class AgentsFormat:
    provenance: Callable[[dict[str, Any]], Provenance]  # where a request's text came from
    schemas: Callable[[dict[str, Any]], dict[str, Any]]  # each declared tool's argument schema
    # The answer read whole with each refused call replaced (the same bytes where none was); None
    # where it cannot be read.
    decided_whole: Callable[[bytes, AgentsCall], bytes | None]
    # A streamed answer's rewrite: its calls held until complete, then decided.
    held_stream: Callable[[AgentsCall, Rewrite | None], Rewrite]

    def read(self, body: dict[str, Any], settings: AgentsSettings, signals: InjectionSignals) -> AgentsCall:
        state = read_request(self.provenance(body), self.schemas(body), settings, signals)
        state.format = self
        return state


_MESSAGES = AgentsFormat(messages_provenance, messages_schemas, decided_messages_answer, HeldMessagesCalls)

AGENTS_FORMATS: dict[str, AgentsFormat] = {
    OPENAI_CHAT: AgentsFormat(chat_provenance, chat_schemas, decided_chat_answer, HeldChatCalls),
    ANTHROPIC_MESSAGES: _MESSAGES,
    # Claude on Vertex AI: the same body read, Anthropic's own answers and streams decided.
    CLAUDE_ON_VERTEX: _MESSAGES,
}
