"""Reconcilers: level-triggered loops that make the world match the stored objects.

``base`` is the interface (``Reconciler``, ``Result``, ``Condition``, ``Context``),
``manager`` runs them on the leader on an injected clock with persisted progress,
``registry`` lists the ones the control plane runs, and each reconciler has its own
module (``sandbox_ttl``). See "Where do I add a reconciler" in docs/architecture.md.
"""

from turnout.control.reconcile.base import Condition, Context, Reconciler, Result
from turnout.control.reconcile.manager import ReconcileManager

__all__ = ["Condition", "Context", "ReconcileManager", "Reconciler", "Result"]
