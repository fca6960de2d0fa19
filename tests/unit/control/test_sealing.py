"""Envelope encryption of Secret content (``control/store/sealing.py``), without a store."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from turnout.control.store.sealing import (
    KEY_FILE,
    SEALED,
    Keyring,
    Sealer,
    SecretsKeyError,
    key_id,
    load_keyring,
    new_key_text,
)

SPEC = {"type": "Opaque", "stringData": {"password": "hunter2-plaintext"}}


def ring(*texts: str) -> Keyring:
    return Keyring.parse("\n".join(texts), "test keys")


def test_seal_hides_the_content_and_opens_back() -> None:
    key = new_key_text()
    sealer = Sealer(ring(key))
    sealed = sealer.seal_spec("Secret", "default", "db", SPEC)
    assert "hunter2" not in repr(sealed)
    assert sealed[SEALED]["kid"] == key_id(base64.b64decode(key))
    assert sealer.open_spec("Secret", "default", "db", sealed) == SPEC
    # two seals of the same content differ (fresh data key and nonces)
    assert sealer.seal_spec("Secret", "default", "db", SPEC) != sealed


def test_other_kinds_are_not_sealed() -> None:
    sealer = Sealer(ring(new_key_text()))
    assert sealer.seal_spec("HTTPRoute", "default", "r", {"a": 1}) == {"a": 1}


def test_a_sealed_value_does_not_open_on_another_object() -> None:
    sealer = Sealer(ring(new_key_text()))
    sealed = sealer.seal_spec("Secret", "default", "db", SPEC)
    with pytest.raises(SecretsKeyError, match="copied from another object"):
        sealer.open_spec("Secret", "default", "other", sealed)


def test_without_the_key_the_error_names_the_flag_and_env() -> None:
    sealed = Sealer(ring(new_key_text())).seal_spec("Secret", "default", "db", SPEC)
    with pytest.raises(SecretsKeyError, match=r"--secrets-key-file.*TURNOUT_SECRETS_KEY"):
        Sealer(None).open_spec("Secret", "default", "db", sealed)
    with pytest.raises(SecretsKeyError, match="not among the keys from test keys"):
        Sealer(ring(new_key_text())).open_spec("Secret", "default", "db", sealed)


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old, new = new_key_text(), new_key_text()
    sealed_old = Sealer(ring(old)).seal_spec("Secret", "default", "db", SPEC)
    both = Sealer(ring(new, old))
    assert both.open_spec("Secret", "default", "db", sealed_old) == SPEC
    assert both.needs_reseal(sealed_old)
    resealed = both.seal_spec("Secret", "default", "db", SPEC)
    assert not both.needs_reseal(resealed)
    assert Sealer(ring(new)).open_spec("Secret", "default", "db", resealed) == SPEC


def test_manifests_keep_their_envelope_and_hide_the_content() -> None:
    sealer = Sealer(ring(new_key_text()))
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, **SPEC}
    sealed = sealer.seal_manifest(manifest)
    assert sealed["metadata"] == {"name": "db"} and "stringData" not in sealed
    assert "hunter2" not in repr(sealed)
    assert sealer.open_manifest(sealed) == manifest


def test_bad_key_text_is_located() -> None:
    with pytest.raises(SecretsKeyError, match="test keys, line 2: not a key"):
        ring("# comment", "c2hvcnQ=")
    with pytest.raises(SecretsKeyError, match="holds no key"):
        ring("# only a comment")


def test_load_keyring_generates_a_private_key_file_once(tmp_path: Path) -> None:
    first = load_keyring("", None, tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring("", None, tmp_path).primary == first.primary
    from_env = load_keyring("", new_key_text(), tmp_path)
    assert from_env.source == "TURNOUT_SECRETS_KEY" and from_env.primary != first.primary
    missing = tmp_path / "nope.key"
    with pytest.raises(SecretsKeyError, match="cannot read the secrets key file"):
        load_keyring(str(missing), None, tmp_path)
    assert os.path.exists(path)
