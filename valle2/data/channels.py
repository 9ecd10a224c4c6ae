"""Recording and transmission channels that real uploads pass through, applied to 16 kHz audio.

The synthesized-speech detector is trained and validated with these on both classes, so that no
channel alone (a telephone band, MP3 artefacts, a noisy room) reads as "real" or "synthesized".
Each channel is a function ``(wav [samples] float32 at 16 kHz, rng) -> [samples]`` that draws its
own settings from ``rng``; the output has the input's length.

| name | what it does |
| --- | --- |
| telephone | 8 kHz, 300-3400 Hz band, G.711 mu-law (8 bit), back to 16 kHz |
| mp3 | LAME through ffmpeg at 16, 24, 32, 48 or 64 kbit/s |
| opus | libopus through ffmpeg at 16, 24, 32, 48 or 64 kbit/s |
| noise | coloured Gaussian noise (spectral slope -2..+1) at 5-30 dB SNR |
| reverb | a synthetic room impulse response (RT60 0.15-0.9 s, direct-to-reverberant 0-12 dB) |
| eq | a microphone's frequency response: a smooth random curve of +-8 dB over log frequency, with a random low cut |
| gain | -25..+15 dB, with clipping where the peak passes full scale (as loud uploads do) |
| resample | down to 8, 11.025, 12 or 22.05 kHz and back, at soxr's low, medium or high quality |

MP3 and Opus need Debian's ``ffmpeg`` (``scripts/install_audio_tools.sh``); without it they raise
:class:`valle2.errors.AudioError` saying so.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Callable

import numpy as np
import soxr
from scipy import signal

from ..errors import AudioError

SR = 16_000
BITRATES = (16, 24, 32, 48, 64)
Channel = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples, float32."""
    return np.pad(y[:n], (0, max(0, n - y.size))).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def telephone(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Narrow-band telephony: 8 kHz, a 300-3400 Hz band-pass, G.711 mu-law, back to 16 kHz."""
    x = soxr.resample(wav, SR, 8000)
    sos = signal.butter(4, [float(rng.uniform(200, 400)), float(rng.uniform(3200, 3500))], "bandpass", fs=8000, output="sos")
    x = signal.sosfilt(sos, x)
    peak = np.max(np.abs(x)) + 1e-9
    x = x / peak * 0.9
    mu = 255.0
    q = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127      # 8-bit mu-law code
    x = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu * peak / 0.9
    return _fit(soxr.resample(x.astype(np.float32), 8000, SR), wav.size)


def ffmpeg_roundtrip(wav: np.ndarray, codec: str, kbps: int) -> np.ndarray:
    """Encode 16 kHz ``wav`` with ffmpeg's ``codec`` ("mp3" or "opus") at ``kbps`` and decode it back."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"the {codec} channel needs ffmpeg: run scripts/install_audio_tools.sh (Debian) or install ffmpeg")
    enc = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"]}[codec]
    pcm = np.clip(wav, -1, 1).astype("<f4").tobytes()
    cmd = ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0", *enc, "-b:a", f"{kbps}k", "pipe:1"]
    coded = subprocess.run(cmd, input=pcm, capture_output=True, timeout=600)
    if coded.returncode != 0:
        raise AudioError(f"ffmpeg could not encode {codec} at {kbps} kbit/s: {coded.stderr.decode()[-300:]}")
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ar", str(SR), "-ac", "1", "pipe:1"],
                         input=coded.stdout, capture_output=True, timeout=600)
    if dec.returncode != 0:
        raise AudioError(f"ffmpeg could not decode its own {codec}: {dec.stderr.decode()[-300:]}")
    y = np.frombuffer(dec.stdout, dtype="<f4")
    return _fit(align(y, wav), wav.size)


def align(y: np.ndarray, x: np.ndarray, max_lag: int = 4000) -> np.ndarray:
    """``y`` shifted so that it lines up with ``x`` (codec delay removed; lag found by cross-correlation)."""
    n = min(x.size, y.size, 4 * SR)
    if n < 2 * max_lag:
        return y
    corr = signal.correlate(y[: n], x[: n - max_lag], mode="valid")        # lags 0 .. max_lag of y behind x
    lag = int(np.argmax(corr))
    return y[lag:]


