"""Attacks on the consent trail by someone who can write the deployment's files but does not hold
the operator key (issue 30): each must be refused or reported, and crashes must not lock the
deployment out.  Registry tests use stand-in transcriber and embedder (the protocol, not the ASR,
is under test) and a noise recording."""
import base64
import errno
import hashlib
import json
import sqlite3

import numpy as np
import pytest

import valle2.safety.audit as audit_mod
from valle2.commands import main
from valle2.errors import ConsentError
from valle2.safety import AuditLog, ConsentGate, ConsentRegistry, generate_operator_key
from valle2.safety.audit import GENESIS
from valle2.safety.consent import Revocation
from valle2.safety.deployment import Deployment
from valle2.safety.keys import key_id, load_public_key, public_key_path, verify

SR = 16000
EMBEDDING = np.ones(256) / 16.0


def stand_ins(reg: ConsentRegistry) -> ConsentRegistry:
    """Let ``reg`` enrol without ASR or a speaker model: it hears whatever phrase was issued last."""
    heard = {}
    reg.transcriber = lambda wav, sr: heard["text"]
    reg.embedder = lambda wav, sr: EMBEDDING
    reg.liveness_checks = []
    issue = reg.issue_phrase

    def issue_and_hear(name, *a, **k):
        phrase = issue(name, *a, **k)
        heard["text"] = phrase.text
        return phrase
    reg.issue_phrase = issue_and_hear
    return reg


def noise(seconds=1.0, seed=0):
    return (np.random.default_rng(seed).standard_normal(int(SR * seconds)) * 0.1).astype(np.float32)


def enrol(reg, name="Ada Lovelace"):
    return reg.enroll(name, noise(), SR, reg.issue_phrase(name).id)


@pytest.fixture
def dep(tmp_path):
    """A real deployment folder (operator key, registry, signed audit log) with stand-ins."""
    d = Deployment.open(tmp_path / "home")
    stand_ins(d.registry)
    return d


def gate_for(d):
    return ConsentGate(d.registry, d.audit, d.watermark_key, liveness_checks=[], embedder=lambda wav, sr: EMBEDDING)


def cli_verify(home, capsys):
    code = main(["audit", "verify", "--home", str(home)])
    return code, capsys.readouterr().out


def rewrite_chain(lines: list[bytes]) -> list[bytes]:
    """What an attacker without the key can do: renumber and re-hash the chain of ``lines``."""
    out, prev = [], GENESIS
    for n, line in enumerate(lines, start=1):
        entry = {**json.loads(line), "seq": n, "prev": prev}
        raw = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        out.append(raw + b"\n")
        prev = hashlib.sha256(raw).hexdigest()
    return out


def unsigned_head(lines: list[bytes]) -> bytes:
    return json.dumps({"seq": len(lines), "hash": hashlib.sha256(lines[-1].rstrip(b"\n")).hexdigest()}).encode()


# ---------------------------------------------------------------- audit verify names the changed line
@pytest.mark.parametrize("changed", [1, 2, 3, 5])
def test_audit_verify_names_the_changed_line(dep, capsys, changed):
    for i in range(6):
        dep.audit.append("synthesis", i=i)
    lines = dep.audit.path.read_bytes().splitlines(keepends=True)
    lines[changed - 1] = lines[changed - 1].replace(b'"i":%d' % (changed - 1), b'"i":9')
    dep.audit.path.write_bytes(b"".join(lines))
    assert dep.audit.verify() == (False, changed)
    code, out = cli_verify(dep.home, capsys)
    assert code == 1 and f"BROKEN at line {changed}: line {changed} was changed" in out


