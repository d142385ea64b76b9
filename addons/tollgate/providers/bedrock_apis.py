"""Bedrock's APIs besides its runtime, read from their paths: Agents for Amazon Bedrock's runtime
(bedrock-agent-runtime: agents, flows, knowledge bases, sessions) and the jobs of Bedrock's control
plane (bedrock: model invocation, evaluation and model customization jobs), whose answers' usage
is an agent's traces' only (their format: `formats.BEDROCK_AGENTS`). `bedrock.py` reads a host's
calls by its API."""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats import BEDROCK_AGENTS
from tollgate.formats.bodies.exact import Unreadable, check_case, path_segments, request_int, request_model, words
from tollgate.formats.request_facts import Batch, Classification, RequestFacts

# Each operation: its method, its path with `{}` for each id (a trailing '/' as the SDKs send it),
# and its endpoint name (the operation's name in botocore, in Bedrock's endpoint names' style).
AGENT_RUNTIME = (
    ("POST", "/agents/{}/agentAliases/{}/sessions/{}/text", "invoke-agent"),
    ("POST", "/agents/{}", "invoke-inline-agent"),
    ("GET", "/agents/{}/agentAliases/{}/memories", "get-agent-memory"),
    ("DELETE", "/agents/{}/agentAliases/{}/memories", "delete-agent-memory"),
    ("POST", "/retrieveAndGenerate", "retrieve-and-generate"),
    ("POST", "/retrieveAndGenerateStream", "retrieve-and-generate-stream"),
    ("POST", "/knowledgebases/{}/retrieve", "retrieve"),
    ("POST", "/agenticRetrieveStream", "agentic-retrieve-stream"),
    ("POST", "/rerank", "rerank"),
    ("POST", "/generateQuery", "generate-query"),
    ("POST", "/optimize-prompt", "optimize-prompt"),
    ("POST", "/flows/{}/aliases/{}", "invoke-flow"),
    ("POST", "/flows/{}/aliases/{}/executions", "start-flow-execution"),
    ("GET", "/flows/{}/aliases/{}/executions/{}", "get-flow-execution"),
    ("GET", "/flows/{}/aliases/{}/executions/{}/events", "list-flow-execution-events"),
    ("GET", "/flows/{}/aliases/{}/executions/{}/flowsnapshot", "get-execution-flow-snapshot"),
    ("POST", "/flows/{}/aliases/{}/executions/{}/stop", "stop-flow-execution"),
    ("GET", "/flows/{}/executions", "list-flow-executions"),
    ("POST", "/knowledgebases/{}/datasources/{}/check-ingested-document-acl", "check-ingested-document-acl"),
    ("POST", "/knowledgebases/{}/datasources/{}/get-ingested-document-acl", "get-ingested-document-acl"),
    ("POST", "/knowledgebases/{}/datasources/{}/documents/{}/content", "get-document-content"),
    ("PUT", "/sessions/", "create-session"),
    ("POST", "/sessions/", "list-sessions"),
    ("GET", "/sessions/{}/", "get-session"),
    ("PUT", "/sessions/{}/", "update-session"),
    ("DELETE", "/sessions/{}/", "delete-session"),
    ("PATCH", "/sessions/{}", "end-session"),
    ("PUT", "/sessions/{}/invocations/", "create-invocation"),
    ("POST", "/sessions/{}/invocations/", "list-invocations"),
    ("PUT", "/sessions/{}/invocationSteps/", "put-invocation-step"),
    ("POST", "/sessions/{}/invocationSteps/", "list-invocation-steps"),
    ("POST", "/sessions/{}/invocationSteps/{}", "get-invocation-step"),
    ("GET", "/tags/{}", "list-tags-for-resource"),
    ("POST", "/tags/{}", "tag-resource"),
    ("DELETE", "/tags/{}", "untag-resource"),
)
# The control plane's jobs that run models: a model invocation job (a batch whose requests are in
# S3), an evaluation job (a model run over a data set in S3), a model customization job
# (fine-tuning). Every other path there is outside the model API.
CONTROL_JOBS = (
    ("POST", "/model-invocation-job", "create-model-invocation-job"),
    ("GET", "/model-invocation-job/{}", "get-model-invocation-job"),
    ("POST", "/model-invocation-job/{}/stop", "stop-model-invocation-job"),
    ("GET", "/model-invocation-jobs", "list-model-invocation-jobs"),
    ("POST", "/evaluation-jobs", "create-evaluation-job"),
    ("GET", "/evaluation-jobs", "list-evaluation-jobs"),
    ("GET", "/evaluation-jobs/{}", "get-evaluation-job"),
    ("POST", "/evaluation-jobs/batch-delete", "batch-delete-evaluation-job"),
    ("POST", "/evaluation-job/{}/stop", "stop-evaluation-job"),
    ("POST", "/model-customization-jobs", "create-model-customization-job"),
    ("GET", "/model-customization-jobs", "list-model-customization-jobs"),
    ("GET", "/model-customization-jobs/{}", "get-model-customization-job"),
    ("POST", "/model-customization-jobs/{}/stop", "stop-model-customization-job"),
)
# The calls that run a model, whose work is billed: every other one manages what was made.
_RUNS_MODELS = frozenset(
    (
        "invoke-agent", "invoke-inline-agent", "retrieve-and-generate", "retrieve-and-generate-stream", "retrieve",
        "agentic-retrieve-stream", "rerank", "generate-query", "optimize-prompt", "invoke-flow",
        "start-flow-execution", "create-model-invocation-job", "create-evaluation-job",
        "create-model-customization-job",
    )
)  # fmt: skip
ENDPOINTS = frozenset(name for table in (AGENT_RUNTIME, CONTROL_JOBS) for _, _, name in table)
FREE_ENDPOINTS = ENDPOINTS - _RUNS_MODELS
# Their answers are AWS event streams.
_STREAMED = frozenset(
    ("invoke-agent", "invoke-inline-agent", "retrieve-and-generate-stream", "agentic-retrieve-stream",
     "optimize-prompt", "invoke-flow")
)  # fmt: skip
# The calls whose model, or what they ask of it, is configured elsewhere (an agent, a flow, a
# knowledge base): the policy sees them as unread.
_MODEL_ELSEWHERE = frozenset(("invoke-agent", "invoke-flow", "start-flow-execution", "generate-query"))
_UNREAD_ELSEWHERE = ("model", "request")
# An id in a path: percent-encoded as botocore sends it (an ARN's ':' and '/' as %3A and %2F).
_ID = re.compile(r"(?:[A-Za-z0-9._~:-]|%[0-9A-Fa-f]{2})+")

