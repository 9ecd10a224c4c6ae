"""Append-only, hash-chained audit log (JSON lines).

Each line is a JSON object with ``seq`` (1, 2, ...), ``time`` (Unix seconds), ``event`` and
``prev``: the SHA-256 (hex) of the previous line's bytes (without its newline; 64 zeros for the
first).  An edit, deletion or reordering anywhere breaks the chain at the first affected line.  A
head file ``<log>.head`` holds the seq and hash of the last line, rewritten atomically after every
append, so cutting lines off the end or editing the last line is detected too (lines after the head
are accepted when they chain: that is a crash between the append and the head update).  Appends take an exclusive ``flock``, write
the whole line with one ``write`` on an ``O_APPEND`` descriptor, and ``fsync`` before returning.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from ..audio import atomic_write_bytes
from . import ConsentError

GENESIS = "0" * 64


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """The audit trail at ``path`` (created on first append)."""

    def __init__(self, path):
        self.path = Path(path)
        self.head_path = Path(str(self.path) + ".head")

    def _last(self) -> tuple[int, str]:
        """(seq, hash) of the last line, or (0, GENESIS) for an empty log; refuses a torn tail."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            back = min(size, 1 << 16)
            while True:
                f.seek(size - back)
                tail = f.read(back)
                if not tail.endswith(b"\n"):
                    raise ConsentError(f"audit log '{self.path}' ends in a partial line; run AuditLog.verify() and repair it")
                cut = tail.rstrip(b"\n").rfind(b"\n")
                if cut >= 0 or back == size:
                    line = tail[cut + 1:].rstrip(b"\n")
                    break
                back = min(size, back * 2)
        try:
            seq = int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            raise ConsentError(f"audit log '{self.path}' has an unreadable last line; run AuditLog.verify()") from None
        return seq, _digest(line)

    def append(self, event: str, **fields) -> dict:
        """Append one event (``fields`` must be JSON-serialisable) and return the entry written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._last()
            entry = {**fields, "seq": seq + 1, "time": round(time.time(), 6), "event": event, "prev": prev}
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
            if os.write(fd, line + b"\n") != len(line) + 1:
                raise ConsentError(f"short write to audit log '{self.path}'")
            os.fsync(fd)
            atomic_write_bytes(self.head_path, json.dumps({"seq": seq + 1, "hash": _digest(line)}).encode())
        finally:
            os.close(fd)  # closing releases the lock
        return entry

    def entries(self) -> list[dict]:
        """Every entry, oldest first (no verification; see :meth:`verify`)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_bytes().splitlines() if line]

    def verify(self) -> tuple[bool, int | None]:
        """Check the whole chain.  Returns ``(True, None)``, or ``(False, n)`` with ``n`` the first
        bad line (1-based): unparsable, out of sequence, or whose ``prev`` does not match."""
        data = self.path.read_bytes() if self.path.exists() else b""
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            return False, len(lines)  # torn last line
        hashes = [GENESIS]
        for n, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                ok = entry["seq"] == n and entry["prev"] == hashes[-1]
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                return False, n
            hashes.append(_digest(line))
        try:
            head = json.loads(self.head_path.read_text()) if self.head_path.exists() else {"seq": 0, "hash": GENESIS}
            seq, digest = int(head["seq"]), head["hash"]
        except (ValueError, KeyError, TypeError):
            return False, 1
        if seq > len(lines):
            return False, len(lines) + 1   # lines were cut off the end
        if hashes[seq] != digest:
            return False, max(seq, 1)      # the line the head confirms was changed
        return True, None
