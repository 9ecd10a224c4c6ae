"""The context table: codebook 0 from context-dependent phone statistics (source ``"table"``).

For each training *voice* (a speaker with enough transcribed audio; the pool of all speakers
where none has enough) and each text token in context -- (previous token, token, next token, place), the
place being which of :data:`N_PLACES` equal parts of its frames a frame falls in -- the table
holds the code nearest the mean codeword of the training frames aligned there: the
context-dependent means of HMM-based (HTS-style) synthesis, with codebook 0's codewords as the
parameters.  A context seen fewer than ``min_count`` times backs off to (token, place), then to
the token, then to the voice's mean.  A draft for new text reads each frame's context from a
token index (:func:`valle2.code0.durations.token_index`); synthesis drafts with the voice whose
draft of the prompt's own transcript lies nearest the prompt's codes.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling import nearest_codes

N_PLACES = 3
BUFFERS = ("ctx_keys", "ctx_codes", "place_codes", "token_codes", "voice_codes")


def frame_contexts(text: np.ndarray, index: np.ndarray, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's context: text ids ``[L]``, the token index of each frame ``[T]`` (non-decreasing)
    -> ``(context key [T], token-place key [T])``; the context key packs (previous id, id, next
    id, place) with ``n_vocab`` standing for the text's edges, the token-place key ``id * N_PLACES + place``."""
    starts = np.r_[0, np.flatnonzero(np.diff(index)) + 1]
    lengths = np.diff(np.r_[starts, len(index)])
    run = np.repeat(np.arange(len(starts)), lengths)
    place = (np.arange(len(index)) - starts[run]) * N_PLACES // lengths[run]
    padded = np.r_[n_vocab, text, n_vocab].astype(np.int64)
    prev, tok, nxt = padded[index], padded[index + 1], padded[index + 2]
    ctx = ((prev * (n_vocab + 1) + nxt) * n_vocab + tok) * N_PLACES + place
    return ctx, tok * N_PLACES + place


