"""Which model family's own body an InvokeModel call carries, for `agents`: by the model id, else
(an application inference profile's ARN names none) by the body's shape. Claude's is Anthropic's
Messages body; Amazon Nova's is Converse's (`toolConfig`, `toolUse`, `toolResult`); Mistral's,
AI21 Jamba's and OpenAI's open-weight models' are OpenAI's chat (`tools`, `tool_calls`, `role:
tool`); Cohere's Command R's is its own (`message`, `chat_history`, `tool_results`:
`formats.bedrock_invoke.cohere`). The others' bodies are not read for their tool calls: the
families whose bodies carry no tools (Llama's prompt, in which a tool call is text, Titan's,
DeepSeek's, Cohere's older Command's…).

Mistral's chat chunks on Bedrock may name a choice's `delta` `message` and its `finish_reason`
`stop_reason`: `CHAT_CODEC` reads them as the chat stream's, and writes an event back in the words
the stream used."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bedrock_invoke.cohere import is_cohere_chat

CLAUDE, NOVA, CHAT, COHERE = "claude", "nova", "chat", "cohere"

_MODELS = (
    ("anthropic.claude", CLAUDE),
    ("amazon.nova", NOVA),
    ("mistral.", CHAT),
    ("ai21.jamba", CHAT),
    ("openai.gpt-oss", CHAT),
    ("cohere.command-r", COHERE),
)
# The fields in which an InvokeModel body gives its model tools or their results, in any family.
_TOOL_FIELDS = ("tools", "toolConfig", "functions", "tool_results", "tool_choice")


def invoke_family(model: str, body: dict[str, Any]) -> str | None:
    """The family whose body `agents` reads, or None where it reads none (see the module)."""
    for part, family in _MODELS:
        if part in model:
            # Mistral's older models take a prompt, not messages: nothing of chat's in them.
            if (family == CHAT and "messages" not in body) or (family == COHERE and not is_cohere_chat(body)):
                return None
            return family
    if "anthropic_version" in body:
        return CLAUDE
    if body.get("schemaVersion") == "messages-v1" or "toolConfig" in body:
        return NOVA
    if isinstance(body.get("messages"), list) and not ("message" in body or "chat_history" in body):
        return CHAT if _chat_shaped(body) else None
    return COHERE if is_cohere_chat(body) else None


def _chat_shaped(body: dict[str, Any]) -> bool:
    """Whether a body's messages and tools are OpenAI chat's: content strings or parts, tools of
    `type: function`."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        return all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools)
    return all(isinstance(m, dict) and not isinstance(m.get("content"), dict) for m in body["messages"])


def gives_tools(body: dict[str, Any]) -> bool:
    """Whether an InvokeModel body gives its model tools, or their results."""
    return any(body.get(field) for field in _TOOL_FIELDS)


class ChatWords:
    """How one stream names a choice's delta and finish: read as the chat stream's (`read`), and
    what the chat stream writes put back in them (`written`), its refusals' notes too."""

    def __init__(self) -> None:
        self.message = self.stop_reason = False  # the stream says `message`, `stop_reason`

    def read(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A chunk as the chat stream reads it; None where it is the chat stream's already."""
        choices = event.get("choices")
        if not isinstance(choices, list):
            return None
        read: list[Any] = []
        for choice in choices:
            renamed = dict(choice) if isinstance(choice, dict) else choice
            if isinstance(renamed, dict) and "message" in renamed and "delta" not in renamed:
                renamed["delta"] = renamed.pop("message")
                self.message = True
            if isinstance(renamed, dict) and "stop_reason" in renamed and "finish_reason" not in renamed:
                renamed["finish_reason"] = renamed.pop("stop_reason")
                self.stop_reason = True
            read.append(renamed)
        return {**event, "choices": read} if read != choices else None

    def written(self, event: dict[str, Any]) -> dict[str, Any]:
        choices = event.get("choices")
        if not isinstance(choices, list) or not (self.message or self.stop_reason):
            return event
        written: list[Any] = []
        for choice in choices:
            renamed = dict(choice) if isinstance(choice, dict) else choice
            if isinstance(renamed, dict) and self.message and "delta" in renamed:
                renamed["message"] = renamed.pop("delta")
            if isinstance(renamed, dict) and self.stop_reason and "finish_reason" in renamed:
                renamed["stop_reason"] = renamed.pop("finish_reason")
            written.append(renamed)
        return {**event, "choices": written}
