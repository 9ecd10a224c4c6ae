"""valle2's own codec: WORLD analysis and synthesis with trained vector quantisers, no download.

The waveform (16 kHz) is analysed every 16 ms (62.5 frames/s) with the WORLD vocoder (pyworld):
DIO (voicing threshold 0.2) + StoneMask for F0, CheapTrick for the spectral envelope, D4C for the
aperiodicity.  Each frame becomes 8 codes of 10 bits (8 x 1024, 5 kbit/s):

=========  ==============================================================================
codebook   content
=========  ==============================================================================
0          spectral envelope, residual-VQ stage 1 (the coarse phonetic content)
1          F0: 0 = unvoiced, 1..1023 = log-F0 on a uniform grid (about 5 cents a step)
2          band aperiodicity (k-means over the aperiodicity of a few frequency bands)
3 .. 7     spectral envelope, residual-VQ stages 2 .. 6 (finer and finer)
=========  ==============================================================================

The envelope is coded as a 40-coefficient mel-cepstrum (WORLD's ``code_spectral_envelope``)
before it is quantised; D4C runs on every second frame only (it is the slowest step) and the
band aperiodicity is interpolated between.  The quantisers (k-means codebooks) are trained by
``python -m tools.train_offline_codec`` on ``../shared/data`` and shipped as
``valle2/assets/codec/offline_codec.npz`` (float16, under 1 MB).  Decoding dequantises, interpolates
the frames to 4 ms, sharpens the envelope with a cepstral post-filter and resynthesises with WORLD;
then a learned post-net (``valle2.codec.postnet``), shipped beside the codebooks as
``offline_postnet.pt``, corrects the result's STFT magnitude (``postnet=False`` skips it).
Encoding is deterministic.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..errors import CodecError
from ..imports import import_quietly
from .base import Codec
from .postnet import POSTNET_PATH, SpectralPostnet

ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "codec" / "offline_codec.npz"
ASSET_FORMAT = 1
# Decoder post-filter against the over-smoothing of quantised envelopes (the cepstral emphasis of
# HTS-style vocoders): mel-cepstral coefficients from POSTFILTER_FROM on are scaled by
# 1 + POSTFILTER_BETA, then each frame's energy is restored.  Decode-only: codes and the codec
# fingerprint are unchanged.  The settings measured: docs/codec.md, "What set the constants".
POSTFILTER_BETA = 0.2
POSTFILTER_FROM = 2
# Half-width (codes, about 5 cents each) of the window by which the NAR's F0 code is picked
# (valle2.decoding.pick_codes): a frame is voiced if code 0 has probability < 0.5, and its code is
# the weighted mean of the 21-code (about one semitone) window of highest probability.
F0_PICK_WINDOW = 10
# Voice match (OfflineCodec.match_voice): the output's mean log-F0 over voiced frames and its mean
# mel-cepstrum (coefficients 1.., energy kept) over speech frames (c0 at or above this percentile
# of the utterance) are set to the prompt's.
SPEECH_PERCENTILE = 30
# Codebooks synthesis has the NAR fill by default (codebook 0 counted): envelope stage 1, F0,
# aperiodicity and envelope stages 2-3; OfflineCodec.complete gives stages 4-6 a zero residual.
NAR_CODEBOOKS = 5


@dataclass(frozen=True)
class OfflineCodecConfig:
    """Settings that fix the code layout; stored in the asset next to the codebooks."""

    sample_rate: int = 16_000
    hop_length: int = 256  # samples per frame: 16 ms, 62.5 frames/s
    n_codebooks: int = 8
    codebook_size: int = 1024
    f0_floor: float = 60.0  # F0 search range of DIO, Hz
    f0_ceil: float = 600.0
    dio_channels_in_octave: float = 2.0  # DIO's filter-bank density (WORLD default 2)
    dio_allowed_range: float = 0.2  # DIO's voicing threshold (WORLD default 0.1; 0.2 = more frames voiced, measured better)
    aperiodicity_stride: int = 2  # encoder: run D4C on every n-th frame only, interpolate the rest
    synthesis_upsample: int = 4  # decoder: interpolate frames this many times finer before synthesis
    f0_code_min: float = 50.0  # Hz of F0 code 1
    f0_code_max: float = 800.0  # Hz of F0 code codebook_size - 1
    envelope_dims: int = 40  # mel-cepstral coefficients of the spectral envelope
    envelope_book: int = 0  # codebook of envelope stage 1; stages 2.. take the remaining codebooks in order
    # Envelope stage 1 (codebook 0, what the AR predicts): with stage1_normalised, a frame's stage-1
    # code is the nearest of the first stage1_size codewords to the frame minus its utterance's
    # speech mean (coefficients 1.., see _speech_mean), so that the code is the phone more than the
    # speaker; the later stages code the rest (speaker mean included), so decoding is unchanged.
    stage1_size: int = 1024
    stage1_normalised: bool = False
    f0_book: int = 1
    aperiodicity_book: int = 2
    aperiodicity_edges: tuple[float, ...] = (0.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5500.0, 8000.0)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def frame_period_ms(self) -> float:
        return 1000.0 * self.hop_length / self.sample_rate

    @property
    def envelope_books(self) -> tuple[int, ...]:
        """Codebook indices of the envelope RVQ stages, coarse to fine."""
        used = {self.f0_book, self.aperiodicity_book}
        return (self.envelope_book,) + tuple(i for i in range(self.n_codebooks) if i != self.envelope_book and i not in used)

    @property
    def n_aperiodicity_bands(self) -> int:
        return len(self.aperiodicity_edges) - 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "OfflineCodecConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise CodecError(f"offline codec asset has unknown settings {sorted(unknown)}")
        if "aperiodicity_edges" in raw:
            raw["aperiodicity_edges"] = tuple(raw["aperiodicity_edges"])
        return cls(**raw)


# ------------------------------------------------------------------------------ WORLD features
@dataclass
class WorldFeatures:
    """Continuous per-frame features of one clip, ``T`` frames every ``hop_length`` samples.

    - ``f0``: float64 ``[T]`` Hz, 0 where unvoiced;
    - ``envelope``: float64 ``[T, envelope_dims]`` mel-cepstrum of the CheapTrick envelope;
    - ``aperiodicity``: float64 ``[T, n_aperiodicity_bands]`` mean D4C aperiodicity per band, dB.
    """

    f0: np.ndarray
    envelope: np.ndarray
    aperiodicity: np.ndarray


def _fft_size(cfg: OfflineCodecConfig) -> int:
    pyworld = import_quietly("pyworld")

    return int(pyworld.get_cheaptrick_fft_size(cfg.sample_rate, cfg.f0_floor))


def _band_matrix(cfg: OfflineCodecConfig) -> np.ndarray:
    """Averaging matrix ``[n_bins, n_bands]`` from FFT bins to aperiodicity bands."""
    n_bins = _fft_size(cfg) // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_bins)
    edges = np.asarray(cfg.aperiodicity_edges)
    band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, len(edges) - 2)
    mat = np.zeros((n_bins, len(edges) - 1))
    mat[np.arange(n_bins), band] = 1.0
    return mat / mat.sum(axis=0, keepdims=True)


def analyse(wav: np.ndarray, cfg: OfflineCodecConfig) -> WorldFeatures:
    """WORLD analysis of float ``[samples]`` at ``cfg.sample_rate`` into ``ceil(samples / hop)`` frames."""
    pyworld = import_quietly("pyworld")

    x = np.ascontiguousarray(wav, dtype=np.float64)
    n_frames = int(np.ceil(len(x) / cfg.hop_length))
    fs = cfg.sample_rate
    f0, times = pyworld.dio(x, fs, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=cfg.frame_period_ms,
                            channels_in_octave=cfg.dio_channels_in_octave, allowed_range=cfg.dio_allowed_range)
    f0 = pyworld.stonemask(x, f0, times, fs)
    f0, times = np.ascontiguousarray(f0[:n_frames]), np.ascontiguousarray(times[:n_frames])
    sp = pyworld.cheaptrick(x, f0, times, fs, f0_floor=cfg.f0_floor)
    env = pyworld.code_spectral_envelope(sp, fs, cfg.envelope_dims)
    # D4C is the slowest step: run it on every ``aperiodicity_stride``-th frame and interpolate.
    k = cfg.aperiodicity_stride
    ap = pyworld.d4c(x, np.ascontiguousarray(f0[::k]), np.ascontiguousarray(times[::k]), fs)
    ap_db = 20.0 * np.log10(np.clip(ap, 1e-3, 1.0)) @ _band_matrix(cfg)
    if k > 1:
        frames = np.arange(n_frames)
        ap_db = np.stack([np.interp(frames, frames[::k], col) for col in ap_db.T], axis=1)
    return WorldFeatures(f0=f0, envelope=env, aperiodicity=ap_db)


def _upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation of frames ``[T, D]`` to ``[T * factor, D]`` (frame ``i`` stays at ``i * factor``;
    the last ``factor - 1`` rows repeat frame ``T - 1``)."""
    t = np.arange(len(x) * factor) / factor
    i0 = np.minimum(t.astype(int), len(x) - 1)
    i1 = np.minimum(i0 + 1, len(x) - 1)
    w = (t - i0)[:, None]
    return x[i0] * (1.0 - w) + x[i1] * w


