"""AWS Bedrock: its runtime (bedrock-runtime[-fips].<region>.amazonaws.com), its agents' runtime
(bedrock-agent-runtime…) and its control plane's jobs (bedrock…), at every DNS name AWS gives them
(FIPS, dual-stack, every partition's, VPC endpoints'), and at the hosts a configuration adds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import Field, model_validator

from tollgate.common.config_base import AwsCredentials, ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials import sigv4
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.credentials.sigv4 import CredentialSource, SigV4Signature
from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_AGENTS,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE,
    CLAUDE_ON_BEDROCK,
    OPENAI_CHAT,
    bedrock_converse,
    bedrock_invoke,
)
from tollgate.formats.bedrock_invoke import LATENCY_HEADER, SERVICE_TIER_HEADER, USAGE_HEADERS, header_name, is_claude
from tollgate.formats.bodies.exact import (
    STORED_PROMPT,
    UNREAD_FACTS,
    UNREAD_MODEL,
    Unreadable,
    check_case,
    path_segments,
    request_model,
    words,
)
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.providers import bedrock_apis, openai
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import RESPONSE_HEADERS, Cost
from tollgate.providers.credentials import (
    CallerCheck,
    CallerKeys,
    Configuration,
    Credentials,
    Headers,
    KeyPlacement,
    OwnCredential,
    Previous,
    Query,
    UpstreamCredentials,
    VerifiedCaller,
)
from tollgate.providers.models import Models
from tollgate.providers.routing import Routing
from tollgate.providers.upstream import Upstream

# The DNS suffixes of AWS's partitions, public and dual-stack (botocore's partitions.json).
AWS_DNS_SUFFIXES = (
    "amazonaws.com", "api.aws", "amazonaws.com.cn", "api.amazonwebservices.com.cn", "amazonaws.eu",
    "api.amazonwebservices.eu", "c2s.ic.gov", "api.aws.ic.gov", "sc2s.sgov.gov", "api.aws.scloud",
    "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk", "csp.hci.ic.gov", "api.aws.hci.ic.gov",
)  # fmt: skip
# Bedrock's APIs, as their hosts name them.
RUNTIME, AGENT_RUNTIME, CONTROL = "bedrock-runtime", "bedrock-agent-runtime", "bedrock"
_APIS = "bedrock-agent-runtime|bedrock-runtime|bedrock"
_SUFFIXES = "|".join(re.escape(suffix) for suffix in AWS_DNS_SUFFIXES)
# `<api>[-fips].<region>.<suffix>`, or a VPC endpoint's `vpce-<id>[-<zone>].<api>.<region>.vpce.<suffix>`.
_HOST = re.compile(
    rf"^(?:(?P<api>{_APIS})(?:-fips)?\.(?P<region>[a-z0-9-]+)"
    rf"|vpce-[a-z0-9-]+\.(?P<vpce_api>{_APIS})(?:-fips)?\.(?P<vpce_region>[a-z0-9-]+)\.vpce)\.(?:{_SUFFIXES})$"
)
_OPERATIONS = (
    "invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens",
    "invoke-with-bidirectional-stream",
)  # fmt: skip
# The model id is one path segment, percent-encoded as botocore sends it (an ARN's ':' and '/' as
# %3A and %2F); an unencoded '/' would make it another path, which Bedrock does not serve.
_MODEL_CALL = re.compile(rf"^/model/(?P<model>[^/]+)/(?P<op>{'|'.join(_OPERATIONS)})$")
_MODEL_ID = re.compile(r"(?:[A-Za-z0-9._~:-]|%[0-9A-Fa-f]{2})+")
_STREAMING = ("invoke-with-response-stream", "converse-stream")
# The operations in Converse's format (CountTokens counts a Converse body); the others are InvokeModel's.
_CONVERSE = frozenset(("converse", "converse-stream", "count-tokens"))
# A bidirectional stream's body is the session itself (audio in, for Nova Sonic): it goes unread.
_BIDIRECTIONAL = "invoke-with-bidirectional-stream"
# Which segments of a path starting with the key are ids.
_ID_SEGMENTS = {"model": (1,), "guardrail": (1, 3), "async-invoke": (1,)}
WORDS = words("model", "guardrail", "version", "apply", "openai", "v1", "async-invoke", *_OPERATIONS)


class BedrockConfig(ProviderConfig):
    """`providers.bedrock`: besides keys (Bedrock API keys, sent as bearer tokens), one bearer
    token, or AWS credentials Tollgate signs with (`default`: botocore's chain); and the region of
    the hosts it adds, whose names do not say it."""

    credentials: Literal["default"] | AwsCredentials | None = None
    bearer_token: str | None = Field(default=None, min_length=1)
    region: str | None = Field(default=None, pattern=r"^[a-z]+(?:-[a-z]+)+-\d+$")

    @model_validator(mode="after")
    def _hosts_have_a_region(self) -> BedrockConfig:
        if self.hosts and self.region is None:
            raise ValueError(
                "hosts: set region too, the AWS region of these hosts"
                " (their names do not say it; Tollgate signs for it)"
            )
        return self


def is_prompt(model: str) -> bool:
    """A prompt's ARN as the model (`arn:aws:bedrock:REGION:ACCOUNT:prompt/ID[:VERSION]`)."""
    return ":prompt/" in model.lower()


def region_of(host: str) -> str | None:
    """The AWS region a Bedrock host's name says (None for another name)."""
    m = _HOST.match(host)
    return None if m is None else m["region"] or m["vpce_region"]


def api_of(host: str) -> str | None:
    """The API of Bedrock's that a host serves: RUNTIME, AGENT_RUNTIME or CONTROL; None for a host
    whose name does not say (one a configuration adds)."""
    m = _HOST.match(host)
    return None if m is None else m["api"] or m["vpce_api"]


def _public(host: str) -> bool:
    """A public endpoint's name (not a VPC endpoint's, nor one a configuration adds)."""
    m = _HOST.match(host)
    return m is not None and m["api"] is not None


# The first segments of the runtime's paths.
_RUNTIME_FIRST = frozenset(("model", "guardrail", "async-invoke", "openai"))


class BedrockCost(Cost):
    """Bedrock's: the tier and latency a call ran at are in its answer's headers."""

    __slots__ = ()

    def answer_service_tier(self, headers: Headers) -> str | None:
        return headers.get(SERVICE_TIER_HEADER.lower()) or None

    def answer_speed(self, headers: Headers) -> str | None:
        return headers.get(LATENCY_HEADER.lower()) or None


class BedrockModels(Models):
    """Bedrock's: its agent runtime and control plane name the model in fields of their own."""

    __slots__ = ()

    def field(self, classification: Classification) -> str | None:
        endpoint = classification.endpoint
        if endpoint in bedrock_apis.ENDPOINTS:
            return bedrock_apis.MODEL_FIELDS.get(endpoint)
        return "modelId" if endpoint == "async-invoke" else "model"


class SigV4Credentials(UpstreamCredentials[CredentialSource]):
    """Bedrock's: keys (bearer tokens) in Authorization, and AWS credentials to sign with (SigV4),
    Tollgate's or a caller's in the seed proxy's side headers."""

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[CredentialSource] | None
    ) -> CredentialSource | None:
        """botocore imported when the configuration mentions Bedrock (its settings, a client's
        virtual AWS credentials, a route here), so that no call waits for the import; and the AWS
        credentials Tollgate signs with, kept from `previous` while `credentials` is unchanged
        (botocore's chain is not asked again)."""
        assert isinstance(settings, BedrockConfig)  # the model `settings_model` names
        if (
            settings != BedrockConfig()
            or any(client.aws_credentials for client in config.clients)
            or any(override.provider == Bedrock.name for override in config.overrides)
        ):
            sigv4.load_botocore()
        if previous is not None:
            old_settings, old_runtime = previous
            if isinstance(old_settings, BedrockConfig) and old_settings.credentials == settings.credentials:
                return old_runtime
        try:
            return sigv4.credential_source(settings.credentials)
        except ValueError as e:
            raise ValueError(f"credentials: {e}") from None

    def side_credential(
        self, classification: Classification, side: Mapping[str, str], settings: ProviderConfig
    ) -> UpstreamCredential | None:
        """X-AWS-Bearer-Token, else AWS credentials in the seed proxy's side headers to sign with;
        an X-AWS-Region picks the region the signature is made for."""
        key = side.get("x-aws-bearer-token")
        if key:
            return self.key.header_key(key, classification)  # a bearer token wins over keys to sign with
        access, secret = side.get("x-aws-access-key"), side.get("x-aws-secret-key")
        if not (access and secret):
            return None
        assert isinstance(settings, BedrockConfig)  # the model `settings_model` names
        frozen = sigv4.frozen_credentials(access, secret, side.get("x-aws-session-token") or None)
        return self._signature(lambda: frozen, side.get("x-aws-region") or None, settings.region)

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: CredentialSource | None,
    ) -> UpstreamCredential | None:
        """After the provider's keys: `bearer_token`, else `credentials` (`runtime`) to sign with,
        for the region an X-AWS-Region picks."""
        assert isinstance(settings, BedrockConfig)
        if settings.bearer_token:
            return self.key.header_key(settings.bearer_token, classification)
        return None if runtime is None else self._signature(runtime, side.get("x-aws-region") or None, settings.region)

    @staticmethod
    def _signature(source: CredentialSource, asked: str | None, configured: str | None) -> SigV4Signature:
        return SigV4Signature(source, SERVICE, SigningRegion(asked, configured), _UNSIGNABLE)


