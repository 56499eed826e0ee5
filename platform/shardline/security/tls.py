"""TLS and mutual TLS credentials for the router, read from PEM files (Secrets)."""

from __future__ import annotations

from pathlib import Path

import grpc

from shardline.errors import SpecError


def server_credentials(tls) -> grpc.ServerCredentials:
    """Credentials for a `RouterTLS`; requires client certificates when it names a CA."""
    client_ca = _read(tls.client_ca_file, "client_ca_file") if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(tls.key_file, "key_file"), _read(tls.cert_file, "cert_file"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read(path: str, field: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"router.tls.{field} {path!r}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise SpecError(f"router.tls.{field} {path!r} is not PEM (no -----BEGIN line)")
    return data
