"""AWS Bedrock's InvokeModel bodies (POST /model/{modelId}/invoke and
/invoke-with-response-stream): each model family's own format (Claude's Messages body, Nova's,
Titan's, Llama's, Mistral's, Cohere's, AI21's, the OpenAI format of OpenAI's open-weight models…),
which Converse's `additionalModelRequestFields` passes on too. Tollgate does not translate them: it
reads their facts at classification, the usage InvokeModel reports in its headers and its streams'
invocation metrics, and the stop reason each family names in its own way. The agent runtime's
InvokeAgent stream, whose traces report its model calls' usage, is read here too.

`request`: the facts and the tier and latency headers; `answer`: the usage its headers report;
`stream`: the agents' traces. What a family's body says, read by Converse too, is `bedrock_family`'s."""

from tollgate.formats.bedrock_family import family_tools, invoke_finish_reason, prompt_usage, read_chunk
from tollgate.formats.bedrock_invoke.answer import USAGE_HEADERS, header_usage
from tollgate.formats.bedrock_invoke.request import (
    LATENCY_HEADER,
    SERVICE_TIER_HEADER,
    counted_request,
    header_name,
    is_claude,
    read_facts,
)
from tollgate.formats.bedrock_invoke.stream import AgentTraceReader

__all__ = [
    "LATENCY_HEADER",
    "SERVICE_TIER_HEADER",
    "USAGE_HEADERS",
    "AgentTraceReader",
    "counted_request",
    "family_tools",
    "header_name",
    "header_usage",
    "invoke_finish_reason",
    "is_claude",
    "prompt_usage",
    "read_chunk",
    "read_facts",
]
