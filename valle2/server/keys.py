"""The server's API keys and which voices each may use: ``<home>/api_keys.db`` (SQLite, mode 0600).

A key reads ``v2k-<id>-<secret>``: ``id`` (12 hex digits) finds its row, the secret is checked
against the row's salted scrypt hash (:func:`valle2.server.auth.hash_key`).  Only the hash and the
prefix ``v2k-<id>`` are stored; the key itself is shown once, when it is created.  Each row holds a
name, an admin flag (admin keys also manage keys over HTTP), the creation and revocation times
(revocation takes effect on the next request) and an optional per-key rate limit (requests a
minute; unset: the server's default).

``voice_owners`` maps voices to keys: a voice enrolled or registered through the server with a
key belongs to that key, and a key uses, lists and revokes only its own voices.  The operator
gives a key an existing voice (enrolled with the CLI, or before keys were scoped) with
``valle2 keys grant``.

Keys from the older hash file (``<home>/api_keys``, one scrypt hash a line) are imported as admin
keys with :meth:`KeyStore.import_hashes`; they have no id in them, so they are checked against
each imported hash in turn.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ..errors import KeyStoreError
from .auth import hash_key, verify_key

KEY_RE = re.compile(r"v2k-([0-9a-f]{12})-([A-Za-z0-9_\-]{16,128})")
ID_RE = re.compile(r"k_[0-9a-f]{12}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created REAL NOT NULL, revoked REAL, rate_limit REAL, legacy INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS voice_owners (
    voice_id TEXT NOT NULL, key_id TEXT NOT NULL REFERENCES api_keys(id), granted REAL NOT NULL,
    PRIMARY KEY (voice_id, key_id));
CREATE INDEX IF NOT EXISTS voice_owners_key ON voice_owners(key_id);
"""


@dataclass(frozen=True)
class ApiKey:
    """One key's row (never the key itself).  ``id`` is ``k_<12 hex>``; ``rate_limit`` is
    requests a minute or None for the server's default (0: unlimited)."""

    id: str
    name: str
    prefix: str
    admin: bool
    created: float
    revoked: float | None
    rate_limit: float | None
    legacy: bool = False

    def public(self) -> dict:
        """What a listing shows."""
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "admin": self.admin,
                "created": self.created, "revoked": self.revoked, "rate_limit": self.rate_limit}


def validate_key_name(name: str) -> str:
    clean = " ".join(str(name).split())
    if not 1 <= len(clean) <= 100 or not re.fullmatch(r"[\w .,:@()/+\-]+", clean):
        raise KeyStoreError(f"key name {name!r} must be 1-100 letters, digits, spaces or . , : @ ( ) / + - _")
    return clean


def validate_rate_limit(value) -> float | None:
    if value is None:
        return None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise KeyStoreError(f"rate limit must be a number of requests a minute, not {value!r}") from None
    if not 0 <= rate <= 1e6 or rate != rate:
        raise KeyStoreError(f"rate limit must be 0 (unlimited) to 1000000 requests a minute, not {value!r}")
    return rate


