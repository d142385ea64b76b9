"""A real RFC 3161 time-stamp authority for tests: OpenSSL's `openssl ts -reply` behind an HTTP
server of our own on 127.0.0.1.

`Tsa.start(tmp_path)` makes a test CA and a TSA certificate signed by it (extendedKeyUsage
timeStamping, critical), writes them under the directory, and answers each POST of an
`application/timestamp-query` with the `application/timestamp-reply` that `openssl ts -reply`
makes for it. `url` is what `audit.anchor.tsa` takes and `ca_file` what `audit.anchor.ca_file`
takes (the CA alone); `down` and `up` stop and start it on the same port. Its replies carry its
own certificate only; `chain=True` makes its certificate one an intermediate CA signed and sends
the intermediate and the root after it (OpenSSL's `certs =`, as most TSAs do: not in DER's order
of a set). It can answer wrongly:

- `mode = "rejection"`: a TimeStampResp of status rejection (2), no token;
- `mode = "imprint"`: a valid token for another imprint (the query's last digest byte changed);
- `mode = "nonce"`: a valid token for another nonce (the query's nonce's last byte changed);
- `mode = "foreign"`: a valid token signed by a TSA certificate of another CA (`foreign_ca_file`);
- `mode = "no-certs"`: a valid token that carries no certificate (the query's certReq removed);
- `mode = "garbage"`: 200 with bytes that are no DER;
- `status = 503` (any but 200): that status, empty body.

`requests` keeps each request's headers (lower-case names) and body."""

from __future__ import annotations

import datetime
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .proxy import free_port
from .quiet_handler import QuietHandler, Switchable

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
# TimeStampResp { status PKIStatusInfo { status rejection(2), statusString { "…" } } }
_TEXT = b"tests: rejected"
_STRINGS = b"\x30" + bytes([len(_TEXT) + 2]) + b"\x0c" + bytes([len(_TEXT)]) + _TEXT
_INFO = b"\x02\x01\x02" + _STRINGS
REJECTION = b"\x30" + bytes([len(_INFO) + 2]) + b"\x30" + bytes([len(_INFO)]) + _INFO

