"""Every reconciler the control plane runs: add yours here (one entry each).

``RECONCILERS`` holds factories, so that each ``ControlPlane`` gets fresh instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from turnout.control.reconcile.base import Reconciler
from turnout.control.reconcile.sandbox_ttl import SandboxTTLReconciler
from turnout.control.releases.reconciler import ReleaseReconciler
from turnout.control.remediation.engine import RemediationReconciler
from turnout.control.remediation.expiry import MitigationExpiryReconciler

RECONCILERS: Final[tuple[Callable[[], Reconciler], ...]] = (
    SandboxTTLReconciler,
    RemediationReconciler,
    MitigationExpiryReconciler,
    ReleaseReconciler,
)


def default_reconcilers() -> list[Reconciler]:
    return [make() for make in RECONCILERS]