class KeyStore:
    """The key database at ``path`` (created on first use, mode 0600)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        with closing(self._connect()) as con, con:
            con.executescript(SCHEMA)
        self._verified: dict[bytes, tuple[str, str]] = {}   # sha256(key) -> (id, stored hash): skip scrypt
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def _query(self, sql: str, args=()) -> list[tuple]:
        with closing(self._connect()) as con:
            return con.execute(sql, args).fetchall()

    @staticmethod
    def _row(row) -> ApiKey:
        kid, name, prefix, admin, created, revoked, rate, legacy = row
        return ApiKey(kid, name, prefix, bool(admin), created, revoked, rate, bool(legacy))

    COLUMNS = "id, name, prefix, admin, created, revoked, rate_limit, legacy"

    # ------------------------------------------------------------------------------ management
    def create(self, name: str, admin: bool = False, rate_limit: float | None = None,
               voices: tuple[str, ...] = ()) -> tuple[ApiKey, str]:
        """A new key: (its row, the key in clear, to be shown once)."""
        name, rate_limit = validate_key_name(name), validate_rate_limit(rate_limit)
        hex_id = secrets.token_hex(6)
        key = f"v2k-{hex_id}-{secrets.token_urlsafe(32)}"
        row = ApiKey(f"k_{hex_id}", name, f"v2k-{hex_id}", admin, time.time(), None, rate_limit)
        with closing(self._connect()) as con, con:
            con.execute(f"INSERT INTO api_keys ({self.COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, NULL, ?, 0, ?)",
                        (row.id, row.name, row.prefix, int(admin), row.created, rate_limit, hash_key(key)))
            for voice in voices:
                con.execute("INSERT OR IGNORE INTO voice_owners VALUES (?, ?, ?)", (voice, row.id, row.created))
        return row, key

    def import_hashes(self, hashes, name: str = "imported key") -> list[ApiKey]:
        """Import stored hashes (the older key file's lines) as admin keys; already imported ones
        are skipped.  Returns the new rows."""
        added = []
        with closing(self._connect()) as con, con:
            for stored in hashes:
                if con.execute("SELECT 1 FROM api_keys WHERE hash = ?", (stored,)).fetchone():
                    continue
                hex_id = secrets.token_hex(6)
                row = ApiKey(f"k_{hex_id}", name, "v2k_... (imported)", True, time.time(), None, None, True)
                con.execute(f"INSERT INTO api_keys ({self.COLUMNS}, hash) VALUES (?, ?, ?, 1, ?, NULL, NULL, 1, ?)",
                            (row.id, row.name, row.prefix, row.created, stored))
                added.append(row)
        return added

    def get(self, key_id: str) -> ApiKey:
        """The row of ``key_id`` (``k_...`` or the ``v2k-...`` prefix), or :class:`KeyStoreError`."""
        if key_id.startswith("v2k-"):
            key_id = "k_" + key_id[4:]
        rows = self._query(f"SELECT {self.COLUMNS} FROM api_keys WHERE id = ?", (key_id,)) if ID_RE.fullmatch(key_id) else []
        if not rows:
            raise KeyStoreError(f"no API key {key_id!r}")
        return self._row(rows[0])

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = self._query(f"SELECT {self.COLUMNS} FROM api_keys ORDER BY created, id")
        keys = [self._row(r) for r in rows]
        return keys if include_revoked else [k for k in keys if k.revoked is None]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key now: its next request is refused.  Revoking twice is refused."""
        row = self.get(key_id)
        if row.revoked is not None:
            raise KeyStoreError(f"API key {row.id} was already revoked")
        with closing(self._connect()) as con, con:
            con.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), row.id))
        with self._lock:
            self._verified = {h: v for h, v in self._verified.items() if v[0] != row.id}
        return self.get(row.id)

    def grant(self, key_id: str, voice_id: str) -> None:
        """Let key ``key_id`` use voice ``voice_id`` (idempotent)."""
        row = self.get(key_id)
        if row.revoked is not None:
            raise KeyStoreError(f"API key {row.id} is revoked")
        with closing(self._connect()) as con, con:
            con.execute("INSERT OR IGNORE INTO voice_owners VALUES (?, ?, ?)", (voice_id, row.id, time.time()))

    def owns(self, key_id: str, voice_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM voice_owners WHERE key_id = ? AND voice_id = ?", (key_id, voice_id)))

    def voices_of(self, key_id: str) -> set[str]:
        return {r[0] for r in self._query("SELECT voice_id FROM voice_owners WHERE key_id = ?", (key_id,))}

    def owners_of(self, voice_id: str) -> list[str]:
        return [r[0] for r in self._query("SELECT key_id FROM voice_owners WHERE voice_id = ? ORDER BY granted",
                                          (voice_id,))]

    # ---------------------------------------------------------------------------- verification
    def authenticate(self, key: str) -> ApiKey | None:
        """The active key row that ``key`` is, or None (unknown, wrong secret or revoked)."""
        if not key or len(key) > 256:
            return None
        fingerprint = hashlib.sha256(key.encode()).digest()
        match = KEY_RE.fullmatch(key)
        if match:
            rows = self._query(f"SELECT {self.COLUMNS}, hash FROM api_keys WHERE id = ? AND legacy = 0",
                               ("k_" + match.group(1),))
        else:
            rows = self._query(f"SELECT {self.COLUMNS}, hash FROM api_keys WHERE legacy = 1 AND revoked IS NULL")
        for *cols, stored in rows:
            row = self._row(cols)
            if row.revoked is not None:
                return None
            with self._lock:
                cached = self._verified.get(fingerprint)
            if cached is not None:
                if cached == (row.id, stored):
                    return row
                continue
            if verify_key(key, [stored]):
                with self._lock:
                    self._verified[fingerprint] = (row.id, stored)
                return row
        return None


__all__ = ["ApiKey", "KeyStore", "KeyStoreError", "validate_key_name", "validate_rate_limit"]
