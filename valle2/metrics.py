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

from .audio import pcm16, resample, validate_waveform
from .imports import import_quietly

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
_CONTRACTIONS = [
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\bshan't\b", "shall not"), (r"\bain't\b", "is not"),
    (r"n't\b", " not"), (r"'re\b", " are"), (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'m\b", " am"),
    (r"'d\b", " would"), (r"\blet's\b", "let us"),
    (r"\b(it|that|what|there|here|he|she|who|where|how|when|why)'s\b", r"\1 is"),
]


def wer_normalize(text: str) -> str:
    """The one English normaliser for WER, applied to reference and hypothesis alike.

    Numbers, money, times and abbreviations are spelled out (:func:`valle2.text.normalize_text`:
    ``"Dr. Smith paid $3"`` -> ``"doctor smith paid three dollars"``); then lowercase, accents
    stripped, contractions expanded (``don't`` -> ``do not``, a pronoun's ``'s`` -> ``is``; a
    possessive ``'s`` is kept), hyphens split words, other punctuation dropped, whitespace collapsed.
    """
    from .text import normalize_text

    text = unicodedata.normalize("NFKD", normalize_text(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().replace("\u2019", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " "))
    text = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", text)
    return " ".join(text.split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """``(substitutions + deletions + insertions, reference words)`` after :func:`wer_normalize`;
    raises ``ValueError`` when the reference has no words to score."""
    import jiwer

    ref, hyp = wer_normalize(reference), wer_normalize(hypothesis)
    n_ref = len(ref.split())
    if not n_ref:
        raise ValueError(f"reference text {reference!r} has no words to score")
    if not hyp:
        return n_ref, n_ref
    out = jiwer.process_words(ref, hyp)
    return int(out.substitutions + out.deletions + out.insertions), n_ref


def wer(ref_texts: list[str] | str, hyp_texts: list[str] | str) -> float:
    """Corpus word error rate (0..1+, not percent) of ``hyp_texts`` against ``ref_texts``: the
    :func:`word_errors` of every pair summed and divided by all reference words.  References with
    no words after :func:`wer_normalize` are left out."""
    refs = [ref_texts] if isinstance(ref_texts, str) else list(ref_texts)
    hyps = [hyp_texts] if isinstance(hyp_texts, str) else list(hyp_texts)
    if len(refs) != len(hyps):
        raise ValueError(f"wer needs as many hypotheses as references, got {len(hyps)} and {len(refs)}")
    counts = [word_errors(r, h) for r, h in zip(refs, hyps) if wer_normalize(r)]
    if not counts:
        raise ValueError("wer needs at least one non-empty reference text")
    return sum(e for e, _ in counts) / sum(n for _, n in counts)


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
    return import_quietly("resemblyzer").VoiceEncoder(device="cpu", verbose=False)


def speaker_embedding(wav, sr: int) -> np.ndarray:
    """Resemblyzer (GE2E) utterance embedding of ``[samples]``: float32 ``[256]``, unit L2 norm."""
    audio = import_quietly("resemblyzer").preprocess_wav(_as_16k(wav, sr).astype(np.float32), source_sr=METRIC_RATE)
    if audio.size < METRIC_RATE // 10:  # VAD trimmed nearly everything: embed the raw clip instead
        audio = _as_16k(wav, sr)
    emb = _model("resemblyzer", _voice_encoder).embed_utterance(audio)
    return np.asarray(emb, dtype=np.float32)


SPEAKER_WINDOW_SECONDS = 1.6  # Resemblyzer's partial utterance (160 mel frames of 10 ms)
_VAD_SAMPLES = 480               # Resemblyzer's 30 ms VAD window at 16 kHz


def _voiced_mask(audio: np.ndarray) -> np.ndarray:
    """Resemblyzer's ``trim_long_silences`` (webrtcvad mode 3, smoothed, dilated), returning the
    per-sample mask it keeps instead of the trimmed audio: bool ``[samples]`` (the tail after
    the last whole 30 ms window is False, as Resemblyzer drops it)."""
    import_quietly("resemblyzer")   # before webrtcvad and resemblyzer.hparams: its import warns (valle2.imports)
    import webrtcvad
    from resemblyzer.hparams import vad_max_silence_length, vad_moving_average_width
    from scipy.ndimage import binary_dilation

    n = audio.size - audio.size % _VAD_SAMPLES
    pcm = pcm16(audio[:n])
    vad = webrtcvad.Vad(mode=3)
    flags = np.array([vad.is_speech(pcm[i * 2: (i + _VAD_SAMPLES) * 2], sample_rate=METRIC_RATE)
                      for i in range(0, n, _VAD_SAMPLES)], dtype=float)
    mask = np.zeros(audio.size, dtype=bool)
    if flags.size == 0:
        return mask
    w = vad_moving_average_width
    padded = np.concatenate([np.zeros((w - 1) // 2), flags, np.zeros(w // 2)])
    avg = np.cumsum(padded)
    avg[w:] = avg[w:] - avg[:-w]
    smooth = np.round(avg[w - 1:] / w).astype(bool)
    smooth = binary_dilation(smooth, np.ones(vad_max_silence_length + 1))
    mask[:n] = np.repeat(smooth, _VAD_SAMPLES)
    return mask


def speaker_window_embeddings(wav, sr: int, hop_seconds: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Resemblyzer embeddings of every :data:`SPEAKER_WINDOW_SECONDS` stretch of speech in ``wav
    [samples]``, every ``hop_seconds``, computed in one batch.

    The audio is prepared as :func:`speaker_embedding` prepares it (volume raised to -30 dBFS,
    long silences left out by the VAD), then cut into windows of 160 mel frames; the last window
    ends at the end of the speech, and speech shorter than a window gives one zero-padded window.
    Returns ``(embeddings float32 [n, 256] unit L2 norm, spans float64 [n, 2])``: each window's
    first and last second on ``wav``'s own timeline (silences inside a window included)."""
    import torch

    ra = import_quietly("resemblyzer.audio")
    from resemblyzer.hparams import audio_norm_target_dBFS, partials_n_frames

    if not 0.05 <= hop_seconds <= SPEAKER_WINDOW_SECONDS:
        raise ValueError(f"hop_seconds must be between 0.05 and {SPEAKER_WINDOW_SECONDS}, got {hop_seconds}")
    audio = ra.normalize_volume(_as_16k(wav, sr).astype(np.float32), audio_norm_target_dBFS, increase_only=True)
    keep = np.flatnonzero(_voiced_mask(audio))
    if keep.size < METRIC_RATE // 10:  # VAD kept nearly nothing: use the raw clip, as speaker_embedding does
        keep = np.arange(audio.size)
    mel = ra.wav_to_mel_spectrogram(audio[keep].astype(np.float32))    # [frames, 40], 10 ms hop
    hop_samples = METRIC_RATE // 100
    n, step = partials_n_frames, max(1, int(round(hop_seconds * 100)))
    starts = list(range(0, max(1, mel.shape[0] - n + 1), step))
    if mel.shape[0] > n and starts[-1] != mel.shape[0] - n:
        starts.append(mel.shape[0] - n)
    mels = np.stack([np.pad(mel[s: s + n], ((0, max(0, n - mel[s: s + n].shape[0])), (0, 0))) for s in starts])
    encoder = _model("resemblyzer", _voice_encoder)
    with torch.no_grad():
        emb = encoder(torch.from_numpy(mels.astype(np.float32))).cpu().numpy()
    first = np.array([keep[min(s * hop_samples, keep.size - 1)] for s in starts])
    last = np.array([keep[min((s + n) * hop_samples, keep.size) - 1] + 1 for s in starts])
    return emb.astype(np.float32), np.stack([first, last], axis=1) / float(METRIC_RATE)


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


__all__ = ["METRIC_RATE", "SPEAKER_WINDOW_SECONDS", "wer_normalize", "word_errors", "wer", "transcribe", "speaker_embedding",
           "speaker_window_embeddings", "speaker_similarity", "dnsmos"]
