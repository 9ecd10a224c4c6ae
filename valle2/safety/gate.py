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

from ..audio import AudioFile, limit_peak, validate_waveform
from ..errors import ConsentError
from ..memo import ContentMemo
from ..metrics import SPEAKER_WINDOW_SECONDS
from .audit import AuditLog
from .consent import SPEAKER_THRESHOLD, ConsentRegistry, LivenessCheck  # the threshold's figures: consent.py
from .detector import detector_liveness
from .watermark import detect, embed

# Every 1.6 s window of a prompt (hop 0.5 s) must reach this cosine against the reference too, so
# that a prompt spliced from the consenting speaker and someone else is refused although the
# whole matches.  Measured with Resemblyzer windows against whole-utterance references on the
# shared real speech (dev: even-numbered LibriSpeech speakers and ARCTIC bdl/slt): the lowest
# window of a genuine dev prompt that passes the whole check is 0.645; less a 0.02 margin, 0.62.
# It adds no false refusal on dev nor on held-out LibriSpeech speakers, VCC2016, cathy or Common
# Voice, and refuses 87.9 % of 1.3 s + 1.9 s splices of held-out speakers (the whole check alone:
# 67.2 %); docs/safeguards.md has the sweep.
# Reproduce with: python -m benchmarks.speaker_threshold --windows
SPEAKER_WINDOW_THRESHOLD = 0.62
WINDOW_HOP_SECONDS = 0.5
MONITOR_LABEL = "training-monitor"   # the payload label of the training monitor's sample audio


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


def payload_for(label: str, model_id: int = 0) -> int:
    """The 16-bit watermark payload of outputs made under ``label`` (a voice id, a corpus id, or a
    fixed label such as ``"training-monitor"``): ``model_id << 8 | first byte of SHA-256(label)``."""
    return (model_id << 8) | _id_hash(label)


def mark_output(wav, sr: int, payload: int, key: bytes) -> np.ndarray:
    """What every sample valle2 lets out goes through: the peak limited to ``OUTPUT_PEAK_DBFS``
    (-1 dBFS) by one gain, then the watermark; returns float32 ``[samples]`` within [-1, 1].

    The watermark adds a little energy; should the marked clip still pass the ceiling it is scaled
    once more (a gain keeps the mark, which scales with the signal).  Raises ValueError if the
    result is not finite or not within range."""
    marked = limit_peak(embed(limit_peak(wav), sr, payload, key))
    if not np.all(np.isfinite(marked)) or (marked.size and float(np.max(np.abs(marked))) > 1.0):
        raise ValueError("the watermarked output is not finite or leaves [-1, 1]")
    return marked


def sliding_window_embeddings(embedder: Callable[[np.ndarray, int], np.ndarray], hop_seconds: float = WINDOW_HOP_SECONDS
                              ) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """Window embeddings for an arbitrary ``embedder``: it embeds each ``SPEAKER_WINDOW_SECONDS`` slice of
    the raw samples, every ``hop_seconds`` (the last ending at the end).  The default embedder
    uses :func:`valle2.metrics.speaker_window_embeddings` instead (one batch, silences skipped)."""
    def windows(wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        n, hop = int(SPEAKER_WINDOW_SECONDS * sr), max(1, int(hop_seconds * sr))
        starts = list(range(0, max(1, wav.size - n + 1), hop))
        if wav.size > n and starts[-1] != wav.size - n:
            starts.append(wav.size - n)
        embs = np.stack([np.asarray(embedder(wav[a: a + n], sr), dtype=np.float32) for a in starts])
        return embs, np.array([[a / sr, min(a + n, wav.size) / sr] for a in starts])
    return windows


def _stretches(spans: np.ndarray, bad: np.ndarray) -> list[tuple[float, float]]:
    """The failing windows' spans merged where they overlap: ``[(first s, last s)]``."""
    out: list[list[float]] = []
    for a, b in spans[bad]:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], float(b))
        else:
            out.append([float(a), float(b)])
    return [(a, b) for a, b in out]


