"""What the records' settings are: the audit's (`audit:`), the metrics' (`metrics:`) and where
traces go (`metrics.otlp`). Apart from the code that writes the records, which reads calls: the
configuration (`configuration/config.py`) is assembled from these without it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from cryptography import x509
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from tollgate.common.audit_chain import Signer, load_signing_key
from tollgate.common.config_base import Strict, base_url, http_url


def otlp_endpoint(value: str) -> str:
    """A collector's OTLP/HTTP endpoint: http(s)://host[:port][/path], to which /v1/logs is added."""
    parts = http_url(value, "must be an http(s) URL, e.g. http://otel-collector:4318")
    if parts.query or parts.fragment:
        raise ValueError("must be an http(s) URL without a query (/v1/logs is added to its path)")
    return value.rstrip("/")


class AuditOtlpConfig(Strict):
    """`audit.otlp`: every audit record also sent, as an OpenTelemetry log record, to a collector
    over OTLP/HTTP (protobuf): to `<endpoint>/v1/logs`, at least once, from the file."""

    endpoint: str  # e.g. http://otel-collector:4318
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # e.g. an API key of the collector

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, value: otlp_endpoint(value)))


# A table's name as Tollgate writes it in SQL (and names its indexes after it): an unquoted identifier.
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def postgres_dsn(value: str) -> str:
    """A libpq connection URI (postgresql://user:password@host:5432/db?sslmode=…) or key=value
    string; ValueError saying what is wrong, never repeating it (it may hold a password)."""
    from psycopg.conninfo import conninfo_to_dict  # the driver's own reading, loaded where it is set

    text = value.strip()
    if not text:
        raise ValueError("must be a PostgreSQL connection URI, e.g. postgresql://tollgate@db:5432/tollgate")
    if "://" in text and not text.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "must be a PostgreSQL connection URI (postgresql://…), e.g. postgresql://tollgate@db:5432/tollgate"
        )
    try:
        parts = conninfo_to_dict(text)
    except Exception:  # psycopg.ProgrammingError, whose words repeat the string
        parts = None
    ports = str((parts or {}).get("port") or "5432").split(",")
    if parts is None or not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
        raise ValueError(
            "is not a PostgreSQL connection string libpq can read (postgresql://user:password@host:5432/db)"
        )
    return text


# The validation context's key naming the places a read-only command left as written, their
# variable unset (`config.parse_config`); a DSN among them is kept as written (no command but the
# console uses it, and the console says so when it needs it).
LEFT_UNSET = "left_unset"
DSN_PLACES = ("audit.postgres.dsn", "console.postgres_dsn")


def dsn_at(place: str) -> classmethod:
    """A field validator for the DSN at `place`: `postgres_dsn`, unless a read-only command left it unset."""

    def check(cls: type, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (isinstance(info.context, dict) and place in info.context.get(LEFT_UNSET, ())):
            return value
        return postgres_dsn(value)

    return classmethod(check)


class AuditPostgresConfig(Strict):
    """`audit.postgres`: every audit record also sent to a table of PostgreSQL, from the file,
    once (the table's key is each record's `chain`)."""

    dsn: str = Field(repr=False)  # a libpq URI, usually ${TOLLGATE_RECORDS_DSN}: it holds a password
    table: str = "tollgate_records"
    keep_days: float | None = Field(default=None, gt=0)  # rows older than this removed; None: kept

    _dsn = field_validator("dsn")(dsn_at("audit.postgres.dsn"))

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if TABLE_NAME.fullmatch(value) is None:
            raise ValueError(
                "must be a table's name: lower-case letters, digits and _, at most 40, e.g. tollgate_records"
            )
        return value


def tsa_url(value: str) -> str:
    """A time-stamp authority's URL: http(s)://host[:port][/path][?query], no user or password in it
    (an authenticated TSA's key goes in `audit.anchor.headers`, which are never recorded)."""
    parts = http_url(value, "must be an http(s) URL, e.g. https://freetsa.org/tsr")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must hold no user or password: give a TSA's key in audit.anchor.headers")
    if parts.fragment:
        raise ValueError("must be an http(s) URL without a fragment")
    return value


def load_roots(path: str) -> list[x509.Certificate]:
    """The certificates of a PEM file (a TSA's roots); ValueError saying what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ValueError(f"{path} holds no PEM certificate (the TSAs' root certificates, -----BEGIN CERTIFICATE-----)")
    return certificates


class AuditAnchorConfig(Strict):
    """`audit.anchor`: the newest checkpoint's `covers_chain` time-stamped (RFC 3161) by every TSA
    listed, at most once per `every_s`; each token checked against `ca_file` and recorded."""

    tsa: tuple[Annotated[str, AfterValidator(tsa_url)], ...]  # each TSA's URL, each asked
    ca_file: str  # the TSAs' roots (PEM), named relative to the configuration file
    every_s: float = Field(default=60.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # e.g. a TSA's key: ${NAME}

    @field_validator("tsa")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("names no TSA: list at least one URL, e.g. [https://freetsa.org/tsr]")
        if len(set(value)) != len(value):
            raise ValueError("names a TSA twice")
        return value

    def roots(self) -> list[x509.Certificate]:
        """The certificates of `ca_file`; ValueError when it cannot be read (any more)."""
        return load_roots(self.ca_file)


class AuditConfig(Strict):
    """`audit:` where the records go (a file, or `-`: standard output), whether Tollgate asks an
    OpenAI stream for the usage its client did not ask for (`inject`) or only reads what it reports,
    how often a checkpoint is written and the Ed25519 key that signs it (a PEM file, PKCS#8), the
    collector the file is shipped to (`otlp`), the PostgreSQL table it is sent to (`postgres`) and
    the time-stamp authorities its checkpoints are anchored with (`anchor`)."""

    path: str = "audit.jsonl"
    stream_usage: Literal["passive", "inject"] = "inject"
    checkpoint_s: float = Field(default=60.0, gt=0)
    signing_key: str | None = None  # read when the file is (`config.read_config`), relative to it
    otlp: AuditOtlpConfig | None = None
    postgres: AuditPostgresConfig | None = None
    anchor: AuditAnchorConfig | None = None

    @field_validator("otlp", "postgres")
    @classmethod
    def _from_a_file[T](cls, value: T, info: ValidationInfo) -> T:
        if value is not None and info.data.get("path") == "-":
            what = "exported" if info.field_name == "otlp" else "sent to PostgreSQL"
            raise ValueError(
                f'the audit is {what} from its file, and audit.path is "-" (standard output): set audit.path to a file'
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
