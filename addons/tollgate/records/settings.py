"""What the records' settings are: the audit's (`audit:`), the metrics' (`metrics:`) and where
traces go (`metrics.otlp`). Apart from the code that writes the records, which reads calls: the
configuration (`config.py`) is assembled from these without it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tollgate.config_base import Strict, base_url
from tollgate.records.chain import Signer, load_signing_key


class AuditConfig(Strict):
    """`audit:` where the records go (a file, or `-`: standard output), whether Tollgate asks an
    OpenAI stream for the usage its client did not ask for (`inject`) or only reads what it reports,
    how often a checkpoint is written and the Ed25519 key that signs it (a PEM file, PKCS#8)."""

    path: str = "audit.jsonl"
    stream_usage: Literal["passive", "inject"] = "inject"
    checkpoint_s: float = Field(default=60.0, gt=0)
    signing_key: str | None = None  # read when the file is (`config.read_config`), relative to it

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
