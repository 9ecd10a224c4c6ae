"""Consent protocol, gate and audit log: every attack must be refused with a clear message.

Real ARCTIC fixture clips (CMU ARCTIC licence, tests/fixtures) give real speakers; the speaker
embeddings are real Resemblyzer ones.  Protocol tests replace the transcriber with one that
returns a chosen transcript; one test runs real pocketsphinx on a real recording."""
import base64
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from valle2.audio import load_audio
from valle2.errors import AudioError, ConsentError
from valle2.metrics import speaker_embedding
from valle2.safety import (AuditLog, ConsentGate, ConsentRegistry, RegistryDB, VoiceRecord,
                           embed, generate_operator_key, generate_watermark_key, load_operator_key,
                           load_watermark_key, validate_name, watermark_liveness)
from valle2.safety.consent import check_wording
from valle2.safety.gate import is_excerpt
from valle2.safety.keys import key_id, sign

from conftest import CLIPS, Said



@pytest.fixture(scope="module")
def voices():
    """Real speech: bdl's consent recording (two clips joined), another bdl clip, an slt clip."""
    a, sr = load_audio(CLIPS / "arctic_bdl_a0005.flac")
    b, _ = load_audio(CLIPS / "arctic_bdl_a0008.flac")
    c, _ = load_audio(CLIPS / "arctic_slt_a0015.flac")
    return {"consent": np.concatenate([a, b]), "bdl": b, "slt": c, "sr": sr}


@pytest.fixture
def env(tmp_path):
    wm_key = generate_watermark_key(tmp_path / "wm.key")
    op = generate_operator_key(tmp_path / "operator.pem")
    audit = AuditLog(tmp_path / "audit.jsonl", key=op)
    said = Said()
    reg = ConsentRegistry(RegistryDB(tmp_path / "registry.db"), op, audit, liveness_checks=[watermark_liveness(wm_key)],
                          transcriber=said, embedder=speaker_embedding)
    gate = ConsentGate(reg, audit, wm_key)
    return {"reg": reg, "gate": gate, "audit": audit, "said": said, "wm_key": wm_key, "tmp": tmp_path, "op": op}


def enrol(env, voices, name="John Smith"):
    phrase = env["reg"].issue_phrase(name)
    env["said"].text = phrase.text
    return env["reg"].enroll(name, voices["consent"], voices["sr"], phrase.id)


def test_enrol_authorize_finalize_round_trip(env, voices):
    rec = enrol(env, voices)
    auth = env["gate"].authorize(rec.voice_id, voices["bdl"], voices["sr"])
    assert auth.similarity >= env["gate"].threshold
    out = env["gate"].finalize(np.tile(voices["bdl"], 2), voices["sr"], auth, "hello there")
    events = [e["event"] for e in env["audit"].entries()]
    assert events == ["enroll", "authorize", "synthesis"]
    assert env["audit"].entries()[-1]["output_sha256"] and out.shape == (2 * voices["bdl"].size,)
    with pytest.raises(ConsentError, match="unused authorization"):
        env["gate"].finalize(voices["bdl"], voices["sr"], auth, "again")


def test_gate_checks_a_prompt_once_but_verifies_the_record_every_time(env, voices):
    calls = []
    def counting(wav, sr):
        calls.append(wav.size)
        return speaker_embedding(wav, sr)
    rec = enrol(env, voices)
    gate = ConsentGate(env["reg"], env["audit"], env["wm_key"], embedder=counting)
    first = gate.authorize(rec.voice_id, voices["bdl"], voices["sr"])
    n = len(calls)   # the whole prompt, then each 1.6 s window of it (the check that catches spliced prompts)
    assert calls[0] == voices["bdl"].size and n >= 2 and all(c == int(1.6 * voices["sr"]) for c in calls[1:])
    again = gate.authorize(rec.voice_id, voices["bdl"].copy(), voices["sr"])
    assert len(calls) == n and again.similarity == first.similarity  # same samples: embedded once
    with pytest.raises(ConsentError, match="does not match"):  # other samples: embedded and checked anew
        gate.authorize(rec.voice_id, voices["slt"], voices["sr"])
    assert len(calls) == n + 1
    env["reg"].revoke(rec.voice_id)
    with pytest.raises(ConsentError, match="revoked"):  # a memoised prompt never skips the record check
        gate.authorize(rec.voice_id, voices["bdl"], voices["sr"])


def test_unenrolled_voice_refused(env, voices):
    with pytest.raises(ConsentError, match="not enrolled: no consent record; `valle2 voice list` shows"):
        env["gate"].authorize("v_doesnotexist", voices["bdl"], voices["sr"])
    with pytest.raises(ConsentError, match="needs a consent record; give voice_id .* or corpus_file"):
        env["gate"].authorize(None, voices["bdl"], voices["sr"])