_CONF = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tollgate tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(
    subject: str,
    start: datetime.datetime,
    end: datetime.datetime,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    path_length: int = 0,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA certificate and its key: a root, or one `issuer` (a certificate and its key) signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = (_name(subject), ca_key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        _builder(_name(subject), issuer_name, ca_key, start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), ca_key


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    start: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:
    """A certificate of `key`'s, valid from `start` to `end`, before its extensions."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """keyUsage with what `allowed` names, nothing else."""
    uses = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**(dict.fromkeys(uses, False) | allowed))


def make_pki(directory: Path, label: str, chain: bool = False) -> tuple[Path, Path, Path]:
    """A CA (`<label>-ca.pem`) and a TSA certificate it signed (`<label>-tsa.pem`, key
    `<label>-tsa.key`), written under `directory`; their paths, in that order. With `chain`, the
    CA signs an intermediate CA (`<label>-intermediate.pem`), which signs the TSA's certificate."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    root = _ca(f"{label} test CA", start, end, path_length=1 if chain else 0)
    ca, ca_key = root
    if chain:
        ca, ca_key = _ca(f"{label} test intermediate CA", start, end, root)
        (directory / f"{label}-intermediate.pem").write_bytes(_pem(ca))
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        _builder(_name(f"{label} test TSA"), ca.subject, tsa_key, start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, tsa_path, key_path = (
        directory / f"{label}-ca.pem",
        directory / f"{label}-tsa.pem",
        directory / f"{label}-tsa.key",
    )
    ca_path.write_bytes(_pem(root[0]))
    tsa_path.write_bytes(_pem(tsa))
    key_path.write_bytes(_key_pem(tsa_key))
    return ca_path, tsa_path, key_path


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at `at`: (its tag, where its content starts, where it ends)."""
    tag, length = data[at], data[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length


def altered_query(query: bytes, what: str) -> bytes:
    """The TimeStampReq `query` with the last byte of its imprint's digest (`what="imprint"`) or
    of its nonce (`what="nonce"`) changed; its length unchanged."""
    _, body, end = _tlv(query, 0)
    _, at, _ = _tlv(query, body)  # version INTEGER: skip it
    at = _tlv(query, body)[2]
    _, imprint, imprint_end = _tlv(query, at)  # MessageImprint SEQUENCE
    if what == "imprint":
        digest_end = _tlv(query, _tlv(query, imprint)[2])[2]  # hashedMessage after the algorithm
        position = digest_end - 1
    else:
        at = imprint_end
        position = -1
        while at < end:
            tag, _content, after = _tlv(query, at)
            if tag == 0x02:  # nonce INTEGER
                position = after - 1
                break
            at = after
        if position < 0:
            raise ValueError("the query holds no nonce")
    changed = bytearray(query)
    changed[position] ^= 0x01
    return bytes(changed)


def without_cert_request(query: bytes) -> bytes:
    """The TimeStampReq `query` without its last field, `certReq TRUE` (as `request_for` ends it)."""
    if not (query.endswith(b"\x01\x01\xff") and query[0] == 0x30 and query[1] < 0x80):
        raise ValueError("the query does not end with certReq TRUE")
    return bytes([0x30, query[1] - 3]) + query[2:-3]


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Tsa(Switchable):
    """Start with `Tsa.start(directory)`."""

    directory: Path
    port: int = field(default_factory=free_port)
    mode: str = "ok"  # ok, rejection, imprint, nonce, foreign, no-certs, garbage
    status: int = 200
    delay: float = 0.0  # seconds it waits before it answers
    requests: list[Received] = field(default_factory=list)
    replies: int = 0  # good tokens given (mode "ok", status 200)
    chain: bool = False  # its certificate signed by an intermediate CA, sent with the root in each reply

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file, self.tsa_cert, self.tsa_key = make_pki(self.directory, "tsa", self.chain)
        self.foreign_ca_file, self.foreign_cert, self.foreign_key = make_pki(self.directory, "foreign")
        (self.directory / "serial").write_text("01\n")
        self.config = self.directory / "openssl-tsa.cnf"
        conf = _CONF.format(dir=self.directory)
        if self.chain:  # as most TSAs are set up: the chain after the signer's certificate, root last
            sent = self.directory / "tsa-chain.pem"
            sent.write_bytes((self.directory / "tsa-intermediate.pem").read_bytes() + self.ca_file.read_bytes())
            conf += f"certs = {sent}\n"
        self.config.write_text(conf)
        self._lock = threading.Lock()  # one `openssl ts -reply` at a time (its serial file)
        self._make_server()

    @classmethod
    def start(cls, directory: Path | None = None, listening: bool = True, chain: bool = False) -> Tsa:
        tsa = cls(Path(directory) if directory else Path(tempfile.mkdtemp(prefix="tollgate-tsa-")), chain=chain)
        if listening:
            tsa.up()
        return tsa

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsa"

    def reply_to(self, query: bytes) -> bytes:
        """What `openssl ts -reply` answers to `query` in the current mode (DER of a TimeStampResp)."""
        if self.mode == "rejection":
            return REJECTION
        if self.mode == "garbage":
            return b"not a time-stamp reply"
        signer, key = self.tsa_cert, self.tsa_key
        if self.mode in ("imprint", "nonce"):
            query = altered_query(query, self.mode)
        elif self.mode == "foreign":
            signer, key = self.foreign_cert, self.foreign_key
        elif self.mode == "no-certs":
            query = without_cert_request(query)
        with self._lock:
            done = subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(self.config),
                    "-queryfile",
                    "/dev/stdin",
                    "-signer",
                    str(signer),
                    "-inkey",
                    str(key),
                    "-out",
                    "/dev/stdout",
                ],
                input=query,
                capture_output=True,
                timeout=20,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"openssl ts -reply failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def _make_server(self) -> None:
        tsa = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with tsa._lock:
                    tsa.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if tsa.delay:
                    time.sleep(tsa.delay)
                status, answer = tsa.status, b""
                if status == 200:
                    if (self.headers.get("content-type") or "").split(";")[0].strip().lower() != QUERY_TYPE:
                        status = 415
                    else:
                        try:
                            answer = tsa.reply_to(body)
                        except (RuntimeError, ValueError, IndexError, subprocess.TimeoutExpired):
                            status = 400
                        else:
                            if tsa.mode == "ok":
                                with tsa._lock:
                                    tsa.replies += 1
                self.send_response(status)
                self.send_header("content-type", REPLY_TYPE if status == 200 else "text/plain")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._serve(Handler)


def openssl_verify(token_der: bytes, data: bytes, ca_file: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    """`openssl ts -verify -token_in -in TOKEN -data FILE -CAfile CA`, as docs/audit.md says an
    auditor runs it: TOKEN the TimeStampToken's DER, FILE holding `data`."""
    token, data_file = directory / "token.der", directory / "data.txt"
    token.write_bytes(token_der)
    data_file.write_bytes(data)
    return subprocess.run(
        ["openssl", "ts", "-verify", "-token_in", "-in", str(token), "-data", str(data_file), "-CAfile", str(ca_file)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def tsa_fixture(name: str, listening: bool = True, chain: bool = False) -> Any:
    """A module's fixture `name`: a `Tsa` (as `Tsa.start` makes it) for the module's tests, closed
    after them."""

    @pytest.fixture(scope="module", name=name)
    def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tsa]:
        tsa = Tsa.start(tmp_path_factory.mktemp(name), listening=listening, chain=chain)
        yield tsa
        tsa.close()

    return made
