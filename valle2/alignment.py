"""Monotonic alignment of text tokens to codebook-0 frames, for the aligned AR (VALL-E R style).

A discrete hidden Markov model: each text token id emits codebook-0 codes from its own categorical
distribution ``p(code | token id)`` (the *emission table*, ``[n_text_vocab, codebook_size]`` log
probabilities, shared by every occurrence of the id); an utterance's frames split into
consecutive runs, one run of at least one frame per token, in text order.  :func:`align` finds
the most likely split (Viterbi: the monotonic alignment search of Glow-TTS with discrete
emissions); :func:`fit_emissions` estimates the table from a corpus by hard EM, starting from
even splits.  The aligned AR reads the token of each frame and predicts how far to move on
(:class:`valle2.model.ARModel`); its alignments come from the table it carries.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm


def even_split(n_tokens: int, n_frames: int) -> np.ndarray:
    """Token index of each frame when ``n_frames`` are shared evenly by ``n_tokens``: ``[n_frames]``."""
    return (np.arange(n_frames) * n_tokens // max(1, n_frames)).astype(np.int64)


def viterbi(logp: np.ndarray, open_end: bool = False) -> np.ndarray:
    """Best monotonic path through ``logp`` ``[N tokens, T frames]`` (log emission of each frame
    under each token): frame 0 is token 0, each frame stays on its token or moves to the next,
    and the last frame is token ``N - 1`` (with ``open_end``, whichever token scores best).
    Returns the token index of each frame ``[T]``.  With fewer frames than tokens (``T < N``,
    closed end) no path exists and the even split is returned."""
    n, t = logp.shape
    if t < n and not open_end:
        return even_split(n, t)
    delta = np.full(n, -np.inf, dtype=np.float64)
    delta[0] = logp[0, 0]
    moved = np.zeros((t, n), dtype=bool)
    shifted = np.empty(n, dtype=np.float64)
    shifted[0] = -np.inf
    for f in range(1, t):
        shifted[1:] = delta[:-1]
        moved[f] = shifted > delta
        delta = np.maximum(shifted, delta) + logp[:, f]
    k = int(np.argmax(delta)) if open_end else n - 1
    path = np.empty(t, dtype=np.int64)
    for f in range(t - 1, -1, -1):
        path[f] = k
        if f and moved[f, k]:
            k -= 1
    return path


def align(log_emission: Tensor, text: Tensor, codes: Tensor, open_end: bool = False) -> Tensor:
    """Token index of each frame: ``log_emission [n_text_vocab, codebook_size]``, text ids ``[N]``,
    codebook-0 codes ``[T]`` -> LongTensor ``[T]`` (values in ``0 .. N - 1``); see :func:`viterbi`."""
    if text.numel() == 0:
        raise ValueError("cannot align frames to an empty text")
    logp = log_emission.detach().float().cpu()[text.long().cpu()][:, codes.long().cpu()]  # [N, T]
    return torch.from_numpy(viterbi(logp.numpy(), open_end)).to(codes.device)


def fit_emissions(pairs: Iterable[tuple[Tensor, Tensor]], n_text_vocab: int, codebook_size: int, iters: int = 4,
                  smoothing: float = 0.5, progress: bool = True) -> Tensor:
    """Estimate the emission table by hard EM over ``pairs`` of (text ids ``[N]``, codebook-0 codes ``[T]``).

    Counts start from even splits; each iteration re-aligns every utterance with the current
    table and recounts.  ``smoothing`` is added to every count (tokens never seen emit uniformly).
    Returns log probabilities ``FloatTensor[n_text_vocab, codebook_size]``.
    """
    data = [(t.long().numpy(), c.long().numpy()) for t, c in pairs if t.numel() and c.numel()]
    if not data:
        raise ValueError("no (text, codes) pairs to fit the alignment emissions on")
    paths = [even_split(len(t), len(c)) for t, c in data]
    for it in tqdm(range(iters + 1), desc="fitting alignment emissions", disable=not progress):
        counts = np.full((n_text_vocab, codebook_size), smoothing, dtype=np.float64)
        for (t, c), path in zip(data, paths):
            np.add.at(counts, (t[path], c), 1.0)
        table = np.log(counts / counts.sum(1, keepdims=True))
        if it == iters:
            break
        paths = [viterbi(table[t][:, c]) for t, c in data]
    return torch.from_numpy(table.astype(np.float32))

