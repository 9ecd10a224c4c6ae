"""The consent protocol: one-time spoken phrases, enrolment into signed voice records,
verification, signed revocation, and signed research-corpus attestations.

A revocation is a signed :class:`Revocation` kept in the registry and in the audit log's ``revoke``
event.  :meth:`ConsentRegistry.verify_record` (which the gate calls on authorize and finalize)
refuses a voice revoked in either, and one whose ``enroll`` event is not in the verified log, so
clearing the registry's column or restoring an older ``registry.db`` does not bring a voice back.

Wording rule (``check_wording``), on the offline transcript after :func:`valle2.metrics.wer_normalize`:

1. the three nonce words appear in the transcript in order (not necessarily adjacent);
2. every word of the name appears in the transcript;
3. the word error rate of the transcript against the whole phrase is at most ``MAX_WER`` (0.35):
   pocketsphinx misses some of the fixed wording, the nonce and name must be there.

A phrase is issued for one name, expires after ``PHRASE_TTL`` seconds, is spent by the enrolment
that succeeds with it, and allows ``MAX_ATTEMPTS`` (3) attempts: a third failure expires it.  The
first attempt that says the phrase (passes the wording rule) binds it to its speaker: a later
attempt by a recording of another speaker (speaker-embedding cosine below
``SPEAKER_THRESHOLD``) is refused.  Every attempt is audit-logged (``enroll`` or
``enroll_refused``, with its ``attempt`` number), and every refusal says what to do next.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..audio import validate_waveform
from ..errors import AudioError, ConsentError
from .audit import AuditLog
from .keys import canonical_json, key_id, sign, verify
from .registry import RegistryDB

PHRASE_TTL = 15 * 60.0
RECORD_TTL = 365 * 24 * 3600.0
MAX_WER = 0.35
MAX_CONSENT_SECONDS = 60.0
MAX_ATTEMPTS = 3

# Resemblyzer cosine at the equal error rate of same- vs different-speaker trials on the shared
# real speech (251 LibriSpeech speakers as 4 s halves of their 8 s clip, plus 60 ARCTIC utterances
# each of bdl and slt): EER 0.61 % (FA 0.62 %, FR 0.61 %, 3,791 target / 189,340 impostor trials).
# Reproduce with: python -m benchmarks.speaker_threshold
# The gate matches prompts with it; enrolment, a phrase's later attempts with its first speaker.
SPEAKER_THRESHOLD = 0.7247

TEMPLATE = "I, {name}, agree that this system may synthesize my voice. Code: {code}"
WORDS = ("amber", "tiger", "seven", "river", "candle", "orange", "silver", "garden", "rocket", "window",
         "purple", "monkey", "eleven", "yellow", "pencil", "rabbit", "dollar", "forest", "hammer", "island",
         "jacket", "kitten", "lemon", "marble", "needle", "ocean", "pepper", "quarter", "ribbon", "saddle",
         "tomato", "umbrella", "violin", "wagon", "zebra", "basket", "castle", "dragon", "engine", "falcon",
         "guitar", "harbor", "insect", "jungle", "ladder", "mirror", "number", "orchard", "pirate", "rainbow",
         "summer", "thunder", "valley", "winter", "copper", "doctor", "button", "coffee", "planet", "pocket",
         "twenty", "thirty", "forty", "ninety")
NAME_RE = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")
CORPUS_NAME_RE = re.compile(r"[\w][\w .()\-]{0,99}")
LivenessCheck = Callable[[np.ndarray, int], "str | None"]


def validate_name(name: str) -> str:
    """A speaker's name, NFC-normalised with spaces collapsed: letters joined by single spaces,
    hyphens or apostrophes, 1 to 100 characters.  Raises :class:`ConsentError` otherwise."""
    if not isinstance(name, str):
        raise ConsentError(f"name must be a string, got {type(name).__name__}")
    clean = " ".join(unicodedata.normalize("NFC", name).split())
    if not 1 <= len(clean) <= 100:
        raise ConsentError(f"name must be 1 to 100 characters, got {len(clean)}: give the speaker's full name")
    if not NAME_RE.fullmatch(clean):
        bad = sorted({c for c in clean if not (c.isalpha() or c in " '-")})
        detail = f"characters {bad!r} are not allowed" if bad else "separators must sit between letters"
        raise ConsentError(f"invalid name {name!r}: {detail}; use letters, spaces, hyphens and apostrophes only")
    return clean


def _words(text: str) -> list[str]:
    from ..metrics import wer_normalize

    return wer_normalize(text).split()


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def check_wording(transcript: str, phrase_text: str, name: str, nonce: Sequence[str]) -> None:
    """Apply the module's wording rule; raises :class:`ConsentError` naming what is missing."""
    said = _words(transcript)
    it = iter(said)
    if not all(any(w == s for s in it) for w in nonce):
        raise ConsentError(f"consent recording does not say the code words '{' '.join(nonce)}' in order "
                           f"(heard: '{' '.join(said)}')")
    missing = [w for w in _words(name) if w not in said]
    if missing:
        raise ConsentError(f"consent recording does not say the name (missing {missing}; heard: '{' '.join(said)}')")
    ref = _words(phrase_text)
    wer = _edit_distance(ref, said) / len(ref)
    if wer > MAX_WER:
        raise ConsentError(f"consent recording does not match the phrase: word error rate {wer:.2f} > {MAX_WER}")


