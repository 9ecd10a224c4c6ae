"""A learned spectral post-net for the offline codec's WORLD output.

WORLD resynthesis, even with no quantisation at all, costs pocketsphinx 7-9 WER points
(``../shared/notes/measured-facts.md``).  Measured on the 100 dev ARCTIC clips: the original's
STFT magnitude with WORLD's phase recognises at 26.4 % WER against 25.5 % for the original, while
WORLD's magnitude with the original's phase gives 33.6 %.  The loss is in the magnitude, so this
post-net corrects it: a small non-causal convolutional network reads WORLD's log-magnitude
spectrogram and predicts a per-bin log-gain; the corrected magnitude is recombined with WORLD's
phase and inverted (overlap-add iSTFT).  It is decode-only: the codes do not change.

Trained by ``python -m tools.train_offline_postnet`` on pairs (original clip, WORLD decoding of its
codes) from the codec's training split, with an L1 loss on log-magnitudes; the package ships one
(``valle2/assets/codec/offline_postnet.pt``), which takes the codec's pocketsphinx WER cost from
+8.7 to +3.0 points (docs/codec.md).
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CodecError

POSTNET_PATH = Path(__file__).resolve().parent.parent / "assets" / "codec" / "offline_postnet.pt"  # shipped (fp16, 5.5 MB)
POSTNET_FORMAT = 1


@dataclass(frozen=True)
class PostnetConfig:
    """Shape of the post-net; stored with its weights."""

    n_fft: int = 512  # STFT size at 16 kHz (32 ms), 257 bins
    hop_length: int = 128  # 8 ms
    channels: int = 256
    kernel_size: int = 5
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2)  # one residual block each; receptive field ~0.6 s
    floor: float = 1e-3  # magnitude floor inside the log

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


class _Block(nn.Module):
    """Pre-norm residual block: GroupNorm, dilated conv, GELU, 1x1 conv.  ``[B, C, N] -> [B, C, N]``."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(torch.nn.functional.gelu(self.conv(self.norm(x))))


class SpectralPostnet(nn.Module):
    """Log-magnitude ``[B, n_bins, N]`` -> log-gain ``[B, n_bins, N]`` (starts as the identity: zero gain)."""

    def __init__(self, config: PostnetConfig = PostnetConfig()):
        super().__init__()
        c = config
        self.config = c
        self.inp = nn.Conv1d(c.n_bins, c.channels, c.kernel_size, padding=c.kernel_size // 2)
        self.blocks = nn.ModuleList(_Block(c.channels, c.kernel_size, d) for d in c.dilations)
        self.out = nn.Conv1d(c.channels, c.n_bins, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Per-bin input normalisation, set from the training data.
        self.register_buffer("mean", torch.zeros(c.n_bins, 1))
        self.register_buffer("std", torch.ones(c.n_bins, 1))

    def forward(self, logmag: torch.Tensor) -> torch.Tensor:
        x = self.inp((logmag - self.mean) / self.std)
        for block in self.blocks:
            x = block(x)
        return self.out(x)

    # -- waveform in, waveform out
    def spectrum(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[..., n_bins, N]`` of ``wav [..., samples]``."""
        c = self.config
        return torch.stft(wav, c.n_fft, c.hop_length, window=torch.hann_window(c.n_fft, device=wav.device),
                          return_complex=True)

    def log_magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.log(spec.abs() + self.config.floor)

    def invert(self, spec: torch.Tensor, logmag: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform ``[..., length]`` with log-magnitude ``logmag`` and the phase of ``spec``, both ``[..., n_bins, N]``."""
        c = self.config
        mag = (torch.exp(logmag) - c.floor).clamp_min(0.0)
        return torch.istft(torch.polar(mag, spec.angle()), c.n_fft, c.hop_length,
                           window=torch.hann_window(c.n_fft, device=spec.device), length=length)

    @torch.inference_mode()
    def enhance(self, wav: torch.Tensor) -> torch.Tensor:
        """Correct float ``[samples]`` at 16 kHz; returns the same number of samples."""
        spec = self.spectrum(wav.float())
        logmag = self.log_magnitude(spec)
        return self.invert(spec, logmag + self(logmag[None])[0], wav.shape[-1])

    def fingerprint(self) -> str:
        """SHA-256 (first 12 hex digits) of the settings and the weights as stored (float16)."""
        import hashlib

        h = hashlib.sha256(json.dumps(asdict(self.config)).encode())
        for key, value in sorted(self.state_dict().items()):
            h.update(key.encode())
            h.update(value.half().numpy().tobytes())
        return h.hexdigest()[:12]

    # -- persistence
    def save(self, path: str | Path) -> Path:
        """Write the config and float16 weights atomically; returns the path."""
        from ..audio import atomic_write_bytes

        buf = io.BytesIO()
        state = {k: v.half() for k, v in self.state_dict().items()}
        torch.save({"format": POSTNET_FORMAT, "config": json.dumps(asdict(self.config)), "state": state}, buf)
        out = atomic_write_bytes(path, buf.getvalue())
        out.chmod(0o644)
        return out

    @classmethod
    def load(cls, path: str | Path = POSTNET_PATH) -> "SpectralPostnet":
        path = Path(path)
        if not path.is_file():
            raise CodecError(f"offline codec post-net not found at '{path}'. Reinstall valle2, or train it with "
                             f"`python -m tools.train_offline_postnet --data ../shared/data --pairs <folder> --out {path}`")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            raw = json.loads(blob["config"])
            raw["dilations"] = tuple(raw["dilations"])
            net = cls(PostnetConfig(**raw))
            net.load_state_dict({k: v.float() for k, v in blob["state"].items()})
        except Exception as exc:  # pickle, key, JSON or shape errors all mean a damaged file
            raise CodecError(f"offline codec post-net at '{path}' is unreadable or corrupt "
                             f"({exc.__class__.__name__}: {exc})") from exc
        if blob["format"] != POSTNET_FORMAT:
            raise CodecError(f"offline codec post-net at '{path}' has format {blob['format']}, "
                             f"this valle2 reads format {POSTNET_FORMAT}")
        return net.eval()


__all__ = ["PostnetConfig", "SpectralPostnet", "POSTNET_PATH"]
