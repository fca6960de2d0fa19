"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from turnout.samples.echo import EchoIdentity, EchoState, start_echo
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    """A background asyncio loop hosting upstream servers for the whole session."""
    loop = BackgroundLoop()
    yield loop
    loop.close()


EchoFactory = Callable[..., EchoState]


@pytest.fixture
def echo(bg: BackgroundLoop) -> Iterator[EchoFactory]:
    """``echo(pod="orders-local-0", namespace="default") -> EchoState`` (``.port``)."""
    servers = []

    def start(pod: str = "echo-local-0", namespace: str = "default") -> EchoState:
        server, state = bg.run(start_echo(identity=EchoIdentity(namespace, pod, pod)))
        servers.append(server)
        return state

    yield start
    for server in servers:
        bg.call(server.close)


ServeFactory = Callable[..., TurnoutProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """``serve(yaml_text, workers=1, args=[...]) -> TurnoutProcess`` (started, ready)."""
    procs: list[TurnoutProcess] = []

    def start(
        config: str, workers: int = 1, args: list[str] | None = None, **kw: object
    ) -> TurnoutProcess:
        conf_dir = tmp_path / f"conf{len(procs)}"
        conf_dir.mkdir()
        (conf_dir / "gateway.yaml").write_text(config)
        proc = TurnoutProcess(conf_dir, workers=workers, extra_args=args, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def port() -> int:
    """A free loopback port for a Gateway listener."""
    return free_port()


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeFactory]:
    """Like ``serve`` but one process for a whole module (start-up costs ~2 s)."""
    procs: list[TurnoutProcess] = []

    def start(
        config: str, workers: int = 1, args: list[str] | None = None, **kw: object
    ) -> TurnoutProcess:
        conf_dir = tmp_path_factory.mktemp("conf")
        (conf_dir / "gateway.yaml").write_text(config)
        proc = TurnoutProcess(conf_dir, workers=workers, extra_args=args, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def echo_module(bg: BackgroundLoop) -> Iterator[EchoFactory]:
    servers = []

    def start(pod: str = "echo-local-0", namespace: str = "default") -> EchoState:
        server, state = bg.run(start_echo(identity=EchoIdentity(namespace, pod, pod)))
        servers.append(server)
        return state

    yield start
    for server in servers:
        bg.call(server.close)