class SigV4Callers(CallerCheck):
    """Bedrock's callers may sign with virtual AWS credentials, verified here; an anonymous caller's
    signed request goes as it was signed."""

    def verify_caller(self, request: RequestParts, secrets: Mapping[str, str]) -> VerifiedCaller | None:
        """The virtual AWS access key id whose SigV4 signature this request carries, verified over
        the request exactly as it arrived; None when it carries no virtual AWS credential."""
        authorization = request.index.get(b"authorization", b"").decode("utf-8", "surrogateescape")
        if not authorization.startswith(sigv4.ALGORITHM):
            return None
        try:
            key_id = sigv4.parse_authorization(authorization).access_key_id
        except sigv4.SignatureError:
            return None  # not ours to judge: it is no virtual credential
        if key_id not in secrets:
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.fields if not k.startswith(b":")]
        if request.authority:  # HTTP/2: a signature may name it (the AWS SDK for JavaScript's does)
            headers.append((sigv4.AUTHORITY, request.authority))
        if not any(name.lower() == "host" for name, _ in headers):  # HTTP/2 carries it as :authority
            headers.append(("host", request.authority or request.called_host))
        verified = sigv4.verify_request(
            method=request.method.decode("utf-8", "surrogateescape").upper(),
            raw_path=request.path.decode("utf-8", "surrogateescape"),
            headers=headers,
            body=request.body,
            secrets=secrets,
            service=SERVICE,
            region=region_of(request.called_host),
        )
        return VerifiedCaller(key_id, verified.payload_hash)

    def own_credential(self, index: Mapping[bytes, bytes], headers: Headers, query: Query) -> OwnCredential:
        """A SigV4-signed request goes as signed (the access key id tells callers apart, never the
        secret, which the request does not carry); else the key presented."""
        if not _signed(index):
            return super().own_credential(index, headers, query)
        try:
            key_id = sigv4.parse_authorization(index[b"authorization"].decode("utf-8", "surrogateescape")).access_key_id
        except sigv4.SignatureError:
            key_id = ""
        return OwnCredential(fingerprint(key_id) if key_id else None, signed=True)


