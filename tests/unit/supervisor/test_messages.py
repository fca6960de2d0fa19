"""Typed supervisor ↔ worker messages: they pickle, and both ends dispatch on the class."""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
from dataclasses import FrozenInstanceError, fields, is_dataclass
from typing import Any

import pytest

from turnout.config.configset import ConfigSet
from turnout.proxy.messages import (
    TO_SUPERVISOR,
    TO_WORKER,
    Applied,
    ApplyConfig,
    Drain,
    Drained,
    HealthVerdicts,
    InitWorker,
    Message,
    Ping,
    Pong,
    StatsReport,
    ToSupervisor,
    WorkerReady,
)
from turnout.proxy.runtime import ProxySettings
from turnout.supervisor.channel import ControlChannel
from turnout.supervisor.child import WorkerMain
from turnout.supervisor.workers import WorkerProcess

SAMPLES: list[Message] = [
    InitWorker(ProxySettings(drain_timeout=3.0), "-", ("status",), 2, "/tmp/limits", ""),
    ApplyConfig(7, ConfigSet(), ("0.0.0.0:80", "[::]:443")),
    Ping(3),
    HealthVerdicts({"10.0.0.1:80": False}),
    Drain(2.5),
    WorkerReady(1234),
    Applied(7, None),
    Applied(8, "ValueError: no"),
    Pong(3),
    StatsReport({"revision": 7, "routes": {}}),
    Drained(),
]


def test_every_message_kind_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(TO_WORKER) | set(TO_SUPERVISOR)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_pickle_round_trip(message: Message) -> None:
    back = pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is type(message)
    assert _state(back) == _state(message)


def _state(value: object) -> object:
    """Comparable contents, also of objects without ``__eq__`` (``Limits``, ``ConfigSet``'s
    resources are compared by identity)."""
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value), tuple(_state(getattr(value, f.name)) for f in fields(value)))
    # A class compiled with mypyc has no __slots__ but lists its attributes in __mypyc_attrs__.
    slots = getattr(type(value), "__slots__", None) or getattr(type(value), "__mypyc_attrs__", None)
    if slots and not isinstance(value, (str, bytes, tuple)):
        return (type(value), tuple(_state(getattr(value, s)) for s in slots))
    if isinstance(value, list | tuple):
        return tuple(_state(v) for v in value)
    return value


def test_messages_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        Ping(1).seq = 2  # type: ignore[misc]


# -- the worker's end -------------------------------------------------------------------


async def _worker_end(
    exchange: list[object],
) -> tuple[WorkerMain, list[object]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[object] = []
    main = WorkerMain(theirs)
    peer = ControlChannel(ours, lambda m, fds: received.append(m), lambda: None)
    for message in exchange:
        peer.send(message)  # type: ignore[arg-type]
    for _ in range(50):
        await asyncio.sleep(0)
        if len(received) >= sum(isinstance(m, Ping) for m in exchange):
            break
    peer.close()
    main.channel.close()
    return main, received


def test_worker_answers_pings_and_ignores_unknown_messages_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "turnout.worker")

    async def run() -> tuple[WorkerMain, list[object]]:
        return await _worker_end(
            [("config", 1, None, []), Ping(1), ("config", 2, None, []), object(), Ping(2)]
        )

    main, received = asyncio.run(run())
    assert received == [Pong(1), Pong(2)]
    assert main.worker is None  # nothing was initialised by the unknown messages
    warnings = [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]
    assert len(warnings) == 2  # one per unknown kind (tuple, object), not per message
    assert "('config', 1, None, [])" in warnings[0]


def test_worker_takes_health_verdicts_before_init_without_crashing() -> None:
    async def run() -> tuple[WorkerMain, list[object]]:
        return await _worker_end([HealthVerdicts({"a:1": True}), Ping(5)])

    main, received = asyncio.run(run())
    assert received == [Pong(5)]
    assert main.worker is None


# -- the supervisor's end ---------------------------------------------------------------


def _process() -> tuple[WorkerProcess, list[ToSupervisor]]:
    seen: list[ToSupervisor] = []
    return WorkerProcess(0, lambda _w, m: seen.append(m)), seen


def test_supervisor_side_dispatch_updates_the_worker_record() -> None:
    async def run() -> tuple[WorkerProcess, list[ToSupervisor]]:
        worker, seen = _process()
        worker._received(WorkerReady(42), [])
        worker._received(Applied(3, None), [])
        worker._received(StatsReport({"revision": 3}), [])
        worker._received(Pong(1), [])
        worker._received(Applied(4, "RuntimeError: boom"), [])
        worker._received(Drained(), [])
        return worker, seen

    worker, seen = asyncio.run(run())
    assert worker.ready and worker.drained
    assert worker.revision == 3
    assert worker.apply_error == "RuntimeError: boom"
    assert worker.stats == {"revision": 3}
    assert worker.last_pong > 0
    assert [type(m) for m in seen] == [
        WorkerReady,
        Applied,
        StatsReport,
        Pong,
        Applied,
        Drained,
    ]


def test_supervisor_side_ignores_unknown_messages_and_closes_their_descriptors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "turnout.supervisor")
    worker, seen = _process()
    a, b = socket.socketpair()
    fd = a.detach()
    unknown: Any = ("stats", {})
    worker._received(unknown, [fd])
    worker._received(("stats", {}), [])
    assert seen == []
    assert worker.stats == {}
    with pytest.raises(OSError):
        socket.socket(fileno=fd).getsockname()  # closed by the receiver
    b.close()
    assert sum("unexpected" in r.getMessage() for r in caplog.records) == 1
