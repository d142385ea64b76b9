"""Tollgate's CA (mitmproxy's, in `confdir`) and the bundle clients trust: system roots plus that CA;
and the client certificates Tollgate presents to an upstream that asks for one (Google's mTLS hosts)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CA_NAME = "mitmproxy"
CA_CERT = f"{CA_NAME}-ca-cert.pem"
BUNDLE = "ca-bundle.pem"


def system_roots() -> Path:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    import certifi  # mitmproxy depends on it

    return Path(certifi.where())


def ensure_ca(confdir: Path) -> Path:
    """Create the CA in confdir unless it is there; return its certificate's path."""
    from mitmproxy import certs  # here: the client certificates below are plain data, built without it

    confdir.mkdir(parents=True, exist_ok=True)
    certs.CertStore.from_store(confdir, CA_NAME, 2048)
    return confdir / CA_CERT


def ensure_bundle(confdir: Path) -> Path:
    """certs/ca-bundle.pem: `SSL_CERT_FILE` replaces a client's trust store, and hosts other than
    the LLM APIs are not intercepted, so clients need the system's roots as well as Tollgate's CA."""
    ca = ensure_ca(confdir)
    bundle = confdir / BUNDLE
    roots = system_roots().read_text(encoding="ascii", errors="ignore").rstrip("\n")
    content = f"{roots}\n\n# Tollgate CA\n{ca.read_text(encoding='ascii')}"
    if not bundle.exists() or bundle.read_text(encoding="ascii", errors="ignore") != content:
        bundle.write_text(content, encoding="ascii")
    return bundle


@dataclass(frozen=True, slots=True, repr=False)  # holds a private key: never in a message
class ClientCert:
    """A certificate and its private key, as pyOpenSSL puts them on a connection."""

    certificate: x509.Certificate
    key: Any  # a cryptography private key


def load_client_cert(path: str) -> ClientCert:
    """The certificate and unencrypted private key in one PEM file (the certificate first, as
    mitmproxy's `client_certs` takes them); ValueError saying what is wrong, never what it holds."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path} holds no unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise ValueError(f"{path}: the private key is not the certificate's")
    return ClientCert(certificate, key)
