"""API keys: stored as salted scrypt hashes, checked in constant time.

A stored hash reads ``scrypt$<salt hex>$<hash hex>``; a key file holds one per line (``#``
comments allowed).  Clients send ``Authorization: Bearer <key>``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..errors import Valle2Error

SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class AuthError(Valle2Error):
    """A request for a protected operation without a valid API key."""


def _scrypt(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, **SCRYPT)


def hash_key(key: str) -> str:
    """The stored form of API key ``key``: ``scrypt$salt$hash`` with a fresh 16-byte salt."""
    if not key:
        raise ValueError("an API key must not be empty")
    salt = os.urandom(16)
    return f"scrypt${salt.hex()}${_scrypt(key, salt).hex()}"


def verify_key(key: str, stored: tuple[str, ...] | list[str]) -> bool:
    """Whether ``key`` matches one of the ``stored`` hashes (each compared in constant time)."""
    ok = False
    for line in stored:
        try:
            scheme, salt, digest = line.split("$")
            want = bytes.fromhex(digest)
            salt_bytes = bytes.fromhex(salt)
        except ValueError:
            continue
        if scheme == "scrypt" and hmac.compare_digest(_scrypt(key, salt_bytes), want):
            ok = True
    return ok


def read_key_file(path) -> tuple[str, ...]:
    """The hashes stored in ``path``, one per line."""
    lines = Path(path).read_text().splitlines()
    return tuple(s for s in (line.strip() for line in lines) if s and not s.startswith("#"))


def create_key_file(path) -> str:
    """Create ``path`` (mode 0600) holding the hash of a new random key; returns the key, which is
    shown once and stored nowhere in clear."""
    key = "v2k_" + secrets.token_urlsafe(24)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# valle2 API key hashes (scrypt), one per line\n" + hash_key(key) + "\n")
    return key