def _band_to_bins(cfg: OfflineCodecConfig, n_bins: int) -> np.ndarray:
    """Linear interpolation matrix ``[n_bands, n_bins]`` from aperiodicity band centres to FFT bins
    (flat beyond the first and last centre)."""
    centres = np.array([(a + b) / 2 for a, b in zip(cfg.aperiodicity_edges[:-1], cfg.aperiodicity_edges[1:])])
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_bins)
    return np.stack([np.interp(freqs, centres, e) for e in np.eye(len(centres))])


def _upsample_f0(f0: np.ndarray, factor: int) -> np.ndarray:
    """F0 ``[T]`` to ``[T * factor]``: log-linear inside voiced stretches, voicing from the nearest frame."""
    t = np.arange(len(f0) * factor) / factor
    voiced = f0 > 0
    out_voiced = voiced[np.minimum(np.round(t).astype(int), len(f0) - 1)]
    if voiced.sum() < 2:
        return np.where(out_voiced, f0.max(), 0.0)
    idx = np.flatnonzero(voiced)
    return np.where(out_voiced, np.exp(np.interp(t, idx, np.log(f0[idx]))), 0.0)


def synthesise(feats: WorldFeatures, cfg: OfflineCodecConfig, postfilter: float = POSTFILTER_BETA) -> np.ndarray:
    """WORLD synthesis of ``T`` frames to float32 ``[T * hop_length]`` samples.

    The frames are first interpolated ``cfg.synthesis_upsample`` times finer, so that envelope
    and F0 move smoothly instead of in 16 ms steps.  ``postfilter`` is the cepstral emphasis
    (see :data:`POSTFILTER_BETA`; 0 = none).
    """
    pyworld = import_quietly("pyworld")

    fs, fft, k = cfg.sample_rate, _fft_size(cfg), cfg.synthesis_upsample
    # One extra frame so that the synthesis covers T full hops, then trim.
    f0 = _upsample_f0(np.append(feats.f0, feats.f0[-1]), k)
    env = _upsample(np.vstack([feats.envelope, feats.envelope[-1:]]), k)
    ap_db = _upsample(np.vstack([feats.aperiodicity, feats.aperiodicity[-1:]]), k)
    sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(env), fs, fft)
    if postfilter:
        sharp = env.copy()
        sharp[:, POSTFILTER_FROM:] *= 1.0 + postfilter
        sharp_sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(sharp), fs, fft)
        sp = sharp_sp * (sp.sum(axis=1, keepdims=True) / sharp_sp.sum(axis=1, keepdims=True))
    ap = np.clip(10.0 ** ((ap_db @ _band_to_bins(cfg, fft // 2 + 1)) / 20.0), 1e-3, 1.0)
    y = pyworld.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs,
                           cfg.frame_period_ms / k)
    n = len(feats.f0) * cfg.hop_length
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return y.astype(np.float32)


def _speech_mean(envelope: np.ndarray) -> np.ndarray:
    """Mean of envelope frames ``[T, D]`` whose energy (coefficient 0) is at or above the
    :data:`SPEECH_PERCENTILE` percentile: ``[D]``."""
    return envelope[envelope[:, 0] >= np.percentile(envelope[:, 0], SPEECH_PERCENTILE)].mean(axis=0)


# -------------------------------------------------------------------------------- quantisers
def f0_to_codes(f0: np.ndarray, cfg: OfflineCodecConfig) -> np.ndarray:
    """F0 ``[T]`` Hz (0 = unvoiced) -> int64 ``[T]``: 0 unvoiced, else 1..size-1 on a log grid."""
    lo, hi, n = np.log(cfg.f0_code_min), np.log(cfg.f0_code_max), cfg.codebook_size - 2
    voiced = f0 > 0
    pos = (np.log(np.maximum(f0, 1e-6)) - lo) / (hi - lo) * n
    return np.where(voiced, 1 + np.clip(np.round(pos), 0, n), 0).astype(np.int64)


def codes_to_f0(codes: np.ndarray, cfg: OfflineCodecConfig) -> np.ndarray:
    """Inverse of :func:`f0_to_codes`: int ``[T]`` -> F0 ``[T]`` Hz, 0 where unvoiced."""
    lo, hi, n = np.log(cfg.f0_code_min), np.log(cfg.f0_code_max), cfg.codebook_size - 2
    f0 = np.exp(lo + (codes.astype(np.float64) - 1) / n * (hi - lo))
    return np.where(codes > 0, f0, 0.0)


def nearest(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index ``[N]`` of the nearest (Euclidean) row of ``codebook [K, D]`` for each row of ``x [N, D]``."""
    cb = codebook.astype(np.float32)  # float32 products: 5x faster than float64, ample for a nearest search
    dist = (cb * cb).sum(1)[None, :] - 2.0 * (x.astype(np.float32) @ cb.T)
    return dist.argmin(axis=1).astype(np.int64)


def rvq_encode(x: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Greedy residual VQ of ``x [N, D]`` with ``codebooks [S, K, D]`` -> int64 ``[S, N]``."""
    residual = x.astype(np.float64).copy()
    out = np.empty((len(codebooks), len(x)), dtype=np.int64)
    for s, cb in enumerate(codebooks):
        out[s] = nearest(residual, cb)
        residual -= cb[out[s]]
    return out


def stage1_input(envelope: np.ndarray, cfg: OfflineCodecConfig) -> np.ndarray:
    """What envelope stage 1 quantises: ``[T, D]``, the utterance's speech mean of coefficients
    1.. removed when ``cfg.stage1_normalised`` (energy kept), else the envelope itself."""
    if not cfg.stage1_normalised or len(envelope) == 0:
        return envelope
    return envelope - np.concatenate([[0.0], _speech_mean(envelope)[1:]])


def stage1_codes(envelope: np.ndarray, stage1_book: np.ndarray, cfg: OfflineCodecConfig) -> np.ndarray:
    """Envelope stage-1 codes ``[T]``: the nearest of the first ``cfg.stage1_size`` codewords of
    ``stage1_book [K, D]`` to :func:`stage1_input`."""
    return nearest(stage1_input(envelope, cfg), stage1_book[: cfg.stage1_size])


def rvq_decode(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Sum of the selected codewords: int ``[S, N]`` -> float64 ``[N, D]``."""
    return sum(codebooks[s].astype(np.float64)[codes[s]] for s in range(len(codebooks)))


# ------------------------------------------------------------------------------------- codec
class OfflineCodec(Codec):
    """WORLD + trained quantisers: 16 kHz, 62.5 frames/s, 8 codebooks of 1024.

    ``envelope_codebooks``: float ``[n_envelope_stages, codebook_size, envelope_dims]``;
    ``aperiodicity_codebook``: float ``[codebook_size, n_aperiodicity_bands]``.
    """

    name = "offline"

    def __init__(self, config: OfflineCodecConfig, envelope_codebooks: np.ndarray, aperiodicity_codebook: np.ndarray,
                 postnet: SpectralPostnet | None = None):
        cfg = config
        n_env = len(cfg.envelope_books)
        if tuple(envelope_codebooks.shape) != (n_env, cfg.codebook_size, cfg.envelope_dims):
            raise CodecError(f"envelope codebooks have shape {tuple(envelope_codebooks.shape)}, "
                             f"expected {(n_env, cfg.codebook_size, cfg.envelope_dims)}")
        if tuple(aperiodicity_codebook.shape) != (cfg.codebook_size, cfg.n_aperiodicity_bands):
            raise CodecError(f"aperiodicity codebook has shape {tuple(aperiodicity_codebook.shape)}, "
                             f"expected {(cfg.codebook_size, cfg.n_aperiodicity_bands)}")
        if not (np.all(np.isfinite(envelope_codebooks)) and np.all(np.isfinite(aperiodicity_codebook))):
            raise CodecError("offline codec codebooks contain NaN or infinite values")
        if cfg.codebook_size > 1024 or cfg.n_codebooks != 2 + n_env:
            raise CodecError(f"unsupported layout: {cfg.n_codebooks} codebooks of {cfg.codebook_size}")
        if not 1 <= cfg.stage1_size <= cfg.codebook_size:
            raise CodecError(f"stage1_size must be in 1..{cfg.codebook_size}, got {cfg.stage1_size}")
        self.config = cfg
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.frame_rate
        self.n_codebooks = cfg.n_codebooks
        self.codebook_size = cfg.codebook_size
        self.envelope_codebooks = envelope_codebooks.astype(np.float64)
        self.aperiodicity_codebook = aperiodicity_codebook.astype(np.float64)
        self.postnet = postnet
        # F0 codes 1.. are a log-F0 grid of about 5 cents a step: the NAR's probability for one
        # pitch is spread over many neighbouring codes, so a plain argmax picks "unvoiced" (code 0)
        # wherever no single step outweighs it (docs/demo_model.md).
        self.ordinal_codebooks = {cfg.f0_book: F0_PICK_WINDOW}

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the settings and codebooks as stored (float16)."""
        import hashlib

        h = hashlib.sha256(self.config.to_json().encode())
        h.update(self.envelope_codebooks.astype(np.float16).tobytes())
        h.update(self.aperiodicity_codebook.astype(np.float16).tobytes())
        return h.hexdigest()[:16]

    def decoder_fingerprint(self) -> str:
        """Identifies what :meth:`decode` produces: the codebooks' fingerprint plus the post-net's, if any.

        :meth:`fingerprint` leaves the post-net out on purpose: it changes the audio, not the codes,
        so models trained on these codes stay valid with or without it.
        """
        return self.fingerprint() + (f"-{self.postnet.fingerprint()}" if self.postnet is not None else "")

    # -- persistence
    @classmethod
    def load(cls, path: str | Path | None = None, postnet: bool = True, **overrides) -> "OfflineCodec":
        """Load a trained codec from ``path`` (default: the asset shipped in ``valle2/assets/codec``).

        With ``postnet`` (the default), a learned post-net saved beside the codebooks as
        ``offline_postnet.pt`` (see :mod:`valle2.codec.postnet`) corrects the decoded audio;
        ``postnet=False`` decodes with plain WORLD.
        """
        if overrides:
            raise CodecError(f"the offline codec takes only path= and postnet=, got {sorted(overrides)}")
        path = Path(path) if path is not None else ASSET_PATH
        if not path.is_file():
            raise CodecError(f"offline codec weights not found at '{path}'. Reinstall valle2, or train them with "
                             f"`python -m tools.train_offline_codec --data ../shared/data --out {path}`")
        try:
            with np.load(path, allow_pickle=False) as data:
                fmt = int(data["format"])
                config = OfflineCodecConfig.from_json(str(data["config"]))
                env, ap = data["envelope_codebooks"], data["aperiodicity_codebook"]
        except CodecError:
            raise
        except Exception as exc:  # zip, key or JSON errors all mean a damaged file
            raise CodecError(f"offline codec weights at '{path}' are unreadable or corrupt ({exc.__class__.__name__}: {exc})") from exc
        if fmt != ASSET_FORMAT:
            raise CodecError(f"offline codec weights at '{path}' have format {fmt}, this valle2 reads format {ASSET_FORMAT}")
        beside = path.parent / POSTNET_PATH.name
        return cls(config, env, ap, SpectralPostnet.load(beside) if postnet and beside.is_file() else None)

    def save(self, path: str | Path) -> Path:
        """Write the codebooks (float16) and settings to an ``.npz`` file; returns its path."""
        from ..audio import atomic_write_bytes
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.int64(ASSET_FORMAT), config=np.str_(self.config.to_json()),
                            envelope_codebooks=self.envelope_codebooks.astype(np.float16),
                            aperiodicity_codebook=self.aperiodicity_codebook.astype(np.float16))
        out = atomic_write_bytes(path, buf.getvalue())
        out.chmod(0o644)  # a shipped asset must be readable by every user
        return out

    # -- codes <-> features
    def quantise(self, feats: WorldFeatures) -> torch.Tensor:
        """Continuous features of ``T`` frames -> LongTensor ``[n_codebooks, T]``."""
        cfg = self.config
        codes = np.empty((cfg.n_codebooks, len(feats.f0)), dtype=np.int64)
        codes[list(cfg.envelope_books)] = self.encode_envelope(feats.envelope)
        codes[cfg.f0_book] = f0_to_codes(feats.f0, cfg)
        codes[cfg.aperiodicity_book] = nearest(feats.aperiodicity, self.aperiodicity_codebook)
        return torch.from_numpy(codes)

    def encode_envelope(self, envelope: np.ndarray) -> np.ndarray:
        """Mel-cepstra ``[T, D]`` -> int64 ``[n_envelope_stages, T]`` codes, coarse to fine."""
        books = self.envelope_codebooks
        first = stage1_codes(envelope, books[0], self.config)
        return np.concatenate([first[None], rvq_encode(envelope - books[0][first], books[1:])])

    def dequantise(self, codes: torch.Tensor) -> WorldFeatures:
        """LongTensor ``[n_codebooks, T]`` -> the features they stand for."""
        cfg = self.config
        c = codes.cpu().numpy()
        return WorldFeatures(f0=codes_to_f0(c[cfg.f0_book], cfg),
                             envelope=rvq_decode(c[list(cfg.envelope_books)], self.envelope_codebooks),
                             aperiodicity=self.aperiodicity_codebook[c[cfg.aperiodicity_book]])

    def _match_voice(self, codes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        out, ref = self.dequantise(codes), self.dequantise(reference)
        env = out.envelope + np.concatenate([[0.0], _speech_mean(ref.envelope)[1:] - _speech_mean(out.envelope)[1:]])
        f0 = out.f0.copy()
        voiced, ref_voiced = f0 > 0, ref.f0 > 0
        if voiced.any() and ref_voiced.any():
            f0[voiced] *= np.exp(np.log(ref.f0[ref_voiced]).mean() - np.log(f0[voiced]).mean())
        cfg, new = self.config, codes.numpy().copy()
        new[list(cfg.envelope_books)] = self.encode_envelope(env)
        new[cfg.f0_book] = f0_to_codes(f0, cfg)
        return torch.from_numpy(new)

    @property
    def required_codebooks(self) -> int:
        """Envelope stage 1, F0 and aperiodicity (3) where the envelope's later stages are the last
        codebooks (the default layout), else all: the later stages can code a zero residual."""
        rest = self.config.envelope_books[1:]
        first = self.n_codebooks - len(rest)
        return first if rest == tuple(range(first, self.n_codebooks)) else self.n_codebooks

    @property
    def predicted_codebooks(self) -> int:
        """:data:`NAR_CODEBOOKS`, or all where the layout is not the default."""
        return max(min(NAR_CODEBOOKS, self.n_codebooks), self.required_codebooks)

    def _complete(self, codes: torch.Tensor) -> torch.Tensor:
        """The missing envelope stages code a zero residual."""
        c = codes.numpy()
        out = np.empty((self.n_codebooks, c.shape[1]), dtype=np.int64)
        out[: len(c)] = c
        stages = [s for s, book in enumerate(self.config.envelope_books) if book >= len(c)]
        books = [self.config.envelope_books[s] for s in stages]
        out[books] = rvq_encode(np.zeros((c.shape[1], self.config.envelope_dims)), self.envelope_codebooks[stages])
        return torch.from_numpy(out)

    def code0_vectors(self) -> torch.Tensor | None:
        """The envelope stage-1 codewords in use (mel-cepstra ``[stage1_size, envelope_dims]``)
        when codebook 0 is envelope stage 1, else None."""
        cfg = self.config
        if cfg.envelope_book != 0:
            return None
        return torch.from_numpy(self.envelope_codebooks[0][: cfg.stage1_size]).float()

    # -- Codec interface
    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.quantise(analyse(wav.numpy(), self.config))

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        wav = torch.from_numpy(synthesise(self.dequantise(codes), self.config))
        return self.postnet.enhance(wav) if self.postnet is not None else wav


__all__ = ["OfflineCodec", "OfflineCodecConfig", "WorldFeatures", "analyse", "synthesise", "ASSET_PATH"]
