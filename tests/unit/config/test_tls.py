"""TLS material from Secrets and files: what is accepted, and the located errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from turnout.config.model.backend import BackendTLSSpec
from turnout.config.model.gateway import GatewayTLSConfig
from turnout.config.model.kubernetes import SecretObject
from turnout.config.tls import (
    TLSMaterialError,
    TLSPolicy,
    backend_tls,
    client_ca,
    listener_certificates,
    listener_policy,
)
from turnout.testing.certs import CertificateAuthority

CA = CertificateAuthority()
LEAF = CA.issue("shop.example.com", "*.shop.example.com")
OTHER = CA.issue("other.example.com")


def secret(name: str, **fields: Any) -> SecretObject:
    return SecretObject.model_validate(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}
    )


SECRETS = {
    ("default", "good"): SecretObject.model_validate(LEAF.secret("good")),
    ("default", "opaque"): secret("opaque", type="Opaque", stringData={"ca.crt": "x"}),
    ("default", "mismatch"): secret(
        "mismatch",
        type="kubernetes.io/tls",
        stringData={"tls.crt": LEAF.cert_pem.decode(), "tls.key": OTHER.key_pem.decode()},
    ),
    ("default", "ca"): secret("ca", stringData={"ca.crt": CA.cert_pem.decode()}),
}


def refs(*names: str, **extra: Any) -> dict[str, Any]:
    return {"certificateRefs": [{"name": n, **extra} for n in names]}


def test_a_good_secret_gives_its_names() -> None:
    [cert] = listener_certificates(
        GatewayTLSConfig.model_validate(refs("good")), "default", SECRETS
    )
    assert cert.names == ("shop.example.com", "*.shop.example.com")
    assert cert.source == "Secret default/good"


@pytest.mark.parametrize(
    ("tls", "message", "field"),
    [
        (refs("missing"), "Secret default/missing not found", ("certificateRefs", 0)),
        (refs("opaque"), "has type 'Opaque'", ("certificateRefs", 0)),
        (refs("mismatch"), "does not match the certificate", ("certificateRefs", 0)),
        (refs("good", namespace="other"), "another namespace", ("certificateRefs", 0)),
        (
            refs("good", kind="ConfigMap"),
            "are not supported (use a Secret)",
            ("certificateRefs", 0),
        ),
        (
            {"options": {"turnout.dev/certificate-file": "/nonexistent.pem"}},
            "needs both",
            ("options",),
        ),
    ],
)
def test_listener_errors_name_the_field(
    tls: dict[str, Any], message: str, field: tuple[str | int, ...]
) -> None:
    with pytest.raises(TLSMaterialError) as err:
        listener_certificates(GatewayTLSConfig.model_validate(tls), "default", SECRETS)
    assert message in str(err.value)
    assert err.value.field == field


def test_client_and_upstream_cas(tmp_path: Path) -> None:
    validation = {"frontendValidation": {"caCertificateRefs": [{"name": "ca"}]}}
    pem = client_ca(GatewayTLSConfig.model_validate(validation), "default", SECRETS)
    assert pem is not None and pem.startswith(b"-----BEGIN CERTIFICATE-----")
    bad = {"frontendValidation": {"caCertificateRefs": [{"name": "opaque"}]}}
    with pytest.raises(TLSMaterialError) as err:
        client_ca(GatewayTLSConfig.model_validate(bad), "default", SECRETS)
    assert "ca.crt is not PEM" in str(err.value)
    assert err.value.field == ("frontendValidation", "caCertificateRefs", 0)

    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    spec = BackendTLSSpec.model_validate(
        {"caCertificateRefs": [{"name": "ca"}], "caFile": str(not_pem)}
    )
    with pytest.raises(TLSMaterialError) as err:
        backend_tls(spec, "default", SECRETS)
    assert err.value.field == ("caFile",)  # not an index into caCertificateRefs
    good = BackendTLSSpec.model_validate(
        {"caCertificateRefs": [{"name": "ca"}], "sni": "x.internal"}
    )
    tls = backend_tls(good, "default", SECRETS)
    assert tls.ca_pem is not None and tls.sni == "x.internal" and tls.verify


def test_the_default_policy_is_aead_only_from_tls_1_2() -> None:
    policy = listener_policy(GatewayTLSConfig.model_validate(refs("good")))
    assert policy == TLSPolicy("ECDHE+AESGCM:ECDHE+CHACHA20", tls13_only=False)


def test_options_override_ciphers_and_minimum_version() -> None:
    options = {"turnout.dev/tls-ciphers": "ECDHE+AES", "turnout.dev/tls-min-version": "1.3"}
    policy = listener_policy(GatewayTLSConfig.model_validate({"options": options}))
    assert policy == TLSPolicy("ECDHE+AES", tls13_only=True)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("turnout.dev/tls-ciphers", " ", "the cipher string is empty"),
        ("turnout.dev/tls-min-version", "1.1", "unsupported minimum TLS version '1.1'"),
        ("turnout.dev/tls-min-version", "TLSv1.3", "supported: 1.2, 1.3"),
    ],
)
def test_policy_errors_name_the_option(option: str, value: str, message: str) -> None:
    with pytest.raises(TLSMaterialError) as err:
        listener_policy(GatewayTLSConfig.model_validate({"options": {option: value}}))
    assert message in str(err.value)
    assert err.value.field == ("options", option)
