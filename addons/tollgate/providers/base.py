"""What every provider module offers; plain Python that knows nothing of mitmproxy.

Headers are any case-insensitive mutable mapping (mitmproxy's `Headers` in the proxy) and the
query any mutable mapping of parameter names to values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from tollgate.config_base import ProviderConfig
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.credentials.header_key import HeaderKey, header_key
from tollgate.credentials.keypool import KeyPool
from tollgate.fingerprint import fingerprint
from tollgate.formats.raw_headers import Fields
from tollgate.formats.refusals import Refusal
from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import Counted, UsageReader, WholeBodyReader
from tollgate.host_globs import glob_pattern

Headers = MutableMapping[str, str]
Query = MutableMapping[str, str]


@dataclass(frozen=True, slots=True)
class ChatLeg:
    """How a chat call goes to a provider's own API, a route having translated it: the path it is
    sent to and the wire format (`formats/registry.py`) its body is written in."""

    path: str
    format: str


@dataclass(slots=True)  # not frozen: made on every call, and a frozen one costs twice as much to make
class Presented:
    """A credential the client put into the request, and where."""

    value: str
    position: str  # e.g. "authorization", "x-api-key", "query:key"


REDACTED = "[redacted by Tollgate]"


def _lookup(headers: Headers, query: Query, position: str) -> str | None:
    if position.startswith("query:"):
        return query.get(position.removeprefix("query:"))
    return headers.get(position)


@dataclass(frozen=True, slots=True)
class PlanAccount:
    """What a plan call's request says of the account it is made with (None where it does not):
    the account, the person's e-mail, the plan, and the tenant (the vendor's workspace or
    organization the account acts in)."""

    account: str | None = None
    email: str | None = None
    plan: str | None = None
    tenant: str | None = None


NO_ACCOUNT = PlanAccount()


class ForeignAccount(Exception):
    """A plan call's request names two different accounts (a header and its token): refused."""

    def __init__(self, account: PlanAccount, reason: str) -> None:
        super().__init__(reason)
        self.account = account  # the token's, as the audit records it


@dataclass(frozen=True, slots=True)
class VerifiedCaller:
    """A caller's own credential whose signature over the request holds."""

    key_id: str  # the virtual credential it signed with (an AWS access key id)
    payload_hash: str | None = None  # the body's SHA-256 as signed, which a new signature reuses


@dataclass(frozen=True, slots=True)
class OwnCredential:
    """An anonymous caller's own credential, going upstream as it came."""

    fingerprint: str | None
    # A signature over the request (SigV4): it goes only on the request as the caller made it,
    # with the Host header it covers.
    signed: bool = False


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authorization_token(headers: Headers) -> str | None:
    """The credential of the Authorization header in whatever scheme it names (`Bearer`, GitHub's
    `token`), or its whole value where it names none (a bare JWT): where a plan's token may be."""
    value = headers.get("authorization", "").strip()
    _, space, token = value.partition(" ")
    return (token.strip() if space else value) or None


def client_cert_of(settings: ProviderConfig | None) -> str | None:
    """The client certificate a provider's settings give it for its mTLS hosts (`client_cert`)."""
    cert = getattr(settings, "client_cert", None)
    return cert if isinstance(cert, str) else None


# The last configuration's settings of a provider and what they loaded, which a reload may keep.
type Previous[RuntimeT] = tuple[ProviderConfig, RuntimeT | None]


class Routed(Protocol):
    @property
    def provider(self) -> str | None: ...


class SignedBy(Protocol):
    @property
    def aws_credentials(self) -> Sequence[object]: ...


class Configuration(Protocol):
    """What of the whole configuration a provider's runtime may depend on beside its own settings
    (`config.Config`): its clients (their virtual AWS credentials) and its rules' routes."""

    @property
    def clients(self) -> Sequence[SignedBy]: ...

    @property
    def overrides(self) -> Sequence[Routed]: ...