def test_prompt_from_another_speaker_refused(env, voices):
    rec = enrol(env, voices)
    with pytest.raises(ConsentError, match="does not match the consenting voice.*; use a recording of that speaker"):
        env["gate"].authorize(rec.voice_id, voices["slt"], voices["sr"])


@pytest.mark.parametrize("transcript, why", [
    ("i john smith agree that this system may synthesize my voice code amber tiger", "code words"),
    ("i agree that this system may synthesize my voice code {code}", "name"),
    ("john smith {code}", "word error rate"),
])
def test_wrong_words_refused(env, voices, transcript, why):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = transcript.format(code=" ".join(phrase.nonce))
    with pytest.raises(ConsentError, match=why):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    assert env["audit"].entries()[-1]["event"] == "enroll_refused"


def test_wording_rule_tolerates_small_errors():
    phrase = "I, Ann Lee, agree that this system may synthesize my voice. Code: amber tiger seven"
    check_wording("i ann lee agreed that the system may synthesize my voice code amber tiger seven", phrase, "Ann Lee",
                  ["amber", "tiger", "seven"])
    with pytest.raises(ConsentError, match="in order"):
        check_wording("i ann lee agree that this system may synthesize my voice code seven tiger amber", phrase,
                      "Ann Lee", ["amber", "tiger", "seven"])


def test_used_expired_and_foreign_phrases_refused(env, voices):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = phrase.text
    env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    with pytest.raises(ConsentError, match="already used"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    old = env["reg"].issue_phrase("John Smith", ttl=-1.0)
    env["said"].text = old.text
    with pytest.raises(ConsentError, match="expired"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], old.id)
    other = env["reg"].issue_phrase("Jane Doe")
    with pytest.raises(ConsentError, match="another name"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], other.id)
    with pytest.raises(ConsentError, match="unknown consent phrase"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], "p_nope")


def attempts(env, phrase_id):
    """``(event, attempt)`` of each audit-logged enrolment attempt with ``phrase_id``."""
    return [(e["event"], e.get("attempt")) for e in env["audit"].entries() if e.get("phrase_id") == phrase_id]


