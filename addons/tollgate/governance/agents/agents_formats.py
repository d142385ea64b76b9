"""The answer formats whose tool calls `agents` decides, each by what reads its request (where its
text came from, its tools' schemas) and what decides its answer, read whole or as its events come.
A format not here goes as it came. A format that continues a conversation by an earlier answer's
id (the Responses API's `previous_response_id`) reads it from the `ResponseIndex`. Bedrock's
InvokeModel is read in its model family's own body (`invoke_format`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from tollgate import formats
from tollgate.formats.anthropic_messages.provenance import read_provenance as messages_provenance
from tollgate.formats.bedrock_converse.provenance import read_provenance as converse_provenance
from tollgate.formats.bedrock_invoke import cohere
from tollgate.formats.gemini_generate.provenance import read_provenance as gemini_provenance
from tollgate.formats.openai_chat.provenance import read_provenance as chat_provenance
from tollgate.formats.openai_responses.provenance import continued
from tollgate.formats.openai_responses.provenance import read_provenance as responses_provenance
from tollgate.formats.provenance import Provenance
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, read_request
from tollgate.governance.agents.chat_calls import chat_schemas, decided_chat_answer
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.cohere_calls import decided_cohere_answer
from tollgate.governance.agents.cohere_stream import HeldCohereCalls
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
from tollgate.governance.agents.invoke_chunks import InvokeChunks
from tollgate.governance.agents.invoke_families import CHAT, CLAUDE, COHERE, NOVA, ChatWords, gives_tools, invoke_family
from tollgate.governance.agents.messages_calls import decided_messages_answer, messages_schemas
from tollgate.governance.agents.messages_stream import HeldMessagesCalls
from tollgate.governance.agents.nova_chunks import NovaChunks
from tollgate.governance.agents.provider_mcp import gemini_unapproved, messages_unapproved, undecided
from tollgate.governance.agents.response_index import ResponseIndex
from tollgate.governance.agents.responses_calls import (
    decided_responses_answer,
    responses_schemas,
    undecidable,
    with_refusals_answered,
)
from tollgate.governance.agents.responses_stream import HeldResponsesCalls

Earlier = Callable[[str], Provenance | None]  # what Tollgate saw of a conversation, by its last answer's id


@dataclass(frozen=True, slots=True)
class AgentsFormat:
    provenance: Callable[[dict[str, Any], Earlier | None], Provenance]  # where a request's text came from
    schemas: Callable[[dict[str, Any]], dict[str, Any]]  # each declared tool's argument schema
    # The answer read whole with each refused call replaced (the same bytes where none was); None
    # where it cannot be read.
    decided_whole: Callable[[bytes, AgentsCall], bytes | None]
    # A streamed answer's rewrite: its calls held until complete, then decided.
    held_stream: Callable[[AgentsCall, Rewrite | None], Rewrite]
    # A conversation once an answer's output follows it, for a format whose answers are continued
    # by their id: kept in the `ResponseIndex`.
    continued: Callable[[Provenance, Any], Provenance] | None = None
    # A request continuing an answer whose calls Tollgate refused (the provider kept them): those
    # refusals put in its body as the calls' outputs; whether it changed.
    refusals_answered: Callable[[dict[str, Any], dict[str, dict[str, Any]]], bool] | None = None
    # Why a request's answer's calls would reach the agent undecided (it is refused then); None: they cannot.
    # (Its `agents` settings say which tools act.)
    undecidable: Callable[[dict[str, Any], AgentsSettings], str | None] = lambda _body, _settings: None
    # A streamed call's answer is a stream whatever its type (Gemini's JSON array, Bedrock's AWS
    # event stream), not one answer read whole.
    streams_when_asked: bool = False

    def streams(self, event_stream: bool, asked: bool) -> bool:
        """Whether an answer is decided as its events come (else read whole): server-sent events,
        or any answer to a streamed call where the format says so."""
        return event_stream or (asked and self.streams_when_asked)

    def read(
        self,
        body: dict[str, Any],
        settings: AgentsSettings,
        signals: InjectionSignals,
        index: ResponseIndex | None = None,
        caller: str = "",
    ) -> AgentsCall:
        """`index`: the earlier answers Tollgate saw, kept by `caller` (the client's name)."""
        kept, then = (index, self.continued) if self.continued is not None else (None, None)

        def earlier(response_id: str) -> Provenance | None:
            seen = kept.get(caller, response_id) if kept is not None else None
            return seen.provenance if seen is not None else None

        state = read_request(self.provenance(body, earlier), self.schemas(body), settings, signals)
        state.format = self
        if kept is not None and then is not None:
            asked = state.provenance

            def remember(response_id: str, output: Any, refused: dict[str, dict[str, Any]]) -> None:
                kept.put(caller, response_id, then(asked, output), refused)

            state.remember = remember
        return state

    def answer_refusals(self, body: dict[str, Any], index: ResponseIndex, caller: str) -> bool:
        """The request's body given the outputs of the refused calls of the answer it continues
        (`previous_response_id`); whether it changed."""
        previous = body.get("previous_response_id")
        if self.refusals_answered is None or not isinstance(previous, str):
            return False
        seen = index.get(caller, previous)
        return seen is not None and bool(seen.refused) and self.refusals_answered(body, seen.refused)


def _whole(read: Callable[[dict[str, Any]], Provenance]) -> Callable[[dict[str, Any], Earlier | None], Provenance]:
    """The provenance of a format whose requests repeat their whole conversation: no earlier answer read."""
    return lambda body, _earlier: read(body)


_MESSAGES = AgentsFormat(
    _whole(messages_provenance),
    messages_schemas,
    decided_messages_answer,
    HeldMessagesCalls,
    undecidable=lambda body, settings: undecided(messages_unapproved(body), settings),
)


def _gemini_undecidable(body: dict[str, Any], settings: AgentsSettings) -> str | None:
    return undecided(gemini_unapproved(body), settings)


AGENTS_FORMATS: dict[str, AgentsFormat] = {
    formats.OPENAI_CHAT: AgentsFormat(_whole(chat_provenance), chat_schemas, decided_chat_answer, HeldChatCalls),
    formats.OPENAI_RESPONSES: AgentsFormat(
        responses_provenance,
        responses_schemas,
        decided_responses_answer,
        HeldResponsesCalls,
        continued,
        with_refusals_answered,
        undecidable,
    ),
    # The Gemini API's and Vertex AI's Gemini.
    formats.GEMINI_GENERATE: AgentsFormat(
        _whole(gemini_provenance),
        gemini_schemas,
        decided_gemini_answer,
        HeldGeminiCalls,
        undecidable=_gemini_undecidable,
        streams_when_asked=True,
    ),
    # Gemini CLI signed in with a plan: the same inside Code Assist's envelope.
    formats.CODE_ASSIST: AgentsFormat(
        _whole(code_assist_provenance),
        code_assist_schemas,
        partial(decided_gemini_answer, envelope=ENVELOPE),
        partial(HeldGeminiCalls, envelope=ENVELOPE),
        undecidable=_gemini_undecidable,
        streams_when_asked=True,
    ),
    # Bedrock's Converse and ConverseStream (its AWS event stream).
    formats.BEDROCK_CONVERSE: AgentsFormat(
        _whole(converse_provenance),
        converse_schemas,
        decided_converse_answer,
        HeldConverseCalls,
        streams_when_asked=True,
    ),
    formats.ANTHROPIC_MESSAGES: _MESSAGES,
    # Claude on Vertex AI: the same body read, Anthropic's own answers and streams decided.
    formats.CLAUDE_ON_VERTEX: _MESSAGES,
    # Claude on Bedrock's InvokeModel: the same, its stream's events inside AWS event stream frames.
    formats.CLAUDE_ON_BEDROCK: replace(
        _MESSAGES,
        held_stream=lambda state, inner: InvokeChunks(HeldMessagesCalls(state), inner),
        streams_when_asked=True,
    ),
}


def _chat_chunks(state: AgentsCall, inner: Rewrite | None) -> Rewrite:
    words = ChatWords()
    return InvokeChunks(HeldChatCalls(state), inner, (words.read, words.written))


# InvokeModel's families whose bodies `agents` reads (`invoke_families`), each as the format its
# body is: Nova's Converse's, the chat families' OpenAI chat's, Cohere's its own; their streams'
# events in chunks.
_INVOKE_FAMILIES: dict[str, AgentsFormat] = {
    CLAUDE: AGENTS_FORMATS[formats.CLAUDE_ON_BEDROCK],
    NOVA: replace(AGENTS_FORMATS[formats.BEDROCK_CONVERSE], held_stream=NovaChunks),
    CHAT: replace(AGENTS_FORMATS[formats.OPENAI_CHAT], held_stream=_chat_chunks, streams_when_asked=True),
    COHERE: AgentsFormat(
        _whole(cohere.read_provenance),
        cohere.schemas,
        decided_cohere_answer,
        lambda state, inner: InvokeChunks(HeldCohereCalls(state), inner),
        streams_when_asked=True,
    ),
}
UNREAD_FAMILY = "its model's own body is not read for its tool calls on InvokeModel; Converse's are"

# A family whose body is not read, in a call that gives its model tools: refused.
_UNREAD = AgentsFormat(
    _whole(chat_provenance),
    chat_schemas,
    decided_chat_answer,
    HeldChatCalls,
    undecidable=lambda _body, _settings: UNREAD_FAMILY,
)


def agents_format(name: str | None, model: str | None, body: dict[str, Any]) -> AgentsFormat | None:
    """The format whose tool calls `agents` decides for an answer in the format named (None: not
    decided), InvokeModel's by its model's family: a family not read goes as it came where the
    call gives its model no tools (no call of its can come back), and is refused where it does."""
    if name != formats.BEDROCK_INVOKE:
        return AGENTS_FORMATS.get(name or "")
    family = invoke_family(model or "", body)
    if family is None:
        return _UNREAD if gives_tools(body) else None
    return _INVOKE_FAMILIES[family]