@dataclass(frozen=True)
class Phrase:
    """A one-time consent phrase issued for ``name``: read ``text`` aloud before ``expires``."""

    id: str
    name: str
    text: str
    nonce: tuple[str, str, str]
    created: float
    expires: float


def _tuples(value):
    """JSON arrays back to the tuples the frozen records hold (nested arrays too)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class SignedRecord:
    """A frozen record whose ``signature`` signs :meth:`payload`: every other field, as canonical JSON
    (tuples as arrays).  Subclasses add the fields and end with ``key_id`` and ``signature``."""

    def payload(self) -> dict:
        d = asdict(self)
        d.pop("signature")
        return d

    def to_json(self) -> str:
        return canonical_json({**self.payload(), "signature": self.signature}).decode()

    @classmethod
    def from_json(cls, text: str):
        return cls(**{k: _tuples(v) for k, v in json.loads(text).items()})


@dataclass(frozen=True)
class VoiceRecord(SignedRecord):
    """A signed consent record.  ``embedding`` is the speaker embedding ``[256]`` of the consent
    recording; ``signature`` signs :meth:`payload` (every other field) with key ``key_id``."""

    voice_id: str
    name: str
    phrase: str
    audio_sha256: str
    embedding: tuple[float, ...]
    created: float
    expires: float
    key_id: str
    signature: str = ""


@dataclass(frozen=True)
class CorpusAttestation(SignedRecord):
    """A signed statement that ``files`` (each ``{"name", "sha256"}``) form research corpus
    ``name`` under ``licence``; prompts whose source file hash is listed may be used.

    ``synthetic_voice`` (``ENGINE:NAME``, e.g. ``flite:kal16``) states that every file is that
    synthesizer's rendering, which :func:`valle2.data.synthetic.attest_synthetic_corpus` proves by
    rendering each transcript again before it signs; excerpts of such files are nobody's voice, so
    the gate does not ask the synthesized-speech classifier about them.  Signed only when set, so
    attestations made before it verify unchanged."""

    corpus_id: str
    name: str
    licence: str
    files: tuple[tuple[str, str], ...]
    created: float
    key_id: str
    signature: str = ""
    synthetic_voice: str = ""

    def payload(self) -> dict:
        d = super().payload()
        if not d["synthetic_voice"]:
            d.pop("synthetic_voice")
        return d


@dataclass(frozen=True)
class Revocation(SignedRecord):
    """A signed statement that consent record ``voice_id`` was revoked at ``revoked`` (Unix time),
    for ``reason``.  Stored in the registry and in the audit log's ``revoke`` event."""

    voice_id: str
    revoked: float
    reason: str
    key_id: str
    signature: str = ""


