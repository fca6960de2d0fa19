"""The operator's log: Turnout's own lines at the chosen level, libraries at WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from turnout.core.logsetup import configure_logging


@pytest.fixture(autouse=True)
def _restore_levels() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("turnout")
    saved = root.level, ours.level
    yield
    root.setLevel(saved[0])
    ours.setLevel(saved[1])


@pytest.mark.parametrize(
    "library", ["watchfiles.main", "uvicorn.error", "httpx", "asyncio", "sqlalchemy", "alembic"]
)
def test_libraries_report_only_problems_at_info(library: str) -> None:
    configure_logging("info")
    assert not logging.getLogger(library).isEnabledFor(logging.INFO)
    assert logging.getLogger(library).isEnabledFor(logging.WARNING)
    assert logging.getLogger("turnout.supervisor").isEnabledFor(logging.INFO)


def test_the_chosen_level_applies_to_turnout_only() -> None:
    configure_logging("debug")
    assert logging.getLogger("turnout.supervisor").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("watchfiles.main").isEnabledFor(logging.INFO)
    configure_logging("error")
    assert not logging.getLogger("turnout.supervisor").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("httpx").isEnabledFor(logging.WARNING)
