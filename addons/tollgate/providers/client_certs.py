"""The client certificates Tollgate presents to an upstream that asks for one (Google's mTLS
hosts): loaded from a PEM file and checked, plain data that mitmproxy's `client_certs` takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization


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
