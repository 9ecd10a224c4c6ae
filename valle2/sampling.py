"""Token sampling: temperature, top-k, top-p (nucleus), Repetition Aware Sampling and the
posterior-mean code choice.

Repetition Aware Sampling (VALL-E 2, Algorithm 1): nucleus-sample a code; if that code's
repetition ratio over the last ``K`` decoded codes reaches ``t_r``, throw it away and sample
from the full distribution instead.  This keeps nucleus sampling's stability while breaking the
loops that make codec language models repeat forever.

The posterior-mean choice (:func:`posterior_mean_codes`) uses what the codes stand for: of the
codewords, it takes the one nearest the probability-weighted mean codeword, which is the code of
least expected squared distance to a draw from the model (a minimum-Bayes-risk choice).  Where a
small model spreads its probability over many similar codes, a draw is often an outlier and the
argmax often one of several near-ties; the mean is neither.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Scale logits ``[N, V]``; temperature 0 means greedy and is handled by the callers."""
    return logits / max(temperature, 1e-5)


def top_k_top_p_filter(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Mask logits ``[N, V]`` to ``-inf`` outside the top ``k`` and outside the nucleus.

    The nucleus is the smallest set of the most likely tokens whose probability reaches
    ``top_p``; it always holds the most likely token, so ``top_p = 0`` is greedy.
    ``top_k = 0`` and ``top_p >= 1`` switch the filters off.
    """
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # Keep the tokens at least as likely as the one whose cumulative probability (most likely
        # first) reaches top_p; only the sorted values are needed, not the order.
        probs = logits.softmax(-1)
        desc = _sorted_descending(probs)
        n_before = (desc.cumsum(-1) - desc < top_p).sum(-1, keepdim=True).clamp(1, probs.shape[-1])
        logits = logits.masked_fill(probs < desc.gather(-1, n_before - 1), float("-inf"))
    return logits


def _sorted_descending(x: Tensor) -> Tensor:
    """Each row of ``x [N, V]`` sorted, largest first (values only).  On the CPU NumPy's sort is
    used: for a decoding step's ``[4, 1024]`` it takes 25 us where ``Tensor.sort`` takes 220 us."""
    if x.device.type == "cpu":
        desc = np.sort(x.detach().float().numpy(), axis=-1)[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(desc)).to(x.dtype)
    return x.sort(dim=-1, descending=True).values


def sample_from(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of logits ``[N, V]`` -> LongTensor ``[N]``."""
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def repetition_ratio(tokens: Tensor, history: Tensor, window: int) -> Tensor:
    """Share of the last ``window`` history entries equal to each token.

    tokens ``[N]``; history ``[N, H]`` (most recent last, ``-1`` where empty) -> FloatTensor ``[N]``.
    """
    recent = history[:, -window:]
    return (recent == tokens.unsqueeze(1)).sum(1).float() / window


def ras_sample(logits: Tensor, history: Tensor, top_p: float, top_k: int = 0, temperature: float = 1.0,
               window: int = 10, threshold: float = 0.1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Repetition Aware Sampling for one step.

    logits ``[N, V]``; history ``[N, H]`` of earlier codes (``-1`` = empty).  Returns
    ``(tokens [N], fell_back [N] bool)``: ``fell_back`` marks rows whose nucleus sample had a
    repetition ratio ``>= threshold`` over the last ``window`` codes and was resampled from the
    full (temperature-scaled) distribution.
    """
    tokens, fell_back = ras_sample_group(logits.unsqueeze(1), history, top_p, top_k, temperature, window, threshold, generator)
    return tokens[:, 0], fell_back[:, 0]


def ras_sample_group(logits: Tensor, history: Tensor, top_p: float, top_k: int = 0, temperature: float = 1.0,
                     window: int = 10, threshold: float = 0.1,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Repetition Aware Sampling for the ``G`` codes of one group at once.

    logits ``[B, G, V]``; history ``[B, H]`` as :func:`ras_sample`.  Code ``i`` is checked against
    the history followed by the group's codes ``< i``, exactly as if the codes were sampled one
    by one; the nucleus and fallback draws of all ``G`` codes are made in one batch (one sort
    instead of ``G``).  Returns ``(tokens [B, G], fell_back [B, G])``.
    """
    b, g, v = logits.shape
    scaled = apply_temperature(logits.reshape(b * g, v), temperature)
    nucleus = sample_or_greedy(scaled, top_k, top_p, temperature, generator).view(b, g)
    full = sample_from(scaled, generator).view(b, g)
    tokens = torch.empty_like(nucleus)
    fell_back = torch.zeros(b, g, dtype=torch.bool, device=logits.device)
    for i in range(g):
        fell_back[:, i] = repetition_ratio(nucleus[:, i], torch.cat([history, tokens[:, :i]], 1), window) >= threshold - 1e-6
        tokens[:, i] = torch.where(fell_back[:, i], full[:, i], nucleus[:, i])
    return tokens, fell_back


def sample_or_greedy(scaled: Tensor, top_k: int, top_p: float, temperature: float,
                     generator: torch.Generator | None = None) -> Tensor:
    """Nucleus/top-k sample from temperature-scaled logits ``[N, V]``; argmax when temperature is 0."""
    if temperature <= 0:
        return scaled.argmax(-1)
    return sample_from(top_k_top_p_filter(scaled, top_k, top_p), generator)


def posterior_mean_codes(logits: Tensor, vectors: Tensor, eos_id: int, top_k: int = 0, top_p: float = 1.0,
                         temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """The code nearest the probability-weighted mean codeword, one per row.

    logits ``[N, V]`` over codes ``0 .. V-2`` and EOS at ``eos_id``; vectors ``[K, D]`` (``K <= V - 1``),
    what codes ``0 .. K-1`` stand for (:meth:`valle2.codec.Codec.code0_vectors`).  A row ends
    (EOS) with the probability the model gives EOS; otherwise the mean is taken over the top-k /
    nucleus of codes ``< K`` at ``temperature``.  Temperature 0 is the argmax.  Returns LongTensor ``[N]``.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    scaled = apply_temperature(logits.float(), temperature)
    p_eos = scaled.softmax(-1)[:, eos_id]
    stop = torch.rand(p_eos.shape, generator=generator, device=logits.device) < p_eos
    vectors = vectors.to(device=logits.device, dtype=torch.float32)
    probs = top_k_top_p_filter(scaled[:, : vectors.shape[0]], top_k, top_p).softmax(-1).nan_to_num(0.0)
    nearest = nearest_codes(probs @ vectors, vectors)
    return torch.where(stop, torch.full_like(nearest, eos_id), nearest)


def nearest_codes(points: Tensor, vectors: Tensor) -> Tensor:
    """The code of the codeword nearest each point: points ``[N, D]``, codewords ``[K, D]`` -> ``[N]``.

    One matrix product: ``||v||^2 - 2 m.v`` is the squared distance less ``||m||^2``, the same for all v.
    """
    return ((vectors * vectors).sum(-1) - 2.0 * points @ vectors.T).argmin(-1)
