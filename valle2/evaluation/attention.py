"""The AR's attention of audio queries over text keys.

One utterance is packed as :meth:`ARModel.forward` takes it (text ids, BOS + code groups,
segments, positions) and run with a ``weights`` list, so that each block computes its attention
explicitly and hands its weights back (the path the guided-attention loss uses).  Teacher-forcing
the codes the AR generated reproduces the attention it had while decoding them (the AR is causal
and deterministic given its inputs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..model import AUDIO, TEXT, ARModel, segment_positions


def packed_inputs(ar: ARModel, text_ids: Tensor, codes0: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One utterance as the AR sees it: text ids ``[L]``, codebook-0 codes ``[T]`` (trimmed at
    the start to a multiple of G, as decoding trims the prompt).  Returns ``(ids, groups, seg,
    is_bos, positions)`` shaped ``[1, S]``, ``[1, S, G]``, ``[1, S]``, ``[1, S]``, ``[1, S]`` with
    ``S = L + 1 + T // G``."""
    g = ar.dims.group_size
    codes0 = codes0[codes0.shape[0] % g:]
    n_text, n_audio = text_ids.shape[0], 1 + codes0.shape[0] // g
    groups = torch.cat([torch.zeros(n_text + 1, g, dtype=torch.long), codes0.view(-1, g).long()]).unsqueeze(0)
    ids = torch.cat([text_ids.long(), torch.zeros(n_audio, dtype=torch.long)]).unsqueeze(0)
    seg = torch.tensor([TEXT] * n_text + [AUDIO] * n_audio).unsqueeze(0)
    is_bos = (torch.arange(n_text + n_audio) == n_text).unsqueeze(0)
    return ids, groups, seg, is_bos, segment_positions(seg)


@torch.inference_mode()
def layer_attention(ar: ARModel, text_ids: Tensor, codes0: Tensor, layer: int) -> Tensor:
    """Attention weights ``[n_heads, S, S]`` of block ``layer`` for one utterance (see
    :func:`packed_inputs`).  The model must be in eval mode (no dropout)."""
    if ar.training:
        raise ValueError("attention maps need the AR in eval mode")
    n_layers = len(ar.backbone.blocks)
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer}")
    weights: list[Tensor] = []
    ar(*packed_inputs(ar, text_ids, codes0), weights=weights)
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
