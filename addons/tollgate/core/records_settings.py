"""What the records' settings are: the audit's (`audit:`), the metrics' (`metrics:`) and where
traces go (`metrics.otlp`). Apart from the code that writes the records, which reads calls: the
configuration (`core/config.py`) is assembled from these without it."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from tollgate.common.audit_chain import Signer, load_signing_key
from tollgate.common.config_base import Strict, base_url


def otlp_endpoint(value: str) -> str:
    """A collector's OTLP/HTTP endpoint: http(s)://host[:port][/path], to which /v1/logs is added."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL, e.g. http://otel-collector:4318")
    if parts.query or parts.fragment:
        raise ValueError("must be an http(s) URL without a query (/v1/logs is added to its path)")
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError as e:
        raise ValueError(f"bad port: {e}") from None
    return value.rstrip("/")


class AuditOtlpConfig(Strict):
    """`audit.otlp`: every audit record also sent, as an OpenTelemetry log record, to a collector
    over OTLP/HTTP (protobuf): to `<endpoint>/v1/logs`, at least once, from the file."""

    endpoint: str  # e.g. http://otel-collector:4318
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # e.g. an API key of the collector

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, value: otlp_endpoint(value)))


class AuditConfig(Strict):
    """`audit:` where the records go (a file, or `-`: standard output), whether Tollgate asks an
    OpenAI stream for the usage its client did not ask for (`inject`) or only reads what it reports,
    how often a checkpoint is written and the Ed25519 key that signs it (a PEM file, PKCS#8), and
    the collector the file is shipped to (`otlp`)."""

    path: str = "audit.jsonl"
    stream_usage: Literal["passive", "inject"] = "inject"
    checkpoint_s: float = Field(default=60.0, gt=0)
    signing_key: str | None = None  # read when the file is (`config.read_config`), relative to it
    otlp: AuditOtlpConfig | None = None

    @field_validator("otlp")
    @classmethod
    def _from_a_file(cls, value: AuditOtlpConfig | None, info: ValidationInfo) -> AuditOtlpConfig | None:
        if value is not None and info.data.get("path") == "-":
            raise ValueError(
                'the audit is exported from its file, and audit.path is "-" (standard output): set audit.path to a file'
            )
        return value

    def signer(self) -> Signer | None:
        """What signs the checkpoints; ValueError when the key cannot be read (any more)."""
        return None if self.signing_key is None else Signer(load_signing_key(self.signing_key))


DEFAULT_SERVICE_NAME = "tollgate"


class OtlpConfig(Strict):
    """`metrics.otlp`: where spans go, over OTLP/HTTP (protobuf)."""

    endpoint: str  # e.g. http://127.0.0.1:4318 (spans are posted to <endpoint>/v1/traces)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # e.g. an API key of the collector
    service_name: str = Field(default=DEFAULT_SERVICE_NAME, min_length=1)

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, value: base_url(value)))


class MetricsConfig(Strict):
    """`metrics:` Prometheus metrics and OpenTelemetry traces of the calls (both off by default)."""

    listen: str | None = None  # host:port where /metrics is served, e.g. 127.0.0.1:9464
    # Label values kept per label before the rest are counted as "other": clients and models are
    # named by callers, and each new value is a new time series.
    max_label_values: int = Field(default=200, ge=1)
    otlp: OtlpConfig | None = None  # else from OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, when set

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else listen_address(value)


def listen_address(value: str) -> str:
    """`value` when it is a `host:port` to serve on; else ValueError saying what it should be."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464")
    return value