Operation = tuple[str, tuple[str, ...], bool, str]  # method, path parts ("{}": an id), trailing '/', name


def _operations(table: tuple[tuple[str, str, str], ...]) -> tuple[Operation, ...]:
    return tuple((method, tuple(path.strip("/").split("/")), path.endswith("/"), name) for method, path, name in table)


_AGENT_RUNTIME = _operations(AGENT_RUNTIME)
_CONTROL_JOBS = _operations(CONTROL_JOBS)
WORDS = words(*{part for _, parts, _, _ in (*_AGENT_RUNTIME, *_CONTROL_JOBS) for part in parts if part != "{}"})
AGENT_RUNTIME_FIRST = frozenset(parts[0] for _, parts, _, _ in _AGENT_RUNTIME)
CONTROL_JOBS_FIRST = frozenset(parts[0] for _, parts, _, _ in _CONTROL_JOBS)


def agent_runtime_call(method: str, path: str, data: dict[str, Any] | None) -> Classification | None:
    """A call to Bedrock's agent runtime; None when its path is none of its operations'."""
    name = _operation(_AGENT_RUNTIME, AGENT_RUNTIME_FIRST, method, path)
    return None if name is None else _classified(name, method, data)


def control_job_call(method: str, path: str, data: dict[str, Any] | None) -> Classification | None:
    """A call about a job of Bedrock's control plane; None when its path is outside the model API."""
    name = _operation(_CONTROL_JOBS, CONTROL_JOBS_FIRST, method, path)
    return None if name is None else _classified(name, method, data)


# The body's field naming the model, where it is one at the top (an override writes it there).
MODEL_FIELDS = {
    "invoke-inline-agent": "foundationModel",
    "create-model-invocation-job": "modelId",
    "create-model-customization-job": "baseModelIdentifier",
}


