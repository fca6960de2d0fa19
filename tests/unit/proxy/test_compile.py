"""The one compile entry point: workers and the supervisor's trial build the same things
(TLS contexts, HTTP/2 pools), and refused TLS material is a located error."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from turnout.config.configset import ConfigSet
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.compile import CompileError
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.testing.certs import CertificateAuthority, Leaf, weak_rsa_leaf
from turnout.testing.manifests import backend, dump, gateway, route, to


def _config(*backends: dict[str, object]) -> ConfigSet:
    rules = [to(str(b["metadata"]["name"]), f"/{b['metadata']['name']}") for b in backends]  # type: ignore[index]
    resources, problems = parse_text(
        dump(gateway("gw", 8080), *backends, route("r", rules)), "m.yaml"
    )
    config, more = validate(resources)
    assert not [p for p in problems + more if p.severity == "error"], problems + more
    return config


def _client_files(tmp_path: Path, leaf: Leaf) -> dict[str, object]:
    cert, key = leaf.write(tmp_path, "client")
    return {
        "clientCertificateFile": str(cert),
        "clientKeyFile": str(key),
        "insecureSkipVerify": True,
    }


def _build(config: ConfigSet) -> Runtime:
    async def run() -> Runtime:
        runtime = Runtime(asyncio.get_running_loop(), ProxySettings())  # never started
        before = asyncio.all_tasks()
        runtime.build(config, 1)
        assert asyncio.all_tasks() == before  # building starts no task
        return runtime

    return asyncio.run(run())


def test_the_build_makes_tls_contexts_and_http2_pools(tmp_path: Path) -> None:
    leaf = CertificateAuthority().issue("gateway-client")
    config = _config(
        backend("secure", 8443, tls=_client_files(tmp_path, leaf)),
        backend("grpc", 9000, appProtocol="h2c"),
    )
    runtime = _build(config)
    pools = {p.address.port: p for p in runtime.pools.values()}
    assert isinstance(pools[8443].tls, ssl.SSLContext)
    assert pools[9000].http2 and pools[9000].tls is None
    assert all(p.open_count == 0 for p in pools.values())  # nothing connected


def _refuses(leaf: Leaf, tmp_path: Path) -> bool:
    cert, key = leaf.write(tmp_path, "probe")
    try:
        ssl.create_default_context().load_cert_chain(cert, key)
    except ssl.SSLError:
        return True
    return False


def test_tls_material_openssl_refuses_is_a_located_compile_error(tmp_path: Path) -> None:
    weak = weak_rsa_leaf()
    if not _refuses(weak, tmp_path):
        pytest.skip("this OpenSSL accepts 1024-bit RSA keys (security level below 2)")
    config = _config(backend("secure", 8443, tls=_client_files(tmp_path, weak)))
    with pytest.raises(CompileError) as caught:
        _build(config)
    (problem,) = caught.value.problems
    assert problem.obj == "Backend default/secure"
    assert problem.path == "spec.tls.clientCertificateFile"
    assert problem.source == "m.yaml" and problem.line is not None
    assert "cannot build the TLS context" in problem.message
    assert str(problem).startswith(f"m.yaml:{problem.line}:")


def test_a_cipher_string_openssl_refuses_is_a_located_compile_error() -> None:
    leaf = CertificateAuthority().issue("example.org")
    listener = {
        "name": "https",
        "port": 8443,
        "protocol": "HTTPS",
        "tls": {
            "certificateRefs": [{"name": "cert"}],
            "options": {"turnout.dev/tls-ciphers": "RC4-NONSENSE"},
        },
    }
    text = dump(gateway("gw", listeners=[listener]), leaf.secret("cert"), backend("b", 8080))
    resources, problems = parse_text(text, "m.yaml")
    config, more = validate(resources)  # validation cannot judge a cipher string
    assert not [p for p in problems + more if p.severity == "error"], problems + more

    with pytest.raises(CompileError) as caught:
        _build(config)
    (problem,) = caught.value.problems
    assert problem.obj == "Gateway default/gw"
    assert problem.path == "spec.listeners[0].tls.options.turnout.dev/tls-ciphers"
    assert "OpenSSL refuses the cipher string 'RC4-NONSENSE'" in problem.message
    line = text.splitlines().index(next(x for x in text.splitlines() if "RC4" in x)) + 1
    assert str(problem).startswith(f"m.yaml:{line}:")
