"""Audio input and output: load any common file to mono float, resample with soxr, write atomically.

Every loader checks its input and raises :class:`valle2.errors.AudioError` with a message that
names the problem (unreadable, empty, silent, non-finite, too long, bad rate).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import AudioError

MAX_SECONDS = 600.0
MIN_SAMPLES = 160
SILENCE_RMS = 1e-4
MIN_RATE, MAX_RATE = 4_000, 384_000


def _check_rate(sr: int) -> int:
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool):
        raise AudioError(f"sample rate must be an integer, got {sr!r}")
    if not MIN_RATE <= int(sr) <= MAX_RATE:
        raise AudioError(f"sample rate {sr} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz")
    return int(sr)


def validate_waveform(wav, sr: int, max_seconds: float = MAX_SECONDS, allow_silent: bool = False) -> np.ndarray:
    """Check a waveform and return it as mono float32 ``[samples]``.

    Accepts ``[samples]``, or ``[channels, samples]`` / ``[samples, channels]`` with up to 8
    channels, which are averaged to mono.
    """
    sr = _check_rate(sr)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav)
    if wav.dtype.kind not in "fiu":
        raise AudioError(f"audio must be numeric samples, got dtype {wav.dtype}")
    if wav.dtype.kind in "iu":
        wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max)
    wav = wav.astype(np.float32, copy=False)
    if wav.ndim == 2:
        ch_axis = 0 if wav.shape[0] <= 8 and wav.shape[0] < wav.shape[1] else 1
        if wav.shape[ch_axis] > 8:
            raise AudioError(f"audio has shape {wav.shape}: expected mono or up to 8 channels")
        wav = wav.mean(axis=ch_axis)
    elif wav.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D, got {wav.ndim} dimensions")
    if wav.size < MIN_SAMPLES:
        raise AudioError(f"audio is empty or too short: {wav.size} samples (need at least {MIN_SAMPLES})")
    if not np.all(np.isfinite(wav)):
        raise AudioError("audio contains NaN or infinite samples")
    if wav.size / sr > max_seconds:
        raise AudioError(f"audio is {wav.size / sr:.1f} s long, more than the {max_seconds:.0f} s limit")
    if not allow_silent and float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENCE_RMS:
        raise AudioError("audio is silent (RMS below 1e-4)")
    return np.ascontiguousarray(wav)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float ``[samples]`` from ``sr_in`` to ``sr_out`` with soxr (high quality)."""
    if sr_in == sr_out:
        return np.asarray(wav, dtype=np.float32)
    return soxr.resample(np.asarray(wav, dtype=np.float32), _check_rate(sr_in), _check_rate(sr_out), quality="HQ").astype(np.float32)


MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's speech API range


def check_speed(speed: float) -> None:
    """AudioError unless ``speed`` is within ``MIN_SPEED .. MAX_SPEED`` (what :func:`change_speed`
    takes; synthesis checks it before any decoding)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise AudioError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")


def change_speed(wav: np.ndarray, sr: int, speed: float) -> np.ndarray:
    """Speak faster (``speed`` > 1) or slower without changing pitch or formants.

    Rubber Band (pylibrb) in offline mode, its finer R3 engine: float ``[samples]`` ->
    float32 ``[round(samples / speed)]``.  ``speed`` 1.0 returns the input unchanged.
    """
    check_speed(speed)
    x = np.ascontiguousarray(wav, dtype=np.float32)
    if speed == 1.0 or len(x) == 0:
        return x
    import pylibrb

    opts = pylibrb.Option.PROCESS_OFFLINE | pylibrb.Option.ENGINE_FINER | pylibrb.Option.FORMANT_PRESERVED
    rb = pylibrb.RubberBandStretcher(sr, 1, opts, initial_time_ratio=1.0 / speed)
    rb.set_logging_level(0)
    block = x[None, :] if pylibrb.CHANNELS_AXIS == 0 else x[:, None]
    rb.set_expected_input_duration(len(x))
    rb.set_max_process_size(len(x))
    rb.study(block, final=True)
    rb.process(block, final=True)
    out = []
    while rb.available() > 0:
        out.append(rb.retrieve_available())
    y = np.concatenate(out, axis=pylibrb.SAMPLES_AXIS).reshape(-1) if out else np.zeros(0, np.float32)
    n = int(round(len(x) / speed))
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def _decode_with_ffmpeg(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Fallback for formats libsndfile cannot read: decode with ffmpeg to 32-bit float wav."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        raise AudioError(f"cannot read '{name}': not a format soundfile reads, and ffmpeg is not installed")
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1"],
                          input=data, capture_output=True, timeout=120)
    if proc.returncode != 0 or not proc.stdout:
        raise AudioError(f"cannot read '{name}': not a decodable audio file")
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return wav, sr


MAX_FILE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class AudioFile:
    """An audio file's bytes, read once.  Whatever checks a file by its hash (the consent gate's
    corpus attestations) must hash and decode these same bytes: reading the path twice would let
    a file swapped in between pass as the attested one."""

    name: str
    data: bytes

    @classmethod
    def read(cls, path) -> "AudioFile":
        """Read the file at ``path`` in one go (AudioError if missing, empty or over 512 MiB)."""
        path = Path(path)
        name = str(path)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    raise AudioError(f"audio file '{name}' is larger than 512 MiB")
                data = f.read(MAX_FILE_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise AudioError(f"audio file not found: '{name}'") from None
        except PermissionError:
            raise AudioError(f"audio file '{name}' cannot be read: permission denied") from None
        if not data:
            raise AudioError(f"audio file is empty: '{name}'")
        if len(data) > MAX_FILE_BYTES:
            raise AudioError(f"audio file '{name}' is larger than 512 MiB")
        return cls(name, data)

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the bytes."""
        return hashlib.sha256(self.data).hexdigest()

    def load(self, sr: int | None = None, max_seconds: float = MAX_SECONDS, allow_silent: bool = False):
        """Decode the bytes: ``(wav float32 [samples], rate)``, as :func:`load_audio`."""
        return load_audio(self, sr, max_seconds, allow_silent)


