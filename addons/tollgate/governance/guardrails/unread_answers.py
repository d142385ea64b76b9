"""The endpoints whose answers carry what a model wrote, by the wire format their provider reads
them in: an answer guardrail reads each of them in an answer format of its own
(`answer_formats.py`), or, where none is registered, a call to one that an answer rule applies to
is refused before it goes upstream (fail closed: what Tollgate cannot read is not let through
unread). A plan's service call goes on under an answer rule only where its provider names its
method one that carries no model text. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_AGENTS,
    BEDROCK_INVOKE,
    CODE_ASSIST,
    GEMINI_GENERATE,
    OPENAI_API,
)
from tollgate.formats.request_facts import Classification
from tollgate.providers.base import Provider

# Wire format → endpoint → what its answer carries (named in the refusal).
MODEL_TEXT: dict[str, dict[str, str]] = {
    OPENAI_API: {
        "completions": "legacy Completions",
        "audio.transcriptions": "a transcription's text",
        "audio.translations": "a translation's text",
        "threads.runs": "an Assistants run's messages",
        "threads.runs.submit_tool_outputs": "an Assistants run's messages",
        "threads.runs.steps": "an Assistants run's steps",
        "threads.messages": "an Assistants thread's messages",
        "files.content": "a file's content (a batch's results)",
        "containers.files.content": "a code interpreter's output file",
        "conversations.items": "a conversation's stored answers",
        "evals.runs.output_items": "an eval run's answers",
        "realtime": "a Realtime session's text and transcripts",
    },
    ANTHROPIC_MESSAGES: {
        "completions": "legacy Text Completions",
        "messages.batches.results": "a Message Batch's results",
        "files.content": "a file's content (made by code execution or a skill)",
    },
    GEMINI_GENERATE: {
        "generateAnswer": "an attributed answer (generateAnswer)",
        "batches": "a batch's answers",
        "rawPredict": "a model's own answer format (rawPredict)",
        "streamRawPredict": "a model's own answer format (streamRawPredict)",
    },
    BEDROCK_AGENTS: dict.fromkeys(
        (
            "invoke-agent",
            "invoke-inline-agent",
            "retrieve-and-generate",
            "retrieve-and-generate-stream",
            "agentic-retrieve-stream",
            "invoke-flow",
            "list-flow-execution-events",
            "optimize-prompt",
            "generate-query",
            "get-agent-memory",
            "get-invocation-step",
        ),
        "an agent's, a flow's or a knowledge base's generated text",
    ),
    BEDROCK_INVOKE: {"invoke-with-bidirectional-stream": "a bidirectional stream's text and transcripts"},
}
# The endpoints whose streamed answers no answer format reads (their JSON answers are read).
STREAMED: dict[str, dict[str, str]] = {OPENAI_API: {"images.generations": "a streamed image generation"}}
# A model deployed to a Vertex AI endpoint (`endpoints/{id}`) answers its own format at every method
# but Gemini's (`generateContent`, read) and its token count.
DEPLOYED = "endpoints/"
_DEPLOYED_READ = frozenset(("generateContent", "streamGenerateContent", "countTokens"))


def model_text(classification: Classification, provider: Provider) -> str | None:
    """What the answer of a call to `provider` carries that a model wrote, where its endpoint is
    one whose answers carry some (None: an endpoint whose answers carry none, or that is outside
    the model API). Whether it is read is the answer formats' to say."""
    if classification.passthrough:
        return None
    wire, endpoint = classification.wire_format, classification.endpoint or ""
    if classification.service:
        return service_model_text(classification, provider)
    found = MODEL_TEXT.get(wire or "", {}).get(endpoint)
    if found is None and classification.facts.stream:
        found = STREAMED.get(wire or "", {}).get(endpoint)
    if found is not None:
        return found
    model = classification.model or ""
    if wire == GEMINI_GENERATE and model.startswith(DEPLOYED) and endpoint not in _DEPLOYED_READ:
        return f"a deployed model's own answer format ({endpoint})"
    return None


def service_model_text(classification: Classification, provider: Provider) -> str | None:
    """What a service call's answer may carry that a model wrote: what its provider names it
    (Codex's compaction, Code Assist's code completions), else, unless its provider names its
    method one whose answers carry none, the call itself by its endpoint. Fail closed: no answer
    format reads a service call's answer, and a service method Tollgate does not know (Codex's
    cloud tasks, Code Assist's code generation, Copilot's agents) may answer with model text."""
    endpoint = classification.endpoint
    if endpoint is None:
        return "the answer of a service call with no name, which may carry model text"
    named = provider.services.model_text.get(endpoint)
    if named is not None or endpoint in provider.services.without_model_text:
        return named
    return f"the answer of the service call {endpoint}, which may carry model text"


# What OpenAI keeps of its answers, read back by GET at the paths of the endpoint that made them, in
# a shape of their own that its endpoint's answer format does not read: a list of stored chat
# completions, a stored one's messages, a stored response's input items (earlier answers a
# conversation sent back among them). A stored chat completion and a stored response, read back
# whole, are in their endpoint's own format (read). Endpoint → its path's word → the path's
# segments after the word (`{id}` an id) → what they carry.
STORED: dict[str, tuple[str, dict[tuple[str, ...], str]]] = {
    "chat.completions": (
        "completions",
        {(): "stored chat completions", ("{id}", "messages"): "a stored chat completion's messages"},
    ),
    "responses": ("responses", {("{id}", "input_items"): "a stored response's input items"}),
}


def stored_unread(classification: Classification, method: str, path: str) -> str | None:
    """What a GET of an OpenAI-format endpoint's stored answers carries, where no answer format
    reads its shape (None: a stored answer whole, any other call)."""
    found = STORED.get(classification.endpoint or "")
    if found is None or method != "GET" or classification.wire_format != OPENAI_API:
        return None
    word, shapes = found
    segments = path.split("?", 1)[0].rstrip("/").split("/")
    if word not in segments:
        return None
    rest = segments[len(segments) - segments[::-1].index(word) :]
    return shapes.get(tuple("{id}" if i == 0 else s for i, s in enumerate(rest)))


# Where a request asks for the tokens the model did not choose at each position, by wire format:
# OpenAI's chat, Responses and Bedrock's OpenAI format (`top_logprobs`), legacy Completions
# (`logprobs`), Gemini's (`generationConfig.logprobs`, inside Code Assist's `request` too).
_ALTERNATIVES: dict[str, tuple[tuple[str, ...], ...]] = {
    OPENAI_API: (("top_logprobs",), ("logprobs",)),
    BEDROCK_INVOKE: (("top_logprobs",),),
    GEMINI_GENERATE: (("generationConfig", "logprobs"), ("generation_config", "logprobs")),
    CODE_ASSIST: (("request", "generationConfig", "logprobs"), ("request", "generation_config", "logprobs")),
}


def alternatives_asked(classification: Classification, body: object) -> str | None:
    """What an answer of a call that asks for two or more alternatives at each token would carry
    that no answer format reads (None: it asks for none, or one): each position's alternatives are
    tokens the model did not write, which the answer guardrails cannot read as its text (an answer
    with them stops at its first token: refused before it goes upstream instead)."""
    for path in _ALTERNATIVES.get(classification.wire_format, ()):
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if _count(value) >= 2:
            return f"the alternatives to each token it asks for ({'.'.join(path)})"
    return None


def _count(value: object) -> int:
    """A count as a JSON body may write it: a number, or a string of digits (proto3 JSON)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0