@dataclass(frozen=True)
class AdapterRecord(SignedRecord):
    """A signed statement that the adapter bytes with SHA-256 ``sha256`` (:mod:`valle2.adapt`) belong
    to voice ``voice_id`` (``kind`` "consent": an enrolled ``v_...`` voice; "research": ``r_...``,
    adapted from files of an attested research corpus), named ``name``, made at ``created``."""

    voice_id: str
    kind: str
    name: str
    sha256: str
    created: float
    key_id: str
    signature: str = ""


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ConsentRegistry:
    """The consent protocol over a :class:`RegistryDB`.

    ``operator_key`` signs new records; ``trusted_keys`` verify them (default: the operator's
    public key).  ``liveness_checks`` run on every consent recording: each returns a reason to
    refuse it, or None.  ``transcriber(wav, sr) -> str`` and ``embedder(wav, sr) -> [256]`` default
    to :func:`valle2.metrics.transcribe` and :func:`valle2.metrics.speaker_embedding`."""

    db: RegistryDB
    operator_key: Ed25519PrivateKey
    audit: AuditLog
    trusted_keys: list[Ed25519PublicKey] = field(default_factory=list)
    liveness_checks: Sequence[LivenessCheck] = ()
    transcriber: Callable[[np.ndarray, int], str] | None = None
    embedder: Callable[[np.ndarray, int], np.ndarray] | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self):
        if not self.trusted_keys:
            self.trusted_keys = [self.operator_key.public_key()]
        if self.transcriber is None:
            from ..metrics import transcribe
            self.transcriber = transcribe
        if self.embedder is None:
            from ..metrics import speaker_embedding
            self.embedder = speaker_embedding

    # ------------------------------------------------------------------------------- phrases
    def issue_phrase(self, name: str, ttl: float = PHRASE_TTL) -> Phrase:
        """A fresh phrase for ``name`` with three random code words, valid for ``ttl`` seconds."""
        name = validate_name(name)
        nonce = tuple(secrets.choice(WORDS) for _ in range(3))
        now = self.clock()
        phrase = Phrase("p_" + secrets.token_hex(12), name, TEMPLATE.format(name=name, code=" ".join(nonce)),
                        nonce, now, now + ttl)
        self.db.add_phrase(phrase.id, name, phrase.text, " ".join(nonce), now, phrase.expires)
        return phrase

    # ------------------------------------------------------------------------------ enrolment
    def enroll(self, name: str, consent_wav, sr: int, phrase_id: str, ttl: float = RECORD_TTL) -> VoiceRecord:
        """Verify a recording of the phrase ``phrase_id`` and store a signed :class:`VoiceRecord`.

        Refuses (``ConsentError``, saying what to do next) an unknown, used or expired phrase, and
        counts as one of the phrase's ``MAX_ATTEMPTS`` attempts a refusal for another name, wrong
        wording, a speaker other than the one the phrase is bound to, a failed liveness check."""
        name = validate_name(name)
        row = self.db.phrase(phrase_id) if isinstance(phrase_id, str) else None
        if row is None:
            raise ConsentError(f"unknown consent phrase id {phrase_id!r}: give the id that `valle2 voice phrase` "
                               "printed, or issue a new phrase with `valle2 voice phrase --name NAME`")
        p_name, p_text, p_nonce = row[:3]
        now = self.clock()
        attempt = self.db.claim_attempt(phrase_id, now, MAX_ATTEMPTS)
        if attempt is None:
            p_used, p_attempts = self.db.phrase(phrase_id)[5:7]
            why = ("was already used" if p_used is not None else
                   f"expired after {p_attempts} failed attempts" if p_attempts >= MAX_ATTEMPTS else "expired")
            reason = f"consent phrase {phrase_id} {why}; issue a new one with `valle2 voice phrase --name '{name}'`"
            self.audit.append("enroll_refused", name=name, phrase_id=phrase_id, reason=reason)
            raise ConsentError(reason)
        try:
            if p_name != name:
                raise ConsentError(f"consent phrase {phrase_id} was issued for another name: give the name exactly "
                                   "as given to `valle2 voice phrase`")
            wav = validate_waveform(consent_wav, sr, max_seconds=MAX_CONSENT_SECONDS)
            check_wording(self.transcriber(wav, sr), p_text, name, p_nonce.split())
            emb = np.asarray(self.embedder(wav, sr), dtype=np.float64)
            self._check_phrase_speaker(phrase_id, emb)
            for check in self.liveness_checks:
                reason = check(wav, sr)
                if reason:
                    raise ConsentError(f"consent recording failed a liveness check: {reason}; the speaker must read "
                                       "the phrase live into a microphone, not play a recording or synthesized speech")
        except (ConsentError, AudioError) as e:   # a refused recording: one attempt used, logged
            left = MAX_ATTEMPTS - attempt
            then = (f"{left} attempt(s) left with this phrase: record it again and rerun the enrolment" if left else
                    f"that was the last of {MAX_ATTEMPTS} attempts, so the phrase has expired: issue a new one "
                    f"with `valle2 voice phrase --name '{name}'`")
            self.audit.append("enroll_refused", name=name, phrase_id=phrase_id, attempt=attempt, reason=str(e))
            raise type(e)(f"{e} ({then})") from None
        record = VoiceRecord("v_" + secrets.token_hex(8), name, p_text,
                             hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest(),
                             tuple(round(float(v), 7) for v in emb), now, now + ttl, key_id(self.operator_key))
        record = VoiceRecord(**{**asdict(record), "embedding": record.embedding,
                                "signature": sign(self.operator_key, record.payload())})
        with self.db.transaction() as con:
            if not self.db.consume_phrase(con, phrase_id, now):   # another attempt enrolled with it meanwhile
                raise ConsentError(f"consent phrase {phrase_id} was already used; issue a new one with "
                                   f"`valle2 voice phrase --name '{name}'`")
            self.db.add_voice(con, record.voice_id, name, record.to_json(), record.signature)
            self.audit.append("enroll", voice_id=record.voice_id, name=name, phrase_id=phrase_id, attempt=attempt,
                              audio_sha256=record.audio_sha256, key_id=record.key_id)
        return record

    def _check_phrase_speaker(self, phrase_id: str, emb: np.ndarray) -> None:
        """Bind phrase ``phrase_id`` to the speaker embedding ``emb [256]`` of the first recording
        that said it; ConsentError for a recording whose speaker does not match the bound one."""
        kept = np.asarray(json.loads(self.db.bind_speaker(phrase_id, json.dumps([float(v) for v in emb]))))
        cosine = float(np.dot(kept, emb) / (np.linalg.norm(kept) * np.linalg.norm(emb) + 1e-12))
        if cosine < SPEAKER_THRESHOLD:
            raise ConsentError(f"consent recording is not by the speaker who already read phrase {phrase_id} "
                               f"(similarity {cosine:.3f} < {SPEAKER_THRESHOLD:.3f}): a phrase serves one person only; "
                               "that person must record it, or issue a new phrase for this speaker")

    # --------------------------------------------------------------------------- verification
    def _check_signed(self, payload: dict, signature: str, kid: str, what: str) -> None:
        keys = [k for k in self.trusted_keys if key_id(k) == kid]
        if not keys:
            raise ConsentError(f"{what} is signed by key {kid}, which is not a trusted operator key: add that "
                               "operator's public key to this deployment's trusted keys, or issue the record again "
                               "with this deployment's key (`valle2 voice enroll`, `valle2 corpus attest`)")
        if not verify(keys[0], payload, signature):
            raise ConsentError(f"{what} has an invalid signature: it was altered or forged; run `valle2 audit verify`, "
                               "restore the registry from a backup, or issue the record again (`valle2 voice enroll`, "
                               "`valle2 corpus attest`)")

    def get_record(self, voice_id: str) -> VoiceRecord:
        """The stored record of ``voice_id``, read from the database now."""
        row = self.db.voice(voice_id) if isinstance(voice_id, str) else None
        if row is None:
            raise ConsentError(f"voice {voice_id!r} is not enrolled: no consent record; `valle2 voice list` shows the "
                               "enrolled voices, `valle2 voice phrase` then `valle2 voice enroll` enrol one, and the "
                               "shipped demo voice is 'demo'")
        return VoiceRecord.from_json(row[0])

    def verify_record(self, record: VoiceRecord) -> VoiceRecord:
        """Check ``record``'s signature with the trusted keys, its expiry, that it is the stored
        record, and that it is not revoked (read now) in the registry nor in the verified audit
        log, whose ``enroll`` event it must have.  Returns it, or raises ConsentError."""
        vid = record.voice_id
        self._check_signed(record.payload(), record.signature, record.key_id, f"consent record {vid}")
        row = self.db.voice(vid)
        if row is None:
            raise ConsentError(f"voice {vid} is not enrolled in this registry: `valle2 voice list` shows the enrolled "
                               "voices; check --home / $VALLE2_HOME names the deployment that enrolled it")
        if row[2] is not None:
            raise ConsentError(f"voice {vid} was revoked; it can no longer be used: the speaker must give consent "
                               "anew (`valle2 voice phrase`, then `valle2 voice enroll`)")
        if row[1] != record.signature:
            raise ConsentError(f"consent record {vid} differs from the registry's copy: use the record as stored "
                               "(by its voice id), and run `valle2 audit verify`")
        state = self.audit.verified_state()
        if vid in state.revoked:
            raise ConsentError(f"voice {vid} was revoked (audit log line {state.revoked[vid]}); it can no longer be "
                               f"used.  The registry had lost that revocation: '{self.db.path}' was edited or restored "
                               f"from an older copy; run `valle2 voice revoke {vid}` to restore it there, and "
                               "`valle2 audit verify`")
        if vid not in state.enrolled:
            raise ConsentError(f"consent record {vid} has no enrolment in the audit log '{self.audit.path}': the log "
                               "was replaced or truncated, or the record was added to the registry by hand; run "
                               "`valle2 audit verify` and restore the log from a backup")
        if self.clock() >= record.expires:
            raise ConsentError(f"consent record {vid} expired; the speaker must enrol again (`valle2 voice phrase`, "
                               "then `valle2 voice enroll`)")
        return record

    def revoke(self, voice_id: str, reason: str = "") -> Revocation:
        """Revoke ``voice_id`` at once with a signed :class:`Revocation`, stored in the registry
        (first: it takes effect even when the log cannot be written) and in the audit log.  Running
        it again for a revoked voice restores whichever of the two copies is missing."""
        row = self.db.voice(voice_id) if isinstance(voice_id, str) else None
        if row is None:
            raise ConsentError(f"voice {voice_id!r} is not enrolled: `valle2 voice list` shows the enrolled voices")
        stored = self.db.revocation(voice_id)
        logged = self._logged_revocation(voice_id)
        try:
            rev = Revocation.from_json(stored) if stored else None
        except (ValueError, TypeError):
            rev = stored = None       # an unreadable copy: replaced by a freshly signed one below
        if rev is None and logged is not None and logged.signature:
            rev = logged
        if rev is None:
            rev = Revocation(voice_id, row[2] if row[2] is not None else self.clock(), str(reason or ""),
                             key_id(self.operator_key))
            rev = Revocation(**{**asdict(rev), "signature": sign(self.operator_key, rev.payload())})
        if row[2] is None:
            self.db.revoke_voice(voice_id, rev.revoked, rev.to_json())
        elif not stored:      # revoked before revocations were signed: store the signed statement
            with self.db.transaction() as con:
                con.execute("UPDATE voices SET revocation = ? WHERE id = ? AND revocation IS NULL",
                            (rev.to_json(), voice_id))
        if logged is None or not logged.signature:
            try:
                self.audit.append("revoke", **rev.payload(), signature=rev.signature)
            except ConsentError as e:
                raise ConsentError(f"voice {voice_id} is revoked in the registry, but the revocation could not be "
                                   f"written to the audit log: {e}.  Then run `valle2 voice revoke {voice_id}` again "
                                   "to log it") from None
        return rev

    def _logged_revocation(self, voice_id: str) -> Revocation | None:
        """The last revocation of ``voice_id`` in the audit log (signature empty for one logged by a
        valle2 from before signed revocations), or None."""
        try:
            if voice_id not in self.audit.verified_state().revoked:
                return None
        except ConsentError:
            pass     # the log cannot be trusted: look at what it holds
        for entry in reversed(self.audit.entries()):
            if entry.get("event") == "revoke" and entry.get("voice_id") == voice_id:
                if "signature" not in entry:
                    return Revocation(voice_id, float(entry.get("time", 0.0)), str(entry.get("reason", "")), "", "")
                return Revocation(**{k: entry.get(k) for k in ("voice_id", "revoked", "reason", "key_id", "signature")})
        return None

    def cross_check(self) -> list[str]:
        """Disagreements between the registry and the verified audit log, each with what to do:
        a revocation the registry lost, a revocation not logged, a voice with no logged enrolment,
        a logged revocation whose signature fails.  Raises ConsentError when the log is broken."""
        state = self.audit.verified_state()
        problems = []
        for vid, revoked in self.db.query("SELECT id, revoked FROM voices ORDER BY created"):
            if vid not in state.enrolled:
                problems.append(f"voice {vid} is in the registry but its enrolment is not in the audit log: the log "
                                "was replaced or truncated, or the registry edited; it is refused until that is resolved")
            if vid in state.revoked and revoked is None:
                problems.append(f"voice {vid} was revoked (audit log line {state.revoked[vid]}) but the registry shows "
                                f"it active: '{self.db.path}' was edited or restored from an older copy; it is refused, "
                                f"and `valle2 voice revoke {vid}` restores the revocation there")
            if revoked is not None and vid not in state.revoked:
                problems.append(f"voice {vid} is revoked in the registry but the revocation is not in the audit log "
                                f"(an interrupted revocation); run `valle2 voice revoke {vid}` to log it")
        for entry in self.audit.entries():
            if entry.get("event") == "revoke" and "signature" in entry:
                rev = Revocation(**{k: entry.get(k) for k in ("voice_id", "revoked", "reason", "key_id", "signature")})
                try:
                    self._check_signed(rev.payload(), rev.signature, rev.key_id, f"revocation of {rev.voice_id} "
                                       f"(audit log line {entry.get('seq')})")
                except ConsentError as e:
                    problems.append(f"{e}; the voice stays revoked")
        return problems

    # ------------------------------------------------------------------------------- adapters
    def store_adapter(self, voice_id: str, kind: str, name: str, data: bytes) -> AdapterRecord:
        """Sign and store ``data`` as voice ``voice_id``'s adapter (replacing any earlier one), in
        one transaction; a consent voice must verify first (enrolled, not revoked)."""
        if kind == "consent":
            self.verify_record(self.get_record(voice_id))
        rec = AdapterRecord(voice_id, kind, name, hashlib.sha256(data).hexdigest(), self.clock(), key_id(self.operator_key))
        rec = AdapterRecord(**{**asdict(rec), "signature": sign(self.operator_key, rec.payload())})
        self.db.put_adapter(voice_id, rec.to_json(), data)
        self.audit.append("adapt", voice_id=voice_id, kind=kind, sha256=rec.sha256, bytes=len(data))
        return rec

    def adapter(self, voice_id: str) -> tuple[AdapterRecord, bytes] | None:
        """Voice ``voice_id``'s adapter as stored, its signature and hash checked (and, for a consent
        voice, its record verified: a revoked voice's adapter is refused), or None when it has none.
        ConsentError when the record or bytes were altered."""
        row = self.db.adapter(voice_id) if isinstance(voice_id, str) else None
        if row is None:
            return None
        try:
            rec = AdapterRecord.from_json(row[0])
        except (ValueError, TypeError):
            raise ConsentError(f"the adapter record of voice {voice_id} cannot be read: adapt the voice again "
                               "(`valle2 voice adapt`)") from None
        self._check_signed(rec.payload(), rec.signature, rec.key_id, f"the adapter of voice {voice_id}")
        if rec.voice_id != voice_id or hashlib.sha256(row[1]).hexdigest() != rec.sha256:
            raise ConsentError(f"the adapter of voice {voice_id} differs from what was signed: it was altered; adapt "
                               "the voice again (`valle2 voice adapt`) and run `valle2 audit verify`")
        if rec.kind == "consent":
            self.verify_record(self.get_record(voice_id))
        return rec, row[1]

    # -------------------------------------------------------------------------------- corpora
    def attest_corpus(self, name: str, files: Sequence[Path], licence: str, synthetic_voice: str = "") -> CorpusAttestation:
        """Sign and store a research-corpus attestation listing each file's SHA-256 (``synthetic_voice``:
        see :class:`CorpusAttestation`; set it only where each file was proved that voice's rendering)."""
        if not isinstance(name, str) or not CORPUS_NAME_RE.fullmatch(name):
            raise ConsentError(f"invalid corpus name {name!r}: letters, digits, spaces and . - _ ( ) only, 1-100 characters")
        if not isinstance(licence, str) or not licence.strip():
            raise ConsentError("a corpus attestation needs the corpus licence: give it, e.g. 'CC BY 4.0'")
        listed = tuple((Path(f).name, file_sha256(f)) for f in files)
        if not listed:
            raise ConsentError("a corpus attestation needs at least one file: list the corpus's audio files")
        att = CorpusAttestation("c_" + secrets.token_hex(8), name, licence.strip(), listed, self.clock(),
                                key_id(self.operator_key), synthetic_voice=synthetic_voice)
        att = CorpusAttestation(**{**asdict(att), "files": listed, "signature": sign(self.operator_key, att.payload())})
        self.db.add_corpus(att.corpus_id, name, att.to_json(), att.signature, [h for _, h in listed])
        self.audit.append("attest_corpus", corpus_id=att.corpus_id, name=name, licence=att.licence, files=len(listed),
                          **({"synthetic_voice": synthetic_voice} if synthetic_voice else {}))
        return att

    def import_attestation(self, att: CorpusAttestation) -> CorpusAttestation:
        """Store an attestation signed elsewhere (e.g. the demo voice's, shipped in the package)
        after checking its signature against the trusted keys; importing it twice is a no-op."""
        self._check_signed(att.payload(), att.signature, att.key_id, f"corpus attestation {att.corpus_id}")
        if not self.db.query("SELECT 1 FROM corpora WHERE id = ?", (att.corpus_id,)):
            self.db.add_corpus(att.corpus_id, att.name, att.to_json(), att.signature, [h for _, h in att.files])
            self.audit.append("import_attestation", corpus_id=att.corpus_id, name=att.name, key_id=att.key_id)
        return att

    def import_attestation_file(self, path) -> CorpusAttestation:
        """Import a signed attestation JSON file (see :meth:`import_attestation`)."""
        return self.import_attestation(CorpusAttestation.from_json(Path(path).read_text()))

    def corpus_for_file(self, path) -> CorpusAttestation:
        """A verified attestation listing the file at ``path`` (matched by SHA-256 of its bytes)."""
        return self.corpus_for_sha256(file_sha256(path), str(path))

    def corpus_for_sha256(self, digest: str, name: str) -> CorpusAttestation:
        """A verified attestation listing a file whose bytes have SHA-256 ``digest`` (hex); ``name``
        names the file in the refusal.  Hash the bytes you decode (:class:`valle2.audio.AudioFile`)."""
        for text, _ in self.db.corpora_with_file(digest):
            att = CorpusAttestation.from_json(text)
            self._check_signed(att.payload(), att.signature, att.key_id, f"corpus attestation {att.corpus_id}")
            if digest in {h for _, h in att.files}:
                return att
        raise ConsentError(f"prompt file '{name}' is in no attested research corpus: speak in an enrolled voice "
                           "(voice_id: an id from `valle2 voice list`, or 'demo', the shipped demo voice), or, if the "
                           "file belongs to a licensed research corpus, attest it with `valle2 corpus attest --name "
                           "NAME --licence LICENCE FILES`")
