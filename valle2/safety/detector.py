"""Synthesized-speech detector: an LFCC front end and a light CNN (LCNN) with Max-Feature-Map.

The classifier belongs to the LFCC-LCNN family of the ASVspoof baselines, at a size that trains on
a 2-core CPU in about 15 minutes a network (``tools/train_detector.py``) and ships in the package as fp16
weights (``valle2/assets/detector/detector.pt``, well under 1 MB).  It was trained on real speech
(CMU ARCTIC, LibriSpeech) against unwatermarked synthesized speech (valle2 outputs, offline-codec
resyntheses decoded with and without the codec's post-net, espeak-ng, festival, classic vocoders),
so that it does not rely on the watermark; flite was left out of training to measure how it does
on an unseen generator (``python benchmarks/detector_eval.py``).

Pipeline for one window of 16 kHz audio ``[samples]``:

1. leading and trailing silence are trimmed (frames more than ``trim_db`` below the loudest);
2. the window is scaled to a fixed RMS (the score does not depend on the gain);
3. LFCC: pre-emphasis, ``torch.stft`` power spectrum, a linear triangular filterbank, log with a
   floor relative to the mean power (so digital silence and a quiet noise floor look alike), DCT-II,
   plus deltas and delta-deltas -> ``[3 * n_lfcc, frames]``;
4. LCNN: convolutions whose channels are halved by Max-Feature-Map, max-pooling over time and
   frequency, then mean + max pooling over time and a linear layer -> one logit (> 0: synthesized).

The shipped weights hold an ensemble of such networks trained with different seeds
(:class:`DetectorEnsemble`): a window's probability is the mean of theirs, which is steadier on
unseen generators than any one seed.  Long files are scored in overlapping windows;
:meth:`Detector.analyze` reports every window, and :meth:`Detector.score` the largest window
probability (one synthesized stretch is enough).
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..audio import atomic_write_bytes, resample, validate_waveform
from ..errors import AudioError, ModelError

ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "detector" / "detector.pt"
ASSET_FORMAT = 2   # 2: "members", a list of state dicts (an ensemble); 1 held one "state_dict"

# Decision threshold on the probability that a file is synthesized (Detector.score, the largest
# window probability).  Chosen from the detection-error curve of `python benchmarks/detector_eval.py`
# on held-out speakers; see DETECTOR_THRESHOLD_SOURCE for the figures it was read from.
DETECTOR_THRESHOLD = 0.7
DETECTOR_THRESHOLD_SOURCE = (
    "benchmarks/detector_eval.py on the held-out split (170 real clips of 50 unseen LibriSpeech speakers and 60 "
    "unseen ARCTIC sentences; the shipped 3-network ensemble): at 0.7 one real clip in 170 (0.59 %, LibriSpeech "
    "speaker 8312, score 0.861; the next is 0.652) is called synthesized, while 0 % of valle2 outputs, 1.47 % of "
    "offline-codec resyntheses, 0 % of espeak-ng, 0.83 % of festival and 3.33 % of Griffin-Lim clips are missed")


class DetectorError(ModelError):
    """The detector's weights are missing, corrupt or do not fit; the message says which and how to fix it."""


@dataclass(frozen=True)
class DetectorConfig:
    """Dimensions of the front end and the network (stored in the weights file)."""

    sample_rate: int = 16_000
    n_fft: int = 512
    win_length: int = 320        # 20 ms
    hop_length: int = 160        # 10 ms: 100 frames/s
    n_filters: int = 20          # linear triangular filters over 0 .. sample_rate / 2
    n_lfcc: int = 20             # cepstral coefficients kept (x3 with deltas and delta-deltas)
    preemphasis: float = 0.97
    log_floor: float = 1e-6      # filterbank energies are floored at this fraction of their mean
    delta_width: int = 2         # frames on each side for the regression deltas
    channels: tuple[int, ...] = (16, 24, 32, 16)   # LCNN channels after MFM, one per stage
    dropout: float = 0.3
    window_seconds: float = 3.0  # scoring window
    hop_seconds: float = 1.5     # hop between scoring windows
    min_seconds: float = 0.3     # shortest speech (after trimming) that can be scored
    trim_db: float = 40.0
    target_rms: float = 0.05

    @property
    def n_features(self) -> int:
        return 3 * self.n_lfcc

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DetectorError(f"detector config has unknown fields {unknown}: the weights file is from another version")
        return cls(**{k: tuple(v) if k == "channels" else v for k, v in d.items()})


