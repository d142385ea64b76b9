"""Bedrock's event streams that are not Converse's, read for usage: InvokeModelWithResponseStream's
`chunk` events, each of which wraps the model family's own event (base64 in a JSON payload; the last
one carries `amazon-bedrock-invocationMetrics`), and InvokeAgent's and InvokeInlineAgent's traces.
The frames are AWS event stream frames (`framing.EventStreamFramer`); the tail reader that finds
ConverseStream's and InvokeModelWithResponseStream's last frames is `bedrock_converse.stream`'s."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import EventStreamFramer
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, add_totals

# The traces in which an agent reports a model call of its own, each with its usage.
_MODEL_TRACES = ("preProcessingTrace", "orchestrationTrace", "postProcessingTrace", "routingClassifierTrace")


class AgentTraceReader(UsageReader):
    """InvokeAgent's and InvokeInlineAgent's event stream: each `trace` event may tell one model
    call's `modelInvocationOutput.metadata.usage`; what they tell is summed (an agent calls its model
    several times, and its collaborators theirs). Every frame is read as it passes, none kept."""

    def __init__(self) -> None:
        self._framer = EventStreamFramer()
        self._input = self._output = 0
        self._told = False

    def feed(self, chunk: bytes) -> None:
        for frame in self._framer.feed(chunk):
            headers = frame.headers
            if headers.get(":message-type") in ("exception", "error"):
                name = headers.get(":exception-type") or headers.get(":error-code") or "unknown"
                self.error = f"the stream ended in an exception: {name}"
            elif headers.get(":event-type") == "trace":
                self._add((parse_json(frame.payload) or {}).get("trace"))
        self.error = self.error or self._framer.error

    def _add(self, trace: Any) -> None:
        if not isinstance(trace, dict):
            return
        for kind in _MODEL_TRACES:
            step = trace.get(kind)
            output = step.get("modelInvocationOutput") if isinstance(step, dict) else None
            metadata = output.get("metadata") if isinstance(output, dict) else None
            usage = metadata.get("usage") if isinstance(metadata, dict) else None
            if isinstance(usage, dict):
                given, made = usage.get("inputTokens"), usage.get("outputTokens")
                if type(given) is int and type(made) is int and given >= 0 and made >= 0:
                    self._input += given
                    self._output += made
                    self._told = True

    def result(self) -> Usage:
        if not self._told:
            return Usage()
        return add_totals(Usage(input_tokens=self._input, output_tokens=self._output))
