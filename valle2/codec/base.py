"""The interface every codec backend implements.

A codec turns a mono waveform into a grid of discrete codes, ``LongTensor[n_codebooks, T]``
with ``T = ceil(samples * frame_rate / sample_rate)``, and back.  Codebook 0 is the coarsest
stage: the AR model predicts it, the NAR model predicts codebooks ``1 .. n_codebooks - 1``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ..audio import resample, validate_waveform
from ..errors import CodecError


class Codec(ABC):
    """Base class: subclasses set the four attributes and implement ``_encode``/``_decode``."""

    name: str
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int
    # Codebooks whose codes 1.. are ordered bins of one quantity (code 0 = "none"), with the
    # half-width in bins of the window the NAR picks them by (valle2.decoding.pick_codes).
    ordinal_codebooks: dict[int, int] = {}

    @property
    def required_codebooks(self) -> int:
        """The fewest leading codebooks :meth:`complete` fills the rest from (fine detail the
        decoder can do without); all of them unless a codec says otherwise."""
        return self.n_codebooks

    @property
    def predicted_codebooks(self) -> int:
        """How many leading codebooks synthesis has the model predict by default
        (``DecodingOptions.nar_codebooks``), at least :attr:`required_codebooks`; all of them
        unless a codec says otherwise (the offline codec: 5 of 8)."""
        return self.n_codebooks

    def complete(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes of the first ``n >= required_codebooks`` codebooks ``[n, T]`` -> all of them
        ``[n_codebooks, T]``, the missing ones filled with no detail (:meth:`_complete`)."""
        n = codes.shape[0] if isinstance(codes, torch.Tensor) and codes.dim() == 2 else -1
        if not self.required_codebooks <= n <= self.n_codebooks:
            raise CodecError(f"codec '{self.name}' completes codes of {self.required_codebooks} to "
                             f"{self.n_codebooks} codebooks, got {getattr(codes, 'shape', type(codes))}")
        return codes if n == self.n_codebooks else self._complete(codes.long())

    def _complete(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"codec '{self.name}' predicts all its codebooks")

    @abstractmethod
    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        """FloatTensor[samples] at ``sample_rate`` -> LongTensor[n_codebooks, T]."""

    @abstractmethod
    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor[n_codebooks, T] -> FloatTensor[samples] at ``sample_rate``."""

    @torch.inference_mode()
    def encode(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Encode a mono waveform ``[samples]`` at rate ``sr`` to ``LongTensor[n_codebooks, T]``."""
        wav = validate_waveform(wav, sr)
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
        codes = self._encode(torch.as_tensor(wav, dtype=torch.float32))
        return codes.long()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode ``LongTensor[n_codebooks, T]`` to ``FloatTensor[samples]`` at ``sample_rate``."""
        self.check_codes(codes)
        return self._decode(codes.long()).float().clamp(-1.0, 1.0)

    @torch.inference_mode()
    def match_voice(self, codes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Codes ``[n_codebooks, T]`` moved toward the voice statistics of ``reference``
        ``[n_codebooks, P]`` (the prompt), for codecs whose codes carry them separably.

        Synthesis applies it between the NAR and decoding: a small NAR leaves part of the prompt
        speaker's pitch level and timbre behind.  The base codec returns ``codes`` unchanged
        (EnCodec's codes hold no separable pitch or timbre); the offline codec matches mean
        log-F0 and mean spectral envelope.
        """
        self.check_codes(codes)
        self.check_codes(reference)
        return self._match_voice(codes.long(), reference.long())

    def _match_voice(self, codes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return codes

    def code0_vectors(self) -> torch.Tensor | None:
        """What codebook-0 codes ``0 .. K-1`` stand for: float ``[K, D]`` (``K <= codebook_size``),
        vectors in the space the decoder reads, so that their distances are distances between
        sounds; None when the codec has no such space.  Decoding's posterior-mean code choice
        needs them (:func:`valle2.sampling.posterior_mean_codes`)."""
        return None

    def encode_batch(self, wavs: list, sr: int) -> list[torch.Tensor]:
        """Encode several waveforms; returns one ``[n_codebooks, T_i]`` tensor each."""
        return [self.encode(w, sr) for w in wavs]

    def decode_batch(self, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decode several code grids; returns one waveform each."""
        return [self.decode(c) for c in codes]

    def n_frames(self, n_samples: int) -> int:
        """Number of code frames for ``n_samples`` samples at ``sample_rate``."""
        return int(np.ceil(n_samples * self.frame_rate / self.sample_rate))

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise CodecError unless ``codes`` is an integer ``[n_codebooks, T]`` grid in range."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2:
            raise CodecError(f"codes must be a 2-D tensor [n_codebooks, T], got {getattr(codes, 'shape', type(codes))}")
        if codes.shape[0] != self.n_codebooks:
            raise CodecError(f"codec '{self.name}' has {self.n_codebooks} codebooks, codes have {codes.shape[0]}")
        if codes.shape[1] == 0:
            raise CodecError("codes are empty (T = 0)")
        if codes.is_floating_point():
            raise CodecError("codes must be integers")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise CodecError(f"codes must lie in [0, {self.codebook_size}), got [{lo}, {hi}]")

    def load_options(self) -> dict:
        """Keyword arguments of ``load_codec(name, ...)`` that rebuild this exact codec."""
        return {}

    def fingerprint(self) -> str:
        """Identifies the codec's weights, so that codes made with other weights are refused."""
        return ""

    def decoder_fingerprint(self) -> str:
        """Identifies what :meth:`decode` produces (cache keys for decoded audio); by default :meth:`fingerprint`."""
        return self.fingerprint()

    def describe(self) -> dict:
        """What a checkpoint records: the settings that must match, and how to load the codec again."""
        return {"name": self.name, "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
                "n_codebooks": self.n_codebooks, "codebook_size": self.codebook_size, "options": self.load_options(),
                "fingerprint": self.fingerprint()}
