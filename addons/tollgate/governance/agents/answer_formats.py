"""The answer formats whose tool calls `agents` decides, each by what reads its request (where its
text came from, its tools' schemas) and what decides its answer, read whole or as its events come.
A format not here goes as it came."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tollgate.formats import BEDROCK_CONVERSE, CODE_ASSIST, GEMINI_GENERATE, OPENAI_CHAT
from tollgate.formats.bedrock_converse.provenance import read_provenance as converse_provenance
from tollgate.formats.gemini_generate.provenance import read_provenance as gemini_provenance
from tollgate.formats.openai_chat.provenance import read_provenance as chat_provenance
from tollgate.formats.provenance import Provenance
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, read_request
from tollgate.governance.agents.chat_calls import chat_schemas, decided_chat_answer
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.converse_calls import converse_schemas, decided_converse_answer
from tollgate.governance.agents.converse_stream import HeldConverseCalls
from tollgate.governance.agents.gemini_calls import (
    ENVELOPE,
    code_assist_provenance,
    code_assist_schemas,
    decided_gemini_answer,
    gemini_schemas,
)
from tollgate.governance.agents.gemini_stream import HeldGeminiCalls
from tollgate.governance.agents.injection import InjectionSignals
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
    # A streamed call's answer is a stream whatever its type (Gemini's JSON array, Bedrock's AWS
    # event stream), not one answer read whole.
    streams_when_asked: bool = False

    def streams(self, event_stream: bool, asked: bool) -> bool:
        """Whether an answer is decided as its events come (else read whole): server-sent events,
        or any answer to a streamed call where the format says so."""
        return event_stream or (asked and self.streams_when_asked)

    def read(self, body: dict[str, Any], settings: AgentsSettings, signals: InjectionSignals) -> AgentsCall:
        state = read_request(self.provenance(body), self.schemas(body), settings, signals)
        state.format = self
        return state


AGENTS_FORMATS: dict[str, AgentsFormat] = {
    OPENAI_CHAT: AgentsFormat(chat_provenance, chat_schemas, decided_chat_answer, HeldChatCalls),
    # The Gemini API's and Vertex AI's Gemini.
    GEMINI_GENERATE: AgentsFormat(
        gemini_provenance, gemini_schemas, decided_gemini_answer, HeldGeminiCalls, streams_when_asked=True
    ),
    # Gemini CLI signed in with a plan: the same inside Code Assist's envelope.
    CODE_ASSIST: AgentsFormat(
        code_assist_provenance,
        code_assist_schemas,
        partial(decided_gemini_answer, envelope=ENVELOPE),
        partial(HeldGeminiCalls, envelope=ENVELOPE),
        streams_when_asked=True,
    ),
    # Bedrock's Converse and ConverseStream (its AWS event stream).
    BEDROCK_CONVERSE: AgentsFormat(
        converse_provenance, converse_schemas, decided_converse_answer, HeldConverseCalls, streams_when_asked=True
    ),
}