def first_segment(path: str) -> str:
    return path.lstrip("/").partition("/")[0]


def _operation(operations: tuple[Operation, ...], first: frozenset[str], method: str, path: str) -> str | None:
    """The operation a path and method name, None when the path's first segment is none of theirs;
    `Unreadable` when it is, and the rest of the path or the method is no operation's."""
    if WORDS.get(first_segment(path).lower()) not in first:  # in its own letter case, or another
        return None
    trailing = len(path) > 1 and path.endswith("/")
    segments = path_segments(path[:-1] if trailing else path, percent=True)
    check_case(segments, WORDS)
    fitting = [(m, name) for m, parts, slash, name in operations if slash is trailing and _fits(parts, segments)]
    if not fitting:
        raise Unreadable("the path is none of this API's operations, in the form its SDKs send")
    for m, name in fitting:
        if m == method:
            return name
    raise Unreadable(f"this path is called with {' or '.join(sorted({m for m, _ in fitting}))}").at(fitting[0][1])


def _fits(parts: tuple[str, ...], segments: list[str]) -> bool:
    if len(parts) != len(segments):
        return False
    return all(_ID.fullmatch(seg) if part == "{}" else part == seg for part, seg in zip(parts, segments, strict=True))


def _classified(name: str, method: str, data: dict[str, Any] | None) -> Classification:
    c = Classification(endpoint=name, facts=RequestFacts(stream=name in _STREAMED), wire_format=BEDROCK_AGENTS)
    if name in _MODEL_ELSEWHERE:
        c.unread = _UNREAD_ELSEWHERE
    if method != "POST" or data is None or name not in _RUNS_MODELS:
        return c
    try:
        _read(name, data, c)
    except Unreadable as e:
        raise e.at(name) from None
    return c


def _read(name: str, data: dict[str, Any], c: Classification) -> None:
    """The model a call names and what it asks of it, where its body says."""
    facts = c.facts
    if name == "invoke-inline-agent":
        c.model = request_model(data, "foundationModel")
        facts.has_system = bool(data.get("instruction"))
        # Action groups, other agents and knowledge bases are what an agent's model may call.
        facts.has_tools = bool(data.get("actionGroups") or data.get("collaborators") or data.get("knowledgeBases"))
    if name in ("invoke-agent", "invoke-inline-agent"):
        facts.message_count = 1 if data.get("inputText") else 0
    elif name in ("retrieve-and-generate", "retrieve-and-generate-stream"):
        config = _object(data, "retrieveAndGenerateConfiguration")
        source = _object(config, "knowledgeBaseConfiguration") or _object(config, "externalSourcesConfiguration")
        c.model = request_model(source, "modelArn")
        text = _object(_object(_object(source, "generationConfiguration"), "inferenceConfig"), "textInferenceConfig")
        facts.max_tokens = request_int(text.get("maxTokens"), "textInferenceConfig.maxTokens")
        facts.message_count = 1
    elif name == "rerank":
        c.model = _reranker(_object(data, "rerankingConfiguration"))
    elif name == "retrieve":
        vector = _object(_object(data, "retrievalConfiguration"), "vectorSearchConfiguration")
        c.model = _reranker(_object(vector, "rerankingConfiguration"))
        if c.model is None:
            c.unread = ("model",)  # the knowledge base's embedding model
    elif name in ("create-model-invocation-job", "create-evaluation-job", "create-model-customization-job"):
        # Its requests are in S3 (a customization job's training data too): Tollgate bounds none.
        facts.batch = Batch(requests=None)
        key = {"create-model-invocation-job": "modelId", "create-model-customization-job": "baseModelIdentifier"}
        if name in key:
            c.model = request_model(data, key[name])
        else:
            c.unread = ("model",)  # an evaluation job names its models deep in its configuration
    elif name in ("optimize-prompt", "agentic-retrieve-stream"):
        c.unread = ("model",)  # the model that does the work is Bedrock's choice


def _reranker(config: dict[str, Any]) -> str | None:
    bedrock = _object(config, "bedrockRerankingConfiguration")
    return request_model(_object(bedrock, "modelConfiguration"), "modelArn")


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A member that must be an object: {} when absent, `Unreadable` when it is something else."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unreadable(f"'{key}' is not an object")
    return value
