"""This node's Ed25519 keys, on disk under `<data dir>/federation/` (mode 0600, written
atomically): `central.key` on a central node (it signs the anchors it broadcasts), `node.key` on
an edge (it signs every packet; central keeps only the public half)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from federation import packets


def key_dir() -> Path:
    return Path(settings.DATA_DIR) / "federation"


def _path(name: str) -> Path:
    return key_dir() / f"{name}.key"


def load(name: str) -> Ed25519PrivateKey | None:
    path = _path(name)
    if not path.exists():
        return None
    return packets.load_private(path.read_bytes())


def store(name: str, key: Ed25519PrivateKey) -> None:
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(packets.private_bytes(key))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def central_key() -> Ed25519PrivateKey:
    """Central's signing key, created on first use."""
    key = load("central")
    if key is None:
        key = packets.new_key()
        store("central", key)
    return key


def node_key() -> Ed25519PrivateKey | None:
    """The edge's key (None until it joined)."""
    return load("node")
