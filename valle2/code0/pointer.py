"""The aligned AR's text pointer while decoding (VALL-E R, Han et al. 2024; not in VALL-E 2).

An aligned AR (``model.aligned``) reads, with each audio column, the text token the group it
predicts starts on, and predicts how far the pointer moves on (:class:`valle2.model.ARModel`).
:class:`TextPointer` is the guide :func:`valle2.decoding.ar_generate` takes for such an AR: the
prompt is aligned to its transcript, each step samples the pointer's move, EOS is barred until
the pointer reaches the last token and forced once it has passed it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..decoding import pad_left
from ..model import END_PHONE, NO_PHONE, ARModel, group_alignment
from .durations import prompt_alignment


@torch.inference_mode()
def prompt_phones(ar: ARModel, text: Tensor, prompt: Tensor, n_prompt_text: int | None) -> tuple[Tensor, int]:
    """The phones of a prompt's ``P / G`` columns (BOS, then all its groups but the last) and the
    text pointer where generation starts.

    ``n_prompt_text``: the text's first ``n`` tokens are the prompt's transcript (cross-sentence
    prompting: the prompt is aligned to them, the pointer starts at ``n``); None: the text starts
    with the prompt's words and goes on (continuation: aligned with an open end, the pointer starts
    after the last aligned token).
    """
    g, cols = ar.dims.group_size, prompt.shape[0] // ar.dims.group_size
    if cols == 0:
        return torch.zeros(0, dtype=torch.long), 0
    index = prompt_alignment(ar.log_emission, text, prompt, n_prompt_text)
    start = int(index[-1]) + 1 if n_prompt_text is None else n_prompt_text
    pos, _ = group_alignment(index.cpu(), start, g, cols)  # every group starts within the prompt: pos < start
    return text.cpu()[pos], start


class TextPointer:
    """A guide for :func:`valle2.decoding.ar_generate` with an aligned AR ``ar``.

    ``prompt_text_lens[i]``: how many of text i's first tokens are its prompt's transcript (see
    :func:`prompt_phones`; default None each, continuation).
    """

    def __init__(self, ar: ARModel, prompt_text_lens: list[int | None] | None = None):
        if not ar.dims.aligned:
            raise ValueError("a text pointer guides an aligned AR (model.aligned) only")
        self.ar, self.prompt_text_lens = ar, prompt_text_lens

    def start(self, text: list[Tensor], prompt: list[Tensor], device) -> Tensor:
        """Phones ``[B, A]`` of the audio columns (BOS and the prompt's groups, left-padded with
        ``NO_PHONE`` as the groups are): text B LongTensors ``[L_i]``, prompt B LongTensors
        ``[P_i]`` (a multiple of G)."""
        b = len(text)
        self.n_text = torch.tensor([t.shape[0] for t in text], device=device)
        given = [prompt_phones(self.ar, t, p, n) for t, p, n in zip(text, prompt, self.prompt_text_lens or [None] * b)]
        self.pointer = torch.tensor([s for _, s in given], device=device).clamp(max=self.n_text)
        # each row's text, then END_PHONE from its end on: the phone at pointer p (0 <= p <= n_text)
        self.text_end = nn.utils.rnn.pad_sequence([torch.cat([t.long(), t.new_full((1,), END_PHONE).long()]) for t in text],
                                                  batch_first=True, padding_value=END_PHONE).to(device)
        phones = pad_left([torch.cat([ph, ph.new_zeros(1)]) for ph, _ in given], NO_PHONE).to(device)
        phones[:, -1:] = self.phone_at(self.pointer)
        return phones

    def phone_at(self, ptr: Tensor) -> Tensor:
        """Phone ids ``[B, 1]`` at pointers ``[B]``."""
        return self.text_end.gather(1, ptr.unsqueeze(1))

    def constrain(self, logits: Tensor) -> None:
        """Bar EOS in next-group logits ``[B, G, V]`` before the last token; force it past the text."""
        eos = self.ar.dims.eos_id
        logits[self.pointer < self.n_text - 1, :, eos] = float("-inf")
        logits[self.pointer >= self.n_text] = float("-inf")
        logits[self.pointer >= self.n_text, :, eos] = 0.0

    def advance(self, hidden: Tensor, generator: torch.Generator) -> Tensor:
        """Sample each row's move from the last column's hidden state ``[B, d]``; returns the phones
        ``[B, 1]`` of the next column."""
        move = torch.multinomial(self.ar.move_logits(hidden).float().softmax(-1), 1, generator=generator)[:, 0]
        self.pointer = (self.pointer + move).clamp(max=self.n_text)
        return self.phone_at(self.pointer)