class Bedrock(Provider):
    name = "bedrock"
    semconv_name = "aws.bedrock"
    host_pattern = _HOST.pattern[1:-1]
    host_globs = tuple(
        glob
        for suffix in AWS_DNS_SUFFIXES
        for api in (RUNTIME, AGENT_RUNTIME, CONTROL)
        for fips in ("", "-fips")
        for glob in (f"{api}{fips}.*.{suffix}", f"vpce-*.{api}{fips}.*.vpce.{suffix}")
    )
    # SigV4 in the query too (a presigned URL): its signature and session token are credentials.
    # The seed Bedrock proxy's side headers: AWS credentials (and region) Tollgate signs with.
    credentials = Credentials(
        CallerKeys(
            "X-AWS-Bearer-Token",
            ("authorization",),
            positions=("authorization", "x-amz-security-token", "query:X-Amz-Signature", "query:X-Amz-Security-Token"),
            extra_side_headers=("X-AWS-Access-Key", "X-AWS-Secret-Key", "X-AWS-Session-Token", "X-AWS-Region"),
        ),
        KeyPlacement("authorization"),
        SigV4Credentials("keys, `bearer_token` or `credentials`"),
        SigV4Callers(),
    )
    models = BedrockModels(_MODEL_CALL)
    upstream = Upstream(hint="its region's https://bedrock-runtime.REGION.amazonaws.com")
    routing = Routing(
        openai_compatible_prefix="/openai/v1/",
        openai_compatible_endpoints=frozenset(("chat.completions",)),
        chat_formats={
            "converse": BEDROCK_CONVERSE,
            "converse-stream": BEDROCK_CONVERSE,
            "chat.completions": OPENAI_CHAT,
        },
        stream_media_type="application/vnd.amazon.eventstream",
    )
    settings_model = BedrockConfig
    error_format = BEDROCK_CONVERSE  # AWS's error shape, which its whole runtime answers in
    # Free: what an agent's runtime and the control plane's jobs offer besides running a model. Read
    # from an answer's headers: the tier and latency a call ran at, and its usage (InvokeModel's).
    cost = BedrockCost(
        "aws",
        free_endpoints=bedrock_apis.FREE_ENDPOINTS,
        response_headers=RESPONSE_HEADERS
        | {name.lower().encode() for name in (SERVICE_TIER_HEADER, LATENCY_HEADER, *USAGE_HEADERS)},
    )

    def may_ask_usage(self, classification: Classification, index: Mapping[bytes, bytes]) -> bool:
        return not _signed(index)  # the caller's own signature may go upstream: its body stays as signed

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        """Claude takes an Anthropic call in its own body (InvokeModel), every other model and
        format goes through Converse."""
        model_id = quote(model, safe="-_.~")  # one path segment, as botocore sends it
        if source == ANTHROPIC_MESSAGES and is_claude(model):
            return ChatLeg(
                f"/model/{model_id}/{'invoke-with-response-stream' if stream else 'invoke'}", CLAUDE_ON_BEDROCK
            )
        return ChatLeg(f"/model/{model_id}/{'converse-stream' if stream else 'converse'}", BEDROCK_CONVERSE)

    def classify_at(
        self, host: str, method: str, path: str, data: dict[str, Any] | None, query: str = ""
    ) -> Classification:
        """A call read by the API its host serves. A host a configuration adds may serve any of
        them: its path says which, and a path outside them goes on with the caller's own
        credential, as on the control plane."""
        api = api_of(host)
        if api == RUNTIME or (api is None and bedrock_apis.first_segment(path) in _RUNTIME_FIRST):
            return self.classify(method, path, data, query)
        if api in (AGENT_RUNTIME, None):
            found = bedrock_apis.agent_runtime_call(method, path, data)
            if found is not None:
                return found
            if api == AGENT_RUNTIME:
                raise Unreadable("not an operation of Bedrock's agent runtime")
        # Else a path outside the model API, on a host that also serves other products.
        return bedrock_apis.control_job_call(method, path, data) or Classification(
            passthrough=True, wire_format=BEDROCK_AGENTS
        )

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path, percent=True)
        check_case(segments, WORDS)
        first = segments[0]
        # Ids are percent-encoded as botocore sends them (an ARN's ':' and '/'); nothing else is.
        ids = _ID_SEGMENTS.get(first, ())
        if any("%" in segment for k, segment in enumerate(segments) if k not in ids):
            raise Unreadable("the path is percent-encoded outside its ids")
        if first == "openai":
            if segments[1:2] != ["v1"]:
                raise Unreadable("Bedrock's OpenAI-compatible paths start with /openai/v1/")
            return openai.classify_request(method, segments[2:], data, query)
        if first == "model":
            return self._model_call(segments, data)
        if first == "guardrail":
            if len(segments) != 5 or segments[2] != "version" or segments[4] != "apply":
                raise Unreadable("guardrails are applied at /guardrail/{id}/version/{version}/apply")
            return Classification(endpoint="apply-guardrail", wire_format=BEDROCK_CONVERSE)
        if first == "async-invoke":
            if method != "POST":
                return Classification(endpoint="async-invoke", wire_format=BEDROCK_INVOKE)
            model = request_model(data, "modelId") if data is not None else None
            # StartAsyncInvoke: one request whose work (a video, with Nova Reel) is not counted in tokens.
            return Classification("async-invoke", model, RequestFacts(batch=Batch(1)), BEDROCK_INVOKE)
        raise Unreadable("not a Bedrock runtime operation")

    def _model_call(self, segments: list[str], data: dict[str, Any] | None) -> Classification:
        """/model/{modelId}/{operation}"""
        if len(segments) != 3 or segments[2] not in _OPERATIONS:
            raise Unreadable("Bedrock model paths are /model/{modelId}/{operation}, with one of its operations")
        raw, op = segments[1], segments[2]
        if not _MODEL_ID.fullmatch(raw):
            raise Unreadable("the model id holds characters Bedrock's model ids do not")
        try:
            model = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise Unreadable("the model id is not UTF-8 once decoded") from None
        wire = BEDROCK_CONVERSE if op in _CONVERSE else BEDROCK_INVOKE
        if op == _BIDIRECTIONAL:
            return Classification(op, model, RequestFacts(stream=True), wire, unread=UNREAD_FACTS)
        facts = RequestFacts(stream=op in _STREAMING)
        try:
            if data is not None:
                _read_facts(op, data, facts)
        except Unreadable as e:
            raise e.at(op) from None
        if is_prompt(model):
            # A prompt of Bedrock's Prompt management: it holds the messages, system prompt, tools
            # and the model they go to, none of which Tollgate reads.
            facts.unseen(STORED_PROMPT)
            return Classification(op, model, facts, wire, unread=UNREAD_MODEL)
        return Classification(op, model, facts, wire)

    def streams_unread(self, method: str, path: str) -> bool:
        return path.startswith("/model/") and path.endswith("/" + _BIDIRECTIONAL)

    def read_headers(self, headers: Mapping[bytes, bytes], classification: Classification) -> None:
        """InvokeModel's tier and latency are headers. They are read on every call (nothing says
        Bedrock reads them on InvokeModel alone), and where the body names them too, they must agree."""
        facts = classification.facts
        try:
            facts.service_tier = header_name(headers, SERVICE_TIER_HEADER, facts.service_tier)
            facts.speed = header_name(headers, LATENCY_HEADER, facts.speed)
        except Unreadable as e:
            raise e.at(classification.endpoint) from None


