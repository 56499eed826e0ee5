"""Test PKI made on the fly: a CA, a server certificate for localhost, a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool, sans=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(directory: Path) -> dict[str, Path]:
    """Writes ca.pem, server.pem/server.key (localhost, 127.0.0.1), client.pem/client.key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("shardline-test-ca", ca_key, "shardline-test-ca", ca_key, ca=True)
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    sans = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    for role, extra in (("server", sans), ("client", ())):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"shardline-test-{role}", key, "shardline-test-ca", ca_key, ca=False, sans=extra)
        files[role] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{role}_key"] = _pem_key(key)
    paths = {}
    for name, data in files.items():
        path = directory / (name.replace("_key", ".key") if name.endswith("_key") else f"{name}.pem")
        path.write_bytes(data)
        paths[name] = path
    return paths
