"""lbsim.dataplane.tls: the certificates an HTTPS probe accepts, and the built-in one."""

from __future__ import annotations

import ssl
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from lbsim.dataplane import tls

# Certificates made once with the openssl command (their keys were never kept): one signed
# with ECDSA and SHA-1 (the cryptography package no longer signs with SHA-1), one with Ed25519.
SHA1_CERTIFICATE = b"""\
-----BEGIN CERTIFICATE-----
MIIBiTCCATCgAwIBAgIUfOrAVyrZ2mpg1DVF+ynCYaHfKTswCQYHKoZIzj0EATAa
MRgwFgYDVQQDDA9sYnNpbS1zaGExLXRlc3QwIBcNMjYxMTI0MDA0NTQ3WhgPMjEy
NjEwMzEwMDQ1NDdaMBoxGDAWBgNVBAMMD2xic2ltLXNoYTEtdGVzdDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABALGYitBxOPPUJOtBiKsup/FWIz45belzFgWXcN/
njRCtxkOGASdvPKSWFJGFwSmU3/QKAYGqCk+IVwUjZd7s6ejUzBRMB0GA1UdDgQW
BBQin1rsrPsbSlBaScLRz/RXoMGtlTAfBgNVHSMEGDAWgBQin1rsrPsbSlBaScLR
z/RXoMGtlTAPBgNVHRMBAf8EBTADAQH/MAkGByqGSM49BAEDSAAwRQIhANrqAxvm
2mebNBnq9xNM03glEiCO0KjfS0czgY+9XM7rAiAdq0NZ6PCRKq4plCNtNczTL7u1
HglPC80lhVMTMm1qJA==
-----END CERTIFICATE-----
"""
ED25519_CERTIFICATE = b"""\
-----BEGIN CERTIFICATE-----
MIIBUTCCAQOgAwIBAgIUQuHC1e1WhsJGOrVK4Yh7AqFJCU0wBQYDK2VwMB0xGzAZ
BgNVBAMMEmxic2ltLWVkMjU1MTktdGVzdDAgFw0yNjExMjQwMTIxMzFaGA8yMTI2
MTAzMTAxMjEzMVowHTEbMBkGA1UEAwwSbGJzaW0tZWQyNTUxOS10ZXN0MCowBQYD
K2VwAyEAtKaJLCLaYKJ9IKiw0N/QUE2gBXjliOXTc0RfGpTQe8ijUzBRMB0GA1Ud
DgQWBBSUDCQzCqc+6uguePLxM1ThG7LoKzAfBgNVHSMEGDAWgBSUDCQzCqc+6ugu
ePLxM1ThG7LoKzAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBADNFfuFXn2OUXRO1
GzXuEl9AL5VbVXQqnIkSeH/k9zRANt3SkiAzjaP7ZJUEujdRoxGLXIJXu0R2O2RS
DOa8OQw=
-----END CERTIFICATE-----
"""


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_sha256_and_stronger_signatures_pass_and_weaker_ones_do_not() -> None:
    for strong in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        assert tls.strong_signature(_der(tls.self_signed("b", strong)[0]))
    assert tls.strong_signature(_der(ED25519_CERTIFICATE))
    assert not tls.strong_signature(_der(SHA1_CERTIFICATE))
    assert not tls.strong_signature(_der(tls.self_signed("b", hashes.SHA224())[0]))


def test_no_certificate_or_an_unreadable_one_does_not_pass() -> None:
    assert not tls.strong_signature(None)
    assert not tls.strong_signature(b"")
    assert not tls.strong_signature(b"\x30\x03\x02\x01\x00")


def test_the_built_in_certificate_is_one_per_run_and_strong() -> None:
    context = tls.instance_context()
    assert context is tls.instance_context()
    assert isinstance(context, ssl.SSLContext)
    certificate, key = tls.self_signed(tls.INSTANCE_NAME)
    assert b"BEGIN CERTIFICATE" in certificate
    assert b"BEGIN PRIVATE KEY" in key
    assert tls.strong_signature(_der(certificate))


def test_the_probe_sends_no_client_certificate_and_accepts_any_issuer() -> None:
    context = tls.client_context()
    assert context.verify_mode is ssl.CERT_NONE
    assert not context.check_hostname


def test_lbsim_loads_cryptography_only_for_tls() -> None:
    """Loading it costs ~40 ms and ~10 MB: a run without HTTPS never does."""
    modules = "lbsim.cli.commands, lbsim.cli.up, lbsim.dataplane.runtime, lbsim.dataplane.tls"
    code = f"import sys, {modules}; print('cryptography' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "False"
