"""Start-up with Redis is quiet: no library warning on stderr (a synchronous redis-py
``Retry`` handed to the asyncio client once printed a ``UserWarning`` per process)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import EchoFactory
from tests.integration.ratelimit.conftest import RedisServer
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to

OUR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ turnout\[\d+\] INFO ")


def _config(tmp_path: Path, echo: EchoFactory) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    text = dump(gateway("gw", free_port()), backend("echo", echo().port), route("r", [to("echo")]))
    (conf / "gateway.yaml").write_text(text)
    return conf


def test_serve_with_redis_prints_only_its_own_log_lines(
    echo: EchoFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    conf = _config(tmp_path, echo)
    with TurnoutProcess(conf, workers=2, extra_args=["--redis", redis_server.url]) as gw:
        pass
    lines = gw.stderr().splitlines()
    assert lines
    assert [line for line in lines if not OUR_LINE.match(line)] == []


def test_serve_with_redis_at_warning_level_prints_nothing(
    echo: EchoFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    conf = _config(tmp_path, echo)
    gw = TurnoutProcess(
        conf,
        workers=2,
        extra_args=["--redis", redis_server.url],
        env={"TURNOUT_LOG_LEVEL": "warning"},
    ).start()
    try:
        assert gw.stderr() == ""
    finally:
        gw.stop()
    assert gw.stderr() == ""
