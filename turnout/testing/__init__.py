"""Public test harness: run real Turnout processes and real upstream servers in tests.

Nothing in the production packages imports this (an import-linter contract checks it).
"""

from turnout.testing.loop import BackgroundLoop
from turnout.testing.process import TurnoutProcess, free_port

__all__ = ["BackgroundLoop", "TurnoutProcess", "free_port"]