class Provider[RuntimeT]:
    """One LLM provider: its hosts, endpoints and the wire format each speaks, its credentials and
    error shape. `RuntimeT` is what its credentials load for a configuration (`load_runtime`): a
    credential source of `credentials/` (AWS credentials, Google or Entra ID tokens), or nothing."""

    name: ClassVar[str]
    # Its gen_ai.provider.name in OpenTelemetry's GenAI conventions (metrics and traces).
    semconv_name: ClassVar[str]
    # Its hosts as globs (`host_globs.py`; a first label `**` stands for one or more labels),
    # which a configuration's `hosts` of another provider may not overlap.
    host_globs: ClassVar[tuple[str, ...]] = ()
    # Regular expression over the host name in lower case without a trailing dot; any port. By
    # default its globs'; a provider whose hosts have parts it reads (a region) writes its own.
    host_pattern: ClassVar[str]
    # Header a client may send its own upstream key in (removed before forwarding).
    side_header: ClassVar[str]
    # Where clients put API keys: header names ("authorization" holds a Bearer token), or
    # "query:<parameter>"; `positions` adds what else carries a secret there.
    key_positions: ClassVar[tuple[str, ...]]
    positions: ClassVar[tuple[str, ...]]
    # Headers that pick the account a key bills (lower-case): a caller's go with its own key, never
    # with one of Tollgate's, which bills the account it was issued for.
    billing_headers: ClassVar[frozenset[bytes]] = frozenset()
    # Where Tollgate puts the upstream key for the provider's own wire format, and whether a call in
    # another format takes it where that format carries keys (`injected`) rather than there always.
    key_header: ClassVar[str]
    key_by_format: ClassVar[bool] = True
    # Where a call routed here goes when no upstream is configured (None: it must be, and
    # `upstream_hint` says where it should point).
    default_host: ClassVar[str | None] = None
    upstream_hint: ClassVar[str] = ""
    # Its OpenAI-compatible API, if it has one: the path prefix that stands for OpenAI's `/v1/`, and
    # the endpoints offered there. OpenAI-format calls may be routed here (`overrides:`).
    openai_compatible_prefix: ClassVar[str | None] = None
    openai_compatible_endpoints: ClassVar[frozenset[str]] = frozenset()
    # Its settings under `providers.<name>` in tollgate.yaml, and the ones that give it an upstream
    # credential, as the refusal for a call without one names them.
    settings_model: ClassVar[type[ProviderConfig]] = ProviderConfig
    credential_settings: ClassVar[str] = "keys"
    # Other headers a client may send its own upstream credential in (removed before forwarding).
    extra_side_headers: ClassVar[tuple[str, ...]] = ()
    # Endpoints no call to which is billed: uploading a file (storing it, where that is billed, is
    # billed apart, by the day). Under a `usd_*` cap they need no price.
    free_endpoints: ClassVar[frozenset[str]] = frozenset()
    # Its chat endpoints a route may translate from (`overrides: … provider:`), and the wire format
    # each speaks (`formats/registry.py`'s names).
    chat_formats: ClassVar[Mapping[str, str]] = {}
    # Whether OpenAI-compatible APIs take its calls as they are: its own API is the one they copy
    # (`api: openai_compatible` routes only its calls).
    openai_compatible_source: ClassVar[bool] = False
    # The prefix, in lower case, of a WebSocket subprotocol that carries its API key (a browser
    # cannot set headers on a WebSocket); None where it takes no key so.
    key_subprotocol: ClassVar[str | None] = None
    # Headers its own API needs on every request Tollgate writes for it (a translated call, the
    # summarizer's), beside the body's own.
    target_headers: ClassVar[Fields] = ()
    # The media type a streamed answer comes in (what a translated streamed call accepts).
    stream_media_type: ClassVar[str] = "text/event-stream"
    # The id of its table in genai-prices' bundled prices; None where the table has none.
    price_table: ClassVar[str | None] = None
    # The tables looked in, in order, for a model its own does not price (a vendor that serves
    # other vendors' models: theirs).
    price_fallbacks: ClassVar[tuple[str, ...]] = ()
    # Whether it reads model names without regard to letter case (Azure's deployment names): Tollgate
    # then names them in lower case (`model_names`) and matches rules on them so.
    models_ignore_case: ClassVar[bool] = False
    # The wire format whose error shape its refusals are in (`refusal`).
    error_format: ClassVar[str]
    # Whether its answers count the reasoning they report among their output (`completion_tokens`,
    # as OpenAI's do); else it bills the reasoning reported beside them as output too
    # (`billed_usage`: its format's `reasoning_apart`).
    reasoning_in_completion: ClassVar[bool] = True
    # Whether `verify_caller` is its own (Identify asks only then): set for each subclass.
    verifies_callers: ClassVar[bool] = False
    # How a vendor's user token (a person's plan, not a key) starts in its credential positions:
    # a call presenting one is a subscription call (`governance/subscriptions.py`). None: no plans.
    plan_token_prefix: ClassVar[str | None] = None
    # The header a company's inspecting proxy adds to every request to this vendor's hosts to pin
    # its plans to the company's tenants (`subscriptions.<name>`'s); None: the vendor has none.
    tenant_header: ClassVar[bytes | None] = None
    # Whether a plan's token is a Google OAuth token, whose account (its e-mail) Google's token
    # information endpoint names (`governance/google_accounts.py`), and the service endpoint whose
    # answer names the token's tier (its plan). False, None: the token names what it names.
    plan_google_account: ClassVar[bool] = False
    plan_tier_endpoint: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.verifies_callers = cls.verify_caller is not Provider.verify_caller
        if "host_pattern" not in cls.__dict__ and "host_globs" in cls.__dict__:
            cls.host_pattern = "|".join(glob_pattern(glob) for glob in cls.host_globs)

    # The response headers `usage_reader` and `usage` read (lower-case), and content-encoding.
    response_headers: ClassVar[frozenset[bytes]] = frozenset((b"content-type", b"content-encoding"))

    # Where the native format names the model in the path (a `model` group), if it does.
    model_in_path: ClassVar[re.Pattern[str] | None] = None

    def governs_path(self, path: str) -> bool:
        """Whether a request to this path (without the query) on its hosts is a call Tollgate reads;
        one that is not goes on unread, unaudited, as to a host that is no provider's, but for its
        tenant header. Default: every path is (ChatGPT's web app is not)."""
        return True

    def plan_account(self, token: str, headers: Mapping[bytes, bytes], host: str = "") -> PlanAccount:
        """What a plan call presenting `token` (a `plan_token_prefix` token) tells of its account,
        from the token, the request's headers (lower-case names) and the host it is made to (lower
        case, no trailing dot), read without a network call.
        Raises ForeignAccount where they name different accounts. Default: nothing (an Anthropic
        plan's token names no account)."""
        return NO_ACCOUNT

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

    def priced_model(self, model: str) -> str:
        """The model as its price table names it."""
        return model

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

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[RuntimeT] | None
    ) -> RuntimeT | None:
        """What this provider's credentials need built for a configuration (`config`, its settings
        `settings`: a credential source of `credentials/`), kept in `Loaded.runtimes` and handed to
        `upstream_credential`. `previous` is the last configuration's settings and runtime, for what
        a reload keeps. A ValueError's message names the setting at fault (`"credentials: …"`).
        Default: nothing."""
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

    def answer_service_tier(self, headers: Headers) -> str | None:
        """The service tier an answer's headers (`response_headers`) say the call ran at, where its
        body does not say. Default: none."""
        return None

    def answer_speed(self, headers: Headers) -> str | None:
        """The speed an answer's headers (`response_headers`) say the call ran at, where its body
        does not say. Default: none."""
        return None

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

    def presented(self, headers: Headers, query: Query) -> list[Presented]:
        """Every credential the client put where this provider's key goes."""
        found = []
        for position in self.key_positions:
            if position == "authorization":
                # A vendor that takes plans reads its users' tokens in any scheme, or none (a
                # Copilot client's `token gho_…`, a bare ChatGPT JWT): each is a plan's all the same.
                value = bearer(headers) if self.plan_token_prefix is None else authorization_token(headers)
            else:
                value = (_lookup(headers, query, position) or "").strip()
            if value:
                found.append(Presented(value, position))
        return found

    @cached_property
    def header_positions(self) -> frozenset[bytes]:
        """The headers of `positions`, lower-case, as raw header names are compared."""
        return frozenset(p.encode() for p in self.positions if not p.startswith("query:"))

    @cached_property
    def query_positions(self) -> tuple[str, ...]:
        return tuple(p.removeprefix("query:") for p in self.positions if p.startswith("query:"))

    def injected(self, key: str, classification: Classification) -> tuple[str, str]:
        """The header carrying the upstream key: `Authorization: Bearer` where the call's wire format
        carries keys so (OpenAI's, on every provider's OpenAI-compatible endpoints) or the provider's
        header is that one, else the provider's header."""
        if self.key_header == "authorization" or (
            self.key_by_format and wire_format(classification.wire_format).bearer_key
        ):
            return "authorization", f"Bearer {key}"
        return self.key_header, key

    def verify_caller(self, request: RequestParts, secrets: Mapping[str, str]) -> VerifiedCaller | None:
        """The caller's own credential, verified, where this provider's callers sign their requests
        (Bedrock: SigV4 with virtual AWS credentials, whose secrets `secrets` holds by key id); None
        when the request carries no such credential. Raises `sigv4.SignatureError` when it carries
        one that does not hold. Default: None (callers present keys)."""
        return None

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

    def own_pools(self, runtime: RuntimeT | None) -> Mapping[str, KeyPool]:
        """The key pools this provider's `runtime` holds besides the provider's own (Azure's
        resources'), by name: another process's rest of one of their keys rests it here too.
        Default: none."""
        return {}

    def upstream_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        pool: KeyPool,
        settings: ProviderConfig,
        runtime: RuntimeT | None,
        model: str | None = None,
    ) -> UpstreamCredential | None:
        """The credential Tollgate sends upstream, or None to let an anonymous caller's own pass
        (`own_credential`). `side` holds the side headers the caller sent (lower-case names,
        values stripped), `runtime` what `load_runtime` made, `model` the model the call asks the
        upstream for (a pooled key whose circuit is open for it is not taken). In this order for
        every provider: the caller's own in its side headers (`side_credential`), the next key of
        the pool its `runtime` holds for the call's resource (`own_pools`), the next of the
        provider's keys, what else Tollgate holds for it (`held_credential`)."""
        credential = self.side_credential(classification, side, settings)
        if credential is not None:
            return credential
        own = self.own_pools(runtime).get(classification.resource or "") if runtime is not None else None
        if own is not None:
            key = own.take(model)
            if key is not None:
                pooled = self.header_key(key, classification, pooled=True)
                pooled.pool = own
                return pooled
        key = pool.take(model)
        if key is not None:
            return self.header_key(key, classification, pooled=True)
        return self.held_credential(classification, side, settings, runtime)

    def side_credential(
        self, classification: Classification, side: Mapping[str, str], settings: ProviderConfig
    ) -> UpstreamCredential | None:
        """The caller's own credential in its side headers, which goes before any of Tollgate's.
        Default: the key in `side_header`, where the provider's keys go."""
        key = side.get(self._side_name)
        return self.header_key(key, classification) if key else None

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: RuntimeT | None,
    ) -> UpstreamCredential | None:
        """What Tollgate holds for the provider besides its keys, once none is left (a token of its
        credentials, a signature). Default: nothing."""
        return None

    def header_key(self, key: str, classification: Classification, pooled: bool = False) -> HeaderKey:
        name, value = self.injected(key, classification)
        return header_key(name, value, key, self._pooled_key_drops if pooled else self.header_positions, pooled)

    @cached_property
    def _pooled_key_drops(self) -> frozenset[bytes]:
        return self.header_positions | self.billing_headers

    def own_credential(self, index: Mapping[bytes, bytes], headers: Headers, query: Query) -> OwnCredential:
        """What of an anonymous caller's own goes upstream when Tollgate has no credential: here,
        the first key it presents."""
        own = self.presented(headers, query)
        return OwnCredential(fingerprint(own[0].value) if own else None)

    @cached_property
    def _side_name(self) -> str:
        return self.side_header.lower()

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

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        """Usage from a whole, non-streamed answer, read by the call's wire format and counted as
        this provider bills it."""
        read = wire_format(classification.wire_format).usage(classification, headers, body)
        return self.billed_usage(classification, read)

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        """What reads usage from this answer as it streams by (its wire format's reader, or the whole
        answer's `usage`), counted as this provider bills it."""
        reader = wire_format(classification.wire_format).stream_reader(classification, headers)
        if reader is None:
            return WholeBodyReader(partial(self.usage, classification, headers))
        if self._bills_reasoning_apart(classification):
            return Counted(reader, partial(self.billed_usage, classification))
        return reader

    def billed_usage(self, classification: Classification, usage: Usage) -> Usage:
        """`usage` as its format's reader read it (an answer's, a translation's, a roll-up
        summarizer's), counted as this provider bills it: where its answers report reasoning beside
        the output its format counts (`reasoning_in_completion` false), both are output."""
        if self._bills_reasoning_apart(classification):
            return wire_format(classification.wire_format).with_reasoning(usage)
        return usage

    def _bills_reasoning_apart(self, classification: Classification) -> bool:
        if self.reasoning_in_completion:
            return False
        return classification.endpoint in wire_format(classification.wire_format).reasoning_beside
