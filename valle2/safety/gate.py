"""The one gate every synthesis passes: :meth:`ConsentGate.authorize` before decoding,
:meth:`ConsentGate.finalize` (watermark + audit) before any sample leaves."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..audio import load_audio, validate_waveform
from ..memo import ContentMemo
from . import ConsentError
from .audit import AuditLog
from .consent import ConsentRegistry, LivenessCheck
from .detector import detector_liveness
from .watermark import detect, embed

# Resemblyzer cosine at the equal error rate of same- vs different-speaker trials on the shared
# real speech (251 LibriSpeech speakers as 4 s halves of their 8 s clip, plus 60 ARCTIC utterances
# each of bdl and slt): EER 0.61 % (FA 0.62 %, FR 0.61 %, 3,791 target / 189,340 impostor trials).
# Reproduce with: python benchmarks/speaker_threshold.py
SPEAKER_THRESHOLD = 0.7247


def watermark_liveness(key: bytes) -> LivenessCheck:
    """A liveness check that refuses audio carrying this deployment's watermark (a valle2 output)."""
    def check(wav: np.ndarray, sr: int) -> str | None:
        found = detect(wav, sr, key)
        return f"it carries a valle2 watermark (score {found.score:.1f}): it is synthesized speech" if found.present else None
    return check


def default_liveness_checks(key: bytes) -> list[LivenessCheck]:
    """What every consent recording and every prompt must pass: no valle2 watermark of this
    deployment, and the synthesized-speech classifier (:mod:`valle2.safety.detector`) does not call
    it synthesized."""
    return [watermark_liveness(key), detector_liveness()]


@dataclass(frozen=True)
class Authorization:
    """Permission for one synthesis.  ``kind`` is "consent" (``voice_id`` set) or "research"
    (``corpus_id`` set); ``payload`` is the 16-bit watermark payload (model id << 8 | id hash)."""

    token: str
    kind: str
    voice_id: str | None
    corpus_id: str | None
    similarity: float
    payload: int
    issued: float
    n_outputs: int = 1


def output_sha256(wav) -> str:
    """SHA-256 (hex) of output samples ``[samples]`` as little-endian float32: the audit log's ``output_sha256``."""
    return hashlib.sha256(np.asarray(wav, dtype="<f4").tobytes()).hexdigest()


def is_excerpt(part: np.ndarray, whole: np.ndarray, max_candidates: int = 64) -> bool:
    """True when ``part [n]`` equals ``whole[i:i + n]`` sample for sample for some ``i``.

    Candidate offsets are where ``whole`` holds ``part``'s loudest sample at the right distance;
    each is checked in full (at most ``max_candidates``, so that a clip of repeated values cannot
    make this slow: it then answers False)."""
    part, whole = np.asarray(part, dtype=np.float32), np.asarray(whole, dtype=np.float32)
    n = part.size
    if n == 0 or n > whole.size or part.ndim != 1 or whole.ndim != 1:
        return False
    k = int(np.argmax(np.abs(part)))
    starts = np.flatnonzero(whole[k: whole.size - n + 1 + k] == part[k])
    return len(starts) <= max_candidates and any(np.array_equal(whole[i:i + n], part) for i in starts)


def _id_hash(text: str) -> int:
    return hashlib.sha256(text.encode()).digest()[0]


