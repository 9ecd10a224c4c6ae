"""API key hashing: keys are stored as salted scrypt hashes, checked in constant time.

A stored hash reads ``scrypt$<salt hex>$<hash hex>``.  The key store (:mod:`valle2.server.keys`)
holds them; an older key file (read by :func:`read_key_file`, imported by ``valle2 serve``)
holds one per line (``#`` comments allowed).  Clients send ``Authorization: Bearer <key>``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


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
