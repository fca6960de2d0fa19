"""h2spec's conformance cases (``h2spec_cases.py``) against a real Turnout's h2c and TLS
(ALPN ``h2``) listeners, one test per case and listener; docs/http2.md has the count."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.proxy.h2spec_cases import ALL, LAST, run_case
from turnout.testing import free_port
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import backend, dump, gateway, route, to

CA = CertificateAuthority()
LEAF = CA.issue("h2spec.test")


@dataclass
class Listeners:
    h2c: int
    tls: int


@pytest.fixture(scope="module")
def listeners(echo_module: EchoFactory, serve_module: ServeFactory) -> Iterator[Listeners]:
    echo = echo_module(pod="echo-h2spec-0")
    plain, tls = free_port(), free_port()
    config = dump(
        gateway(
            "gw",
            listeners=[
                {"name": "h2c", "port": plain, "protocol": "HTTP"},
                {
                    "name": "tls",
                    "port": tls,
                    "protocol": "HTTPS",
                    "tls": {"certificateRefs": [{"kind": "Secret", "name": "h2spec-cert"}]},
                },
            ],
        ),
        LEAF.secret("h2spec-cert"),
        backend("echo", echo.port),
        route("main", [to("echo", "/")]),
    )
    serve_module(config)
    yield Listeners(plain, tls)


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    return ctx


@pytest.mark.parametrize("case", ALL)
@pytest.mark.parametrize("listener", ["h2c", "h2"])
def test_h2spec_case(listeners: Listeners, listener: str, case: str) -> None:
    LAST.clear()
    if listener == "h2c":
        assert run_case(case, listeners.h2c, None), case
    else:
        assert run_case(case, listeners.tls, client_tls()), case
    if os.environ.get("H2SPEC_VERBOSE") and LAST:
        print(f"\n{listener} {case}: {LAST[-1]}")
