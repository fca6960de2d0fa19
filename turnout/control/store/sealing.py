"""Secrets at rest: envelope encryption of ``Secret`` content in the store.

What is sealed: the content of every ``Secret`` (``type``, ``data``, ``stringData``), in
the ``objects`` row and in each revision's snapshot. Everything else stays plaintext
JSON (routes, policies, metadata, and the Secret's name, which the rest refers to).

How (the Kubernetes KMS v2 shape): each sealed value gets a fresh 256-bit data key (DEK);
the content, as JSON, is encrypted with AES-256-GCM under the DEK, and the DEK is wrapped
with AES-256-GCM under a key-encryption key (KEK) from the ``Keyring``. The stored form is

    {"$sealed": {"v": 1, "kid": KEK id, "dek": b64(nonce|wrapped DEK), "ct": b64(nonce|ct)}}

The object's identity ("Secret/namespace/name") is the AES-GCM associated data of both,
so a sealed value copied onto another Secret's row does not open. The KEK id (the first
16 hex digits of the key's SHA-256) travels with the value: a keyring holds several KEKs,
the first one seals and all of them open, so rotation is "add the new key first, start,
everything is re-wrapped (``Store.reseal``), drop the old key". A value whose KEK is not
in the keyring, or any sealed value when there is no keyring, raises ``SecretsKeyError``
naming the flag and variable to set.

Key material: one key per line, 32 bytes in base64; blank lines and ``#`` comments are
ignored. ``load_keyring`` reads ``--secrets-key-file``, else ``TURNOUT_SECRETS_KEY`` (the
same text, keys separated by commas or newlines), else ``<data dir>/secrets.key``, which
it creates (mode 0600) on first start, like the bootstrap admin token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnout.control.store.errors import StoreError

SEALED: Final = "$sealed"
VERSION: Final = 1
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_FILE: Final = "secrets.key"
KEY_ENV: Final = "TURNOUT_SECRETS_KEY"
KEY_FILE_FLAG: Final = "--secrets-key-file"
SEALED_KINDS: Final = frozenset({"Secret"})
# A manifest's envelope fields; everything else of a Secret manifest is its content.
_ENVELOPE: Final = ("apiVersion", "kind", "metadata", "status")
HOW_TO_SET: Final = (
    f"pass {KEY_FILE_FLAG} FILE or set {KEY_ENV} (one base64 32-byte key per line; "
    "the key that sealed them must be among them)"
)


class SecretsKeyError(StoreError):
    """Sealed Secrets cannot be opened: no keyring, or not the key that sealed them."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def new_key_text() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n"


