"""Guided attention: a training aid for the AR, not the paper's (chosen with ``optim.guided_attention``).

Tachibana et al. 2018 ("Efficiently trainable text-to-speech system based on deep convolutional
networks with guided attention") push a TTS model's attention towards the diagonal of the
text-audio grid; ESPnet's Transformer-TTS applies the same loss to a few heads.  Here the first
``heads`` heads of every AR block but the first are scored on how far, from audio group ``t`` of
``M``, their attention over the ``N`` text tokens falls from ``n / N = t / M``.

Decoding is unchanged: the loss only shapes training, so a model trained with it is the paper's AR
at synthesis (no aligned pointer, no table).  It asked a question of issue 33: is the plain AR
slow to read on 2 CPU cores because the text-audio alignment is slow to emerge?  On the synthetic
task the guided heads aligned by step 500 and the teacher-forced probe moved as without the loss
(docs/ar_learns.md), so alignment is not the bottleneck there; the option stays off in every
shipped config until a run without it is compared on the same NAR-free measure, and goes if it
does not win.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .model import AUDIO, TEXT, segment_positions


@dataclass(frozen=True)
class GuidedAttention:
    """The loss's weight, the width ``sigma`` of its diagonal band (in fractions of the
    utterance) and how many heads of each AR block past the first it guides."""

    weight: float = 1.0
    sigma: float = 0.2
    heads: int = 2

    def __post_init__(self):
        if self.weight <= 0 or self.sigma <= 0 or self.heads < 1:
            raise ValueError("guided attention needs weight > 0, sigma > 0 and heads >= 1, "
                             f"got {self.weight}, {self.sigma}, {self.heads}")

    def check(self, n_heads: int, n_blocks: int) -> None:
        """ValueError unless an AR of ``n_blocks`` blocks of ``n_heads`` heads has the heads to guide
        (the first block is left free)."""
        if self.heads > n_heads or n_blocks < 2:
            raise ValueError(f"guided attention guides {self.heads} heads of AR blocks 2..; "
                             f"this AR has {n_heads} heads and {n_blocks} blocks")

    def penalty(self, weights: list[Tensor], seg: Tensor) -> Tensor:
        """``weights``: the AR's attention ``[B, H, S, S]`` per block (as ``ARModel.loss`` collects it);
        ``seg [B, S]``.  Returns the mean off-diagonal penalty in ``[0, 1)`` of the guided heads."""
        self.check(weights[0].shape[1], len(weights))
        return diagonal_penalty([w[:, : self.heads] for w in weights[1:]], seg, self.sigma)


def diagonal_penalty(weights: list[Tensor], seg: Tensor, sigma: float) -> Tensor:
    """Mean expected off-diagonal penalty of audio queries' attention over text keys.

    weights: attention ``[B, H, S, S]`` per block; seg ``[B, S]``.  Each audio query's weights
    over the text keys are renormalised to sum to 1 and scored against
    ``W = 1 - exp(-(n/N - t/M)^2 / (2 sigma^2))`` (0 on the diagonal, near 1 far from it);
    the result is averaged over audio queries, heads and blocks.
    """
    is_text, is_audio = seg == TEXT, seg == AUDIO
    pos = segment_positions(seg).float() + 0.5
    rel = torch.where(is_text, pos / is_text.sum(1, keepdim=True).clamp(min=1),
                      pos / is_audio.sum(1, keepdim=True).clamp(min=1))               # [B, S]
    w = 1.0 - torch.exp(-(rel.unsqueeze(2) - rel.unsqueeze(1)) ** 2 / (2 * sigma**2))  # [B, S_q, S_k]
    w = w * is_text.unsqueeze(1)
    total = seg.new_zeros((), dtype=torch.float32)
    for att in weights:
        on_text = att * is_text[:, None, None, :]
        att_text = on_text / on_text.sum(-1, keepdim=True).clamp(min=1e-6)
        per_query = (att_text * w.unsqueeze(1)).sum(-1)                                 # [B, H, S_q]
        total = total + (per_query * is_audio.unsqueeze(1)).sum() / (is_audio.sum() * att.shape[1]).clamp(min=1)
    return total / len(weights)
