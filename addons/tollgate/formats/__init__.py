"""The wire formats, one package each: how a request in the format is read exactly (its facts at
classification, and into the common chat model of `chat.py`), written, and how its answers, streams,
errors and usage are read and written. This module names them, so that providers can say which
format each endpoint speaks; the registry (`registry.py`) hands each over by its name."""

from __future__ import annotations

# Any endpoint of OpenAI's API in its own format (chat, responses, embeddings, …), as
# `Classification.wire_format` names it where a provider's endpoint speaks it (the OpenAI-compatible
# APIs); the chat formats below name what a translation reads and writes.
OPENAI_API = "openai-api"

OPENAI_CHAT = "openai-chat"
# OpenAI's legacy Completions (`/v1/completions`: each choice's `text`), as answers are read.
OPENAI_COMPLETIONS = "openai-completions"
# OpenAI's Responses API (`/v1/responses`, and its plans' and compatible APIs'), as answers are read.
OPENAI_RESPONSES = "openai-responses"
# A compacted conversation (`…/responses/compact`: Responses output items, one of them a `compaction`).
OPENAI_COMPACTION = "openai-compaction"
# OpenAI's image generations (`/v1/images/generations`: each image's `revised_prompt`), as answers are read.
OPENAI_IMAGES = "openai-images"
ANTHROPIC_MESSAGES = "anthropic-messages"
GEMINI_GENERATE = "gemini-generate"
BEDROCK_CONVERSE = "bedrock-converse"
# Bedrock's InvokeModel: each model family's own body (`bedrock_invoke/`).
BEDROCK_INVOKE = "bedrock-invoke"
# Bedrock's agent runtime and its control plane's jobs: their usage is an agent's traces' only.
BEDROCK_AGENTS = "bedrock-agents"
# Claude's own Messages body on Bedrock's InvokeModel: an Anthropic call goes there nearly as it
# came (every Anthropic feature Claude on Bedrock has), its stream's event-stream frames unwrapped.
CLAUDE_ON_BEDROCK = "claude-on-bedrock"
# Claude's Messages body on Vertex AI's rawPredict: the model in the path, Vertex's API version in
# the body; an Anthropic call goes there as it came.
CLAUDE_ON_VERTEX = "claude-on-vertex"
# Gemini Code Assist (cloudcode-pa.googleapis.com): generateContent inside an envelope
# `{model, project, user_prompt_id, request}`, its answers inside `{response: …}`.
CODE_ASSIST = "code-assist"
# An MCP server's answers (JSON-RPC, as JSON or server-sent events): read by the answer guardrails.
MCP_RESULTS = "mcp"
