"""Where codebook 0 comes from, chosen once per model and recorded in its file.

- ``"ar"``: the AR decodes it (VALL-E 2; :mod:`valle2.decoding`), guided by the text pointer
  where the AR is aligned (:mod:`valle2.code0.pointer`).
- ``"nar"``: the NAR's stage 0 predicts it from the text token each frame reads
  (:mod:`valle2.code0.network`), with durations from :mod:`valle2.code0.durations`.
- ``"table"``: the same durations, the codes from the context table (:mod:`valle2.code0.table`).

A model trained with ``model.nar_code0`` holds a :class:`Code0` beside its NAR and records
``"table"`` when its table was fitted, else ``"nar"``; any other model records ``"ar"``.
``DecodingOptions.code0`` picks another source the model has, for one call; options that do
not apply to the source in use are refused (:meth:`valle2.decoding.DecodingOptions.refuse_unused`).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from ..decoding import PROMPT_PACE, DecodingOptions, Generated, generate as ar_nar_generate, nar_generate
from ..errors import DecodingError
from ..model import ARModel, ModelDims, NARModel
from .durations import prompt_alignment, token_index
from .network import Code0Network
from .pointer import TextPointer
from .table import ContextTable

DESCRIPTIONS = {"ar": "the AR, as the paper", "nar": "the NAR's stage 0 network", "table": "the context table"}


class Code0(nn.Module):
    """Codebook 0 without the AR, as a model file holds it: each text token id's mean frames
    ``token_frames [n_text_vocab]``, the stage-0 network and the context table (empty until fitted)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.register_buffer("token_frames", torch.ones(dims.n_text_vocab))
        self.network = Code0Network(dims)
        self.table = ContextTable(dims.n_text_vocab)

    @property
    def source(self) -> str:
        """The source this model records: ``"table"`` once the table is fitted, else ``"nar"``."""
        return "table" if self.table.n_voices else "nar"


def choose_source(options: DecodingOptions, recorded: str, code0: Code0 | None) -> str:
    """The source one decoding uses: ``options.code0``, else the model's ``recorded`` one.
    DecodingError for a source the model lacks and for an option set that does not apply to it."""
    source = options.code0 or recorded
    if source != "ar" and code0 is None:
        raise DecodingError(f"--code0 {source} needs a model trained with model.nar_code0; this model has only the AR")
    if source == "table" and code0.table.n_voices == 0:
        raise DecodingError("--code0 table needs a fitted context table; this model has none")
    where = (f"this model's codebook 0 comes from {DESCRIPTIONS[source]}" if options.code0 is None
             else f"codebook 0 comes from {DESCRIPTIONS[source]} (--code0 {source})")
    options.refuse_unused(source, where)
    return source


def generate(ar: ARModel, nar: NARModel, code0: Code0 | None, source: str, text: list[Tensor], prompt: list[Tensor],
             max_frames: list[int], options: DecodingOptions, progress: Callable[[int], None] | None = None,
             min_frames: list[int] | None = None, ordinal: Mapping[int, int] | None = None,
             prompt_text_lens: list[int | None] | None = None, code_vectors: Tensor | None = None,
             n_codebooks: int | None = None, table: ContextTable | None = None) -> Generated:
    """Codebook 0 from ``source`` (:func:`choose_source`), then the NAR, for B samples: text B
    LongTensors ``[L_i]``, prompt B LongTensors ``[n_q, P_i]``, the rest as
    :func:`valle2.decoding.generate`.  ``prompt_text_lens[i]``: how many of text i's first tokens
    are its prompt's transcript (None: continuation).  ``table``: a context table in place of the
    model's (a voice's adapter, :mod:`valle2.code0.adapter`).

    Without the AR each sample's frames follow :func:`~valle2.code0.durations.token_index` (at most
    ``max_frames``; ``hit_limit`` when that cut the text short), and ``ar_seconds`` is 0.
    """
    if source == "ar":
        guide = TextPointer(ar, prompt_text_lens) if ar.dims.aligned else None
        return ar_nar_generate(ar, nar, text, prompt, max_frames, options, progress, min_frames, ordinal, code_vectors,
                               n_codebooks, guide)
    options = options.filled()
    tick = time.perf_counter()
    lens = prompt_text_lens or [None] * len(text)
    if source == "table" and code_vectors is None:
        raise DecodingError("--code0 table needs the codec's codebook-0 vectors to choose a voice; this codec has none")
    pace = None if options.pace == PROMPT_PACE else options.pace
    # the prompt's alignment: the table's voice choice reads it, and so does a continuation's token_index
    aligned = [prompt_alignment(ar.log_emission, t, p[0], n) if p.shape[1] and (source == "table" or n is None)
               else None for t, p, n in zip(text, prompt, lens)]
    index = [token_index(code0.token_frames, ar.log_emission, t, p[0], n, m, pace, a)
             for t, p, n, m, a in zip(text, prompt, lens, max_frames, aligned)]
    if source == "table":
        table = table if table is not None else code0.table
        voices = [table.choose_voice(t, p[0], a, code_vectors) if a is not None else 0
                  for t, p, a in zip(text, prompt, aligned)]
        codes0 = [table.draft(v, t, ix) for v, t, ix in zip(voices, text, index)]
    else:
        codes0 = code0.network.predict(nar, text, [p.T for p in prompt], index,
                                       code_vectors if options.by_mean(code_vectors) else None)
    codes = nar_generate(nar, text, [p.T for p in prompt], codes0, ordinal, n_codebooks)
    hit = [bool(ix.shape[0] >= m and ix[-1] < t.shape[0] - 1) for ix, m, t in zip(index, max_frames, text)]
    return Generated(codes, hit, 0.0, time.perf_counter() - tick)
