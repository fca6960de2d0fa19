"""The operator's log (stderr) for the supervisor and the workers: one line format, and
only Turnout's own lines below WARNING.

The root logger sits at WARNING, so every library (watchfiles, uvicorn, httpx, asyncio,
SQLAlchemy, Alembic, ...) reports only its problems, whatever it logs at INFO; the
``turnout`` logger tree gets the level the operator chose.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s turnout[%(process)d] %(levelname)s %(message)s"


def configure_logging(level: str) -> None:
    chosen = logging.getLevelName(level.upper())
    if not isinstance(chosen, int):
        chosen = logging.INFO
    logging.basicConfig(format=FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(max(chosen, logging.WARNING))
    logging.getLogger("turnout").setLevel(chosen)