def linear_filterbank(n_fft: int, n_filters: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters with linearly spaced centres: ``[n_fft // 2 + 1, n_filters]``."""
    n_freq = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate / 2, n_freq, dtype=torch.float64)
    edges = torch.linspace(0, sample_rate / 2, n_filters + 2, dtype=torch.float64)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo[None]) / (mid - lo)[None]
    down = (hi[None] - freqs[:, None]) / (hi - mid)[None]
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix ``[n_in, n_out]`` (``x @ D`` transforms the last axis)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    d = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None]) * math.sqrt(2.0 / n_in)
    d[:, 0] /= math.sqrt(2.0)
    return d.float()


def deltas(x: torch.Tensor, width: int) -> torch.Tensor:
    """Regression deltas along the last axis of ``x [B, C, T]`` (edges replicated) -> ``[B, C, T]``."""
    b, c, t = x.shape
    kernel = torch.arange(-width, width + 1, dtype=x.dtype, device=x.device) / (2 * sum(n * n for n in range(1, width + 1)))
    padded = F.pad(x.reshape(b * c, 1, t), (width, width), mode="replicate")
    return F.conv1d(padded, kernel.view(1, 1, -1)).view(b, c, t)


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients with deltas: ``wav [B, samples]`` -> ``[B, 3 * n_lfcc, frames]``
    (``frames = samples // hop_length + 1``)."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self.register_buffer("filterbank", linear_filterbank(cfg.n_fft, cfg.n_filters, cfg.sample_rate), persistent=False)
        self.register_buffer("dct", dct_matrix(cfg.n_filters, cfg.n_lfcc), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        wav = torch.cat([wav[:, :1], wav[:, 1:] - c.preemphasis * wav[:, :-1]], dim=1)
        spec = torch.stft(wav, c.n_fft, c.hop_length, c.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)          # [B, F, T]
        energy = spec.transpose(1, 2) @ self.filterbank                                    # [B, T, n_filters]
        floor = c.log_floor * energy.mean(dim=(1, 2), keepdim=True) + 1e-12
        cep = (torch.log(energy + floor) @ self.dct).transpose(1, 2)                      # [B, n_lfcc, T]
        d1 = deltas(cep, c.delta_width)
        return torch.cat([cep, d1, deltas(d1, c.delta_width)], dim=1)


class MFMConv(nn.Module):
    """Conv2d to ``2 * out`` channels, then Max-Feature-Map (max of the two halves) -> ``out`` channels."""

    def __init__(self, n_in: int, n_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(n_in, 2 * n_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return torch.maximum(a, b)


class LCNN(nn.Module):
    """Light CNN over LFCC: ``feats [B, n_features, frames]`` -> logits ``[B]`` (> 0: synthesized).

    Stage 0 is a 5x5 MFM conv; each later stage is a 1x1 MFM conv, batch norm and a 3x3 MFM conv.
    Each stage ends in 2x2 max-pooling, so frequency shrinks 16-fold and time too; the rest is
    flattened over channels x frequency and pooled over time (mean and max), then dropout and a
    linear layer."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        layers: list[nn.Module] = [MFMConv(1, ch[0], 5), nn.MaxPool2d(2)]
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [nn.BatchNorm2d(a), MFMConv(a, a, 1), nn.BatchNorm2d(a), MFMConv(a, b, 3), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.BatchNorm2d(ch[-1]))
        n_freq = cfg.n_features
        for _ in ch:
            n_freq //= 2
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * ch[-1] * n_freq, 1))
        self.min_frames = 2 ** len(ch)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.body(feats.unsqueeze(1))                       # [B, C, F', T']
        h = h.flatten(1, 2)                                     # [B, C * F', T']
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], 1)   # [B, 2 * C * F']
        return self.head(pooled).squeeze(1)


class DetectorNet(nn.Module):
    """LFCC + LCNN: ``wav [B, samples]`` (16 kHz, already trimmed and scaled) -> logits ``[B]``."""

    def __init__(self, cfg: DetectorConfig | None = None):
        super().__init__()
        self.cfg = cfg or DetectorConfig()
        self.lfcc = LFCC(self.cfg)
        self.lcnn = LCNN(self.cfg)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.lcnn(self.lfcc(wav))


class DetectorEnsemble(nn.Module):
    """Networks of one config whose probabilities are averaged: ``wav [B, samples]`` -> the logit of
    the members' mean probability ``[B]``."""

    def __init__(self, members: Sequence[DetectorNet]):
        super().__init__()
        if not members:
            raise DetectorError("a detector ensemble needs at least one network")
        configs = {m.cfg for m in members}
        if len(configs) != 1:
            raise DetectorError("the networks of a detector ensemble must share one config")
        self.cfg = members[0].cfg
        self.members = nn.ModuleList(members)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.sigmoid(m(wav)) for m in self.members]).mean(dim=0)
        return torch.logit(probs, eps=1e-7)


def trim_bounds(wav: np.ndarray, cfg: DetectorConfig) -> tuple[int, int]:
    """``(start, end)`` samples of ``wav [samples]`` without its leading and trailing 10 ms frames
    more than ``cfg.trim_db`` below the loudest frame."""
    hop = cfg.hop_length
    n = wav.size // hop
    if n < 2:
        return 0, wav.size
    energy = np.square(wav[: n * hop].reshape(n, hop), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-cfg.trim_db / 10))
    return int(loud[0] * hop), int((loud[-1] + 1) * hop)


def trim_silence(wav: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """``wav [samples]`` without silence at its ends (see :func:`trim_bounds`)."""
    a, b = trim_bounds(wav, cfg)
    return wav[a:b]


def normalize_rms(x: torch.Tensor, target: float) -> torch.Tensor:
    """Scale each row of ``x [B, samples]`` to RMS ``target``."""
    return x * (target / (x.pow(2).mean(dim=1, keepdim=True).sqrt() + 1e-8))


def window_starts(n: int, win: int, hop: int) -> list[int]:
    """Starts of windows of ``win`` samples every ``hop`` covering ``n`` samples (the last one ends at ``n``)."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    return starts


@dataclass
class DetectorResult:
    """The classifier's report on one file.  ``score`` = max window probability (the decision
    statistic), ``mean`` = mean window probability; ``windows`` = ``(start_s, end_s, probability)``
    in the original file's time (after trimming silence at its ends)."""

    score: float
    mean: float
    threshold: float
    windows: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def synthesized(self) -> bool:
        return self.score >= self.threshold

    def to_dict(self) -> dict:
        return {"synthesized": self.synthesized, "score": round(self.score, 4), "mean": round(self.mean, 4),
                "threshold": self.threshold,
                "windows": [[round(a, 2), round(b, 2), round(p, 4)] for a, b, p in self.windows]}


class Detector:
    """A loaded detector: :meth:`score` and :meth:`analyze` take mono audio at any rate.  ``net`` is
    one :class:`DetectorNet` or a :class:`DetectorEnsemble`."""

    def __init__(self, net: DetectorNet | DetectorEnsemble, threshold: float = DETECTOR_THRESHOLD, meta: dict | None = None):
        self.net = net.eval()
        self.cfg = net.cfg
        self.threshold = float(threshold)
        self.meta = dict(meta or {})

    def prepare(self, wav, sr: int) -> tuple[np.ndarray, int]:
        """Validate, resample to 16 kHz and trim ``wav [samples]``; returns (trimmed 16 kHz audio, its
        start in samples).  AudioError for empty, silent or non-finite audio, or too little sound."""
        wav = validate_waveform(wav, sr)
        wav = resample(wav, sr, self.cfg.sample_rate)
        a, b = trim_bounds(wav, self.cfg)
        if b - a < self.cfg.min_seconds * self.cfg.sample_rate:
            raise AudioError(f"audio has {(b - a) / self.cfg.sample_rate:.2f} s of sound, too little for the "
                             f"synthesized-speech detector (needs {self.cfg.min_seconds} s)")
        return wav[a:b], a

    @torch.no_grad()
    def logits(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` for 16 kHz ``windows [B, samples]`` (RMS-normalised here)."""
        return self.net(normalize_rms(windows.float(), self.cfg.target_rms))

    def analyze(self, wav, sr: int) -> DetectorResult:
        """Score ``wav [samples]`` at rate ``sr`` in windows of ``cfg.window_seconds``."""
        c = self.cfg
        x, offset = self.prepare(wav, sr)
        win, hop = int(c.window_seconds * c.sample_rate), int(c.hop_seconds * c.sample_rate)
        starts = window_starts(x.size, win, hop)
        batch = torch.from_numpy(np.stack([x[s:s + win] for s in starts]))
        probs = torch.sigmoid(self.logits(batch)).tolist()
        windows = [((offset + s) / c.sample_rate, (offset + min(s + win, x.size)) / c.sample_rate, p)
                   for s, p in zip(starts, probs)]
        return DetectorResult(max(probs), float(np.mean(probs)), self.threshold, windows)

    def score(self, wav, sr: int) -> float:
        """Probability that ``wav [samples]`` is synthesized: the largest over its windows."""
        return self.analyze(wav, sr).score

    def is_synthesized(self, wav, sr: int) -> bool:
        return self.score(wav, sr) >= self.threshold


def save_detector(path, nets: DetectorNet | Sequence[DetectorNet], meta: dict | None = None) -> Path:
    """Write one network or the members of an ensemble (fp16 weights), their config and ``meta``
    to ``path`` atomically."""
    members = list(nets.members) if isinstance(nets, DetectorEnsemble) else [nets] if isinstance(nets, DetectorNet) else list(nets)
    ensemble = DetectorEnsemble(members)   # checks that they share a config
    states = [{k: (v.half() if v.is_floating_point() else v).clone() for k, v in m.state_dict().items()} for m in members]
    cfg = asdict(ensemble.cfg)
    cfg["channels"] = list(cfg["channels"])
    buf = io.BytesIO()
    torch.save({"format": ASSET_FORMAT, "kind": "valle2-detector", "config": cfg, "members": states,
                "meta": dict(meta or {})}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, threshold: float | None) -> Detector:
    hint = "reinstall valle2, or train new weights with `python tools/train_detector.py`"
    if not path.is_file():
        raise DetectorError(f"synthesized-speech detector weights not found at '{path}': {hint}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise DetectorError(f"synthesized-speech detector weights at '{path}' are corrupt ({type(exc).__name__}): {hint}") from None
    if not isinstance(blob, dict) or blob.get("kind") != "valle2-detector":
        raise DetectorError(f"'{path}' is not a valle2 detector weights file: {hint}")
    if blob.get("format") != ASSET_FORMAT:
        raise DetectorError(f"detector weights at '{path}' have format {blob.get('format')!r}, "
                            f"this valle2 reads format {ASSET_FORMAT}: {hint}")
    cfg = DetectorConfig.from_dict(blob["config"])
    states = blob.get("members")
    if not isinstance(states, list) or not states:
        raise DetectorError(f"detector weights at '{path}' hold no networks: {hint}")
    members = []
    for i, state in enumerate(states):
        net = DetectorNet(cfg)
        try:
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except (RuntimeError, KeyError, AttributeError) as exc:
            raise DetectorError(f"detector weights at '{path}' (network {i}) do not fit the network: {str(exc)[:200]}: {hint}") from None
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise DetectorError(f"detector weights at '{path}' (network {i}) contain NaN or infinite values: {hint}")
        members.append(net)
    return Detector(DetectorEnsemble(members), DETECTOR_THRESHOLD if threshold is None else threshold, blob.get("meta") or {})


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, threshold: float | None) -> Detector:
    return _load(Path(path), threshold)


def load_detector(path=None, threshold: float | None = None) -> Detector:
    """Load the detector at ``path`` (default: the shipped ``valle2/assets/detector/detector.pt``).

    ``threshold`` defaults to :data:`DETECTOR_THRESHOLD`.  Raises :class:`DetectorError` for a
    missing, corrupt or mismatched file.  Loads are cached per file (and its modification time)."""
    path = Path(path) if path is not None else ASSET_PATH
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return _load(path, threshold)  # raises: not found
    return _load_cached(str(path.resolve()), mtime, threshold)


def detector_liveness(detector: Detector | None = None):
    """A liveness check (for the consent registry and the gate) that refuses audio the classifier
    calls synthesized.  The shipped detector is loaded on first use; missing weights refuse the
    audio with :class:`DetectorError` rather than let it through."""
    def check(wav: np.ndarray, sr: int) -> str | None:
        det = detector if detector is not None else load_detector()
        result = det.analyze(wav, sr)
        if result.synthesized:
            return (f"the synthesized-speech detector scores it {result.score:.3f} >= threshold {det.threshold:.3f}: "
                    f"it sounds synthesized, record the speaker directly")
        return None
    return check
