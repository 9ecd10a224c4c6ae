"""Append-only, hash-chained audit log (JSON lines) with a head signed by the operator key.

Each line is a JSON object with ``seq`` (1, 2, ...), ``time`` (Unix seconds), ``event`` and
``prev``: the SHA-256 (hex) of the previous line's bytes (without its newline; 64 zeros for the
first).  An edit, deletion or reordering anywhere breaks the chain, and :meth:`AuditLog.check`
names the line that was changed.

The head file ``<log>.head`` holds ``seq`` and ``hash`` of the last line, signed with the
operator's Ed25519 key (``key_id``, ``signature``) and rewritten atomically after every append (a
signed head for ``seq`` 0 is written before the first line).  So rewriting the log (truncating it,
deleting lines and recomputing the chain, deleting the head) needs the operator key: a missing head
for a non-empty log, a head whose signature fails, or a head whose seq/hash disagrees with the log
is reported as tampering.  One line after the head is accepted: that is a crash between the append
and the head update (the next append logs it as ``audit_unconfirmed_line``).

What the chain cannot prove: a rollback of the log *and* its head together to an earlier signed
state (e.g. restoring a backup of the whole home folder), or a rewrite by someone who holds the
operator key.  Copy the signed head off the host (see the README) to detect those.

Appends take an exclusive ``flock``, write their lines with one ``write`` on an ``O_APPEND``
descriptor and ``fsync`` before returning; a failed write or head update is rolled back (the file
is cut back to its previous size), so a full disk leaves no partial line.  A torn last line left by
a crash or power loss is dropped by the next append, which logs the repair (``audit_repair``: the
dropped bytes, their length and SHA-256).  A torn or unreadable line anywhere else is tampering.

Logs written before heads were signed have an unsigned head: :meth:`AuditLog.check` reports it and
:meth:`AuditLog.sign_head` (``valle2 audit sign-head``) verifies the chain and signs it.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..audio import atomic_write_bytes
from ..errors import ConsentError, StaleAuditState
from .keys import key_id, sign, verify

GENESIS = "0" * 64
HEAD_PURPOSE = "valle2 audit log head"
SIGN_HEAD_HINT = "run `valle2 audit sign-head` (it verifies the chain first) if this log was written by a valle2 " \
                 "from before signed heads; otherwise treat it as tampering"


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _encode(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _head_payload(seq: int, digest: str, kid: str) -> dict:
    return {"purpose": HEAD_PURPOSE, "seq": seq, "hash": digest, "key_id": kid}


@dataclass(frozen=True)
class AuditReport:
    """The outcome of :meth:`AuditLog.check`.

    ``ok``: the chain and head hold.  ``line``: the first line found changed, removed or added
    (1-based), when one can be named.  ``problem``: what is wrong and what to do (empty when ok).
    ``signed``: the head's operator signature was checked and holds.  ``legacy``: the chain is
    intact but the head is unsigned (a log from before signed heads).  ``unconfirmed``: 1 when the
    last line is after the head (a crash between an append and the head update).  ``torn_bytes``:
    the size of a torn last line, which the next append drops and logs."""

    ok: bool
    entries: int
    line: int | None = None
    problem: str = ""
    signed: bool = False
    legacy: bool = False
    unconfirmed: int = 0
    torn_bytes: int = 0

    def summary(self, path) -> str:
        if not self.ok:
            return f"audit log {path}: " + (f"BROKEN at line {self.line}: " if self.line else "BROKEN: ") + self.problem
        if self.entries == 0:
            notes = ["empty"]
        else:
            notes = ["head signed by the operator key" if self.signed else "head not signature-checked (no operator key)"]
        if self.unconfirmed:
            notes.append(f"line {self.entries} is after the head (a crash between an append and the head update; "
                         "the next append logs it)")
        if self.torn_bytes:
            notes.append(f"a torn last line of {self.torn_bytes} bytes (an interrupted write; the next append drops "
                         "it and logs the repair)")
        return f"audit log {path}: intact, {self.entries} entries; " + "; ".join(notes)


@dataclass
class ChainState:
    """What authorisation needs from a verified log: ``enrolled`` and ``revoked`` map voice ids to
    the line of their ``enroll`` / first ``revoke`` event.  Kept by :meth:`AuditLog.verified_state`
    and extended with the lines appended since (the whole chain is read again when the file was
    replaced or shrank)."""

    seq: int = 0
    hash: str = GENESIS
    prev_hash: str = GENESIS
    enrolled: dict = field(default_factory=dict)
    revoked: dict = field(default_factory=dict)
    offset: int = 0
    last_start: int = 0
    ino: int | None = None
    head_raw: bytes | None = None


class AuditLog:
    """The audit trail at ``path`` (created on first append).

    ``key`` is the operator's Ed25519 private key (signs the head on every append, checks it on
    reading), its public key (check only; appending is refused), or None (no signatures: the head
    holds seq and hash only and a rewrite cannot be detected; a log with a signed head then refuses
    appends)."""

    def __init__(self, path, key: Ed25519PrivateKey | Ed25519PublicKey | None = None):
        self.path = Path(path)
        self.head_path = Path(str(self.path) + ".head")
        self.key = key
        self._public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
        self._state: ChainState | None = None
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------------------ the head
    def _read_head(self) -> tuple[dict | None, bytes | None, str]:
        """(head, raw bytes, problem): head None with an empty problem when there is no head file."""
        try:
            raw = self.head_path.read_bytes()
        except FileNotFoundError:
            return None, None, ""
        try:
            head = json.loads(raw)
            if not (isinstance(head, dict) and isinstance(head["seq"], int) and head["seq"] >= 0
                    and isinstance(head["hash"], str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return None, raw, f"the head file '{self.head_path}' is unreadable; restore it from a backup or treat the log as tampered"
        return head, raw, ""

    def _head_signature(self, head: dict) -> tuple[bool, str]:
        """(signed, problem) of a parsed head: signed is True when the signature was checked and holds."""
        if "signature" not in head:
            return False, ""
        if self._public is None:
            return False, ""
        if head.get("key_id") != key_id(self._public):
            return False, (f"the head is signed by key {head.get('key_id')}, not this deployment's operator key "
                           f"{key_id(self._public)}: the log was replaced")
        if not verify(self._public, _head_payload(head["seq"], head["hash"], head["key_id"]), head["signature"]):
            return False, "the head's signature is invalid: the log or its head was rewritten without the operator key"
        return True, ""

    def _head_bytes(self, seq: int, digest: str, signed: bool) -> bytes:
        head = {"seq": seq, "hash": digest}
        if signed:
            kid = key_id(self.key)
            head.update(key_id=kid, signature=sign(self.key, _head_payload(seq, digest, kid)))
        return json.dumps(head, sort_keys=True).encode()

    # ------------------------------------------------------------------------------- reading
    def _split(self, data: bytes) -> tuple[list[bytes], bytes]:
        """(complete lines, torn tail) of the log's bytes."""
        cut = data.rfind(b"\n") + 1
        return data[:cut].split(b"\n")[:-1] if cut else [], data[cut:]

    def check(self) -> AuditReport:
        """Verify the whole chain and the head; see :class:`AuditReport`."""
        data = self.path.read_bytes() if self.path.exists() else b""
        lines, torn = self._split(data)
        head, _, head_problem = self._read_head()
        hashes, n_lines = [GENESIS], len(lines)

        def confirmed(n: int) -> bool:
            """Line n (1-based) is vouched for by the next line's prev or by the head."""
            digest = _digest(lines[n - 1])
            if n < n_lines:
                try:
                    return json.loads(lines[n]).get("prev") == digest
                except (ValueError, AttributeError):
                    return False
            return head is not None and head["seq"] == n and head["hash"] == digest

        for n, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                seq, prev = entry["seq"], entry["prev"]
            except (ValueError, KeyError, TypeError):
                what = "an empty line" if not line.strip() else "not a valid entry"
                return AuditReport(False, n_lines, n, f"line {n} is {what}: it was edited, or the file was "
                                   "damaged; restore the log from a backup and investigate")
            if seq != n:
                return AuditReport(False, n_lines, n, f"line {n} has seq {seq}: a line was removed, inserted or "
                                   "reordered here; restore the log from a backup and investigate")
            if prev != hashes[-1]:
                if n > 1 and confirmed(n):
                    return AuditReport(False, n_lines, n - 1, f"line {n - 1} was changed: its hash no longer "
                                       f"matches the one line {n} records; restore the log from a backup and investigate")
                return AuditReport(False, n_lines, n, f"line {n} was changed: it does not chain to line {n - 1}; "
                                   "restore the log from a backup and investigate")
            hashes.append(_digest(line))
        if head_problem:
            return AuditReport(False, n_lines, None, head_problem)
        if head is None:
            if n_lines == 0:
                return AuditReport(True, 0, torn_bytes=len(torn))
            return AuditReport(False, n_lines, None, f"the head file '{self.head_path}' is missing for a log of "
                               f"{n_lines} entries: the log was truncated or replaced, or its head deleted; restore "
                               "both from a backup and investigate")
        signed, sig_problem = self._head_signature(head)
        if sig_problem:
            return AuditReport(False, n_lines, None, sig_problem + "; restore the log and head from a backup and investigate")
        seq = head["seq"]
        if seq > n_lines:
            return AuditReport(False, n_lines, n_lines + 1, f"the log ends at line {n_lines} but its head confirms "
                               f"{seq} entries: lines {n_lines + 1}-{seq} were cut off; restore the log from a backup")
        if hashes[seq] != head["hash"]:
            if seq == 0:
                return AuditReport(False, n_lines, None, "the head does not match an empty log: it was replaced")
            return AuditReport(False, n_lines, seq, f"line {seq} was changed: it no longer matches the hash its head "
                               "confirms; restore the log from a backup and investigate")
        if seq < n_lines - 1:
            return AuditReport(False, n_lines, seq + 1, f"lines {seq + 1}-{n_lines} come after the head, which "
                               f"confirms {seq} entries: they were added without the operator key (a crash leaves "
                               "at most one)")
        legacy = "signature" not in head and self._public is not None and n_lines > 0
        if legacy:
            return AuditReport(False, n_lines, None, f"the chain is intact ({n_lines} entries) but the head is not "
                               f"signed, so a rewrite of the log cannot be ruled out; {SIGN_HEAD_HINT}", legacy=True)
        return AuditReport(True, n_lines, signed=signed, unconfirmed=n_lines - seq, torn_bytes=len(torn))

    def verify(self) -> tuple[bool, int | None]:
        """``(True, None)``, or ``(False, n)`` with ``n`` the first changed line (1-based), or None
        when the problem is the head itself (see :meth:`check` for the reason)."""
        report = self.check()
        return report.ok, report.line

    def entries(self) -> list[dict]:
        """Every complete entry, oldest first (no verification; see :meth:`check`)."""
        if not self.path.exists():
            return []
        lines, _ = self._split(self.path.read_bytes())
        return [json.loads(line) for line in lines if line]

    def verified_state(self) -> ChainState:
        """The voices enrolled and revoked according to the verified log, or ConsentError naming
        the problem.  Fast on a long log: the lines read and verified before are kept, and only the
        lines appended since are read (under a shared lock, so a concurrent append is seen whole)."""
        with self._mutex:
            try:
                return self._extend_state()
            except StaleAuditState:
                seen = self._state.revoked if self._state is not None else {}
                self._state = None
                report = self.check()
                if report.ok:   # changed between the two reads: read it all again once
                    try:
                        state = self._extend_state()
                        for vid, line in seen.items():   # a revocation this process saw is never forgotten
                            state.revoked.setdefault(vid, line)
                        return state
                    except StaleAuditState:
                        report = self.check()
                raise ConsentError(f"audit log '{self.path}' cannot be trusted, so no consent record is honoured "
                                   f"until it is fixed: {report.problem or 'it changed while being read; retry'}; run "
                                   "`valle2 audit verify`, and restore the log from a backup") from None

    def _extend_state(self) -> ChainState:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        lines: list[bytes] = []
        state = self._state
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)
                st = os.fstat(fd)
                if state is None or state.ino != st.st_ino or st.st_size < state.offset:
                    # read it all; a revocation seen before is never forgotten
                    state = ChainState(ino=st.st_ino, revoked=dict(state.revoked) if state is not None else {})
                elif state.offset:
                    os.lseek(fd, state.last_start, os.SEEK_SET)    # the last line read before is unchanged
                    if _digest(_read_exact(fd, state.offset - 1 - state.last_start)) != state.hash:
                        raise StaleAuditState
                os.lseek(fd, state.offset, os.SEEK_SET)
                lines, _ = self._split(_read_exact(fd, st.st_size - state.offset))
            elif state is None or state.seq:
                state = ChainState()
            head, head_raw, problem = self._read_head()
        finally:
            if fd is not None:
                os.close(fd)
        new = ChainState(**{**state.__dict__, "enrolled": dict(state.enrolled), "revoked": dict(state.revoked)})
        for line in lines:
            try:
                entry = json.loads(line)
                ok = entry["seq"] == new.seq + 1 and entry["prev"] == new.hash
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise StaleAuditState
            new.seq, new.prev_hash, new.hash = new.seq + 1, new.hash, _digest(line)
            new.last_start, new.offset = new.offset, new.offset + len(line) + 1
            if entry.get("event") == "enroll" and isinstance(entry.get("voice_id"), str):
                new.enrolled.setdefault(entry["voice_id"], new.seq)
            elif entry.get("event") == "revoke" and isinstance(entry.get("voice_id"), str):
                new.revoked.setdefault(entry["voice_id"], new.seq)
        if problem or (head is None and new.seq > 0):
            raise StaleAuditState
        if head is not None:
            if head_raw != state.head_raw:
                signed, sig_problem = self._head_signature(head)
                if sig_problem or (self._public is not None and not signed and new.seq > 0):
                    raise StaleAuditState
            if not ((head["seq"] == new.seq and head["hash"] == new.hash)
                    or (head["seq"] == new.seq - 1 and head["hash"] == new.prev_hash)):
                raise StaleAuditState
        new.head_raw = head_raw
        self._state = new
        return new

    # ------------------------------------------------------------------------------ appending
    def append(self, event: str, **fields) -> dict:
        """Append one event (``fields`` must be JSON-serialisable) and return the entry written."""
        return self._append([(event, fields)])[-1]

    def sign_head(self) -> AuditReport:
        """Upgrade a log from before signed heads: verify the whole chain, then append an
        ``audit_head_signed`` event under a head signed with the operator key.  A log whose head is
        already signed is left as it is.  Returns the report of the log afterwards."""
        if not isinstance(self.key, Ed25519PrivateKey):
            raise ConsentError("signing the audit head needs the operator's private key: open the log with it "
                               "(AuditLog(path, key=...))")
        report = self.check()
        if report.ok and (report.signed or report.entries == 0):
            return report
        if not report.legacy:
            raise ConsentError(f"audit log '{self.path}' is not intact, so its head is not signed: "
                               f"{report.problem}; run `valle2 audit verify`, and restore the log from a backup")
        self._append([("audit_head_signed", {"key_id": key_id(self.key), "unsigned_entries": report.entries})],
                     upgrade=True)
        return self.check()

    def _append(self, items: list[tuple[str, dict]], upgrade: bool = False) -> list[dict]:
        if isinstance(self.key, Ed25519PublicKey):
            raise ConsentError(f"audit log '{self.path}' was opened with a public key only; appending needs the "
                               "operator's private key: open it with that key (AuditLog(path, key=...))")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            last, before, torn = _tail(fd, size)
            seq, prev = self._line_seq(last, "last"), _digest(last) if last is not None else GENESIS
            prev_prev = _digest(before) if before is not None else GENESIS
            head, _, problem = self._read_head()
            signed = self.key is not None
            pre: list[tuple[str, dict]] = []
            if problem:
                raise ConsentError(f"audit log '{self.path}': {problem}; run `valle2 audit verify`, and restore the "
                                   "log from a backup")
            if head is None:
                if seq:
                    raise ConsentError(f"audit log '{self.path}' has {seq} entries but no head file "
                                       f"'{self.head_path}': it was truncated or replaced, or its head deleted; "
                                       "run `valle2 audit verify`, and restore both from a backup")
                atomic_write_bytes(self.head_path, self._head_bytes(0, GENESIS, signed))
            else:
                has_sig, sig_problem = self._head_signature(head)
                if sig_problem:
                    raise ConsentError(f"audit log '{self.path}': {sig_problem}; run `valle2 audit verify`")
                if "signature" in head and self.key is None:
                    raise ConsentError(f"audit log '{self.path}' has a signed head; open it with the operator key "
                                       "(AuditLog(path, key=...)) to append, or it would lose its signature")
                if "signature" not in head and seq and not upgrade:
                    signed = False          # a log from before signed heads stays unsigned until sign_head()
                if (head["seq"], head["hash"]) == (seq - 1, prev_prev) and seq:
                    pre.append(("audit_unconfirmed_line", {"line": seq, "sha256": prev, "note": (
                        "this line was written but not covered by the head: a crash between the append and the "
                        "head update, or a line added without the operator key")}))
                elif (head["seq"], head["hash"]) != (seq, prev):
                    raise ConsentError(f"audit log '{self.path}' does not match its head (the head confirms "
                                       f"{head['seq']} entries, the log has {seq}): run `valle2 audit verify`, and "
                                       "restore the log from a backup")
            if torn:
                os.ftruncate(fd, size - len(torn))
                os.fsync(fd)
                size -= len(torn)
                pre.insert(0, ("audit_repair", {"dropped_bytes": len(torn), "dropped_sha256": _digest(torn),
                                                "dropped_b64": base64.b64encode(torn).decode(), "note": (
                    "a torn last line (an interrupted write) was dropped; the entries before it are intact")}))
            written, lines = [], []
            for event, fields in pre + items:
                entry = {**fields, "seq": seq + 1, "time": round(time.time(), 6), "event": event, "prev": prev}
                line = _encode(entry)
                seq, prev = seq + 1, _digest(line)
                written.append(entry)
                lines.append(line + b"\n")
            data = b"".join(lines)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write ({len(data)} bytes wanted)")
                os.fsync(fd)
                atomic_write_bytes(self.head_path, self._head_bytes(seq, prev, signed))
            except OSError as e:
                os.ftruncate(fd, size)      # nothing half-written stays behind (e.g. a full disk)
                os.fsync(fd)
                raise ConsentError(f"could not write to audit log '{self.path}' ({e}); nothing was logged and the "
                                   "action was not taken: free disk space or fix the file system, then retry") from None
        finally:
            os.close(fd)  # closing releases the lock
        return written

    def _line_seq(self, line: bytes | None, which: str) -> int:
        if line is None:
            return 0
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            raise ConsentError(f"audit log '{self.path}' has an unreadable {which} line: run `valle2 audit verify` "
                               "and restore the log from a backup") from None


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _tail(fd: int, size: int) -> tuple[bytes | None, bytes | None, bytes]:
    """(last complete line, the line before it, torn bytes after the last newline) of the open log."""
    back = min(size, 1 << 16)
    while True:
        tail = os.pread(fd, back, size - back)
        cut = tail.rfind(b"\n")
        torn = tail[cut + 1:]
        lines = tail[:cut + 1].split(b"\n")[:-1] if cut >= 0 else []
        if back < size:
            if len(lines) < 3:         # the window's first line may be cut: widen it
                back = min(size, back * 2)
                continue
            lines = lines[1:]
        return (lines[-1] if lines else None), (lines[-2] if len(lines) > 1 else None), torn