def load_audio(source, sr: int | None = None, max_seconds: float = MAX_SECONDS, allow_silent: bool = False) -> tuple[np.ndarray, int]:
    """Load wav, flac, ogg or mp3 from a path, an :class:`AudioFile`, bytes or a file object.

    Returns ``(wav, rate)``: mono float32 ``[samples]``, resampled to ``sr`` when given.
    """
    if isinstance(source, (str, os.PathLike)):
        source = AudioFile.read(source)
    if isinstance(source, AudioFile):
        name, data = source.name, source.data
    elif isinstance(source, (bytes, bytearray)):
        name, data = "<bytes>", bytes(source)
    else:
        name, data = "<stream>", source.read()
    if not data:
        raise AudioError(f"audio input {name} is empty (0 bytes)")
    try:
        wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        wav, rate = _decode_with_ffmpeg(data, name)
    if wav.shape[0] / max(rate, 1) > max_seconds:
        raise AudioError(f"audio '{name}' is {wav.shape[0] / rate:.1f} s long, more than the {max_seconds:.0f} s limit")
    wav = validate_waveform(wav.T if wav.shape[1] > 1 else wav[:, 0], rate, max_seconds, allow_silent)
    if sr is not None and sr != rate:
        wav, rate = resample(wav, rate, sr), sr
    return wav, rate


OUTPUT_PEAK_DBFS = -1.0  # the loudest sample an output may have: 0.891 of full scale


def pcm16(wav) -> bytes:
    """Float ``[samples]`` in [-1, 1] -> little-endian 16-bit PCM bytes (clipped, rounded)."""
    return (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def limit_peak(wav, peak_dbfs: float = OUTPUT_PEAK_DBFS) -> np.ndarray:
    """``wav [samples]`` as float32 with its peak at most ``peak_dbfs`` dB of full scale, by one
    gain for the whole clip (no clipping, so no distortion); quieter clips are returned unchanged."""
    x = np.asarray(wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32)
    ceiling = 10.0 ** (peak_dbfs / 20.0)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(peak):
        raise AudioError("audio contains NaN or infinite samples")
    return (x * np.float32(ceiling / peak)).astype(np.float32) if peak > ceiling else x.copy()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def encode_audio(wav, sr: int, fmt: str = "wav") -> bytes:
    """Encode mono float ``[samples]`` to file bytes in ``fmt`` (wav, flac, ogg or mp3)."""
    fmt = fmt.lower()
    formats = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}
    if fmt not in formats:
        raise AudioError(f"unknown audio format '{fmt}': choose one of {', '.join(formats)}")
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sr, format=formats[fmt][0], subtype=formats[fmt][1])
    return buf.getvalue()


def save_audio(path, wav, sr: int) -> Path:
    """Write mono float ``[samples]`` atomically; the format follows the file extension."""
    fmt = Path(path).suffix.lstrip(".") or "wav"
    return atomic_write_bytes(path, encode_audio(wav, sr, fmt))
