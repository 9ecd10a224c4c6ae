"""Audio bodies of the speech endpoint, encoded sentence by sentence as one stream.

Every ``response_format`` of OpenAI's speech API: each sentence is synthesized and watermarked,
then fed to one :class:`StreamEncoder` per response, whose output so far is sent at once; the
concatenated chunks are one valid file (or raw stream) of the whole utterance, never a
concatenation of per-sentence files:

- ``wav``: a header with unknown (maximal) sizes, as streaming WAV writers write, then 16-bit PCM.
- ``pcm``: raw 16-bit little-endian mono samples at 24 kHz, no header, as OpenAI documents it
  (resampled with soxr where the model's rate differs).
- ``mp3`` (MPEG audio frames), ``aac`` (ADTS frames), ``opus`` (Ogg pages of 20 ms) and ``flac``
  (a STREAMINFO header with an unknown length, then frames): encoded by FFmpeg's encoders through
  PyAV, one encoder for the whole response.  A compressed chunk lags its sentence by the
  encoder's look-ahead (a few ms); the rest comes with the next chunk or the last.  An unseekable
  stream has no header to name the encoder's delay, so decoded mp3 and aac start with it (about
  45 ms of silence).
"""
from __future__ import annotations

import struct
from typing import Literal

import av
import numpy as np

from ..audio import pcm16, resample

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
PCM_RATE = 24000          # OpenAI's pcm: 24 kHz, 16-bit signed little-endian, mono
UNKNOWN = 0xFFFFFFFF
# format -> (FFmpeg muxer, encoder, bits per second (None: lossless), sample rates the encoder takes)
CODECS = {"mp3": ("mp3", "libmp3lame", 64000, (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
          "aac": ("adts", "aac", 64000, (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
          "opus": ("ogg", "libopus", 64000, (8000, 12000, 16000, 24000, 48000)),
          "flac": ("flac", "flac", None, None)}
# write each packet at once; Ogg pages of 20 ms; MP3: plain frames, no ID3 tag or Xing frame
MUXER_OPTIONS = {"ogg": {"page_duration": "20000"}, "mp3": {"id3v2_version": "0", "write_xing": "0"}}


def wav_stream_header(sr: int) -> bytes:
    """A 44-byte mono 16-bit PCM WAV header with unknown (maximal) sizes."""
    return (b"RIFF" + struct.pack("<I", UNKNOWN) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16) + b"data" + struct.pack("<I", UNKNOWN))


class _Sink:
    """A write-only, unseekable file for PyAV's muxer: :meth:`take` returns what was written since."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class StreamEncoder:
    """One response's audio in ``fmt`` from mono float sentences at ``sr``:
    :meth:`feed` ``(wav [samples])`` returns the bytes ready so far, :meth:`close` the rest."""

    def __init__(self, fmt: str, sr: int):
        self.fmt, self.sr = fmt, sr
        self.rate = PCM_RATE if fmt == "pcm" else sr
        self.container = self.stream = self.sink = None
        self.header = wav_stream_header(sr) if fmt == "wav" else b""
        if fmt in CODECS:
            muxer, codec, bit_rate, rates = CODECS[fmt]
            self.rate = sr if rates is None or sr in rates else 48000
            self.sink = _Sink()
            self.container = av.open(self.sink, mode="w", format=muxer,
                                     options={"flush_packets": "1", **MUXER_OPTIONS.get(muxer, {})})
            self.stream = self.container.add_stream(codec, rate=self.rate, layout="mono")
            if bit_rate:
                self.stream.bit_rate = bit_rate

    def feed(self, wav: np.ndarray) -> bytes:
        """Encode one sentence; the bytes of the stream that are ready (the first call: with the header)."""
        x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
        if self.rate != self.sr:
            x = resample(x, self.sr, self.rate)
        if self.container is None:
            out, self.header = self.header + pcm16(x), b""
            return out
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        return self.sink.take()

    def close(self) -> bytes:
        """Flush the encoder: the stream's last bytes (none for wav and pcm)."""
        if self.container is None:
            return b""
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        return self.sink.take()
