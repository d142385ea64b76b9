"""What a request is, as its provider module reads it at classification: its endpoint, model and
facts (counted, never copied). Plain data, below the providers and the formats' readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tollgate.formats.usage import price_context


class GrantedMcpServer(NamedTuple):
    """An MCP server a call grants its model (Anthropic's `mcp_servers`, a Responses `mcp` tool)."""

    url: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch or asynchronous job: one call that starts many requests' work."""

    requests: int | None  # None: they are in a file or a bucket, which Tollgate does not read
    # What its requests may generate together, where every one is in the body: the output bounds
    # they set, each times its answers (`output_tokens`), and how many answers set none
    # (`open_answers`, each reserving its model's maximum output). None: Tollgate cannot bound it
    # (its requests in a file or a bucket, or work that is not counted in tokens: a video, a
    # fine-tuning, an Assistant's run).
    output_tokens: int | None = None
    open_answers: int = 0

    @property
    def bounded(self) -> bool:
        return self.requests is not None and self.output_tokens is not None

    def policy_input(self) -> dict[str, Any]:
        return {"requests": self.requests}


@dataclass(slots=True)
class RequestFacts:
    """What a request asks for, counted, never copied."""

    message_count: int | None = None
    has_system: bool | None = None
    has_tools: bool | None = None
    stream: bool | None = None
    max_tokens: int | None = None  # the bound on one answer
    # How many answers it asks for, each up to `max_tokens`: OpenAI's `n` (and `best_of`, which is
    # billed), Gemini's `candidateCount`, an image generation's `n`, …
    answers: int = 1
    # How the request asks to be run, which the price may depend on: its `service_tier` (OpenAI's,
    # Anthropic's, Gemini's and Bedrock's `serviceTier`) and its `speed` (Anthropic's fast mode,
    # Bedrock's latency-optimized models).
    service_tier: str | None = None
    speed: str | None = None
    # A batch or asynchronous job (None: one call's own work).
    batch: Batch | None = None
    # The MCP servers the call lets its model use.
    mcp_servers: tuple[GrantedMcpServer, ...] = ()
    # What the request uses that Tollgate cannot read: a stored prompt, a cached content, an
    # Assistant, a Realtime session's later events (`exact.STORED_PROMPT`, …). The policy's
    # `unread` lists them after the classification's.
    unread: tuple[str, ...] = ()
    # Part of its input is held by the provider, which bills it as input: a previous response, a
    # conversation, a stored prompt (the Responses API's `previous_response_id`, `conversation`,
    # `prompt`), a Realtime session's conversation. Its size is unknown until the answer's usage:
    # a limit reserves the model's context window for it (`ledger.reserve_input_tokens` where unknown).
    input_held: bool = False

    def price_context(self) -> tuple[tuple[str, str], ...]:
        """What the price table's variants would be chosen by, were the call run as asked."""
        return price_context(self.service_tier, self.speed)

    def unseen(self, what: str) -> None:
        """The request uses `what`, which Tollgate cannot read and which may give the model tools and
        a system prompt: both are taken as given, so that a rule against them fails closed, and
        `what` is named in `unread`."""
        self.has_tools = self.has_system = True
        if what not in self.unread:
            self.unread += (what,)

    def grants(self, servers: tuple[GrantedMcpServer, ...]) -> None:
        """The request lets its model use these MCP servers (tools, each of them)."""
        if servers:
            self.mcp_servers += servers
            self.has_tools = True


@dataclass(slots=True)
class Classification:
    """What a provider module makes of a request."""

    endpoint: str | None = None
    model: str | None = None
    facts: RequestFacts = field(default_factory=RequestFacts)
    # The wire format the call speaks (`formats/registry.py`: OpenAI's API, `OPENAI_API`, on every
    # provider's OpenAI-compatible endpoint): how its answers' usage is read, its conversation found.
    # Every provider names it; it is empty only in a classification made by hand.
    wire_format: str = ""
    # What the call holds but Tollgate did not read (a body streamed unread): "model", "request"
    # (its facts). The policy sees it, so that an unread model is never taken for no model.
    unread: tuple[str, ...] = ()
    # Who publishes the model, where the provider names models by publisher (Vertex AI's
    # `publishers/{publisher}/models/{model}`); `model` is then the model's id alone.
    publisher: str | None = None
    # The provider's resource the host called names, where a resource has keys and an upstream of
    # its own (Azure's `{resource}.openai.azure.com`); None for a call classified without its host.
    resource: str | None = None
    # A path outside the model API, on a host that also serves other products (Bedrock's control
    # plane): it goes with the caller's own credential, never one of Tollgate's, undecided and
    # uncounted, and is audited with no endpoint.
    passthrough: bool = False
    # A known endpoint of the provider's own service outside the model API (Anthropic's `/api/…`,
    # which Claude Code calls for its settings, limits and event logging): identified, its
    # credential swapped, decided and audited like any call, but it names no model, reports no
    # tokens and is counted against no limit.
    service: bool = False
    # A path of the provider's own service Tollgate does not know (Claude Code's other `/api/…`
    # calls, made with a Claude plan's token): a service call that only the user's own plan token
    # may make, never one going with a key of Tollgate's (Identify refuses that, `plan_only_refusal`).
    plan_only: bool = False
    # An upgrade to a WebSocket whose messages are the calls (the Responses API's WebSocket mode):
    # the connection is identified and given its credential, each message is decided and audited.
    session: bool = False
    # It mints a credential usable without Tollgate (a Realtime client secret, a Gemini ephemeral
    # token): whoever holds it calls the provider directly, past every policy, limit and audit.
    # Refused unless `providers.<name>.ephemeral_credentials` allows it.
    mints_credential: bool = False
    # It makes, shows or enables a lasting API key (an administration API's keys): refused with
    # `mints_credential` even where `ephemeral_credentials` allows the ephemeral ones.
    administers_keys: bool = False
