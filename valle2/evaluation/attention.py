"""The AR's attention of audio queries over text keys.

One utterance is teacher forced through the AR (:meth:`ARModel.teacher_forced`: text ids, BOS
and code groups) with a ``weights`` list, so that each block computes its attention
explicitly and hands its weights back.  Teacher-forcing the codes the AR generated reproduces the
attention it had while decoding them (the AR is causal and deterministic given its inputs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..model import ARModel


@torch.inference_mode()
def layer_attention(ar: ARModel, text_ids: Tensor, codes0: Tensor, layer: int) -> Tensor:
    """Attention weights ``[n_heads, S, S]`` of block ``layer`` for one utterance: text ids
    ``[L]`` and codebook-0 codes ``[T]``, trimmed at the start to a multiple of G as decoding trims
    the prompt, packed by :meth:`ARModel.teacher_forced` (``S = L + 1 + T // G``: text, BOS, code
    groups).  The model must be in eval mode (no dropout)."""
    if ar.training:
        raise ValueError("attention maps need the AR in eval mode")
    n_layers = len(ar.backbone.blocks)
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer}")
    g = ar.dims.group_size
    weights: list[Tensor] = []
    ar.teacher_forced(text_ids.long().unsqueeze(0), torch.tensor([text_ids.shape[0]]),
                      [codes0[codes0.shape[0] % g:].long()], weights=weights)
    return weights[layer][0]


def audio_text_attention(ar: ARModel, text_ids: Tensor, codes0: Tensor, layer: int) -> np.ndarray:
    """Head-averaged attention of each audio query (BOS, then each code group) over the text keys:
    ``[1 + T // G, L]``, rows summing to at most 1 (the rest goes to audio keys)."""
    att = layer_attention(ar, text_ids, codes0, layer).mean(0)
    n_text = text_ids.shape[0]
    return att[n_text:, :n_text].numpy()


def attention_figure(att: np.ndarray, n_prompt_groups: int, title: str = ""):
    """Image of ``att [audio queries, text keys]`` (text on the y axis), with a line where the
    prompt's groups end and the generated ones begin.  Returns a matplotlib Figure."""
    from ..plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    im = ax.imshow(att.T, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    ax.axvline(n_prompt_groups + 0.5, color="w", linestyle="--", linewidth=1)
    ax.set_xlabel("audio query (code group; BOS first; dashed line = end of prompt)")
    ax.set_ylabel("text key (token)")
    ax.set_title(title, fontsize=9, loc="left")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
