"""Where the API server is and who we are to it: a kubeconfig file or the pod's service account.

Supported credentials are the ones a controller meets: a bearer token (inline or
``tokenFile``), a client certificate (file or ``*-data``), the cluster CA (file or
``certificate-authority-data``), ``insecure-skip-tls-verify`` and impersonation
(``as``/``as-groups``, how the tests run as the deployed service account). Exec and auth-provider
plugins are refused with a clear error rather than half-supported. In a pod
(``KUBERNETES_SERVICE_HOST`` set and no kubeconfig given) the service account token is
re-read from its file on every connection, because the kubelet rotates it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(Exception):
    """The kubeconfig or in-cluster environment cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class KubeConnection:
    server: str
    ssl: ssl.SSLContext | bool
    token: str = ""
    token_file: str = ""
    namespace: str = "default"  # the namespace we run in (for the Lease, events)
    impersonate: str = ""  # kubeconfig ``as``: act as this user (e.g. a service account)
    impersonate_groups: tuple[str, ...] = ()

    def bearer(self) -> str:
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeConfigError(f"cannot read token file {self.token_file}: {exc}") from None
        return self.token


def load_connection(kubeconfig: str = "") -> KubeConnection:
    """``--kubeconfig`` (or ``$KUBECONFIG``, or ``~/.kube/config``), else in-cluster."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not path and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    path = path or os.path.expanduser("~/.kube/config")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(data, dict):
        raise KubeConfigError(f"kubeconfig {path}: not a mapping")
    return from_kubeconfig(data, Path(path).parent, path)


def in_cluster() -> KubeConnection:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    ns_file = SA_DIR / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
    return KubeConnection(
        f"https://{host}:{port}", ctx, token_file=str(SA_DIR / "token"), namespace=namespace
    )


def _named(items: Any, name: str, what: str, source: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeConfigError(f"kubeconfig {source}: no {what} named {name!r}")


def _material(section: dict[str, Any], key: str, base: Path, scratch: list[str]) -> str:
    """A file path for ``key`` (``key`` names a file, ``key-data`` holds base64 PEM)."""
    inline = section.get(f"{key}-data")
    if inline:
        fd, name = tempfile.mkstemp(prefix="turnout-kube-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(inline))
        scratch.append(name)
        return name
    value = section.get(key)
    if not value:
        return ""
    return str(base / value) if not os.path.isabs(value) else str(value)


def from_kubeconfig(data: dict[str, Any], base: Path, source: str) -> KubeConnection:
    context_name = data.get("current-context")
    if not context_name:
        raise KubeConfigError(f"kubeconfig {source}: no current-context")
    context = _named(data.get("contexts"), context_name, "context", source)
    cluster = _named(data.get("clusters"), context.get("cluster", ""), "cluster", source)
    user = _named(data.get("users"), context.get("user", ""), "user", source)
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(
            f"kubeconfig {source}: user {context.get('user')!r} uses an exec/auth-provider "
            "plugin, which Turnout does not run; use a token or a client certificate"
        )
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeConfigError(f"kubeconfig {source}: cluster has no server")
    scratch: list[str] = []
    try:
        verify: ssl.SSLContext | bool
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        else:
            ca = _material(cluster, "certificate-authority", base, scratch)
            verify = ssl.create_default_context(cafile=ca or None)
        cert = _material(user, "client-certificate", base, scratch)
        key = _material(user, "client-key", base, scratch)
        if cert:
            if not isinstance(verify, ssl.SSLContext):
                verify = ssl.create_default_context()
                verify.check_hostname = False
                verify.verify_mode = ssl.CERT_NONE
            verify.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise KubeConfigError(f"kubeconfig {source}: TLS material: {exc}") from None
    finally:
        for name in scratch:  # loaded into the context: the temporary copies can go
            os.unlink(name)
    token = str(user.get("token") or "")
    token_file = user.get("tokenFile") or ""
    namespace = str(context.get("namespace") or "default")
    return KubeConnection(
        server.rstrip("/"),
        verify,
        token,
        token_file,
        namespace,
        str(user.get("as") or ""),
        tuple(str(g) for g in user.get("as-groups") or ()),
    )
