"""Bundled sample services and the embedded default configuration.

``turnout serve`` with no ``-f`` starts three echo services on free loopback ports and
serves ``gateway.yaml`` (with those ports filled in) on 127.0.0.1:8080, so a newcomer's
first ``curl`` answers at once.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from string import Template

from turnout.samples.echo import EchoIdentity, start_echo

SAMPLE_SERVICES = ("orders", "payments-v1", "payments-v2")


async def start_samples(gateway_port: int = 8080) -> tuple[list[asyncio.Server], str]:
    servers: list[asyncio.Server] = []
    ports: dict[str, int] = {}
    for name in SAMPLE_SERVICES:
        server, state = await start_echo(identity=EchoIdentity("default", f"{name}-local-0", name))
        servers.append(server)
        ports[name.replace("-", "_") + "_port"] = state.port
    template = resources.files(__package__).joinpath("gateway.yaml").read_text(encoding="utf-8")
    text = Template(template).substitute(ports, gateway_port=gateway_port)
    return servers, text


def sample_curls(gateway_port: int = 8080, admin: str = "127.0.0.1:9901") -> list[str]:
    base = f"http://127.0.0.1:{gateway_port}"
    return [
        f"curl -i {base}/orders/42",
        f"curl -i {base}/payments          # 80% payments-v1, 20% payments-v2",
        f"curl -i -H 'x-canary: always' {base}/payments   # header match: payments-v2",
        f"curl -i {base}/shop              # 301 redirect to /orders",
        f"curl -s http://{admin}/metrics | grep turnout_requests",
    ]
