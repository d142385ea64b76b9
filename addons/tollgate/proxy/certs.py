"""Tollgate's CA (mitmproxy's, in `confdir`) and the bundle clients trust: system roots plus that CA.
The client certificates Tollgate presents upstream are `providers/client_certs.py`."""

from __future__ import annotations

import fcntl
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CA_NAME = "mitmproxy"
CA_CERT = f"{CA_NAME}-ca-cert.pem"
BUNDLE = "ca-bundle.pem"
CA_LOCK = "tollgate-ca.lock"  # held while the CA and the bundle are made


def system_roots() -> Path:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    import certifi  # mitmproxy depends on it

    return Path(certifi.where())


@contextmanager
def made_alone(confdir: Path) -> Iterator[None]:
    """Held by one process at a time: two instances started at once from one checkout would each
    make a CA, and one would sign with a key whose certificate the other's clients were given."""
    try:
        lock = open(confdir / CA_LOCK, "a")  # noqa: SIM115 (held until the end of the block)
    except OSError:  # a folder that cannot take it (a container's secret, read only): made already
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        yield


def ensure_ca(confdir: Path) -> Path:
    """Create the CA in confdir unless it is there; return its certificate's path."""
    from mitmproxy import certs  # here: the client certificates below are plain data, built without it

    confdir.mkdir(parents=True, exist_ok=True)
    if (confdir / CA_CERT).exists():  # written after the key: made whole, read without the lock
        certs.CertStore.from_store(confdir, CA_NAME, 2048)
    else:
        with made_alone(confdir):
            certs.CertStore.from_store(confdir, CA_NAME, 2048)
    return confdir / CA_CERT


def issue_server_cert(confdir: Path, host: str) -> bytes:
    """A certificate for the IP address `host` (and `localhost`) issued by the CA in confdir, and its
    key: PEM, for a server on this machine that a proxy trusting that CA upstream reaches (`./run.sh demo`)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from mitmproxy import certs

    store = certs.CertStore.from_store(confdir, CA_NAME, 2048)
    entry = store.get_cert(host, [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")])
    key = entry.privatekey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return entry.cert.to_pem() + key


def ensure_bundle(confdir: Path) -> Path:
    """certs/ca-bundle.pem: `SSL_CERT_FILE` replaces a client's trust store, and hosts other than
    the LLM APIs are not intercepted, so clients need the system's roots as well as Tollgate's CA."""
    ca = ensure_ca(confdir)
    bundle = confdir / BUNDLE
    roots = system_roots().read_text(encoding="ascii", errors="ignore").rstrip("\n")
    content = f"{roots}\n\n# Tollgate CA\n{ca.read_text(encoding='ascii')}"
    if not bundle.exists() or bundle.read_text(encoding="ascii", errors="ignore") != content:
        with made_alone(confdir):  # one writer at a time
            bundle.write_text(content, encoding="ascii")
    return bundle
