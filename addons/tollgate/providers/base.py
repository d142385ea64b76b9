"""What every provider module offers; plain Python that knows nothing of mitmproxy.

Headers are any case-insensitive mutable mapping (mitmproxy's `Headers` in the proxy) and the
query any mutable mapping of parameter names to values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from tollgate.config_base import ProviderConfig
from tollgate.formats.raw_headers import Fields
from tollgate.formats.refusals import Refusal
from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification
from tollgate.host_globs import glob_pattern
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import Credentials
from tollgate.providers.plans import PlanReader


@dataclass(frozen=True, slots=True)
class ChatLeg:
    """How a chat call goes to a provider's own API, a route having translated it: the path it is
    sent to and the wire format (`formats/registry.py`) its body is written in."""

    path: str
    format: str


REDACTED = "[redacted by Tollgate]"


def client_cert_of(settings: ProviderConfig | None) -> str | None:
    """The client certificate a provider's settings give it for its mTLS hosts (`client_cert`)."""
    cert = getattr(settings, "client_cert", None)
    return cert if isinstance(cert, str) else None


class Provider:
    """One LLM provider: its hosts, endpoints and the wire format each speaks, and its error shape;
    and the parts it declares: where its credentials go (`credentials`), what its calls cost
    (`cost`), and, where it takes a person's plan, how its plan tokens are read (`plan`)."""

    name: ClassVar[str]
    # Its gen_ai.provider.name in OpenTelemetry's GenAI conventions (metrics and traces).
    semconv_name: ClassVar[str]
    # Its hosts as globs (`host_globs.py`; a first label `**` stands for one or more labels),
    # which a configuration's `hosts` of another provider may not overlap.
    host_globs: ClassVar[tuple[str, ...]] = ()
    # Regular expression over the host name in lower case without a trailing dot; any port. By
    # default its globs'; a provider whose hosts have parts it reads (a region) writes its own.
    host_pattern: ClassVar[str]
    # Where a call routed here goes when no upstream is configured (None: it must be, and
    # `upstream_hint` says where it should point).
    default_host: ClassVar[str | None] = None
    upstream_hint: ClassVar[str] = ""
    # Its OpenAI-compatible API, if it has one: the path prefix that stands for OpenAI's `/v1/`, and
    # the endpoints offered there. OpenAI-format calls may be routed here (`overrides:`).
    openai_compatible_prefix: ClassVar[str | None] = None
    openai_compatible_endpoints: ClassVar[frozenset[str]] = frozenset()
    # Its settings under `providers.<name>` in tollgate.yaml.
    settings_model: ClassVar[type[ProviderConfig]] = ProviderConfig
    # Its chat endpoints a route may translate from (`overrides: … provider:`), and the wire format
    # each speaks (`formats/registry.py`'s names).
    chat_formats: ClassVar[Mapping[str, str]] = {}
    # Whether OpenAI-compatible APIs take its calls as they are: its own API is the one they copy
    # (`api: openai_compatible` routes only its calls).
    openai_compatible_source: ClassVar[bool] = False
    # Headers its own API needs on every request Tollgate writes for it (a translated call, the
    # summarizer's), beside the body's own.
    target_headers: ClassVar[Fields] = ()
    # The media type a streamed answer comes in (what a translated streamed call accepts).
    stream_media_type: ClassVar[str] = "text/event-stream"
    # Whether it reads model names without regard to letter case (Azure's deployment names): Tollgate
    # then names them in lower case (`model_names`) and matches rules on them so.
    models_ignore_case: ClassVar[bool] = False
    # The wire format whose error shape its refusals are in (`refusal`).
    error_format: ClassVar[str]
    # Where its credentials go: a caller's, Tollgate's, and what Tollgate holds (`providers/credentials.py`).
    credentials: ClassVar[Credentials[Any]]
    # What its calls cost: its price tables and how usage is read from its answers (`providers/cost.py`).
    cost: ClassVar[Cost] = Cost()
    # Its plan-token reader where it takes a person's plan (`providers/plans.py`); None: no plans.
    plan: ClassVar[PlanReader | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "host_pattern" not in cls.__dict__ and "host_globs" in cls.__dict__:
            cls.host_pattern = "|".join(glob_pattern(glob) for glob in cls.host_globs)

    # Where the native format names the model in the path (a `model` group), if it does.
    model_in_path: ClassVar[re.Pattern[str] | None] = None

    def governs_path(self, path: str) -> bool:
        """Whether a request to this path (without the query) on its hosts is a call Tollgate reads;
        one that is not goes on unread, unaudited, as to a host that is no provider's, but for its
        tenant header. Default: every path is (ChatGPT's web app is not)."""
        return True

    def path_with_model(self, path: str, model: str) -> str | None:
        """The path calling another model; None where the model is named in the body."""
        raw, _, query = path.partition("?")
        m = self.model_in_path.match(raw) if self.model_in_path else None
        if m is None:
            return None
        # One path segment, ":" and "/" percent-encoded, as botocore and the Gemini SDKs send it.
        rewritten = f"{raw[: m.start('model')]}{quote(model, safe='-_.~')}{raw[m.end('model') :]}"
        return f"{rewritten}?{query}" if query else rewritten

    def model_field(self, classification: Classification) -> str | None:
        """The body's field that names the model, where the path does not: an override writes the
        model it calls there. None where the body names it deeper, or not at all: the call then goes
        as asked. Default: `model`."""
        return "model"

    def model_in_body(self, sent: object, model: str) -> str:
        """What a body's `model` field says to call `model`, given what the client sent there."""
        return model

    def is_mtls_host(self, host: str) -> bool:
        """Whether `host` (lower case, no trailing dot) is one of its mTLS hosts, where a client
        certificate (`client_cert`) is presented."""
        return False

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        """Where a chat call in the wire format `source` goes on this provider's own API, for
        `model`, streamed or not, once translated."""
        raise NotImplementedError

    def fit_chat_body(self, body: dict[str, Any]) -> None:
        """A chat body in `native_chat`'s format, written by Tollgate (a route's translation, a
        roll-up's summary request) or by a client for another provider's API (a route or fallback
        that sends it as it came), changed where this provider's API takes other fields (an
        OpenAI-compatible vendor's `max_tokens`). Default: as written."""

    def configured_upstream(self, settings: ProviderConfig, classification: Classification | None) -> str | None:
        """The upstream the settings give a call (scheme://host[:port]), or None. Default: `upstream`;
        Azure's a resource's own, for a call to that resource's host."""
        return settings.upstream

    def model_names(self, settings: ProviderConfig) -> Callable[[str], str] | None:
        """What model a model name the caller asked for is, for prices, limits, the policy and the
        audit, where the settings name models apart from what callers ask for (Azure's deployments);
        None where they do not. Default: None."""
        return None

    def upstream_host(self, host: str, settings: ProviderConfig) -> str | None:
        """Where a call to `host` (lower case) goes when no upstream is configured: None for that
        host itself. Default: itself (Google's mTLS hosts go to their twins)."""
        return None

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        """What the request is, read from its path (without the query), its query and its JSON
        body (None: no body, or one streamed unread); `Unreadable` when it cannot be read exactly."""
        raise NotImplementedError

    def classify_at(
        self, host: str, method: str, path: str, data: dict[str, Any] | None, query: str = ""
    ) -> Classification:
        """`classify` for a call to `host` (lower case, no trailing dot), for a provider whose hosts
        serve different APIs (Bedrock's runtime, agent runtime and control plane). Default: the
        host makes no difference."""
        return self.classify(method, path, data, query)

    def check_headers(self, headers: Mapping[bytes, bytes]) -> None:
        """`Unreadable` where a request header (lower-case name) would make the provider answer in a
        way Tollgate does not read. Default: no header does."""

    def read_headers(self, headers: Mapping[bytes, bytes], classification: Classification) -> None:
        """What a request's headers (lower-case names) tell of the call, set on its classification's
        facts; `Unreadable` where one cannot be read exactly. Default: nothing."""

    def streams_unread(self, method: str, path: str) -> bool:
        """Whether this endpoint's body goes upstream as it arrives, unread: only endpoints that take
        files or audio, whose model and facts the policy then sees as unread."""
        return False

    def prepare(
        self,
        classification: Classification,
        body: dict[str, Any] | None,
        index: Mapping[bytes, bytes],
        inject_usage: bool,
    ) -> bool:
        """Change the request's parsed JSON `body` before the upstream credential goes in (and any
        signature over it); returns whether it asked the answer for usage the client did not ask
        for, changing `body`. `inject_usage` is `audit.stream_usage: inject`. Default: a call whose
        wire format asks for it (OpenAI's, on any provider's OpenAI-compatible endpoint) does."""
        if not inject_usage:
            return False
        ask = wire_format(classification.wire_format).ask_for_usage
        return ask is not None and ask(classification, body)

    def error_format_at(self, path: str) -> str:
        """The wire format whose error shape a refusal of a call to `path` (without the query) is
        in. Default: `error_format`, whatever the path (Copilot's hosts speak three formats)."""
        return self.error_format

    def refusal(self, reason: str, message: str, path: str = "") -> Refusal:
        """Tollgate's refusal in this provider's error shape (its `error_format_at` the call's path)."""
        name = self.error_format_at(path)
        shape = wire_format(name).refusal
        assert shape is not None, f"{name} has no error shape"
        return shape(reason, message)