def test_an_edited_prev_field_names_its_own_line(dep):
    for i in range(4):
        dep.audit.append("synthesis", i=i)
    lines = dep.audit.path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[2])
    lines[2] = json.dumps({**entry, "prev": "f" * 64}, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    dep.audit.path.write_bytes(b"".join(lines))
    report = dep.audit.check()
    assert (report.ok, report.line) == (False, 3) and "does not chain to line 2" in report.problem


# ---------------------------------------------------------------------------- revocation undone
def test_revocation_cleared_in_the_registry_is_still_enforced(dep, capsys):
    rec = enrol(dep.registry)
    gate = gate_for(dep)
    auth = gate.authorize(rec.voice_id, noise(seed=1), SR)
    rev = dep.registry.revoke(rec.voice_id, "speaker asked")
    with sqlite3.connect(dep.registry.db.path) as con:           # the attack: un-revoke in the database
        con.execute("UPDATE voices SET revoked = NULL, revocation = NULL")
    with pytest.raises(ConsentError, match=r"was revoked \(audit log line \d+\).*valle2 voice revoke"):
        gate.authorize(rec.voice_id, noise(seed=1), SR)
    with pytest.raises(ConsentError, match="was revoked"):
        gate.finalize(noise(seed=2), SR, auth, "after the revocation")
    fresh = Deployment.open(dep.home)                             # another process sees it too
    with pytest.raises(ConsentError, match="was revoked"):
        fresh.registry.verify_record(fresh.registry.get_record(rec.voice_id))
    code, out = cli_verify(dep.home, capsys)
    assert code == 1 and f"voice {rec.voice_id} was revoked" in out and "shows it active" in out
    again = dep.registry.revoke(rec.voice_id)                     # restores the registry's copy, logs nothing new
    assert again == rev and dep.registry.db.voice(rec.voice_id)[2] == rev.revoked
    assert [e["event"] for e in dep.audit.entries()].count("revoke") == 1
    code, out = cli_verify(dep.home, capsys)
    assert code == 0 and "agrees with the audit log" in out


def test_restoring_an_older_registry_copy_does_not_unrevoke(dep, tmp_path):
    rec = enrol(dep.registry)
    backup = tmp_path / "registry-before.db"
    with sqlite3.connect(dep.registry.db.path) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    dep.registry.revoke(rec.voice_id)
    with sqlite3.connect(backup) as src, sqlite3.connect(dep.registry.db.path) as dst:
        src.backup(dst)                                           # the attack: restore the old copy
    assert dep.registry.db.voice(rec.voice_id)[2] is None
    with pytest.raises(ConsentError, match="was revoked"):
        gate_for(dep).authorize(rec.voice_id, noise(seed=1), SR)


def test_revocation_is_signed_in_registry_and_log(dep):
    rec = enrol(dep.registry)
    rev = dep.registry.revoke(rec.voice_id, "speaker asked")
    public = load_public_key(public_key_path(dep.home / "operator.pem"))
    stored = Revocation.from_json(dep.registry.db.revocation(rec.voice_id))
    assert stored == rev and rev.key_id == key_id(public) and verify(public, rev.payload(), rev.signature)
    logged = dep.audit.entries()[-1]
    assert logged["event"] == "revoke" and logged["signature"] == rev.signature and logged["reason"] == "speaker asked"
    assert dep.registry.cross_check() == []


def test_a_voice_whose_enrolment_is_not_logged_is_refused(dep):
    """Deleting the log and its head (an empty log verifies) does not make the registry's voices usable."""
    rec = enrol(dep.registry)
    dep.registry.revoke(rec.voice_id)
    with sqlite3.connect(dep.registry.db.path) as con:
        con.execute("UPDATE voices SET revoked = NULL, revocation = NULL")
    dep.audit.path.unlink()
    dep.audit.head_path.unlink()
    fresh = Deployment.open(dep.home)
    assert fresh.audit.check().ok                                 # an empty log is consistent...
    with pytest.raises(ConsentError, match="no enrolment in the audit log"):
        fresh.registry.verify_record(fresh.registry.get_record(rec.voice_id))
    assert any("enrolment is not in the audit log" in p for p in fresh.registry.cross_check())


# ---------------------------------------------------------------------------- the log rewritten
def test_truncating_the_log_and_deleting_the_head_is_detected(dep, capsys):
    rec = enrol(dep.registry)
    dep.registry.revoke(rec.voice_id)
    lines = dep.audit.path.read_bytes().splitlines(keepends=True)
    dep.audit.path.write_bytes(b"".join(lines[:1]))               # drop everything after the enrolment
    dep.audit.head_path.unlink()
    report = dep.audit.check()
    assert not report.ok and "head file" in report.problem and "is missing" in report.problem
    code, out = cli_verify(dep.home, capsys)
    assert code == 1 and "BROKEN" in out
    with sqlite3.connect(dep.registry.db.path) as con:
        con.execute("UPDATE voices SET revoked = NULL, revocation = NULL")
    with pytest.raises(ConsentError, match="cannot be trusted.*head file"):
        Deployment.open(dep.home).registry.verify_record(dep.registry.get_record(rec.voice_id))
    with pytest.raises(ConsentError, match="no head file"):      # nor does logging bless the cut log
        dep.audit.append("synthesis")


def test_dropping_entries_and_recomputing_the_chain_is_detected(dep, tmp_path, capsys):
    rec = enrol(dep.registry)
    for i in range(3):
        dep.audit.append("synthesis", i=i)
    dep.registry.revoke(rec.voice_id)
    dep.audit.append("synthesis", i=3)
    signed_head = dep.audit.head_path.read_bytes()
    kept = [line for line in dep.audit.path.read_bytes().splitlines(keepends=True) if b'"event":"revoke"' not in line]
    forged = rewrite_chain(kept)
    dep.audit.path.write_bytes(b"".join(forged))
    with sqlite3.connect(dep.registry.db.path) as con:
        con.execute("UPDATE voices SET revoked = NULL, revocation = NULL")
    # 1. the old signed head no longer matches the log
    assert not dep.audit.check().ok
    # 2. an unsigned head computed by the attacker: refused as unsigned
    dep.audit.head_path.write_bytes(unsigned_head(forged))
    report = dep.audit.check()
    assert not report.ok and "not signed" in report.problem
    # 3. a head signed with another key
    rogue = AuditLog(tmp_path / "rogue.jsonl", key=generate_operator_key(tmp_path / "rogue.pem"))
    dep.audit.head_path.write_bytes(rogue._head_bytes(len(forged), hashlib.sha256(forged[-1][:-1]).hexdigest(), True))
    report = dep.audit.check()
    assert not report.ok and "not this deployment's operator key" in report.problem
    code, out = cli_verify(dep.home, capsys)
    assert code == 1 and "intact" not in out
    # 4. the operator's own signature from the genuine head, on the forged seq and hash
    genuine = json.loads(signed_head)
    dep.audit.head_path.write_text(json.dumps({**genuine, "seq": len(forged),
                                               "hash": hashlib.sha256(forged[-1][:-1]).hexdigest()}))
    report = dep.audit.check()
    assert not report.ok and "signature is invalid" in report.problem
    with pytest.raises(ConsentError, match="cannot be trusted"):
        Deployment.open(dep.home).registry.verify_record(dep.registry.get_record(rec.voice_id))


def test_lines_added_after_the_head_without_the_key_are_detected(dep):
    for i in range(3):
        dep.audit.append("synthesis", i=i)
    lines = dep.audit.path.read_bytes().splitlines(keepends=True)
    extra = rewrite_chain([*lines, b'{"event":"enroll","voice_id":"v_x"}', b'{"event":"enroll","voice_id":"v_y"}'])
    dep.audit.path.write_bytes(b"".join(extra))
    report = dep.audit.check()
    assert (report.ok, report.line) == (False, 4) and "without the operator key" in report.problem


def test_a_crash_between_append_and_head_update_is_accepted_and_logged(dep):
    dep.audit.append("synthesis", i=0)
    old_head = dep.audit.head_path.read_bytes()
    dep.audit.append("synthesis", i=1)
    dep.audit.head_path.write_bytes(old_head)                     # the head update never happened
    report = dep.audit.check()
    assert report.ok and report.unconfirmed == 1 and "after the head" in report.summary(dep.audit.path)
    assert dep.audit.verified_state().seq == 2
    dep.audit.append("synthesis", i=2)
    events = dep.audit.entries()
    assert [e["event"] for e in events[-2:]] == ["audit_unconfirmed_line", "synthesis"] and events[-2]["line"] == 2
    assert dep.audit.check().ok and dep.audit.check().unconfirmed == 0


# ------------------------------------------------------------------------------------ full disk
def test_a_full_disk_leaves_no_torn_line(dep, monkeypatch):
    dep.audit.append("synthesis", i=0)
    before = dep.audit.path.read_bytes()
    real_write = audit_mod.os.write

    def full(fd, data):
        real_write(fd, data[: len(data) // 2])                    # part of the line reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(audit_mod.os, "write", full)
    with pytest.raises(ConsentError, match="No space left on device.*free disk space"):
        dep.audit.append("synthesis", i=1)
    monkeypatch.setattr(audit_mod.os, "write", real_write)
    assert dep.audit.path.read_bytes() == before and dep.audit.check().ok
    dep.audit.append("synthesis", i=2)
    assert dep.audit.check().ok and dep.audit.entries()[-1]["i"] == 2


def test_a_failed_head_update_rolls_the_line_back(dep, monkeypatch):
    dep.audit.append("synthesis", i=0)
    before = dep.audit.path.read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(audit_mod, "atomic_write_bytes", full)
    for i in range(3):                                            # every try fails cleanly: no lines pile up after the head
        with pytest.raises(ConsentError, match="nothing was logged"):
            dep.audit.append("synthesis", i=i)
    monkeypatch.undo()
    assert dep.audit.path.read_bytes() == before
    dep.audit.append("synthesis", i=9)
    assert dep.audit.check().ok


def test_a_torn_last_line_is_repaired_and_logged(dep):
    rec = enrol(dep.registry)
    torn = b'{"event":"synthesis","kind":"cons'                      # a crash or power loss mid-write
    with open(dep.audit.path, "ab") as f:
        f.write(torn)
    report = dep.audit.check()
    assert report.ok and report.torn_bytes == len(torn)
    gate = gate_for(dep)
    auth = gate.authorize(rec.voice_id, noise(seed=1), SR)        # not locked out: the append repairs it
    gate.finalize(noise(seed=2), SR, auth, "after the crash")
    events = dep.audit.entries()
    repair = next(e for e in events if e["event"] == "audit_repair")
    assert repair["dropped_bytes"] == len(torn) and repair["dropped_sha256"] == hashlib.sha256(torn).hexdigest()
    assert base64.b64decode(repair["dropped_b64"]) == torn
    assert [e["event"] for e in events[-3:]] == ["audit_repair", "authorize", "synthesis"]
    assert dep.audit.check().ok and dep.audit.check().torn_bytes == 0


def test_a_torn_line_in_the_middle_stays_an_error(dep):
    for i in range(3):
        dep.audit.append("synthesis", i=i)
    lines = dep.audit.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:20] + b"\n"
    dep.audit.path.write_bytes(b"".join(lines))
    assert dep.audit.verify() == (False, 2)
    with pytest.raises(ConsentError, match="cannot be trusted"):
        Deployment.open(dep.home).audit.verified_state()


# ------------------------------------------------------------------------ logs from before signing
def test_a_log_with_an_unsigned_head_is_reported_and_upgraded(tmp_path, capsys):
    home = tmp_path / "home"
    Deployment.open(home)
    legacy = AuditLog(home / "audit.jsonl")                       # how earlier versions wrote it
    legacy.append("enroll", voice_id="v_1", name="Ada")
    legacy.append("synthesis", i=0)
    assert b"signature" not in legacy.head_path.read_bytes()
    dep = Deployment.open(home)
    report = dep.audit.check()
    assert not report.ok and report.legacy and "valle2 audit sign-head" in report.problem
    with pytest.raises(ConsentError, match="sign-head"):
        dep.audit.verified_state()
    dep.audit.append("enroll_refused", reason="logging goes on")  # appends still work, the head stays unsigned
    assert dep.audit.check().legacy
    code, out = cli_verify(home, capsys)
    assert code == 1 and "not signed" in out and "valle2 audit sign-head" in out
    assert main(["audit", "sign-head", "--home", str(home)]) == 0
    assert "head now signed" in capsys.readouterr().out
    report = Deployment.open(home).audit.check()
    assert report.ok and report.signed and report.entries == 4
    assert dep.audit.entries()[-1]["event"] == "audit_head_signed"
    assert main(["audit", "sign-head", "--home", str(home)]) == 0 and "already signed" in capsys.readouterr().out
    with pytest.raises(ConsentError, match="signed head"):       # a keyless writer cannot strip the signature
        AuditLog(home / "audit.jsonl").append("synthesis")


def test_sign_head_refuses_a_broken_chain(tmp_path, capsys):
    home = tmp_path / "home"
    Deployment.open(home)
    legacy = AuditLog(home / "audit.jsonl")
    for i in range(3):
        legacy.append("synthesis", i=i)
    lines = legacy.path.read_bytes().splitlines(keepends=True)
    legacy.path.write_bytes(lines[0] + lines[1].replace(b'"i":1', b'"i":5') + lines[2])
    assert main(["audit", "sign-head", "--home", str(home)]) == 2
    assert "line 2 was changed" in capsys.readouterr().err
    assert b"signature" not in legacy.head_path.read_bytes()


# -------------------------------------------------------------------------------- long logs
def test_authorisation_reads_only_what_was_appended(dep, monkeypatch):
    """With a 10,000-line log, each authorisation after the first parses only the new lines."""
    rec = enrol(dep.registry)
    dep.audit._append([("synthesis", {"i": i}) for i in range(10_000)])
    reg = Deployment.open(dep.home).registry
    record = reg.get_record(rec.voice_id)
    reg.verify_record(record)                                     # the first reads the whole chain once
    parsed = []
    real_loads = audit_mod.json.loads
    monkeypatch.setattr(audit_mod.json, "loads", lambda s, *a, **k: parsed.append(len(s)) or real_loads(s, *a, **k))
    for _ in range(5):
        reg.verify_record(record)
    dep.audit.append("synthesis", i=-1)
    reg.verify_record(record)
    assert len(parsed) < 20             # the head on each call, the new line; never the 10,000 lines
    dep.registry.revoke(rec.voice_id)
    with pytest.raises(ConsentError, match="revoked"):
        reg.verify_record(record)
