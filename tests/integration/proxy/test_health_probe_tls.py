"""Active health probes over TLS (the Backend's ``tls``), against real TLS servers on
127.0.0.1: verification, SNI, mutual TLS, ALPN, and the supervisor's targets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from turnout.config.tls import UpstreamTLS, check_pair
from turnout.core.netaddr import Address
from turnout.proxy.upstream.probe import ProbeTarget, check
from turnout.testing.certs import CertificateAuthority


class TLSUpstream:
    """Answers one HTTP/1.1 request per connection with 200; records SNI and ALPN."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sni: list[str | None] = []
        self.alpn: list[str | None] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        self.alpn.append(obj.selected_alpn_protocol() if obj else None)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> TLSUpstream:
        def sni(obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            self.sni.append(name)

        self.ctx.sni_callback = sni  # type: ignore[assignment]
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def server_ctx(ca: CertificateAuthority, tmp: Path, client_ca: CertificateAuthority | None):  # type: ignore[no-untyped-def]
    leaf = ca.issue("backend.test", "127.0.0.1")
    cert, key = leaf.write(tmp, "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca.cert_pem.decode())
    return ctx


def tls_target(port: int, tls: UpstreamTLS, name: str | None, kind: str = "HTTP") -> ProbeTarget:
    address = Address("127.0.0.1", port)
    return ProbeTarget(
        key=str(address),
        address=address,
        kind=kind,
        timeout=3.0,
        tls=tls,
        server_name=name,  # type: ignore[arg-type]
    )


def test_http_probe_over_tls_verifies_and_sends_sni(tmp_path: Path) -> None:
    ca, other = CertificateAuthority(), CertificateAuthority("Other CA")

    async def main() -> None:
        up = await TLSUpstream(server_ctx(ca, tmp_path, None)).start()
        try:
            good = UpstreamTLS(ca.cert_pem, None, None, True)
            assert await check(tls_target(up.port, good, "backend.test")) == ""
            assert up.sni[-1] == "backend.test" and up.alpn[-1] == "http/1.1"
            # an IP endpoint without sni: the address is the verified name
            assert await check(tls_target(up.port, good, "127.0.0.1")) == ""
            # a name the certificate does not carry, or another CA: the probe fails
            assert "TLS" in await check(tls_target(up.port, good, "elsewhere.test"))
            wrong = UpstreamTLS(other.cert_pem, None, None, True)
            assert "TLS" in await check(tls_target(up.port, wrong, "backend.test"))
            # plain text against a TLS port fails (the old behaviour on TLS backends)
            address = Address("127.0.0.1", up.port)
            assert await check(ProbeTarget(key="k", address=address, timeout=3.0)) != ""
        finally:
            await up.stop()

    asyncio.run(main())


def test_http_probe_with_mutual_tls(tmp_path: Path) -> None:
    ca, clients = CertificateAuthority(), CertificateAuthority("Client CA")
    leaf = clients.issue("gateway.test")
    client = check_pair(leaf.cert_pem, leaf.key_pem, "test")

    async def main() -> None:
        up = await TLSUpstream(server_ctx(ca, tmp_path, clients)).start()
        try:
            mtls = UpstreamTLS(ca.cert_pem, client, None, True)
            assert await check(tls_target(up.port, mtls, "backend.test")) == ""
            without = UpstreamTLS(ca.cert_pem, None, None, True)
            assert await check(tls_target(up.port, without, "backend.test")) != ""
        finally:
            await up.stop()

    asyncio.run(main())


def test_grpc_probe_offers_h2(tmp_path: Path) -> None:
    """The gRPC probe negotiates ALPN h2 (this upstream then answers HTTP/1.1, so the
    probe itself fails: what matters is what was offered)."""
    ca = CertificateAuthority()

    async def main() -> None:
        up = await TLSUpstream(server_ctx(ca, tmp_path, None)).start()
        try:
            tls = UpstreamTLS(ca.cert_pem, None, None, True)
            await check(tls_target(up.port, tls, "backend.test", kind="GRPC"))
            assert up.alpn[-1] == "h2"
        finally:
            await up.stop()

    asyncio.run(main())