@dataclass(frozen=True, slots=True)
class Keyring:
    """KEKs by id; ``primary`` (the first one listed) seals, every one opens."""

    keys: dict[str, bytes]
    primary: str
    source: str  # where the keys came from, for messages (never the keys)

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        keys: dict[str, bytes] = {}
        lines = text.replace(",", "\n").splitlines()
        for number, raw in enumerate(lines, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                key = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != KEY_BYTES:
                raise SecretsKeyError(
                    f"{source}, line {number}: not a key (expected {KEY_BYTES} bytes in "
                    "base64; make one with `head -c 32 /dev/urandom | base64`)"
                )
            keys.setdefault(key_id(key), key)
        if not keys:
            raise SecretsKeyError(f"{source} holds no key")
        return cls(keys=keys, primary=next(iter(keys)), source=source)


def load_keyring(key_file: str, env_text: str | None, data_dir: Path) -> Keyring:
    """The keyring from ``key_file``, else ``env_text``, else the data dir's key file
    (created on first use). ``SecretsKeyError`` when the named one is unreadable."""
    if key_file:
        path = Path(key_file).expanduser()
        try:
            return Keyring.parse(path.read_text(), str(path))
        except OSError as exc:
            raise SecretsKeyError(
                f"cannot read the secrets key file {path} ({KEY_FILE_FLAG}): {exc.strerror}"
            ) from None
    if env_text:
        return Keyring.parse(env_text, KEY_ENV)
    path = data_dir.expanduser() / KEY_FILE
    if not path.exists():
        _write_new_key(path)
    return Keyring.parse(path.read_text(), str(path))


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return
    try:
        os.write(fd, new_key_text().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class Sealer:
    """Seals and opens Secret content for the store; ``keyring=None`` writes plaintext
    (a store opened without keys) and refuses to open anything sealed."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring

    # -- one value ------------------------------------------------------------------------

    def seal(self, identity: str, content: Any) -> Any:
        ring = self.keyring
        if ring is None:
            return content
        dek = AESGCM.generate_key(bit_length=256)
        aad = identity.encode()
        nonce, dek_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        plain = json.dumps(content, separators=(",", ":"), sort_keys=True).encode()
        ct = nonce + AESGCM(dek).encrypt(nonce, plain, aad)
        wrapped = dek_nonce + AESGCM(ring.keys[ring.primary]).encrypt(dek_nonce, dek, aad)
        return {
            SEALED: {
                "v": VERSION,
                "kid": ring.primary,
                "dek": base64.b64encode(wrapped).decode(),
                "ct": base64.b64encode(ct).decode(),
            }
        }

    def open(self, identity: str, stored: Any) -> Any:
        envelope = sealed_envelope(stored)
        if envelope is None:
            return stored
        kid = str(envelope.get("kid"))
        ring = self.keyring
        if ring is None:
            raise SecretsKeyError(
                f"the store holds encrypted Secrets ({identity}, key id {kid}) and no "
                f"secrets key was given: {HOW_TO_SET}"
            )
        kek = ring.keys.get(kid)
        if kek is None:
            raise SecretsKeyError(
                f"{identity} is encrypted with key id {kid}, which is not among the keys "
                f"from {ring.source} ({', '.join(ring.keys)}): {HOW_TO_SET}"
            )
        aad = identity.encode()
        try:
            wrapped = base64.b64decode(envelope["dek"])
            ct = base64.b64decode(envelope["ct"])
            dek = AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
            plain = AESGCM(dek).decrypt(ct[:NONCE_BYTES], ct[NONCE_BYTES:], aad)
        except (InvalidTag, KeyError, ValueError, binascii.Error):
            raise SecretsKeyError(
                f"{identity}: the encrypted content does not open with key id {kid} "
                "(damaged, or copied from another object)"
            ) from None
        return json.loads(plain)

    def needs_reseal(self, stored: Any) -> bool:
        """Plaintext under a keyring, or sealed with a key other than the primary."""
        if self.keyring is None:
            return False
        envelope = sealed_envelope(stored)
        return envelope is None or envelope.get("kid") != self.keyring.primary

    # -- object rows and manifests ---------------------------------------------------------

    def seal_spec(self, kind: str, namespace: str, name: str, spec: Any) -> Any:
        if kind not in SEALED_KINDS or spec is None:
            return spec
        return self.seal(identity(kind, namespace, name), spec)

    def open_spec(self, kind: str, namespace: str, name: str, spec: Any) -> Any:
        if kind not in SEALED_KINDS:
            return spec
        return self.open(identity(kind, namespace, name), spec)

    def seal_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        ident = manifest_identity(manifest)
        if ident is None:
            return manifest
        content = {k: v for k, v in manifest.items() if k not in _ENVELOPE}
        out = {k: v for k, v in manifest.items() if k in _ENVELOPE}
        out.update(self.seal(ident, content) if self.keyring is not None else content)
        return out

    def open_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        ident = manifest_identity(manifest)
        if ident is None or SEALED not in manifest:
            return manifest
        out = {k: v for k, v in manifest.items() if k != SEALED}
        out.update(self.open(ident, {SEALED: manifest[SEALED]}))
        return out

    def manifest_needs_reseal(self, manifest: dict[str, Any]) -> bool:
        if manifest_identity(manifest) is None:
            return False
        stored = {SEALED: manifest[SEALED]} if SEALED in manifest else manifest
        return self.needs_reseal(stored)


def identity(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def manifest_identity(manifest: dict[str, Any]) -> str | None:
    kind = manifest.get("kind")
    if kind not in SEALED_KINDS:
        return None
    meta = manifest.get("metadata") or {}
    return identity(str(kind), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def sealed_envelope(stored: Any) -> dict[str, Any] | None:
    if isinstance(stored, dict) and isinstance(stored.get(SEALED), dict):
        return stored[SEALED]  # type: ignore[no-any-return]
    return None