class ConsentGate:
    """Authorises prompts against consent records or corpus attestations, watermarks and logs outputs.

    ``liveness_checks`` run on every prompt (default :func:`default_liveness_checks`: refuse prompts
    that carry the watermark, so an output cannot be laundered into a new prompt, or that the
    synthesized-speech classifier calls synthesized); the registry runs the same on consent
    recordings.  ``embedder(wav, sr) -> [256]`` defaults to
    :func:`valle2.metrics.speaker_embedding`."""

    def __init__(self, registry: ConsentRegistry, audit_log: AuditLog, watermark_key: bytes,
                 liveness_checks: Sequence[LivenessCheck] | None = None, model_id: int = 0,
                 speaker_threshold: float = SPEAKER_THRESHOLD,
                 embedder: Callable[[np.ndarray, int], np.ndarray] | None = None):
        if not 0 <= model_id < 256:
            raise ValueError(f"model_id must fit in 8 bits, got {model_id}")
        if not isinstance(watermark_key, (bytes, bytearray)) or len(watermark_key) < 16:
            raise ValueError("watermark key must be at least 16 bytes")
        self.registry, self.audit, self.key = registry, audit_log, bytes(watermark_key)
        self.liveness_checks = list(liveness_checks) if liveness_checks is not None else default_liveness_checks(self.key)
        self.model_id, self.threshold = model_id, speaker_threshold
        self.embedder = embedder or registry.embedder
        self._issued: dict[str, Authorization] = {}
        self._memo = ContentMemo()  # embeddings and liveness verdicts of recent prompts (pure functions of the audio)

    def _similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    def authorize(self, voice_id: str | None, prompt_wav, prompt_sr: int, corpus_file: Path | None = None,
                  n_outputs: int = 1) -> Authorization:
        """Allow cloning ``prompt_wav [samples]`` into ``n_outputs`` outputs only if consent covers it.

        With ``voice_id``: the record must verify (trusted signature, not revoked, not expired; read
        from the database now) and the prompt's speaker must match the enrolled embedding (cosine >=
        threshold).  With ``corpus_file`` instead: the file must be listed (by SHA-256) in a signed
        corpus attestation, and the prompt's speaker must match that file's audio: a prompt cut
        from the file sample for sample matches by construction (similarity 1, no embedding),
        any other prompt by the embeddings.  Raises :class:`ConsentError` with the reason otherwise."""
        wav = validate_waveform(prompt_wav, prompt_sr)
        if voice_id is not None:
            record = self.registry.verify_record(self.registry.get_record(voice_id))
            reference, kind, corpus_id, label = np.asarray(record.embedding), "consent", None, voice_id
        elif corpus_file is not None:
            att = self.registry.corpus_for_file(corpus_file)
            file_wav, file_sr = load_audio(corpus_file)
            excerpt = file_sr == prompt_sr and is_excerpt(wav, file_wav)
            reference = None if excerpt else self._memo(self.embedder, file_wav, file_sr)
            kind, corpus_id, label = "research", att.corpus_id, att.corpus_id
        else:
            raise ConsentError("no voice_id and no attested corpus file: cloning a voice needs a consent record")
        for check in self.liveness_checks:
            reason = self._memo(check, wav, prompt_sr)
            if reason:
                raise ConsentError(f"prompt refused by a liveness check: {reason}")
        similarity = 1.0 if reference is None else self._similarity(np.asarray(self._memo(self.embedder, wav, prompt_sr)), reference)
        if similarity < self.threshold:
            self.audit.append("authorize_refused", voice_id=voice_id, corpus_id=corpus_id, similarity=round(similarity, 4))
            raise ConsentError(f"prompt speaker does not match the consenting voice {label}: "
                               f"similarity {similarity:.3f} < threshold {self.threshold:.3f}")
        if not isinstance(n_outputs, int) or n_outputs < 1:
            raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
        auth = Authorization(secrets.token_hex(12), kind, voice_id, corpus_id, similarity,
                             (self.model_id << 8) | _id_hash(label), time.time(), n_outputs)
        self._issued[auth.token] = (auth, n_outputs)
        self.audit.append("authorize", token=auth.token, kind=kind, voice_id=voice_id, corpus_id=corpus_id,
                          similarity=round(similarity, 4), match="embedding" if reference is not None else "excerpt")
        return auth

    def finalize(self, wav, sr: int, auth: Authorization, text: str) -> np.ndarray:
        """Watermark ``wav [samples]`` and log it; returns the marked float32 ``[samples]``.

        ``auth`` must come from this gate's :meth:`authorize` (each covers ``n_outputs`` outputs);
        a voice revoked since then is refused."""
        issued, left = self._issued.pop(auth.token, (None, 0)) if isinstance(auth, Authorization) else (None, 0)
        if issued != auth or left < 1:
            raise ConsentError("finalize needs an unused authorization issued by this gate's authorize()")
        if left > 1:
            self._issued[auth.token] = (auth, left - 1)
        if auth.voice_id is not None:
            self.registry.verify_record(self.registry.get_record(auth.voice_id))
        marked = embed(wav, sr, auth.payload, self.key)
        self.audit.append("synthesis", token=auth.token, kind=auth.kind, voice_id=auth.voice_id,
                          corpus_id=auth.corpus_id, payload=auth.payload, seconds=round(marked.size / sr, 3),
                          text_sha256=hashlib.sha256(text.encode()).hexdigest(),
                          output_sha256=output_sha256(marked))
        return marked