class ConsentGate:
    """Authorises prompts against consent records or corpus attestations, watermarks and logs outputs.

    ``liveness_checks`` run on every prompt (default :func:`default_liveness_checks`: refuse prompts
    that carry the watermark, so an output cannot be laundered into a new prompt, or that the
    synthesized-speech classifier calls synthesized); the registry runs the same on consent
    recordings.  An excerpt of a file attested as a synthesizer's proved rendering
    (``CorpusAttestation.synthetic_voice``) is nobody's voice: it passes ``synthetic_checks`` (the
    watermark check) instead.  ``embedder(wav, sr) -> [256]`` defaults to
    :func:`valle2.metrics.speaker_embedding`; ``window_embedder(wav, sr) -> (embeddings [n, 256],
    spans [n, 2] seconds)`` scores every stretch of a prompt, by default
    :func:`valle2.metrics.speaker_window_embeddings` with the default embedder, else
    :func:`sliding_window_embeddings` of the given one."""

    def __init__(self, registry: ConsentRegistry, audit_log: AuditLog, watermark_key: bytes,
                 liveness_checks: Sequence[LivenessCheck] | None = None, model_id: int = 0,
                 speaker_threshold: float = SPEAKER_THRESHOLD,
                 embedder: Callable[[np.ndarray, int], np.ndarray] | None = None,
                 window_threshold: float = SPEAKER_WINDOW_THRESHOLD,
                 window_embedder: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None):
        if not 0 <= model_id < 256:
            raise ValueError(f"model_id must fit in 8 bits, got {model_id}")
        if not isinstance(watermark_key, (bytes, bytearray)) or len(watermark_key) < 16:
            raise ValueError("watermark key must be at least 16 bytes")
        self.registry, self.audit, self.key = registry, audit_log, bytes(watermark_key)
        self.liveness_checks = list(liveness_checks) if liveness_checks is not None else default_liveness_checks(self.key)
        self.synthetic_checks = [watermark_liveness(self.key)]   # what excerpts of proved synthetic-voice files pass
        self.model_id, self.threshold, self.window_threshold = model_id, speaker_threshold, window_threshold
        self.embedder = embedder or registry.embedder
        self._window_embedder = window_embedder
        self._issued: dict[str, Authorization] = {}
        self._memo = ContentMemo()  # embeddings and liveness verdicts of recent prompts (pure functions of the audio)

    def _similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    @property
    def window_embedder(self) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
        if self._window_embedder is not None:
            return self._window_embedder
        from ..metrics import speaker_embedding, speaker_window_embeddings

        if self.embedder is speaker_embedding:
            return speaker_window_embeddings
        if getattr(self, "_fallback", (None,))[0] is not self.embedder:   # built once per embedder (memo key)
            self._fallback = (self.embedder, sliding_window_embeddings(self.embedder))
        return self._fallback[1]

    def authorize(self, voice_id: str | None, prompt_wav, prompt_sr: int, corpus_file: Path | AudioFile | None = None,
                  n_outputs: int = 1) -> Authorization:
        """Allow cloning ``prompt_wav [samples]`` into ``n_outputs`` outputs only if consent covers it.

        With ``voice_id``: the record must verify (trusted signature, not revoked, not expired; read
        from the database now) and the prompt's speaker must match the enrolled embedding.  With
        ``corpus_file`` instead (a path, or an :class:`~valle2.audio.AudioFile` already read): the
        file must be listed (by SHA-256) in a signed corpus attestation, and the prompt's speaker
        must match that file's audio; the file is read once, and the bytes hashed are the bytes
        decoded.  A prompt cut from the file sample for sample matches by construction
        (similarity 1, no embedding); any other prompt must match by the embeddings, as a whole
        (cosine >= ``threshold``) and in every 1.6 s window (cosine >= ``window_threshold``), so
        that a prompt spliced from the consenting speaker and someone else is refused.  Raises
        :class:`ConsentError` with the reason otherwise."""
        wav = validate_waveform(prompt_wav, prompt_sr)
        checks = self.liveness_checks
        if voice_id is not None:
            record = self.registry.verify_record(self.registry.get_record(voice_id))
            reference, kind, corpus_id, label = np.asarray(record.embedding), "consent", None, voice_id
        elif corpus_file is not None:
            source = corpus_file if isinstance(corpus_file, AudioFile) else AudioFile.read(corpus_file)
            att = self.registry.corpus_for_sha256(source.sha256, source.name)
            file_wav, file_sr = source.load()
            excerpt = file_sr == prompt_sr and is_excerpt(wav, file_wav)
            reference = None if excerpt else self._memo(self.embedder, file_wav, file_sr)
            kind, corpus_id, label = "research", att.corpus_id, att.corpus_id
            if excerpt and att.synthetic_voice:   # proved a synthesizer's rendering: only a valle2 mark may refuse it
                checks = self.synthetic_checks
        else:
            raise ConsentError("no voice_id and no attested corpus file: cloning a voice needs a consent record; "
                               "give voice_id (an enrolled voice, or 'demo', the shipped demo voice) or corpus_file (a "
                               "file of a research corpus attested with `valle2 corpus attest`)")
        for check in checks:
            reason = self._memo(check, wav, prompt_sr)
            if reason:
                raise ConsentError(f"prompt refused by a liveness check: {reason}; use a real recording of the "
                                   "consenting speaker as the prompt")
        similarity = 1.0 if reference is None else self._similarity(np.asarray(self._memo(self.embedder, wav, prompt_sr)), reference)
        if similarity < self.threshold:
            self.audit.append("authorize_refused", voice_id=voice_id, corpus_id=corpus_id, similarity=round(similarity, 4))
            raise ConsentError(f"prompt speaker does not match the consenting voice {label}: "
                               f"similarity {similarity:.3f} < threshold {self.threshold:.3f}; use a recording of that "
                               "speaker as the prompt, or the consent record of the speaker in the prompt")
        window_min = None
        if reference is not None:
            embs, spans = self._memo(self.window_embedder, wav, prompt_sr)
            ref = reference / (np.linalg.norm(reference) + 1e-12)
            sims = np.asarray(embs, dtype=np.float64) @ ref / (np.linalg.norm(embs, axis=1) + 1e-12)
            window_min = float(sims.min())
            bad = sims < self.window_threshold
            if bad.any():
                where = _stretches(np.asarray(spans), bad)
                said = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in where)
                self.audit.append("authorize_refused", voice_id=voice_id, corpus_id=corpus_id,
                                  similarity=round(similarity, 4), window_similarity=round(window_min, 4),
                                  stretches=[[round(a, 2), round(b, 2)] for a, b in where])
                raise ConsentError(f"part of the prompt does not match the consenting voice {label}: the stretch "
                                   f"{said} scores {window_min:.3f} < window threshold {self.window_threshold:.3f} "
                                   f"(the whole prompt scores {similarity:.3f}); a prompt must hold only the "
                                   f"consenting speaker: record or cut one with nobody else's voice in it")
        if not isinstance(n_outputs, int) or n_outputs < 1:
            raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
        auth = Authorization(secrets.token_hex(12), kind, voice_id, corpus_id, similarity,
                             payload_for(label, self.model_id), time.time(), n_outputs)
        self._issued[auth.token] = (auth, n_outputs)
        self.audit.append("authorize", token=auth.token, kind=kind, voice_id=voice_id, corpus_id=corpus_id,
                          similarity=round(similarity, 4), match="embedding" if reference is not None else "excerpt",
                          **({"window_similarity": round(window_min, 4)} if window_min is not None else {}))
        return auth

    def finalize(self, wav, sr: int, auth: Authorization, text: str) -> np.ndarray:
        """Limit the peak of ``wav [samples]`` to -1 dBFS, watermark it (:func:`mark_output`) and
        log it; returns the marked float32 ``[samples]``, within [-1, 1].

        ``auth`` must come from this gate's :meth:`authorize` (each covers ``n_outputs`` outputs);
        a voice revoked since then is refused."""
        issued, left = self._issued.pop(auth.token, (None, 0)) if isinstance(auth, Authorization) else (None, 0)
        if issued != auth or left < 1:
            raise ConsentError("finalize needs an unused authorization issued by this gate's authorize(): "
                               "call authorize() again for each new output")
        if left > 1:
            self._issued[auth.token] = (auth, left - 1)
        if auth.voice_id is not None:
            self.registry.verify_record(self.registry.get_record(auth.voice_id))
        marked = mark_output(wav, sr, auth.payload, self.key)
        self.audit.append("synthesis", token=auth.token, kind=auth.kind, voice_id=auth.voice_id,
                          corpus_id=auth.corpus_id, payload=auth.payload, seconds=round(marked.size / sr, 3),
                          text_sha256=hashlib.sha256(text.encode()).hexdigest(),
                          output_sha256=output_sha256(marked))
        return marked
