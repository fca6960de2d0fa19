"""Kubeconfig and in-cluster settings: what a controller meets, and clear refusals."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest

from turnout.control.kube import connection as conn
from turnout.testing.certs import CertificateAuthority


def _config(user: dict[str, object], cluster: dict[str, object]) -> dict[str, object]:
    return {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ops"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443/", **cluster}}],
        "users": [{"name": "u", "user": user}],
    }


def test_inline_ca_client_certificate_token_and_impersonation(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    leaf = ca.issue("client")
    data = _config(
        {
            "client-certificate-data": base64.b64encode(leaf.cert_pem).decode(),
            "client-key-data": base64.b64encode(leaf.key_pem).decode(),
            "token": "t0k",
            "as": "system:serviceaccount:a:b",
            "as-groups": ["g1"],
        },
        {"certificate-authority-data": base64.b64encode(ca.cert_pem).decode()},
    )
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("turnout-kube-*.pem"))
    c = conn.from_kubeconfig(data, tmp_path, "test")
    assert set(scratch.glob("turnout-kube-*.pem")) == before  # key copies removed once loaded
    assert c.server == "https://10.0.0.1:6443"
    assert c.bearer() == "t0k" and c.namespace == "ops"
    assert (c.impersonate, c.impersonate_groups) == ("system:serviceaccount:a:b", ("g1",))


def test_token_file_is_reread_and_plugins_are_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    c = conn.from_kubeconfig(
        _config({"tokenFile": str(token)}, {"insecure-skip-tls-verify": True}), tmp_path, "t"
    )
    assert c.ssl is False and c.bearer() == "one"
    token.write_text("two\n")  # rotated
    assert c.bearer() == "two"
    with pytest.raises(conn.KubeConfigError, match="exec/auth-provider"):
        conn.from_kubeconfig(_config({"exec": {"command": "aws"}}, {}), tmp_path, "t")
    with pytest.raises(conn.KubeConfigError, match="no current-context"):
        conn.from_kubeconfig({}, tmp_path, "t")


def test_in_cluster_reads_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = CertificateAuthority()
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("turnout\n")
    monkeypatch.setattr(conn, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    c = conn.load_connection("")
    assert c.server == "https://[fd00::1]:443"
    assert c.bearer() == "sa-token" and c.namespace == "turnout"
