"""Offline speech metrics: WER (pocketsphinx + jiwer), speaker similarity (Resemblyzer), DNSMOS P.808.

Every model is loaded lazily, once per process, on first use, so ``import valle2.metrics`` costs
nothing.  All waveform arguments are mono float ``[samples]`` (numpy or torch) at rate ``sr``;
they are resampled to 16 kHz, the rate every model here expects.

These need the ``eval`` extras: ``pocketsphinx``, ``resemblyzer`` (with ``setuptools<80``),
``speechmos`` (with ``onnxruntime``) and ``jiwer``.
"""
from __future__ import annotations

import re
import threading
import unicodedata

import numpy as np

from .audio import resample, validate_waveform

METRIC_RATE = 16_000

_lock = threading.Lock()
_models: dict[str, object] = {}


def _as_16k(wav, sr: int) -> np.ndarray:
    """Validate a waveform and return it as float32 ``[samples]`` at 16 kHz."""
    wav = validate_waveform(wav, sr, allow_silent=True)
    return resample(wav, sr, METRIC_RATE) if sr != METRIC_RATE else wav


def _model(key: str, factory):
    """Return the process-wide singleton ``key``, building it with ``factory()`` on first use."""
    with _lock:
        if key not in _models:
            _models[key] = factory()
        return _models[key]


# ----------------------------------------------------------------------------------------- WER
def normalize_text(text: str) -> str:
    """English normalisation for WER: lowercase, strip accents and punctuation, keep digits as is.

    Apostrophes inside words are kept (``don't``), hyphens split words; whitespace is collapsed.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("\u2019", "'").replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    text = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", text)
    return " ".join(text.split())


def wer(ref_texts: list[str] | str, hyp_texts: list[str] | str) -> float:
    """Corpus word error rate (0..1+, not percent) of ``hyp_texts`` against ``ref_texts`` after
    :func:`normalize_text`; errors are summed over all pairs and divided by all reference words."""
    import jiwer

    refs = [ref_texts] if isinstance(ref_texts, str) else list(ref_texts)
    hyps = [hyp_texts] if isinstance(hyp_texts, str) else list(hyp_texts)
    if len(refs) != len(hyps):
        raise ValueError(f"wer needs as many hypotheses as references, got {len(hyps)} and {len(refs)}")
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        raise ValueError("wer needs at least one non-empty reference text")
    return float(jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep]))


def _sphinx_decoder():
    from pocketsphinx import Config, Decoder, get_model_path
    import os

    model = os.path.join(get_model_path(), "en-us")
    config = Config(hmm=os.path.join(model, "en-us"), lm=os.path.join(model, "en-us.lm.bin"),
                    dict=os.path.join(model, "cmudict-en-us.dict"), samprate=METRIC_RATE, cmn="batch",
                    loglevel="FATAL")  # batch CMN: each transcript is independent of earlier calls
    return Decoder(config)


def transcribe(wav, sr: int) -> str:
    """Transcribe English speech ``[samples]`` with pocketsphinx's shipped en-us model; returns
    lowercase words ('' when nothing is recognised)."""
    audio = _as_16k(wav, sr)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoder = _model("sphinx", _sphinx_decoder)
    with _lock:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


# -------------------------------------------------------------------------- speaker similarity
def _voice_encoder():
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False)


def speaker_embedding(wav, sr: int) -> np.ndarray:
    """Resemblyzer (GE2E) utterance embedding of ``[samples]``: float32 ``[256]``, unit L2 norm."""
    from resemblyzer import preprocess_wav

    audio = preprocess_wav(_as_16k(wav, sr).astype(np.float32), source_sr=METRIC_RATE)
    if audio.size < METRIC_RATE // 10:  # VAD trimmed nearly everything: embed the raw clip instead
        audio = _as_16k(wav, sr)
    emb = _model("resemblyzer", _voice_encoder).embed_utterance(audio)
    return np.asarray(emb, dtype=np.float32)


def speaker_similarity(a_wav, a_sr: int, b_wav, b_sr: int) -> float:
    """Cosine similarity (-1..1) of the Resemblyzer embeddings of two waveforms ``[samples]``."""
    a, b = speaker_embedding(a_wav, a_sr), speaker_embedding(b_wav, b_sr)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# ------------------------------------------------------------------------------------- DNSMOS
def dnsmos(wav, sr: int) -> float:
    """DNSMOS P.808 MOS (about 1..5) of ``[samples]``: speechmos ``dnsmos.run(...)["p808_mos"]``
    on the clip resampled to 16 kHz and clipped to [-1, 1]."""
    from speechmos import dnsmos as _dnsmos

    audio = np.clip(_as_16k(wav, sr), -1.0, 1.0).astype(np.float32)
    with _lock:
        return float(_dnsmos.run(audio, METRIC_RATE)["p808_mos"])


__all__ = ["METRIC_RATE", "normalize_text", "wer", "transcribe", "speaker_embedding", "speaker_similarity", "dnsmos"]