# The SigV4 service Bedrock's runtime signs for.
SERVICE = "bedrock"
# What a request re-signed for Bedrock must not carry on: the caller's credential and signature.
_UNSIGNABLE = frozenset(
    h.encode() for h in (*Bedrock.credentials.caller.positions, *sigv4.SIGNATURE_HEADERS) if not h.startswith("query:")
)


def _signed(index: Mapping[bytes, bytes]) -> bool:
    """Whether the caller signed the request with SigV4."""
    return index.get(b"authorization", b"").startswith(b"AWS4-")


@dataclass(frozen=True, slots=True)
class SigningRegion:
    """Where a request Tollgate signs for Bedrock goes, and the region its signature is for
    (`SigV4Signature`'s placement): X-AWS-Region (`asked`) moves a call to a public host that goes
    where its caller called it (no upstream configured: a VPC endpoint, or a host a configuration
    adds, serves its own region only); else the region the host names, else the configured one
    (that of the hosts a configuration adds), else us-east-1."""

    asked: str | None
    configured: str | None

    def __call__(self, request: RequestParts) -> tuple[str | None, str]:
        host, moved_to = request.host, None
        called_region = region_of(request.called_host)
        region = self.asked
        direct = request.upstream == f"https://{request.called_host}"
        if region and direct and _public(request.called_host) and region != called_region:
            host = moved_to = request.called_host.replace(f".{called_region}.", f".{region}.", 1)
        return moved_to, region or region_of(host) or called_region or self.configured or "us-east-1"


def _read_facts(op: str, data: dict[str, Any], facts: RequestFacts) -> None:
    """A model call's facts: Converse (and CountTokens) bodies, or the model family's own."""
    if op.startswith("converse"):
        bedrock_converse.read_facts(data, facts)
    elif op == "count-tokens":
        bedrock_converse.read_facts(bedrock_invoke.counted_request(data), facts)
    else:
        bedrock_invoke.read_facts(data, facts)
