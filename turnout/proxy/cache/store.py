"""Stored responses and the per-worker memory tier: an LRU bounded in bytes.

An ``Entry`` is one stored response: status, fields (without framing and the ones the
cache recomputes), body, its ``Freshness``, the ``Vary`` field names and the request's
values for them (the secondary key, RFC 9111 §4.1), and its purge tags. Entries are
immutable once stored; a revalidation stores a new one.

``MemoryCache`` maps a primary key (see ``keys.py``) to its variants, in LRU order
(``OrderedDict.move_to_end`` on every hit). Its size is the sum of bodies and field
bytes plus a fixed overhead per entry; storing beyond ``capacity`` evicts from the
least recently used end. A tag index (tag → keys) makes purge by tag cost the tagged
keys only; purge by prefix walks the keys (operators purge rarely; hits never pay).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Final

from turnout.proxy.cache.rfc import Freshness
from turnout.proxy.protocols.heads import Headers

ENTRY_OVERHEAD: Final = 256  # bytes counted per entry beside its body and fields


class Entry:
    __slots__ = (
        "body",
        "etag",
        "fresh",
        "headers",
        "key",
        "last_modified",
        "size",
        "status",
        "tags",
        "vary",
        "vary_values",
    )

    def __init__(
        self,
        key: bytes,
        status: int,
        headers: Headers,
        body: bytes,
        fresh: Freshness,
        vary: tuple[bytes, ...] = (),
        vary_values: tuple[bytes, ...] = (),
        tags: tuple[bytes, ...] = (),
    ) -> None:
        self.key = key
        self.status = status
        self.headers = headers
        self.body = body
        self.fresh = fresh
        self.vary = vary
        self.vary_values = vary_values
        self.tags = tags
        etag: bytes | None = None
        modified: bytes | None = None
        for name, value in headers:
            if name == b"etag":
                etag = value
            elif name == b"last-modified":
                modified = value
        self.etag = etag
        self.last_modified = modified
        self.size = len(body) + sum(len(n) + len(v) + 4 for n, v in headers) + ENTRY_OVERHEAD

    def matches(self, received: dict[bytes, bytes]) -> bool:
        """Does a request select this variant (its Vary fields' values are the same)?"""
        from turnout.proxy.cache.rfc import normalise_vary_value

        return all(
            normalise_vary_value(received.get(name)) == value
            for name, value in zip(self.vary, self.vary_values, strict=True)
        )

    # -- the Redis tier's wire form: a JSON head line, then the body ----------------------

    def dump(self) -> bytes:
        f = self.fresh
        meta = {
            "k": self.key.decode("latin-1"),
            "s": self.status,
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "f": [
                f.lifetime,
                f.initial_age,
                f.stored_at,
                f.no_cache,
                f.must_revalidate,
                f.swr,
                f.sie,
            ],
            "v": [n.decode("latin-1") for n in self.vary],
            "vv": [v.decode("latin-1") for v in self.vary_values],
            "t": [t.decode("latin-1") for t in self.tags],
        }
        return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def load(cls, data: bytes) -> Entry:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on a malformed record."""
        line, _, body = data.partition(b"\n")
        meta = json.loads(line)
        lifetime, initial, stored, no_cache, must, swr, sie = meta["f"]
        return cls(
            meta["k"].encode("latin-1"),
            int(meta["s"]),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in meta["h"]],
            body,
            Freshness(
                float(lifetime),
                float(initial),
                float(stored),
                bool(no_cache),
                bool(must),
                float(swr),
                float(sie),
            ),
            tuple(n.encode("latin-1") for n in meta["v"]),
            tuple(v.encode("latin-1") for v in meta["vv"]),
            tuple(t.encode("latin-1") for t in meta["t"]),
        )


class MemoryCache:
    """Primary key → variants, least recently used first, at most ``capacity`` bytes."""

    __slots__ = ("_keys", "_tags", "capacity", "evictions", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.evictions = 0
        self._keys: OrderedDict[bytes, list[Entry]] = OrderedDict()
        self._tags: dict[bytes, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: bytes, received: dict[bytes, bytes]) -> Entry | None:
        """The variant of ``key`` the request selects (marks the key recently used)."""
        variants = self._keys.get(key)
        if variants is None:
            return None
        self._keys.move_to_end(key)
        for entry in variants:
            if not entry.vary or entry.matches(received):
                return entry
        return None

    def put(self, entry: Entry) -> None:
        if entry.size > self.capacity:
            return
        key = entry.key
        variants = self._keys.get(key)
        if variants is None:
            variants = self._keys[key] = []
        else:
            self._keys.move_to_end(key)
            # the new response replaces the variant it stands for (same secondary key)
            kept = []
            for old in variants:
                if old.vary == entry.vary and old.vary_values == entry.vary_values:
                    self.size -= old.size
                else:
                    kept.append(old)
            variants[:] = kept
        variants.append(entry)
        self.size += entry.size
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(key)
        while self.size > self.capacity and self._keys:
            _, evicted = self._keys.popitem(last=False)
            self.evictions += 1
            self._forget(evicted)

    def _forget(self, variants: list[Entry]) -> None:
        for entry in variants:
            self.size -= entry.size
            for tag in entry.tags:
                keys = self._tags.get(tag)
                if keys is not None:
                    keys.discard(entry.key)
                    if not keys:
                        del self._tags[tag]

    def discard(self, key: bytes) -> int:
        variants = self._keys.pop(key, None)
        if variants is None:
            return 0
        self._forget(variants)
        return 1

    def purge(
        self,
        keys: tuple[bytes, ...] = (),
        prefixes: tuple[bytes, ...] = (),
        tags: tuple[bytes, ...] = (),
    ) -> int:
        """Drop keys named exactly, keys starting with a prefix, keys tagged; the count."""
        doomed: set[bytes] = set(keys)
        for tag in tags:
            doomed.update(self._tags.get(tag, ()))
        if prefixes:
            doomed.update(k for k in self._keys if k.startswith(prefixes))
        return sum(self.discard(k) for k in doomed)

    def clear(self) -> int:
        n = len(self._keys)
        self._keys.clear()
        self._tags.clear()
        self.size = 0
        return n
