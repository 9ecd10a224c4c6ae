"""The NAR's codebook-0 stage (source ``"nar"``): codebook 0 from the text token each frame reads.

It runs on the NAR's backbone as one more stage, stage 0: a target frame sums no code of the
target, and its input adds the embedding of the text token it reads and of its place within that
token; an output layer of its own predicts codebook 0.  Its parameters live here, not in
:class:`valle2.model.NARModel`, whose ``forward`` takes them as ``frame_inputs`` and ``head0``.
Durations come from :mod:`valle2.code0.durations`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import ModelDims, NARModel
from ..sampling import posterior_mean_codes

MAX_TOKEN_FRAMES = 32  # a frame's place within its token is embedded up to this


def place_in_token(index: Tensor) -> Tensor:
    """Each frame's place within its token: ``index [T]`` (non-decreasing token index of each
    frame) -> ``[T]``, 0 at the first frame of each run of one token, then 1, 2, ..."""
    t = torch.arange(index.shape[0], device=index.device)
    starts = torch.ones_like(index, dtype=torch.bool)
    starts[1:] = index[1:] != index[:-1]
    return t - torch.where(starts, t, torch.zeros_like(t)).cummax(0).values


class Code0Network(nn.Module):
    """Stage 0's own parameters: the place embedding ``[MAX_TOKEN_FRAMES, d]`` and the output layer
    ``head [codebook_size, d]``; the text embedding and the blocks are the NAR's."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        d = dims.d_model
        self.place_emb = nn.Embedding(MAX_TOKEN_FRAMES, d)
        self.head = nn.Parameter(torch.randn(dims.codebook_size, d) * d**-0.5)

    def frame_inputs(self, nar: NARModel, text: Tensor, index: Tensor) -> Tensor:
        """Each target frame's input: text ids ``[L]``, the token index each frame reads ``[T]`` ->
        the token's embedding (the NAR's) plus that of the frame's place within the token ``[T, d]``."""
        place = place_in_token(index).clamp(max=MAX_TOKEN_FRAMES - 1)
        return nar.backbone.text_emb(text[index]) + self.place_emb(place)

    def loss_inputs(self, nar: NARModel, text: Tensor, text_lens: Tensor, stage: Tensor,
                    index: list[Tensor]) -> list[Tensor | None]:
        """:meth:`frame_inputs` of the rows of a training batch at stage 0, None for the others:
        text ``[B, L]`` with ``text_lens [B]``, stage ``[B]``, index: B LongTensors ``[T_i]``."""
        return [self.frame_inputs(nar, text[i, : int(text_lens[i])], index[i]) if int(stage[i]) == 0 else None
                for i in range(len(index))]

    @torch.inference_mode()
    def predict(self, nar: NARModel, text: list[Tensor], prompt: list[Tensor], index: list[Tensor],
                code_vectors: Tensor | None = None) -> list[Tensor]:
        """Codebook 0 of B targets: text B LongTensors ``[L_i]``, prompt B LongTensors ``[P_i, n_q]``,
        index B LongTensors ``[T_i]`` (:func:`valle2.code0.durations.token_index`) -> B LongTensors
        ``[T_i]``: the code nearest the mean codeword of each frame's distribution where
        ``code_vectors [K, D]`` are given, else the most likely code."""
        device = next(nar.parameters()).device
        text = [t.to(device) for t in text]
        text_pad = nn.utils.rnn.pad_sequence(text, batch_first=True)
        text_lens = torch.tensor([t.shape[0] for t in text], device=device)
        targets = [torch.zeros(i.shape[0], nar.dims.n_codebooks, dtype=torch.long, device=device) for i in index]
        inputs = [self.frame_inputs(nar, t, i.to(device)) for t, i in zip(text, index)]
        stage = torch.zeros(len(text), dtype=torch.long, device=device)
        logits, _ = nar(text_pad, text_lens, [p.to(device) for p in prompt], targets, stage, inputs, self.head)
        out = []
        for i, t in enumerate(targets):
            lg = logits[i, : t.shape[0]]
            if code_vectors is None:
                out.append(lg.argmax(-1))
            else:  # posterior_mean_codes reads an EOS column last; stage 0 has none to give
                out.append(posterior_mean_codes(F.pad(lg, (0, 1), value=float("-inf")), code_vectors, lg.shape[-1]))
        return out
