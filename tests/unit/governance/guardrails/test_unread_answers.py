"""Which endpoints' answers carry what a model wrote (`governance/guardrails/unread_answers.py`), by
each provider's own reading of a call's path: with no answer format to read them, an answer rule
refuses them (`stages/guardrails/guard.py`); answers that carry none go on."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.grouped_cases import flat_cases

from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats import OPENAI_API
from tollgate.formats.request_facts import Classification
from tollgate.governance.guardrails.unread_answers import alternatives_asked, model_text, stored_unread

REGISTRY = Loaded.build(parse_config({"providers": {"azure": {"keys": ["k"]}}})).registry
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def carried(provider: str, method: str, path: str, body: dict[str, Any] | None = None, host: str = "") -> str | None:
    found = REGISTRY[provider]
    if host:
        return model_text(found.classify_at(host, method, path, body), found)  # type: ignore[attr-defined]
    return model_text(found.classify(method, path, body), found)


@pytest.mark.parametrize(
    ("provider", "method", "path", "body", "what"),
    [
        ("openai", "POST", "/v1/completions", {"model": "m", "prompt": "hi"}, "legacy Completions"),
        ("openai", "POST", "/v1/audio/transcriptions", None, "a transcription's text"),
        ("openai", "POST", "/v1/audio/translations", None, "a translation's text"),
        ("openai", "GET", "/v1/files/file-1/content", None, "a file's content (a batch's results)"),
        ("openai", "POST", "/v1/threads/runs", {"assistant_id": "a"}, "an Assistants run's messages"),
        ("openai", "GET", "/v1/threads/t1/messages", None, "an Assistants thread's messages"),
        ("openai", "GET", "/v1/conversations/c1/items", None, "a conversation's stored answers"),
        ("openai", "GET", "/v1/containers/cntr_1/files/cfile_1/content", None, "a code interpreter's output file"),
        ("openai", "POST", "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a cat", "stream": True}, "a streamed image generation"),
        ("chatgpt", "GET", "/backend-api/codex/responses/compact", None, "a compacted conversation (Codex's responses/compact)"),
        ("code_assist", "POST", "/v1internal:completeCode", {}, "a code completion (Code Assist's completeCode)"),
        ("anthropic", "POST", "/v1/complete", {"model": "claude-2.1", "prompt": "hi"}, "legacy Text Completions"),
        ("anthropic", "GET", "/v1/messages/batches/b1/results", None, "a Message Batch's results"),
        ("gemini", "POST", "/v1beta/models/aqa:generateAnswer", {}, "an attributed answer (generateAnswer)"),
        ("gemini", "GET", "/v1beta/batches/b1", None, "a batch's answers"),
        ("vertex", "POST", "/v1/projects/p/locations/l/endpoints/123:predict", {}, "a deployed model's own answer format (predict)"),
        ("bedrock", "POST", "/agents/A1/agentAliases/B1/sessions/s1/text", {"inputText": "hi"}, "an agent's, a flow's or a knowledge base's generated text"),
    ],
)  # fmt: skip
def test_an_endpoint_whose_answers_carry_model_text(
    provider: str, method: str, path: str, body: dict[str, Any] | None, what: str
) -> None:
    host = "bedrock-agent-runtime.us-east-1.amazonaws.com" if provider == "bedrock" else ""
    assert carried(provider, method, path, body, host) == what


@pytest.mark.parametrize(
    ("provider", "method", "path", "body"),
    [
        ("openai", "POST", "/v1/embeddings", {"model": "m", "input": "hi"}),
        ("openai", "POST", "/v1/images/generations", {"model": "m", "prompt": "a cat"}),
        ("openai", "POST", "/v1/moderations", {"input": "hi"}),
        ("openai", "GET", "/v1/models", None),
        ("openai", "GET", "/v1/containers/cntr_1/files", None),
        ("openai", "POST", "/v1/chat/completions", CHAT),
        ("chatgpt", "POST", "/backend-api/codex/responses/compact", {"model": "m", "input": []}),  # read
        ("gemini", "POST", "/v1beta/models/gemini-2.5-flash:countTokens", GEMINI),
        ("gemini", "POST", "/v1beta/models/text-embedding-004:embedContent", {}),
        ("vertex", "POST", "/v1/projects/p/locations/l/publishers/google/models/text-embedding-005:predict", {}),
        ("vertex", "POST", "/v1/projects/p/locations/l/endpoints/123:generateContent", GEMINI),
    ],
)
def test_an_endpoint_whose_answers_carry_none_or_are_read(
    provider: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    assert carried(provider, method, path, body) is None


@pytest.mark.parametrize(
    ("provider", "path", "what"),
    [
        ("openai", "/v1/chat/completions", "stored chat completions"),
        ("openai", "/v1/chat/completions?limit=5", "stored chat completions"),
        ("openai", "/v1/chat/completions/chatcmpl-1/messages", "a stored chat completion's messages"),
        ("openai", "/v1/chat/completions/chatcmpl-1", None),  # whole, in chat's format: read
        ("openai", "/v1/responses/resp_1/input_items", "a stored response's input items"),
        ("openai", "/v1/responses/resp_1", None),  # whole, in Responses' format: read
        ("groq", "/openai/v1/responses/resp_1/input_items", "a stored response's input items"),
    ],
)
def test_what_a_get_reads_back_of_stored_answers(provider: str, path: str, what: str | None) -> None:
    classification = REGISTRY[provider].classify("GET", path.split("?", maxsplit=1)[0], None)
    assert stored_unread(classification, "GET", path) == what
    assert stored_unread(classification, "POST", path) is None


@pytest.mark.parametrize(
    ("provider", "path", "body", "what"),
    [
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2}, "top_logprobs"),
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 20.0}, "top_logprobs"),
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 1}, None),
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 0}, None),
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": True}, None),
        ("openai", "/v1/chat/completions", {**CHAT, "logprobs": True}, None),
        ("openai", "/v1/responses", {"model": "m", "input": "hi", "top_logprobs": 5}, "top_logprobs"),
        ("openai", "/v1/completions", {"model": "m", "prompt": "hi", "logprobs": 3}, "logprobs"),
        ("openai", "/v1/completions", {"model": "m", "prompt": "hi", "logprobs": 1}, None),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent",
         {**GEMINI, "generationConfig": {"responseLogprobs": True, "logprobs": 2}}, "generationConfig.logprobs"),
        ("gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
         {**GEMINI, "generation_config": {"response_logprobs": True, "logprobs": "4"}}, "generation_config.logprobs"),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent",
         {**GEMINI, "generationConfig": {"responseLogprobs": True, "logprobs": 1}}, None),
        ("code_assist", "/v1internal:streamGenerateContent",
         {"model": "gemini-2.5-pro", "request": {**GEMINI, "generationConfig": {"logprobs": 3}}},
         "request.generationConfig.logprobs"),
    ],
)  # fmt: skip
def test_a_call_asking_for_alternatives_to_each_token(
    provider: str, path: str, body: dict[str, Any], what: str | None
) -> None:
    """Two or more alternatives at each token: an answer the guardrails cannot read (each position
    has a token the model did not write), refused before it goes upstream. One is the token chosen
    where the model decodes greedily: read as the text."""
    classification = REGISTRY[provider].classify("POST", path, body, "alt=sse" if "stream" in path else "")
    found = alternatives_asked(classification, body)
    assert found == (None if what is None else f"the alternatives to each token it asks for ({what})")


# What the real agents call beside their model calls, at start-up and for their housekeeping.
@pytest.mark.parametrize(
    ("provider", "method", "path"),
    flat_cases(
        {
            "chatgpt": [
                ("GET", "/backend-api/codex/models"),
                ("POST", "/backend-api/codex/analytics-events/events"),
                ("GET", "/backend-api/wham/accounts/check"),
                ("GET", "/backend-api/wham/usage"),
                ("GET", "/backend-api/wham/settings/user"),
                ("GET", "/backend-api/wham/environments"),
                ("GET", "/backend-api/wham/environments/by-repo/github/openai/codex"),
                ("GET", "/backend-api/wham/config/requirements"),
                ("GET", "/backend-api/wham/rate-limit-reset-credits"),
            ],
            "code_assist": [
                ("POST", "/v1internal:loadCodeAssist"),
                ("POST", "/v1internal:onboardUser"),
                ("GET", "/v1internal/operations/onboard-1"),
                ("POST", "/v1internal:retrieveUserQuota"),
                ("POST", "/v1internal:listExperiments"),
                ("POST", "/v1internal:fetchAdminControls"),
                ("GET", "/v1internal:getCodeAssistGlobalUserSetting"),
                ("POST", "/v1internal:setCodeAssistGlobalUserSetting"),
                ("POST", "/v1internal:recordCodeAssistMetrics"),
            ],
            "copilot": [
                ("GET", "/models"),
                ("GET", "/v1/models"),
                ("POST", "/models/session"),
                ("POST", "/models/claude-sonnet-4/policy"),
                ("GET", "/_ping"),
                ("POST", "/telemetry"),
            ],
            "anthropic": [
                ("GET", "/api/claude_code/settings"),
                ("GET", "/api/claude_code/policy_limits"),
                ("GET", "/api/claude_code/organizations/metrics_enabled"),
                ("GET", "/api/claude_cli/bootstrap"),
                ("GET", "/api/claude_code_penguin_mode"),
                ("POST", "/api/event_logging/v2/batch"),
                ("POST", "/api/eval/sdk-abc123"),
                ("GET", "/api/oauth/profile"),
                ("GET", "/api/oauth/claude_cli/roles"),
                ("GET", "/api/oauth/usage"),
                ("GET", "/api/oauth/account/settings"),
                ("GET", "/api/claude_cli_profile"),
            ],
        }
    ),
)
def test_a_service_call_known_to_carry_no_model_text_goes_on(provider: str, method: str, path: str) -> None:
    classification = REGISTRY[provider].classify(method, path, {} if method == "POST" else None)
    assert classification.service
    assert model_text(classification, REGISTRY[provider]) is None


@pytest.mark.parametrize(
    ("provider", "method", "path", "endpoint"),
    [
        ("chatgpt", "GET", "/backend-api/codex/tasks/task_e_68a1b2c3d4/turns", "codex.tasks.turns"),
        ("chatgpt", "GET", "/backend-api/codex/tasks/task_e_68a1b2c3d4/diff", "codex.tasks.diff"),
        ("chatgpt", "POST", "/backend-api/codex/memories/trace_summarize", "codex.memories.trace_summarize"),
        ("chatgpt", "POST", "/backend-api/codex/realtime/calls", "codex.realtime.calls"),
        ("chatgpt", "GET", "/backend-api/wham/tasks/task_e_68a1b2c3d4", "wham.tasks"),
        ("chatgpt", "GET", "/backend-api/wham/tasks/list", "wham.tasks.list"),
        ("chatgpt", "POST", "/backend-api/wham/tasks", "wham.tasks"),
        ("chatgpt", "GET", "/backend-api/wham/tasks/task_e_1/turns/turn_2/sibling_turns", "wham.tasks.turns.sibling_turns"),
        ("chatgpt", "POST", "/backend-api/wham/usage/thread_usage/query", "wham.usage.thread_usage.query"),
        ("chatgpt", "GET", "/backend-api/wham/remote/control/server", "wham.remote.control.server"),
        ("code_assist", "POST", "/v1internal:generateCode", "generateCode"),
        ("code_assist", "POST", "/v1internal:transformCode", "transformCode"),
        ("code_assist", "POST", "/v1internal:streamGenerateChat", "streamGenerateChat"),
        ("code_assist", "GET", "/v1internal/projects/p-1", "projects"),
        ("copilot", "POST", "/agents/github", "agents.github"),
        ("copilot", "POST", "/agents/copilot-swe-agent", "agents"),
        ("copilot", "GET", "/agents", "agents"),  # the list is at the same name as an agent's chat
        ("copilot", "POST", "/github/chat/threads", "github.chat.threads"),
        ("anthropic", "GET", "/api/claude_code_shared_session_transcripts", "api.claude_code_shared_session_transcripts"),
        ("anthropic", "GET", "/api/claude_code/memory", "api.claude_code.memory"),
        ("anthropic", "GET", "/api/oauth/files/file_011", "api.oauth.files"),
    ],
)  # fmt: skip
def test_any_other_service_call_is_refused_unread_by_its_endpoint(
    provider: str, method: str, path: str, endpoint: str
) -> None:
    """Fail closed: a service method not known to carry no model text may carry some, which no
    answer format reads."""
    classification = REGISTRY[provider].classify(method, path, {} if method == "POST" else None)
    assert (classification.service, classification.endpoint) == (True, endpoint)
    found = model_text(classification, REGISTRY[provider])
    assert found == f"the answer of the service call {endpoint}, which may carry model text"


def test_a_service_call_with_no_name_is_refused_unread() -> None:
    classification = REGISTRY["copilot"].classify("GET", "/0f1e2d3c", None)
    assert (classification.service, classification.endpoint) == (True, None)
    found = model_text(classification, REGISTRY["copilot"])
    assert found == "the answer of a service call with no name, which may carry model text"


def test_a_service_call_of_a_provider_that_names_none_is_refused_unread() -> None:
    """A provider that lists no service method as free of model text lets none go on."""
    classification = Classification(endpoint="models", service=True, wire_format=OPENAI_API)
    found = model_text(classification, REGISTRY["openai"])
    assert found == "the answer of the service call models, which may carry model text"


def test_a_service_call_passed_through_is_not_read() -> None:
    classification = REGISTRY["anthropic"].classify("GET", "/mcp-registry/v0/servers", None)
    assert classification.passthrough
    assert model_text(classification, REGISTRY["anthropic"]) is None
