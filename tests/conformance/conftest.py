"""Session fixtures of the Gateway API conformance runner and its summary table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.checks import Timing
from tests.conformance.harness import (
    ConformanceGateway,
    EchoFleet,
    RunnerError,
    Suite,
    TlsMaterial,
    check_bindable,
    load_suite,
)
from tests.conformance.report import RESULTS, markdown
from turnout.testing import BackgroundLoop


@dataclass
class Conformance:
    suite: Suite
    fleet: EchoFleet
    gateway: ConformanceGateway
    timing: Timing


@pytest.fixture(scope="session")
def conformance(
    bg: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Conformance]:
    """Echo backends, the session's TLS material, and one Turnout process for the whole
    session."""
    suite = load_suite()
    if suite is None:
        pytest.skip("Gateway API conformance data not found (set TURNOUT_CONFORMANCE_DIR)")
    try:
        check_bindable(suite.gateway_bindings(suite.all_docs()))
        tls = TlsMaterial.for_suite(suite)
    except RunnerError as exc:
        pytest.fail(str(exc), pytrace=False)
    fleet = EchoFleet.start(bg, suite.services())
    gateway = ConformanceGateway(suite, fleet, tmp_path_factory.mktemp("conformance"), tls)
    timing = Timing(window=float(os.environ.get("TURNOUT_CONFORMANCE_WINDOW", "5")))
    try:
        gateway.start()
        yield Conformance(suite, fleet, gateway, timing)
    finally:
        gateway.stop()
        fleet.close(bg)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("Gateway API conformance")
    terminalreporter.write_line(markdown())
    target = os.environ.get("TURNOUT_CONFORMANCE_REPORT")
    if target:
        Path(target).write_text(markdown() + "\n")
        terminalreporter.write_line(f"(written to {target})")
