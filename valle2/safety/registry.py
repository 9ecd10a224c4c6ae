"""SQLite storage of consent phrases, signed voice records and corpus attestations.

WAL journal, ``synchronous=FULL``, one short connection per operation (so every read sees the
latest commit, e.g. a revocation made by another process), writes in ``BEGIN IMMEDIATE``
transactions, parameterised SQL only.

A revocation is stored as ``voices.revoked`` (its time) and ``voices.revocation`` (the signed
:class:`valle2.safety.consent.Revocation` JSON); the audit log holds it too, and authorisation
checks both, so clearing it here (or restoring an older copy of this file) does not bring a voice
back.  A voice's adapter (``adapters``: its signed record and bytes, :mod:`valle2.adapt`) is
deleted in the revocation's transaction.  A phrase counts its enrolment attempts (``phrases.attempts``) and keeps the speaker
embedding of the first attempt that said it (``phrases.speaker``, JSON).  Databases from before
these columns get them on first open.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS phrases (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, text TEXT NOT NULL, nonce TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, used REAL, attempts INTEGER NOT NULL DEFAULT 0, speaker TEXT);
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, record TEXT NOT NULL, signature TEXT NOT NULL,
    created REAL NOT NULL, revoked REAL, revocation TEXT);
CREATE TABLE IF NOT EXISTS corpora (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, attestation TEXT NOT NULL, signature TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS adapters (
    voice_id TEXT PRIMARY KEY, record TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS corpus_files (
    sha256 TEXT NOT NULL, corpus_id TEXT NOT NULL REFERENCES corpora(id), PRIMARY KEY (sha256, corpus_id));
"""


def default_home() -> Path:
    """``$VALLE2_HOME`` or ``~/.valle2``: where the registry, keys and audit log live by default."""
    return Path(os.environ.get("VALLE2_HOME") or Path.home() / ".valle2")


class RegistryDB:
    """The database file at ``path`` (default ``<home>/registry.db``), created on first use."""

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else default_home() / "registry.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)
            for table, column in (("voices", "revocation TEXT"), ("phrases", "attempts INTEGER NOT NULL DEFAULT 0"),
                                  ("phrases", "speaker TEXT")):
                if column.split()[0] not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
                    try:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    except sqlite3.OperationalError as e:   # another process added it first
                        if "duplicate column" not in str(e):
                            raise

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self):
        """A write transaction: commits on success, rolls back on any exception."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only parameterised query, read from the latest commit."""
        with self._connect() as con:
            return con.execute(sql, params).fetchall()

    # ------------------------------------------------------------------------------- phrases
    def add_phrase(self, pid: str, name: str, text: str, nonce: str, created: float, expires: float) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO phrases (id, name, text, nonce, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
                        (pid, name, text, nonce, created, expires))

    def phrase(self, pid: str) -> tuple | None:
        """(name, text, nonce, created, expires, used, attempts, speaker) of phrase ``pid``, or None."""
        rows = self.query("SELECT name, text, nonce, created, expires, used, attempts, speaker FROM phrases "
                          "WHERE id = ?", (pid,))
        return rows[0] if rows else None

    def claim_attempt(self, pid: str, now: float, max_attempts: int) -> int | None:
        """Count one enrolment attempt of phrase ``pid`` and return its number (1, 2, ...); None,
        counting nothing, if the phrase is used, expired or has had ``max_attempts``."""
        with self.transaction() as con:
            cur = con.execute("UPDATE phrases SET attempts = attempts + 1 WHERE id = ? AND used IS NULL AND "
                              "expires > ? AND attempts < ?", (pid, now, max_attempts))
            if cur.rowcount != 1:
                return None
            return con.execute("SELECT attempts FROM phrases WHERE id = ?", (pid,)).fetchone()[0]

    def bind_speaker(self, pid: str, speaker: str) -> str:
        """Keep ``speaker`` (JSON) as phrase ``pid``'s speaker unless one is kept already; returns the kept one."""
        with self.transaction() as con:
            con.execute("UPDATE phrases SET speaker = ? WHERE id = ? AND speaker IS NULL", (speaker, pid))
            return con.execute("SELECT speaker FROM phrases WHERE id = ?", (pid,)).fetchone()[0]

    def consume_phrase(self, con: sqlite3.Connection, pid: str, now: float) -> bool:
        """Mark phrase ``pid`` used inside the caller's transaction; False if already used."""
        return con.execute("UPDATE phrases SET used = ? WHERE id = ? AND used IS NULL", (now, pid)).rowcount == 1

    # -------------------------------------------------------------------------------- voices
    def add_voice(self, con: sqlite3.Connection, vid: str, name: str, record: str, signature: str) -> None:
        con.execute("INSERT INTO voices (id, name, record, signature, created) VALUES (?, ?, ?, ?, ?)",
                    (vid, name, record, signature, time.time()))

    def voice(self, vid: str) -> tuple | None:
        """(record JSON, signature, revoked time or None) of voice ``vid``, or None."""
        rows = self.query("SELECT record, signature, revoked FROM voices WHERE id = ?", (vid,))
        return rows[0] if rows else None

    def revoke_voice(self, vid: str, when: float, revocation: str | None = None) -> bool:
        """Mark voice ``vid`` revoked at ``when`` with the signed ``revocation`` JSON; False if it does
        not exist or was already revoked."""
        with self.transaction() as con:
            con.execute("DELETE FROM adapters WHERE voice_id = ?", (vid,))
            return con.execute("UPDATE voices SET revoked = ?, revocation = ? WHERE id = ? AND revoked IS NULL",
                               (when, revocation, vid)).rowcount == 1

    def revocation(self, vid: str) -> str | None:
        """The signed revocation JSON stored for voice ``vid``, or None."""
        rows = self.query("SELECT revocation FROM voices WHERE id = ?", (vid,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------------------ adapters
    def put_adapter(self, vid: str, record: str, data: bytes) -> None:
        """Store (or replace) voice ``vid``'s adapter: its signed ``record`` JSON and its bytes, in one transaction."""
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO adapters (voice_id, record, data) VALUES (?, ?, ?)", (vid, record, data))

    def adapter(self, vid: str) -> tuple[str, bytes] | None:
        """(signed record JSON, bytes) of voice ``vid``'s adapter, or None."""
        rows = self.query("SELECT record, data FROM adapters WHERE voice_id = ?", (vid,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    # ------------------------------------------------------------------------------- corpora
    def add_corpus(self, cid: str, name: str, attestation: str, signature: str, hashes: list[str]) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO corpora (id, name, attestation, signature, created) VALUES (?, ?, ?, ?, ?)",
                        (cid, name, attestation, signature, time.time()))
            con.executemany("INSERT OR IGNORE INTO corpus_files (sha256, corpus_id) VALUES (?, ?)",
                            [(h, cid) for h in hashes])

    def corpora_with_file(self, sha256: str) -> list[tuple]:
        """(attestation JSON, signature) of every corpus naming a file with this SHA-256."""
        return self.query("SELECT c.attestation, c.signature FROM corpus_files f JOIN corpora c ON c.id = f.corpus_id "
                          "WHERE f.sha256 = ?", (sha256,))
