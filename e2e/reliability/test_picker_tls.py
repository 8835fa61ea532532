"""Envoy calls the picker over TLS (`poolgate picker --secure-serving`): encrypted with the picker's self-signed
certificate, or checked against a CA bundle and the picker Service's name (a certificate for another name is
refused: the FailClose pool answers 5xx rather than trust it)."""

from __future__ import annotations

import datetime
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from poolgate.api.builders import chat, pool_ref, sim_deployment
from poolgate.load import faults

pytestmark = pytest.mark.xdist_group("reliability-tls")
SERVICE_NAME = "epp.default.svc.cluster.local"  # the picker Service of faults.pool_objects()


def objects() -> list[dict]:
    return [
        *faults.gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *faults.pool_objects(),
        sim_deployment("pool", 2),
    ]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(directory: Path, dns_name: str) -> Path:
    """A CA (ca.crt) and a picker key pair it signed for `dns_name` (tls.crt, tls.key), as cert-manager writes them."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("poolgate test CA"))
        .issuer_name(_name("poolgate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory


def tls_handshake(host: str, port: int) -> str:
    """The protocol the picker's port negotiates by ALPN in a TLS handshake (no certificate check)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return tls.selected_alpn_protocol()


def picks(stack, http, count: int = 6) -> list[tuple[int, str]]:
    """(status, endpoint the picker chose) of a few requests through Envoy."""
    url = f"{stack.url()}/v1/chat/completions"
    out = []
    for i in range(count):
        response = http.post(url, json=chat(content=f"tls {i}"))
        out.append((response.status_code, response.headers.get("x-conformance-test-selected-endpoint", "")))
    return out


def test_envoy_calls_a_picker_with_a_self_signed_certificate_over_tls(start_stack, http):
    stack = start_stack(*objects(), picker_tls=True)
    members = set(stack.endpoints("pool"))
    assert all(status == 200 and picked in members for status, picked in picks(stack, http))
    picker = stack.stack.status.plan.pickers[0].address
    assert tls_handshake(picker.host, picker.port) == "h2"  # the picker's port speaks TLS, not cleartext


def test_envoy_checks_the_picker_certificate_against_the_ca_and_the_service_name(start_stack, http, tmp_path):
    good = write_certificates(tmp_path / "good", SERVICE_NAME)
    stack = start_stack(*objects(), picker_cert_dir=good)
    members = set(stack.endpoints("pool"))
    assert all(status == 200 and picked in members for status, picked in picks(stack, http))

    wrong = write_certificates(tmp_path / "wrong", "someone-else.default.svc.cluster.local")
    refused = start_stack(*objects(), picker_cert_dir=wrong)
    for status, picked in picks(refused, http, 3):
        assert 500 <= status < 600 and not picked  # FailClose: no pick from an unverified picker
    admin = refused.stack.admin
    stats = http.get(f"http://{admin.host}:{admin.port}/stats?filter=ssl.fail_verify_san").text
    assert sum(int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if line.strip()) >= 1, stats
