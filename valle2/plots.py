"""Pictures people would rather look at than read: spectrograms, curves, alignments (PNG via matplotlib)."""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_spectrogram(wav: np.ndarray, sr: int, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Log-magnitude STFT in dB: ``[n_fft // 2 + 1, frames]``."""
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(np.maximum(mag, 1e-5))


def spectrogram_figure(panels: dict[str, tuple[np.ndarray, int]], title: str = ""):
    """One spectrogram row per ``name -> (wav, sr)``; returns a matplotlib Figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), squeeze=False)
    for ax, (name, (wav, sr)) in zip(axes[:, 0], panels.items()):
        spec = log_spectrogram(wav, sr)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80,
                  extent=(0, len(wav) / sr, 0, sr / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Write a figure to PNG atomically and close it."""
    import io

    from .audio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
