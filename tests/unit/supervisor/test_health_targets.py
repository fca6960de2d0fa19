"""The supervisor's probe targets carry the Backend's TLS settings and SNI."""

from __future__ import annotations

from turnout.config.files import load_files
from turnout.supervisor.health import probe_targets
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import dump


def backend(name: str, address: str, tls: dict[str, object] | None) -> dict[str, object]:
    spec: dict[str, object] = {
        "endpoints": [{"address": address}],
        "healthCheck": {"active": {"type": "HTTP", "http": {"path": "/healthz"}}},
    }
    if tls is not None:
        spec["tls"] = tls
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_tls_backends_are_probed_over_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = CertificateAuthority()
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    manifests = dump(
        backend("plain", "10.0.0.1:80", None),
        backend("ip", "10.0.0.2:443", {"caFile": str(tmp_path / "ca.crt")}),
        backend("named", "api.internal:443", {"caFile": str(tmp_path / "ca.crt")}),
        backend("sni", "10.0.0.3:443", {"sni": "api.example", "caFile": str(tmp_path / "ca.crt")}),
    )
    (tmp_path / "b.yaml").write_text(manifests)
    config, problems = load_files([str(tmp_path / "b.yaml")])
    assert not [p for p in problems if p.severity == "error"], problems
    targets, owners = probe_targets(config)
    by_key = {t.key: t for t in targets}
    assert by_key["10.0.0.1:80"].tls is None and by_key["10.0.0.1:80"].server_name is None
    ip = by_key["10.0.0.2:443"]
    assert ip.tls is not None and ip.tls.ca_pem is not None and ip.server_name == "10.0.0.2"
    assert by_key["api.internal:443"].server_name == "api.internal"
    assert by_key["10.0.0.3:443"].server_name == "api.example"
    assert owners["10.0.0.3:443"] == "default/sni"
