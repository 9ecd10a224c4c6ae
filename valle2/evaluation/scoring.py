"""Scoring one waveform (WER, SIM to prompt and to original, DNSMOS), the paper's best-of-N
reranking, and corpus-level summaries of per-utterance records."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..metrics import wer_normalize, word_errors
from .backends import ASR, SpeakerEncoder

SIM_CAP = 0.3
"""Best-of-N ranks by ``(min(SIM, SIM_CAP), -WER)``: above this similarity only WER counts."""
LOOP_REPEATS = 3
"""A repetition loop: a run of 1-4 words said this many times in a row (more than the reference says it)."""


def longest_repeat(words: list[str], max_n: int = 4) -> int:
    """The most times any run of 1..``max_n`` words follows itself back to back in ``words``."""
    best = 1 if words else 0
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            k = 1
            while words[start + k * n: start + (k + 1) * n] == words[start: start + n]:
                k += 1
            best = max(best, k)
    return best


def repetition_loop(reference: str, hypothesis: str) -> bool:
    """Whether the recognised ``hypothesis`` holds a repeated-word loop: a run of 1-4 words said
    :data:`LOOP_REPEATS` or more times back to back, and more often than the reference repeats any."""
    hyp = longest_repeat(wer_normalize(hypothesis).split())
    return hyp >= LOOP_REPEATS and hyp > longest_repeat(wer_normalize(reference).split())


@dataclass
class Scores:
    """Metrics of one waveform.  ``wer = errors / ref_words`` (0..1+); similarities are cosines."""

    hypothesis: str
    errors: int
    ref_words: int
    sim_prompt: float | None
    sim_original: float | None
    dnsmos: float | None = None
    loop: bool = False   # a repeated-word loop (:func:`repetition_loop`)

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


class Scorer:
    """WER with ``asr``, SIM with ``encoder``, and optionally MOS with ``mos(wav, sr) -> float``
    (:func:`valle2.metrics.dnsmos`, DNSMOS P.808)."""

    def __init__(self, asr: ASR, encoder: SpeakerEncoder, mos: Callable[[np.ndarray, int], float] | None = None):
        self.asr, self.encoder, self.mos = asr, encoder, mos

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Speaker embedding ``[D]`` of ``wav [samples]``."""
        return self.encoder.embed(wav, sr)

    def score(self, wav: np.ndarray, sr: int, text: str, prompt_emb: np.ndarray | None,
              original_emb: np.ndarray | None, with_mos: bool = False) -> Scores:
        """Score ``wav [samples]`` against transcript ``text`` and the given embeddings ``[D]``
        (None skips that similarity)."""
        hyp = self.asr.transcribe(wav, sr)
        errors, n_ref = word_errors(text, hyp)
        emb = self.embed(wav, sr) if prompt_emb is not None or original_emb is not None else None
        return Scores(hyp, errors, n_ref,
                      cosine(emb, prompt_emb) if prompt_emb is not None else None,
                      cosine(emb, original_emb) if original_emb is not None else None,
                      float(self.mos(wav, sr)) if with_mos and self.mos is not None else None,
                      repetition_loop(text, hyp))


def rerank_key(sim: float, wer: float) -> tuple[float, float]:
    """The paper's best-of-N order: ``(min(SIM, 0.3), -WER)``, larger is better."""
    return min(sim, SIM_CAP), -wer


def best_of(candidates: list[tuple[float, float]]) -> int:
    """Index of the best ``(sim, wer)`` candidate by :func:`rerank_key` (the first among ties)."""
    if not candidates:
        raise ValueError("best_of needs at least one candidate")
    return max(range(len(candidates)), key=lambda i: rerank_key(*candidates[i]))


def summarize(rows: list[dict]) -> dict:
    """Corpus figures of per-utterance score dicts (:meth:`Scores.to_dict`, optionally with
    ``hit_limit``, ``ar_seconds``, ``frames``): WER = all errors / all reference words; the
    rest are means over the utterances that have them."""
    def mean(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    n_ref = sum(r["ref_words"] for r in rows)
    out = {"n": len(rows), "wer": sum(r["errors"] for r in rows) / n_ref if n_ref else None,
           "sim_prompt": mean("sim_prompt"), "sim_original": mean("sim_original"), "dnsmos": mean("dnsmos"),
           "loops": sum(int(r.get("loop", False)) for r in rows)}
    if any("hit_limit" in r for r in rows):
        out["hit_limit"] = sum(int(r.get("hit_limit", 0)) for r in rows)
        out["ar_seconds"] = sum(r.get("ar_seconds", 0.0) for r in rows)
        frames = sum(r.get("frames", 0) for r in rows)
        out["ar_ms_per_frame"] = 1000 * out["ar_seconds"] / frames if frames else None
    return out
