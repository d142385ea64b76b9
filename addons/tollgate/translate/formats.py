"""The chat wire formats a route translates between, by name (`translator.FORMATS` holds each one's
module): providers name the formats they speak without importing the translators."""

from __future__ import annotations

OPENAI_CHAT = "openai-chat"
ANTHROPIC_MESSAGES = "anthropic-messages"
GEMINI_GENERATE = "gemini-generate"
BEDROCK_CONVERSE = "bedrock-converse"
# Claude's own Messages body on Bedrock's InvokeModel: an Anthropic call goes there nearly as it
# came (every Anthropic feature Claude on Bedrock has), its stream's event-stream frames unwrapped.
CLAUDE_ON_BEDROCK = "claude-on-bedrock"
# Claude's Messages body on Vertex AI's rawPredict: the model in the path, Vertex's API version in
# the body; an Anthropic call goes there as it came.
CLAUDE_ON_VERTEX = "claude-on-vertex"
