"""TLS for HTTPS health probes and for the built-in instances that answer them.

Azure's HTTPS probe is its HTTP probe inside TLS: it sends no client certificate, and it
wants the backend's certificates signed with SHA-256 or stronger
(https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-custom-probe-overview).
lbsim's probe does the handshake without asking who signed the certificate (a backend on
loopback has no public name to check), checks the signature hash of the certificate the
backend presents, then sends ``GET requestPath``. Python's ssl module shows a client only
that first certificate, so the rest of a chain is not checked.

Built-in instances that speak HTTPS present a self-signed certificate made when lbsim first
needs one (an ECDSA P-256 key, signed with SHA-256), for the loopback names.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes

    SignatureHash = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | hashes.SHA3_256

# (cryptography is imported where it is used: loading it costs ~40 ms and ~10 MB, and only a
# run with HTTPS probes or HTTPS built-in instances needs it.)

__all__ = [
    "client_context",
    "instance_context",
    "self_signed",
    "server_context",
    "strong_signature",
]

INSTANCE_NAME = "lbsim built-in instance"


def self_signed(
    common_name: str, signature_hash: SignatureHash | None = None
) -> tuple[bytes, bytes]:
    """A new self-signed certificate for ``common_name`` and the loopback names, and its
    ECDSA P-256 key, both PEM; signed with ``signature_hash`` (default SHA-256)."""
    from cryptography import x509  # noqa: PLC0415  (see the imports)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    names = [x509.DNSName("localhost"), *(x509.IPAddress(a) for a in loopback)]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, signature_hash or hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(certificate_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context that presents this certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # The ssl module loads certificates from files only: a private directory, gone at once.
    with tempfile.TemporaryDirectory(prefix="lbsim-tls-") as folder:
        path = Path(folder) / "instance.pem"
        path.write_bytes(key_pem + certificate_pem)
        context.load_cert_chain(path)
    return context


@functools.cache
def instance_context() -> ssl.SSLContext:
    """The TLS server context of the built-in instances (one certificate per lbsim run)."""
    return server_context(*self_signed(INSTANCE_NAME))


@functools.cache
def client_context() -> ssl.SSLContext:
    """The probe's TLS client context: no client certificate, any server certificate (its
    signature hash is checked by :func:`strong_signature`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def strong_signature(certificate_der: bytes | None) -> bool:
    """Whether a certificate (DER) is signed with SHA-256 or stronger, as Azure's HTTPS
    probe requires (an EdDSA signature has its strong hash built in)."""
    from cryptography import x509  # noqa: PLC0415  (see the imports)
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509.oid import SignatureAlgorithmOID  # noqa: PLC0415

    if not certificate_der:
        return False
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
        algorithm = certificate.signature_hash_algorithm
    except ValueError:  # unreadable, or a signature algorithm cryptography does not know
        return False
    if algorithm is None:  # EdDSA: the hash is part of the algorithm, SHA-512 or SHAKE256
        eddsa = (SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448)
        return certificate.signature_algorithm_oid in eddsa
    strong = (hashes.SHA256, hashes.SHA384, hashes.SHA512, hashes.SHA512_256)
    return isinstance(algorithm, (*strong, hashes.SHA3_256, hashes.SHA3_384, hashes.SHA3_512))
