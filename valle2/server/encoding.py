"""Audio bodies of the speech endpoint.

WAV streams: the header states unknown lengths (``0xFFFFFFFF`` for the RIFF and data sizes, as
streaming WAV writers do), then 16-bit PCM of each sentence follows as soon as it is synthesized.
FLAC, MP3 and Opus are encoded once, from the whole utterance: their encoders write headers that
need the whole signal (FLAC's STREAMINFO sample count, the LAME/Xing frame, Ogg granule positions),
so concatenating per-sentence files would not make one valid file.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from ..audio import encode_audio, resample

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus"}
UNKNOWN = 0xFFFFFFFF
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def wav_stream_header(sr: int) -> bytes:
    """A 44-byte mono 16-bit PCM WAV header with unknown (maximal) sizes."""
    return (b"RIFF" + struct.pack("<I", UNKNOWN) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16) + b"data" + struct.pack("<I", UNKNOWN))


def pcm16(wav: np.ndarray) -> bytes:
    """Float ``[samples]`` in [-1, 1] -> little-endian 16-bit PCM bytes."""
    return (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def encode_whole(wav: np.ndarray, sr: int, fmt: str) -> bytes:
    """The whole utterance as a ``fmt`` file (wav, flac, mp3 or opus)."""
    if fmt != "opus":
        return encode_audio(wav, sr, fmt)
    if sr not in OPUS_RATES:
        wav, sr = resample(wav, sr, 48000), 48000
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sr, format="OGG", subtype="OPUS")
    return buf.getvalue()
