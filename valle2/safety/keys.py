"""Operator signing keys (Ed25519, PEM files, mode 0600) and the deployment's watermark key."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConsentError


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others), refusing to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_private(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ConsentError(f"key file not found: '{path}'; check that --home / $VALLE2_HOME names the deployment, "
                           "or restore the key from a backup")
    if path.stat().st_mode & 0o077:
        raise ConsentError(f"key file '{path}' is readable by other users; run: chmod 600 '{path}'")
    return path.read_bytes()


def public_key_path(path) -> Path:
    """Where the public half of the private key at ``path`` is kept: ``<path>.pub``."""
    return Path(str(path) + ".pub")


def generate_operator_key(path) -> Ed25519PrivateKey:
    """Create a new Ed25519 operator key: private PEM at ``path`` (0600), public PEM at ``path.pub``."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    public_key_path(path).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def load_operator_key(path) -> Ed25519PrivateKey:
    """Load the operator's private key; refuses a file other users can read."""
    try:
        key = serialization.load_pem_private_key(_read_private(Path(path)), password=None)
    except ValueError as e:
        raise ConsentError(f"'{path}' is not a PEM private key: {e}; restore the key file from a backup") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConsentError(f"'{path}' is not an Ed25519 key: give the operator key valle2 made (or restore it "
                           "from a backup)")
    return key


def load_public_key(path) -> Ed25519PublicKey:
    """Load a trusted Ed25519 public key (PEM)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ConsentError(f"cannot load public key '{path}': {e}; give the PEM file of an Ed25519 public key "
                           "(an operator key's .pub)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConsentError(f"'{path}' is not an Ed25519 public key: give an operator key's .pub file")
    return key


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Short stable id of a key: the first 16 hex digits of SHA-256 of the raw public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical_json(obj) -> bytes:
    """The bytes that are signed: UTF-8 JSON, keys sorted, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(key: Ed25519PrivateKey, obj) -> str:
    """Base64 Ed25519 signature of ``canonical_json(obj)``."""
    return base64.b64encode(key.sign(canonical_json(obj))).decode()


def verify(public: Ed25519PublicKey, obj, signature: str) -> bool:
    """Whether ``signature`` (base64) is ``public``'s signature of ``canonical_json(obj)``."""
    try:
        public.verify(base64.b64decode(signature, validate=True), canonical_json(obj))
        return True
    except (InvalidSignature, ValueError):
        return False


def generate_watermark_key(path) -> bytes:
    """Create the deployment's secret watermark key (32 random bytes, hex, file mode 0600)."""
    key = secrets.token_bytes(32)
    _write_private(Path(path), key.hex().encode())
    return key


def load_watermark_key(path) -> bytes:
    """Load the deployment's watermark key; refuses a file other users can read."""
    try:
        key = bytes.fromhex(_read_private(Path(path)).decode().strip())
    except ValueError:
        raise ConsentError(f"'{path}' does not hold a hex watermark key: restore it from a backup") from None
    if len(key) < 16:
        raise ConsentError(f"watermark key in '{path}' is shorter than 16 bytes: restore it from a backup")
    return key