def test_a_failed_recording_leaves_the_phrase_for_another_attempt(env, voices):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = "i john smith agree that this system may synthesize my voice code"   # stumbled: no code words
    with pytest.raises(ConsentError, match=r"code words.*\(2 attempt\(s\) left with this phrase: record it again"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    env["said"].text = phrase.text
    record = env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    assert record.name == "John Smith"
    assert attempts(env, phrase.id) == [("enroll_refused", 1), ("enroll", 2)]
    with pytest.raises(ConsentError, match="already used; issue a new one with `valle2 voice phrase --name 'John Smith'`"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)


def test_an_unusable_consent_recording_uses_an_attempt_and_says_what_is_left(env, voices):
    phrase = env["reg"].issue_phrase("John Smith")
    with pytest.raises(AudioError, match=r"silent.*\(2 attempt\(s\) left with this phrase"):
        env["reg"].enroll("John Smith", np.zeros(16000, dtype=np.float32), 16000, phrase.id)
    assert attempts(env, phrase.id) == [("enroll_refused", 1)]


def test_a_third_failed_attempt_expires_the_phrase(env, voices):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = "something else entirely"
    for left in ("2 attempt", "1 attempt", "the last of 3 attempts, so the phrase has expired: issue a new one"):
        with pytest.raises(ConsentError, match=left):
            env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    env["said"].text = phrase.text   # even the right recording comes too late
    with pytest.raises(ConsentError, match="expired after 3 failed attempts; issue a new one with `valle2 voice phrase"):
        env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    assert attempts(env, phrase.id) == [("enroll_refused", 1), ("enroll_refused", 2), ("enroll_refused", 3),
                                        ("enroll_refused", None)]
    assert not env["reg"].db.query("SELECT id FROM voices")


def test_a_phrase_serves_only_the_speaker_whose_attempt_said_it(env, voices):
    """bdl says the phrase, but the recording fails a liveness check: the phrase is now bdl's; slt
    saying it is refused as another speaker; bdl's live recording then enrols."""
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = phrase.text
    fake = embed(voices["consent"], voices["sr"], 0x0102, env["wm_key"])
    with pytest.raises(ConsentError, match="liveness check.*read the phrase live.*2 attempt"):
        env["reg"].enroll("John Smith", fake, voices["sr"], phrase.id)
    with pytest.raises(ConsentError, match="not by the speaker who already read phrase .*a phrase serves one person"):
        env["reg"].enroll("John Smith", voices["slt"], voices["sr"], phrase.id)
    record = env["reg"].enroll("John Smith", voices["consent"], voices["sr"], phrase.id)
    assert attempts(env, phrase.id) == [("enroll_refused", 1), ("enroll_refused", 2), ("enroll", 3)]
    assert env["gate"].authorize(record.voice_id, voices["bdl"], voices["sr"]).voice_id == record.voice_id


def test_synthesized_consent_recording_refused(env, voices):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = phrase.text
    fake = embed(voices["consent"], voices["sr"], 0x0102, env["wm_key"])
    with pytest.raises(ConsentError, match="liveness check.*watermark"):
        env["reg"].enroll("John Smith", fake, voices["sr"], phrase.id)


def test_tampered_record_and_signature_refused(env, voices):
    reg = env["reg"]
    rec = enrol(env, voices)
    assert reg.verify_record(rec) == rec
    renamed = VoiceRecord(**{**rec.__dict__, "name": "Jane Doe"})
    with pytest.raises(ConsentError, match="invalid signature"):
        reg.verify_record(renamed)
    longer = VoiceRecord(**{**rec.__dict__, "expires": rec.expires + 1e9})
    with pytest.raises(ConsentError, match="invalid signature"):
        reg.verify_record(longer)
    sig = bytearray(base64.b64decode(rec.signature))
    sig[0] ^= 1
    flipped = VoiceRecord(**{**rec.__dict__, "signature": base64.b64encode(bytes(sig)).decode()})
    with pytest.raises(ConsentError, match="invalid signature"):
        reg.verify_record(flipped)
    # Tampering with the stored copy in the database is caught by the gate too.
    con = sqlite3.connect(reg.db.path)
    con.execute("UPDATE voices SET record = ? WHERE id = ?", (renamed.to_json(), rec.voice_id))
    con.commit()
    con.close()
    with pytest.raises(ConsentError, match="invalid signature"):
        env["gate"].authorize(rec.voice_id, voices["bdl"], voices["sr"])


def test_record_signed_by_another_key_refused(env, voices):
    rec = enrol(env, voices)
    rogue = generate_operator_key(env["tmp"] / "rogue.pem")
    forged = VoiceRecord(**{**rec.__dict__, "key_id": key_id(rogue)})
    forged = VoiceRecord(**{**forged.__dict__, "signature": sign(rogue, forged.payload())})
    with pytest.raises(ConsentError, match="not a trusted operator key"):
        env["reg"].verify_record(forged)


def test_revoked_and_expired_voices_refused(env, voices):
    rec = enrol(env, voices)
    auth = env["gate"].authorize(rec.voice_id, voices["bdl"], voices["sr"])
    env["reg"].revoke(rec.voice_id, "speaker asked")
    with pytest.raises(ConsentError, match="revoked; .* must give consent anew .`valle2 voice phrase`, then `valle2 voice enroll`"):
        env["gate"].authorize(rec.voice_id, voices["bdl"], voices["sr"])
    with pytest.raises(ConsentError, match="revoked"):
        env["gate"].finalize(voices["bdl"], voices["sr"], auth, "after revocation")
    phrase = env["reg"].issue_phrase("Jane Doe")
    env["said"].text = phrase.text
    short = env["reg"].enroll("Jane Doe", voices["consent"], voices["sr"], phrase.id, ttl=-1.0)
    with pytest.raises(ConsentError, match="expired; the speaker must enrol again .`valle2 voice phrase`"):
        env["gate"].authorize(short.voice_id, voices["bdl"], voices["sr"])
    assert "revoke" in [e["event"] for e in env["audit"].entries()]


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE voices;--", "../../etc/passwd", "a/b", "x" * 101, "",
                                  "John\x00Smith", "R2D2"])
def test_injection_and_traversal_names_refused(env, name):
    with pytest.raises(ConsentError, match="name"):
        env["reg"].issue_phrase(name)
    assert validate_name("  Anne-Marie  O'Neil ") == "Anne-Marie O'Neil"
    assert validate_name("José Ñúñez") == "José Ñúñez"
    tables = {r[0] for r in env["reg"].db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"voices", "phrases"} <= tables


