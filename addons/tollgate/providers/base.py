"""What every provider module offers; plain Python that knows nothing of mitmproxy.

A provider's core is here (`Provider`); the parts it declares are modules beside it: where its
credentials go (`credentials.py`), what its calls cost (`cost.py`), where they go (`upstream.py`),
how they name their model (`models.py`), how its plan tokens are read (`plans.py`), how routes
reach it (`routing.py`) and what its service calls answer with (`service_calls.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tollgate.common.config_base import ProviderConfig
from tollgate.common.host_globs import glob_pattern
from tollgate.formats.refusals import Refusal
from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import Credentials
from tollgate.providers.models import Models
from tollgate.providers.plans import PlanReader
from tollgate.providers.routing import Routing
from tollgate.providers.service_calls import ServiceCalls
from tollgate.providers.upstream import Upstream


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


class ErrorShape:
    """How a provider's refusals are written: in the error shape of a wire format, its own
    (`error_format`) or, where its hosts speak more than one, the one of the call's path. A part of
    `Provider` of its own: what a refusal looks like is no concern of how calls are read."""

    # The wire format whose error shape its refusals are in (`refusal`).
    error_format: ClassVar[str]

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


class Provider(ErrorShape):
    """One LLM provider: its hosts, endpoints and the wire format each speaks, and its error shape
    (`ErrorShape`); and the parts it declares: where its credentials go (`credentials`), what its calls cost
    (`cost`), where its calls go (`upstream`), how they name their model (`models`), how routes
    between providers reach it (`routing`), what its service calls answer with (`services`), and,
    where it takes a person's plan, how its plan tokens are read (`plan`)."""

    name: ClassVar[str]
    # Its gen_ai.provider.name in OpenTelemetry's GenAI conventions (metrics and traces).
    semconv_name: ClassVar[str]
    # Its hosts as globs (`host_globs.py`; a first label `**` stands for one or more labels),
    # which a configuration's `hosts` of another provider may not overlap.
    host_globs: ClassVar[tuple[str, ...]] = ()
    # Regular expression over the host name in lower case without a trailing dot; any port. By
    # default its globs'; a provider whose hosts have parts it reads (a region) writes its own.
    host_pattern: ClassVar[str]
    # Its settings under `providers.<name>` in tollgate.yaml.
    settings_model: ClassVar[type[ProviderConfig]] = ProviderConfig
    # Where its credentials go: a caller's, Tollgate's, and what Tollgate holds (`providers/credentials.py`).
    credentials: ClassVar[Credentials[Any]]
    # What its calls cost: its price tables and how usage is read from its answers (`providers/cost.py`).
    cost: ClassVar[Cost] = Cost()
    # Where its calls go when no rule routes them elsewhere (`providers/upstream.py`).
    upstream: ClassVar[Upstream] = Upstream()
    # How its calls name their model (`providers/models.py`).
    models: ClassVar[Models] = Models()
    # Its plan-token reader where it takes a person's plan (`providers/plans.py`); None: no plans.
    plan: ClassVar[PlanReader | None] = None
    # How routes between providers reach it or leave it: its OpenAI-compatible API, its chat
    # endpoints a route may translate from, what a request Tollgate writes for it needs
    # (`providers/routing.py`).
    routing: ClassVar[Routing] = Routing()
    # What its service calls answer with: nothing a model wrote, or what (`providers/service_calls.py`).
    services: ClassVar[ServiceCalls] = ServiceCalls()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "host_pattern" not in cls.__dict__ and "host_globs" in cls.__dict__:
            cls.host_pattern = "|".join(glob_pattern(glob) for glob in cls.host_globs)

    def governs_path(self, path: str) -> bool:
        """Whether a request to this path (without the query) on its hosts is a call Tollgate reads;
        one that is not goes on unread, unaudited, as to a host that is no provider's, but for its
        tenant header. Default: every path is (ChatGPT's web app is not)."""
        return True

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        """Where a chat call in the wire format `source` goes on this provider's own API, for
        `model`, streamed or not, once translated."""
        raise NotImplementedError

    def fit_chat_body(self, body: dict[str, Any]) -> None:
        """A chat body in `native_chat`'s format, written by Tollgate (a route's translation, a
        roll-up's summary request) or by a client for another provider's API (a route or fallback
        that sends it as it came), changed where this provider's API takes other fields (an
        OpenAI-compatible vendor's `max_tokens`). Default: as written."""

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

    def may_ask_usage(self, classification: Classification, index: Mapping[bytes, bytes]) -> bool:
        """Whether `prepare` may ask this call's answer for usage its client did not ask for (request
        headers by lower-case name in `index`). Default: yes."""
        return True

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
        wire format asks for it (OpenAI's, on any provider's OpenAI-compatible endpoint) does, where
        `may_ask_usage` lets it."""
        if not inject_usage or not self.may_ask_usage(classification, index):
            return False
        ask = wire_format(classification.wire_format).ask_for_usage
        return ask is not None and ask(classification, body)
