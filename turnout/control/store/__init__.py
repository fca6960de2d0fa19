"""The control plane's persistent store: objects, revisions, audit, tokens, reconciler progress.

``open_store(store_url(...))`` gives a ``Store`` (SQLite or PostgreSQL, schema migrated);
``RevisionFeed`` reports revisions committed by any replica; ``LeaderLock`` elects one
replica to run the reconcilers. See ``engine``, ``repository``, ``feed`` and ``leader``.
"""

from turnout.control.store.engine import display_url, open_store, store_url
from turnout.control.store.errors import Conflict, Invalid, NotFound, StoreError, StoreUnavailable
from turnout.control.store.feed import RevisionFeed
from turnout.control.store.leader import LeaderLock
from turnout.control.store.repository import (
    AuditEntry,
    Change,
    ChangeResult,
    CommitResult,
    ObjectKey,
    Progress,
    RevisionInfo,
    Store,
    StoredObject,
    TokenRecord,
    changes_to_reach,
)
from turnout.control.store.sealing import Keyring, SecretsKeyError, load_keyring

__all__ = [
    "AuditEntry",
    "Change",
    "ChangeResult",
    "CommitResult",
    "Conflict",
    "Invalid",
    "Keyring",
    "LeaderLock",
    "NotFound",
    "ObjectKey",
    "Progress",
    "RevisionFeed",
    "RevisionInfo",
    "SecretsKeyError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredObject",
    "TokenRecord",
    "changes_to_reach",
    "display_url",
    "load_keyring",
    "open_store",
    "store_url",
]
