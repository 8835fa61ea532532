"""The parts of the Envoy configuration that keep requests alive under faults and hostile clients (measured end to end
in e2e/reliability): retries onto the picker's fallbacks, FailOpen responses that survive the picker, timeouts for
slow clients, and TLS to the picker with an optional trust anchor."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from poolgate.api.builders import basic, build, gateway, gateway_class, pod, pool, route, service
from poolgate.translate import TranslateOptions, translate
from tests.translate.test_lower_xds import clusters_by_name, hcm, routes

PICKER_CLUSTER = "poolgate/picker/default/epp/9002"


def test_requests_retry_on_the_next_fallback_when_a_pod_refuses_or_dies_before_answering(envoy_validate):
    boot = translate(basic(), TranslateOptions(retries=3)).bootstrap()
    envoy_validate(boot)
    [pool_route] = routes(boot)
    policy = pool_route["route"]["retry_policy"]
    assert set(policy["retry_on"].split(",")) == {"connect-failure", "refused-stream", "reset"}
    assert policy["num_retries"] == 3


def test_fail_open_responses_stream_chunk_by_chunk_so_a_dying_picker_cannot_cut_them(envoy_validate):
    objects = build(
        gateway_class(), gateway(), route(), pool(failure_mode="FailOpen"), service(), pod("p0", "10.0.0.1")
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    override = routes(boot)[0]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    assert override["failure_mode_allow"] is True
    assert override["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert override["processing_mode"]["response_body_mode"] == "STREAMED"
    closed = routes(translate(basic()).bootstrap())[0]["typed_per_filter_config"]["poolgate.endpoint_picker"]
    assert closed["overrides"]["processing_mode"]["response_body_mode"] == "FULL_DUPLEX_STREAMED"


def test_slow_clients_are_bounded_by_header_and_request_timeouts(envoy_validate):
    boot = translate(basic(), TranslateOptions(request_headers_timeout_s=3, request_timeout_s=45)).bootstrap()
    envoy_validate(boot)
    assert hcm(boot)["request_headers_timeout"] == "3s"
    assert hcm(boot)["request_timeout"] == "45s"
    defaults = hcm(translate(basic()).bootstrap())
    assert (defaults["request_headers_timeout"], defaults["request_timeout"]) == ("10s", "60s")


def test_picker_tls_is_the_default_encrypts_with_sni_and_checks_nothing(envoy_validate):
    boot = translate(basic()).bootstrap()  # pickers serve TLS by default (--secure-serving, as upstream)
    envoy_validate(boot)
    socket = clusters_by_name(boot)[PICKER_CLUSTER]["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typed_config"]
    assert context["sni"] == "epp.default.svc.cluster.local"
    assert context["common_tls_context"] == {"alpn_protocols": ["h2"]}
    plaintext = translate(basic(), TranslateOptions(picker_tls=False)).bootstrap()
    assert "transport_socket" not in clusters_by_name(plaintext)[PICKER_CLUSTER]


def test_picker_tls_with_a_ca_checks_the_chain_and_the_service_name(envoy_validate, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(_self_signed_pem())
    options = TranslateOptions(picker_tls=True, picker_ca=str(ca), cluster_domain="example.internal")
    boot = translate(basic(), options).bootstrap()
    envoy_validate(boot)  # Envoy loads the CA file
    context = clusters_by_name(boot)[PICKER_CLUSTER]["transport_socket"]["typed_config"]
    assert context["sni"] == "epp.default.svc.example.internal"
    validation = context["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": str(ca)}
    assert [m["matcher"]["exact"] for m in validation["match_typed_subject_alt_names"]] == [
        "epp.default.svc.example.internal",
        "epp.default.svc",
    ]
    assert {m["san_type"] for m in validation["match_typed_subject_alt_names"]} == {"DNS"}


def _self_signed_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_translate_command_turns_on_picker_tls_with_a_ca(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    ca = tmp_path / "ca.pem"
    ca.write_bytes(_self_signed_pem())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "poolgate.cli",
            "translate",
            "-f",
            "examples/weighted-pools.yaml",
            "--picker-ca",
            str(ca),
            "--out",
            str(tmp_path / "out"),
            "--validate",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    clusters = yaml.safe_load((tmp_path / "out" / "bootstrap.yaml").read_text())["static_resources"]["clusters"]
    pickers = [c for c in clusters if c["name"].startswith("poolgate/picker/")]
    assert pickers and all(
        c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]["trusted_ca"]["filename"]
        == str(ca)
        for c in pickers
    )
