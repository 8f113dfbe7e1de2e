"""Rotating a node's files the way operators should, and reading what a port serves."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from cryptography import x509


def replace_file(path: Path, data: bytes) -> None:
    """Writes `data` over `path` the way operators should: a new file renamed into place."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def served_certificate(port: int, *, client: tuple[Path, Path] | None = None) -> x509.Certificate:
    """The certificate a port presents to a new TLS connection (not verified: only read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(certfile=client[0], keyfile=client[1])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def certificate_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
