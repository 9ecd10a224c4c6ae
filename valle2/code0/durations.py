"""Durations for codebook 0 without the AR: which text token each output frame reads.

Each text token id has a mean duration in frames, measured on the training alignments
(:func:`mean_token_frames`); a target's tokens last their mean frames times a pace
(:func:`token_index`).  Prompts are aligned to their transcripts with the aligned AR's emission
table (:func:`prompt_alignment`, :mod:`valle2.alignment`).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from ..alignment import align

PACE_RANGE = (0.5, 2.0)  # token_index: a prompt's pace (its frames over the durations') is clipped to this


def mean_token_frames(n_vocab: int, pairs: Iterable[tuple[Tensor, Tensor]]) -> Tensor:
    """Mean frames each text token id lasts in ``pairs`` of (text ids ``[N]``, the token index of
    each frame ``[T]``, e.g. from :func:`valle2.alignment.align`); ids never seen get the mean over
    all tokens.  Returns FloatTensor ``[n_vocab]``.
    """
    frames, count = np.zeros(n_vocab), np.zeros(n_vocab)
    for text, index in pairs:
        if text.numel() == 0 or index.numel() == 0:
            continue
        runs = np.bincount(index.numpy(), minlength=text.numel())
        np.add.at(frames, text.long().numpy(), runs)
        np.add.at(count, text.long().numpy(), 1.0)
    if not count.any():
        raise ValueError("no (text, codes) pairs to measure token durations on")
    mean = frames.sum() / count.sum()
    return torch.from_numpy(np.where(count > 0, frames / np.maximum(count, 1), mean).astype(np.float32))


def prompt_alignment(log_emission: Tensor, text: Tensor, prompt0: Tensor, n_prompt_text: int | None) -> Tensor:
    """The text token each prompt frame reads ``[P]`` (indices into ``text``), under the aligned AR's
    table ``log_emission``: prompt0 ``[P]`` is aligned to the text's first ``n_prompt_text`` tokens
    (its transcript), or with None (continuation) to the text with an open end."""
    if n_prompt_text is None:
        return align(log_emission, text, prompt0, open_end=True)
    return align(log_emission, text[:n_prompt_text], prompt0)


def token_index(token_frames: Tensor, log_emission: Tensor, text: Tensor, prompt0: Tensor, n_prompt_text: int | None,
                max_frames: int, pace: float | None = None, prompt_index: Tensor | None = None) -> Tensor:
    """The text token each output frame reads: ``[T]`` indices into ``text``.

    token_frames ``[n_text_vocab]``: each token id's mean frames (:func:`mean_token_frames`);
    log_emission: the aligned AR's table, which finds where a continuation prompt ends in the text;
    text ``[L]`` (prompt transcript + target, as the model reads it); prompt0 ``[P]``: the prompt's
    codebook 0; ``n_prompt_text``: the text's first ``n`` tokens are the prompt's transcript (None:
    continuation, the text starts with the prompt's words).  The target's tokens (those after the
    prompt's) last their mean frames times ``pace``, or with ``pace=None`` times the prompt's pace
    (its frames over its tokens' mean frames, clipped to :data:`PACE_RANGE`), rounded so that the
    ends fall on whole frames and each token gets at least one; at most ``max_frames`` come out.
    ``prompt_index``: the prompt's :func:`prompt_alignment`, where the caller has it already (else
    it is computed when needed).
    """
    if n_prompt_text is None:
        if prompt0.numel() and prompt_index is None:
            prompt_index = prompt_alignment(log_emission, text, prompt0, None)
        start = int(prompt_index[-1]) + 1 if prompt0.numel() else 0
    else:
        start = n_prompt_text
    frames = token_frames.float().cpu()[text.long().cpu()]
    if pace is None:
        pace = prompt0.shape[0] / float(frames[:start].sum()) if start and prompt0.numel() else 1.0
        pace = min(max(pace, PACE_RANGE[0]), PACE_RANGE[1])
    start = min(start, text.shape[0] - 1)  # a prompt that covers the whole text: speak its last token
    n = text.shape[0] - start
    ends = torch.round(torch.cumsum(frames[start:] * pace, 0)).long()
    k = torch.arange(1, n + 1)
    ends = k + (ends - k).clamp(min=0).cummax(0).values                   # each token at least one frame
    counts = torch.diff(ends, prepend=ends.new_zeros(1))
    return (start + torch.repeat_interleave(torch.arange(n), counts))[:max_frames]