def test_research_corpus_by_file_hash(env, voices, tmp_path):
    src = CLIPS / "arctic_bdl_a0008.flac"
    att = env["reg"].attest_corpus("CMU ARCTIC", [src], "CMU ARCTIC licence")
    auth = env["gate"].authorize(None, voices["bdl"], voices["sr"], corpus_file=src)
    assert auth.kind == "research" and auth.corpus_id == att.corpus_id
    assert auth.similarity == 1.0 and env["audit"].entries()[-1]["match"] == "excerpt"  # the file itself
    cut = voices["bdl"][voices["sr"] // 2: 2 * voices["sr"]]     # a prompt cut from the file: no embedding needed
    calls = []
    env["gate"].embedder = lambda wav, sr: calls.append(wav.size) or speaker_embedding(wav, sr)
    assert env["gate"].authorize(None, cut, voices["sr"], corpus_file=src).similarity == 1.0 and not calls
    edited = cut.copy()
    edited[100] += 0.01                                           # not a cut any more: the embeddings decide
    auth = env["gate"].authorize(None, edited, voices["sr"], corpus_file=src)
    assert env["gate"].threshold <= auth.similarity < 1.0 and len(calls) == 3   # file, prompt, its one window
    assert env["audit"].entries()[-1]["match"] == "embedding"
    with pytest.raises(ConsentError, match="does not match"):   # attested file named, other audio passed
        env["gate"].authorize(None, voices["slt"], voices["sr"], corpus_file=src)
    with pytest.raises(ConsentError, match="no attested research corpus"):
        env["gate"].authorize(None, voices["slt"], voices["sr"], corpus_file=CLIPS / "arctic_slt_a0015.flac")


def test_is_excerpt():
    rng = np.random.default_rng(0)
    whole = rng.standard_normal(5000).astype(np.float32)
    assert is_excerpt(whole[1200:3000], whole) and is_excerpt(whole, whole) and is_excerpt(whole[-7:], whole)
    assert not is_excerpt(whole[1200:3000] * 0.5, whole)
    assert not is_excerpt(np.concatenate([whole[:10], whole[20:30]]), whole)
    assert not is_excerpt(np.zeros(0, np.float32), whole) and not is_excerpt(np.tile(whole, 2), whole)
    silence = np.zeros(5000, np.float32)                          # every offset is a candidate: refused, fast
    assert not is_excerpt(silence[:100], silence)


def test_audit_log_detects_edit_delete_reorder(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", key=generate_operator_key(tmp_path / "op.pem"))
    for i in range(5):
        log.append("synthesis", i=i)
    assert log.verify() == (True, None)
    lines = log.path.read_bytes().splitlines(keepends=True)
    for bad, n in [(lines[:2] + [lines[2].replace(b'"i":2', b'"i":7')] + lines[3:], 3),   # the edited line itself
                   (lines[:1] + lines[2:], 2),
                   ([lines[1], lines[0]] + lines[2:], 1),
                   (lines[:4] + [lines[4].replace(b'"i":4', b'"i":9')], 5),
                   (lines[:4], 5)]:
        log.path.write_bytes(b"".join(bad))
        assert log.verify() == (False, n)
    log.path.write_bytes(b"".join(lines))
    assert log.verify() == (True, None)


def test_registry_survives_a_killed_writer(tmp_path):
    """A process killed inside a write transaction leaves the committed state intact (WAL)."""
    db_path = tmp_path / "r.db"
    db = RegistryDB(db_path)
    db.add_phrase("p1", "Ann", "text", "a b c", 0.0, 1e12)
    script = textwrap.dedent(f"""
        import os
        from valle2.safety.registry import RegistryDB
        db = RegistryDB({str(db_path)!r})
        with db.transaction() as con:
            con.execute("INSERT INTO phrases (id, name, text, nonce, created, expires) VALUES ('p2','B','t','a b c',0,1)")
            os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA integrity_check")[0][0] == "ok"
    assert [r[0] for r in db.query("SELECT id FROM phrases")] == ["p1"]


def test_keys_are_private_files(tmp_path):
    op = generate_operator_key(tmp_path / "k.pem")
    assert os.stat(tmp_path / "k.pem").st_mode & 0o777 == 0o600
    assert key_id(load_operator_key(tmp_path / "k.pem")) == key_id(op)
    os.chmod(tmp_path / "k.pem", 0o644)
    with pytest.raises(ConsentError, match="chmod 600"):
        load_operator_key(tmp_path / "k.pem")
    key = generate_watermark_key(tmp_path / "wm.key")
    assert load_watermark_key(tmp_path / "wm.key") == key and len(key) == 32
    with pytest.raises(FileExistsError):
        generate_operator_key(tmp_path / "k.pem")


def test_real_pocketsphinx_refuses_a_real_recording_of_other_words(env, voices):
    """Real ASR on a real ARCTIC recording ("Will we ever forget it."): not the phrase -> refused."""
    from valle2.metrics import transcribe

    env["reg"].transcriber = transcribe
    phrase = env["reg"].issue_phrase("Will Forget")
    wav, sr = load_audio(CLIPS / "arctic_bdl_a0005.flac")
    assert "forget" in transcribe(wav, sr)
    with pytest.raises(ConsentError, match="code words"):
        env["reg"].enroll("Will Forget", wav, sr, phrase.id)
    entry = env["audit"].entries()[-1]
    assert entry["event"] == "enroll_refused" and "forget" in entry["reason"]