class ContextTable(nn.Module):
    """Per-voice context-dependent codes (see the module docstring), held as buffers so that they
    travel in the model file; their sizes follow what was fitted (``n_voices``, ``K`` contexts):

    - ``ctx_keys [K]`` (sorted ``voice * span + context key``) and ``ctx_codes [K]``;
    - ``place_codes [n_voices, n_vocab * N_PLACES]`` and ``token_codes [n_voices, n_vocab]``
      (-1 where unseen); ``voice_codes [n_voices]``, the code nearest each voice's mean.

    :meth:`fit` returns the voices' names (speaker ids, ``"*"`` for the pool), which training keeps
    in the model file's metadata.
    """

    def __init__(self, n_vocab: int):
        super().__init__()
        self.n_vocab = n_vocab
        self.span = (n_vocab + 1) ** 2 * n_vocab * N_PLACES
        for name in BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.long))

    @property
    def n_voices(self) -> int:
        return int(self.voice_codes.shape[0])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in BUFFERS:  # the fitted sizes come from the file; a file without a table has none
            value = state_dict.setdefault(prefix + name, torch.zeros(0, dtype=torch.long))
            setattr(self, name, torch.empty_like(value, dtype=torch.long, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, items: Iterable[tuple[str, Tensor, Tensor, Tensor]], code_vectors: Tensor, min_voice_frames: int,
            max_voices: int = 8, min_count: int = 2) -> list[str]:
        """Fit the table from ``items`` of (speaker, text ids ``[L]``, codebook-0 codes ``[T]``,
        token index of each frame ``[T]``, e.g. :func:`valle2.alignment.align`), with the codec's
        codewords ``code_vectors [V, D]``.  The voices are the ``max_voices`` speakers with the
        most frames among those with at least ``min_voice_frames``; with none, the pool of every
        speaker (a pool blurs the voices, so it is only the fallback).  Returns the voices' names."""
        items = [(s, t.long().numpy(), c.long(), i.long().numpy()) for s, t, c, i in items if c.numel()]
        if not items:
            raise ValueError("no (text, codes) pairs to fit the context table on")
        frames: dict[str, int] = {}
        for s, _, c, _ in items:
            frames[s] = frames.get(s, 0) + c.numel()
        big = sorted((s for s in frames if frames[s] >= min_voice_frames), key=lambda s: -frames[s])[:max_voices]
        voices = [[s] for s in big] if big else [sorted(frames)]
        vectors = code_vectors.float().cpu()
        keys, codes = [], []
        place_codes = torch.full((len(voices), self.n_vocab * N_PLACES), -1, dtype=torch.long)
        token_codes = torch.full((len(voices), self.n_vocab), -1, dtype=torch.long)
        voice_codes = torch.zeros(len(voices), dtype=torch.long)
        for v, members in enumerate(map(set, voices)):
            chosen = [(t, c, i) for s, t, c, i in items if s in members]
            ctx, tp = zip(*(frame_contexts(t, i, self.n_vocab) for t, _, i in chosen))
            vec = vectors[torch.cat([c for _, c, _ in chosen])]                        # [F, D]
            ctx, tp = torch.from_numpy(np.concatenate(ctx)), torch.from_numpy(np.concatenate(tp))
            for key, size in ((ctx, None), (tp, self.n_vocab * N_PLACES), (tp // N_PLACES, self.n_vocab)):
                uniq, inv, count = torch.unique(key, return_inverse=True, return_counts=True)
                means = torch.zeros(len(uniq), vec.shape[1]).index_add_(0, inv, vec) / count.unsqueeze(1)
                if size is None:
                    keep = count >= min_count
                    keys.append(uniq[keep] + v * self.span)
                    codes.append(nearest_codes(means[keep], vectors))
                else:
                    (place_codes if size == self.n_vocab * N_PLACES else token_codes)[v, uniq] = nearest_codes(means, vectors)
            voice_codes[v] = nearest_codes(vec.mean(0, keepdim=True), vectors)[0]
        order = torch.cat(keys).argsort()
        device = self.voice_codes.device
        self.ctx_keys, self.ctx_codes = torch.cat(keys)[order].to(device), torch.cat(codes)[order].to(device)
        self.place_codes, self.token_codes = place_codes.to(device), token_codes.to(device)
        self.voice_codes = voice_codes.to(device)
        return big or ["*"]

    def draft(self, voice: int, text: Tensor, index: Tensor) -> Tensor:
        """Codebook 0 of voice ``voice`` for text ids ``[L]`` read frame by frame as ``index [T]``
        -> LongTensor ``[T]``.  ValueError when the table has no such voice (or none at all)."""
        if not 0 <= voice < self.n_voices:
            raise ValueError(f"the context table has {self.n_voices} voice(s); voice {voice} does not exist"
                             + ("" if self.n_voices else " (train with model.nar_code0 to fit one)"))
        ctx, tp = frame_contexts(text.long().cpu().numpy(), index.long().cpu().numpy(), self.n_vocab)
        key = torch.from_numpy(ctx) + voice * self.span
        keys = self.ctx_keys.cpu()
        pos = torch.searchsorted(keys, key).clamp(max=max(0, len(keys) - 1))
        hit = (keys[pos] == key) if len(keys) else torch.zeros(len(key), dtype=torch.bool)
        out = torch.where(hit, self.ctx_codes.cpu()[pos] if len(keys) else -1, -1)
        tp = torch.from_numpy(tp)
        for table, k in ((self.place_codes, tp), (self.token_codes, tp // N_PLACES)):
            out = torch.where(out < 0, table[voice].cpu()[k], out)
        return torch.where(out < 0, self.voice_codes[voice].cpu(), out)

    def choose_voice(self, text: Tensor, prompt0: Tensor, prompt_index: Tensor, code_vectors: Tensor) -> int:
        """The voice whose draft of the prompt's frames (``prompt0 [P]`` reading ``text`` as
        ``prompt_index [P]``) lies nearest the prompt's codewords (mean squared distance under
        ``code_vectors [V, D]``)."""
        if self.n_voices < 2 or prompt0.numel() == 0:
            return 0
        vectors = code_vectors.float().cpu()
        real = vectors[prompt0.long().cpu()]
        dist = [float(((vectors[self.draft(v, text, prompt_index)] - real) ** 2).sum(1).mean()) for v in range(self.n_voices)]
        return int(np.argmin(dist))