def mp3(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ffmpeg_roundtrip(wav, "mp3", int(rng.choice(BITRATES)))


def opus(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ffmpeg_roundtrip(wav, "opus", int(rng.choice(BITRATES)))


def noise(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise (power slope of -2..+1 per octave in log-log terms) at 5-30 dB SNR."""
    n = wav.size
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 50.0)
    spec *= (f / 1000.0) ** (float(rng.uniform(-2.0, 1.0)) / 2)
    z = np.fft.irfft(spec, n)
    snr = float(rng.uniform(5, 30))
    return (wav + z * (_rms(wav) / _rms(z)) * 10 ** (-snr / 20)).astype(np.float32)


def room_impulse(rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response at 16 kHz: a direct path and exponentially decaying noise."""
    rt60 = float(rng.uniform(0.15, 0.9))
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = signal.sosfilt(signal.butter(2, float(rng.uniform(3000, 7500)), "lowpass", fs=SR, output="sos"), tail)
    tail[: int(0.002 * SR)] = 0.0                                   # reflections start after ~2 ms
    drr = float(rng.uniform(0, 12))
    tail *= 10 ** (-drr / 20) / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    tail[0] += 1.0
    return tail


def reverb(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = signal.fftconvolve(wav, room_impulse(rng))[: wav.size]
    return (y * _rms(wav) / _rms(y)).astype(np.float32)


def eq(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A microphone response: a smooth random gain curve (+-8 dB, 6 knots on log frequency) and a low cut."""
    knots_f = np.geomspace(60, SR / 2, 6)
    knots_db = rng.uniform(-8, 8, knots_f.size)
    freqs = np.linspace(0, SR / 2, 257)
    gain_db = np.interp(np.log(np.maximum(freqs, 60)), np.log(knots_f), knots_db)
    gain = 10 ** (gain_db / 20)
    gain[freqs < rng.uniform(50, 200)] *= 0.1
    taps = signal.firwin2(257, freqs / (SR / 2), gain)
    y = signal.fftconvolve(wav, taps)[128: 128 + wav.size]
    return (y * _rms(wav) / _rms(y)).astype(np.float32)


def gain(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """-25..+15 dB relative to a -20 dBFS RMS; samples past full scale are clipped, as a recorder would."""
    g = 10 ** (float(rng.uniform(-25, 15)) / 20) * 0.1 / _rms(wav)
    return np.clip(wav * g, -1.0, 1.0).astype(np.float32)


def resample_roundtrip(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rate = int(rng.choice([8000, 11025, 12000, 22050]))
    quality = str(rng.choice(["LQ", "MQ", "HQ"]))
    y = soxr.resample(soxr.resample(wav, SR, rate, quality=quality), rate, SR, quality=quality)
    return _fit(y, wav.size)


CHANNELS: dict[str, Channel] = {"telephone": telephone, "mp3": mp3, "opus": opus, "noise": noise, "reverb": reverb,
                                "eq": eq, "gain": gain, "resample": resample_roundtrip}
CODEC_CHANNELS = ("mp3", "opus")       # the ones that run ffmpeg (slow per call: batch them, see apply_batched)


def apply(name: str, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Channel ``name`` applied to 16 kHz ``wav [samples]``."""
    if name not in CHANNELS:
        raise ValueError(f"unknown channel '{name}': choose one of {', '.join(CHANNELS)}")
    return CHANNELS[name](np.asarray(wav, dtype=np.float32), rng)


def apply_batched(name: str, clips: list[np.ndarray], rng: np.random.Generator, gap: float = 0.25) -> list[np.ndarray]:
    """Channel ``name`` applied to each clip; the ffmpeg channels encode the clips in groups of one
    bit rate, concatenated with ``gap`` seconds of silence between them (one ffmpeg call per group
    instead of one per clip; the silence keeps each clip's frames its own)."""
    if name not in CODEC_CHANNELS:
        return [apply(name, c, rng) for c in clips]
    rates = rng.choice(BITRATES, len(clips))
    out: list[np.ndarray | None] = [None] * len(clips)
    pad = np.zeros(int(gap * SR), np.float32)
    for kbps in sorted(set(rates.tolist())):
        idx = [i for i, r in enumerate(rates) if r == kbps]
        parts, starts, pos = [], [], 0
        for i in idx:
            parts += [pad, clips[i]]
            starts.append(pos + pad.size)
            pos += pad.size + clips[i].size
        parts.append(pad)
        coded = ffmpeg_roundtrip(np.concatenate(parts), name, int(kbps))
        for i, s in zip(idx, starts):
            out[i] = coded[s: s + clips[i].size].copy()
    return out  # type: ignore[return-value]
