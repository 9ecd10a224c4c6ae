"""Decoding: batched AR generation of codebook 0 (KV cache or full recomputation) and the
NAR's greedy passes for codebooks 1..n_q-1."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import align
from .errors import DecodingError
from .model import AUDIO, END_PHONE, NO_PHONE, PAD, TEXT, ARModel, KVCache, NARModel, group_alignment, ungroup_codes
from .sampling import apply_temperature, posterior_mean_codes, ras_sample_group, sample_or_greedy

CODE_CHOICES = ("auto", "sample", "mean")
CODE0_SOURCES = ("auto", "ar", "nar", "table")
PACE_RANGE = (0.5, 2.0)  # token_index: a prompt's pace (its frames over the table's) is clipped to this


def option(default, doc: str):
    """A :class:`DecodingOptions` field: its default and the one-line help the CLI shows for it."""
    return field(default=default, metadata={"help": doc})


@dataclass
class DecodingOptions:
    """How the AR picks codebook 0.

    ``top_p``/``top_k``/``temperature`` shape the distribution.  ``code_choice="sample"`` draws
    from it, as the paper; with ``ras`` on, Repetition Aware Sampling resamples a code whose ratio
    over the last ``ras_window`` codes reaches ``ras_threshold``.  ``code_choice="mean"`` takes
    the code nearest the distribution's mean codeword (:func:`valle2.sampling.posterior_mean_codes`;
    needs the codec's codebook-0 vectors; ``ras`` does not apply).  ``"auto"`` (the default) is
    ``"mean"`` when decoding is given the codec's vectors (synthesis always gives them) and
    ``"sample"`` otherwise.  On the demo model, 50 held-out sentences with unseen prompts
    (benchmarks/demo_quality.py), "mean" gave WER 1.005 against 1.182 and a SIM margin of +0.019
    against -0.007 (docs/demo_model.md).  Decoding stops at EOS or at ``max_frames`` (per sample), whichever is first;
    EOS is barred until ``min_length_ratio`` of the expected length (see :func:`frame_bounds`), so
    that a weak model cannot cut a sentence short.  ``match_voice``: synthesis moves the codes
    toward the prompt's voice statistics before decoding (:meth:`valle2.codec.Codec.match_voice`).
    ``nar_codebooks``: how many codebooks (codebook 0 counted) the NAR fills; the codec completes
    the rest with no fine detail (:meth:`valle2.codec.Codec.complete`).  None is the codec's
    ``predicted_codebooks`` (the offline codec: 5, so 4 NAR passes instead of 7, which measured
    better than all 7 on the demo model, docs/demo_model.md; EnCodec: all 8); 8 is the paper's NAR.
    ``code0``: where codebook 0 comes from.  ``"ar"``, as the paper: the AR decodes it (the options
    above apply).  ``"nar"``: the NAR's stage 0 predicts it from the text token each frame reads,
    with each token's mean duration scaled to the prompt's pace (:func:`token_index`); no AR runs,
    and the output is the same on every call.  It needs a model trained with ``model.nar_code0``.
    Stage 0 takes the code nearest the mean codeword where the codec has codewords (``code_choice``
    "auto" or "mean"; the most likely code where it has none).  ``"table"``: the same durations,
    but the codes come from the NAR's context table (:class:`valle2.phonetic.ContextTable`: each
    token in context's mean codeword in the training voice nearest the prompt), not its network;
    on the demo model far more intelligible (docs/demo_model.md).  ``"auto"`` (the default) is
    ``"table"`` for a model with a fitted table, else ``"nar"`` for one with stage 0, else ``"ar"``.
    Neither ``"nar"`` nor ``"table"`` samples (``code_choice="sample"`` is refused with them).
    ``pace`` (``"nar"`` and ``"table"``; the AR sets its own durations): each token lasts its mean
    frames in the training voices times ``pace`` (2.0 twice as slow); None follows the prompt's
    pace, measured against its transcript (:func:`token_index`), which is only as good as the
    transcript: with recogniser transcripts of 3 s LibriSpeech prompts it came out about 1.3 (too
    slow) and cost intelligibility (docs/demo_model.md), so the default is 1.0.
    """

    temperature: float = option(1.0, "AR sampling temperature; 0 = greedy")
    top_k: int = option(0, "AR: sample from the k most likely codes only; 0 = off")
    top_p: float = option(0.8, "AR nucleus mass; 0 = greedy, 1 = off")
    ras: bool = option(True, "AR: Repetition Aware Sampling (the paper); off = plain nucleus sampling")
    ras_window: int = option(10, "K, the window of Repetition Aware Sampling")
    ras_threshold: float = option(0.1, "t_r, the repetition ratio that triggers resampling")
    use_kv_cache: bool = option(True, "AR: reuse keys and values; off = recompute the whole sequence each step (slow)")
    seed: int | None = option(None, "random seed of the sampling; None = a fresh one each call")
    length_slack: float = option(2.5, "AR: the most frames are the expected length times this, plus one second")
    max_seconds: float = option(40.0, "AR: never generate more than this many seconds")
    min_length_ratio: float = option(0.5, "AR: no end before this share of the expected length")
    match_voice: bool = option(True, "match pitch level and timbre of the codes to the prompt before decoding")
    code_choice: str = option("auto", "how the AR picks codebook 0: 'sample' (nucleus + RAS, the paper), 'mean' "
                              "(the code nearest the mean codeword), 'auto' (mean where the codec has codewords)")
    nar_codebooks: int | None = option(None, "codebooks the NAR fills, codebook 0 counted (8 = all, the paper); "
                                       "None = the codec's choice; the codec completes the rest")
    code0: str = option("auto", "where codebook 0 comes from: 'ar' (the paper), 'nar' (the NAR's stage 0), "
                        "'table' (the context table), 'auto' (what the model has)")
    pace: float | None = option(1.0, "table/stage 0: each token lasts its mean training duration times this; "
                                "None = the prompt's pace")

    def __post_init__(self):
        if self.pace is not None and not (isinstance(self.pace, (int, float)) and 0.25 <= self.pace <= 4.0):
            raise DecodingError(f"pace must be a number in 0.25..4 or None (the prompt's pace), got {self.pace!r}")
        if self.code_choice not in CODE_CHOICES:
            raise DecodingError(f"code_choice must be one of {CODE_CHOICES}, got {self.code_choice!r}")
        if self.code0 not in CODE0_SOURCES:
            raise DecodingError(f"code0 must be one of {CODE0_SOURCES}, got {self.code0!r}")

    def by_mean(self, code_vectors: Tensor | None) -> bool:
        """Whether codebook 0 takes the code nearest the mean codeword (``code_choice``, given the
        codec's codewords ``code_vectors`` or None); DecodingError for "mean" without codewords."""
        if self.code_choice == "mean" and code_vectors is None:
            raise DecodingError("code_choice='mean' needs the codec's codebook-0 vectors (code_vectors); this codec has none")
        return code_vectors is not None and self.code_choice != "sample"

    def code0_source(self, nar: NARModel) -> str:
        """Where codebook 0 comes from with ``nar`` (see ``code0``): "ar", "nar" or "table";
        DecodingError if asked of a NAR without a stage 0 or without a fitted context table."""
        if self.code0 in ("nar", "table") and nar.first_stage != 0:
            raise DecodingError(f"code0={self.code0!r} needs a model trained with model.nar_code0 (its NAR has no stage 0)")
        if self.code0 == "table" and nar.context.n_voices == 0:
            raise DecodingError("code0='table' needs a fitted context table; this model's NAR has none")
        if self.code0 != "auto":
            return self.code0
        return "ar" if nar.first_stage != 0 else "table" if nar.context.n_voices else "nar"


def frame_limit(n_target_tokens: int, frames_per_token: float, frame_rate: float, options: DecodingOptions) -> int:
    """The most frames the AR may generate for ``n_target_tokens`` text tokens: the expected
    length (``frames_per_token``, measured on the training data or the prompt) times
    ``length_slack`` plus one second, never more than ``max_seconds``."""
    expected = n_target_tokens * frames_per_token * options.length_slack + frame_rate
    return max(1, int(min(expected, options.max_seconds * frame_rate)))


def frame_bounds(n_target_tokens: int, frames_per_token: float, frame_rate: float,
                 options: DecodingOptions, given_frames: int = 0) -> tuple[int, int]:
    """``(fewest, most)`` frames to generate for ``n_target_tokens`` text tokens: the AR may not end
    with EOS before ``min_length_ratio`` of the expected length, nor run past :func:`frame_limit`.
    ``given_frames`` of that length are already there (continuation: the prompt's own frames)."""
    most = max(1, frame_limit(n_target_tokens, frames_per_token, frame_rate, options) - given_frames)
    fewest = int(n_target_tokens * frames_per_token * options.min_length_ratio) - given_frames
    return min(max(0, fewest), most), most


@dataclass
class ARResult:
    """Codebook-0 codes ``[T_i]`` per sample (prompt excluded), and diagnostics."""

    codes: list[Tensor]
    hit_limit: list[bool]
    n_fallbacks: int = 0
    n_steps: int = 0
    step_logits: list[Tensor] = field(default_factory=list)


def prompt_alignment(log_emission: Tensor, text: Tensor, prompt0: Tensor, n_prompt_text: int | None) -> Tensor:
    """The text token each prompt frame reads ``[P]`` (indices into ``text``), under the aligned AR's
    table ``log_emission``: prompt0 ``[P]`` is aligned to the text's first ``n_prompt_text`` tokens
    (its transcript), or with None (continuation) to the text with an open end."""
    if n_prompt_text is None:
        return align(log_emission, text, prompt0, open_end=True)
    return align(log_emission, text[:n_prompt_text], prompt0)


def token_index(token_frames: Tensor, log_emission: Tensor, text: Tensor, prompt0: Tensor, n_prompt_text: int | None,
                max_frames: int, pace: float | None = None, prompt_index: Tensor | None = None) -> Tensor:
    """The text token each output frame reads, for the NAR's stage 0: ``[T]`` indices into ``text``.

    token_frames ``[n_text_vocab]``: each token id's mean frames (:attr:`NARModel.token_frames`);
    log_emission: the aligned AR's table, which finds where a continuation prompt ends in the text;
    text ``[L]`` (prompt transcript + target, as the model reads it); prompt0 ``[P]``: the prompt's
    codebook 0; ``n_prompt_text`` as :func:`_prompt_phones` (None: continuation).  The target's
    tokens (those after the prompt's) last their mean frames times ``pace``, or with ``pace=None``
    times the prompt's pace (its frames over its tokens' mean frames, clipped to
    :data:`PACE_RANGE`), rounded so that the ends fall on whole frames and each token gets at
    least one; at most ``max_frames`` come out.  ``prompt_index``: the prompt's
    :func:`prompt_alignment`, where the caller has it already (else it is computed when needed).
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


def _pad_left(rows: list[Tensor], fill) -> Tensor:
    """Left-pad ``[L_i, ...]`` tensors to ``[B, max L, ...]`` so that every row ends in the same column."""
    width = max(r.shape[0] for r in rows)
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), fill)
    for i, r in enumerate(rows):
        out[i, width - r.shape[0]:] = r
    return out


@torch.inference_mode()
def _prompt_phones(ar: ARModel, text: Tensor, prompt: Tensor, n_prompt_text: int | None) -> tuple[Tensor, int]:
    """Aligned AR: the phones of a prompt's ``P / G`` columns (BOS, then all its groups but the last)
    and the text pointer where generation starts.

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


@torch.inference_mode()
def ar_generate(ar: ARModel, text: list[Tensor], prompt: list[Tensor], max_frames: list[int],
                options: DecodingOptions = DecodingOptions(), progress=None, keep_logits: bool = False,
                min_frames: list[int] | None = None, prompt_text_lens: list[int | None] | None = None,
                code_vectors: Tensor | None = None) -> ARResult:
    """Generate codebook 0 for a batch.

    text: B LongTensors ``[L_i]`` (the whole text: prompt transcript + target, as the model was
    trained); prompt: B LongTensors ``[P_i]`` of codebook-0 prompt codes (trimmed at the start to
    a multiple of G); max_frames / min_frames: per-sample most frames, and fewest before EOS may
    be sampled (default none).  ``progress`` is called
    with the number of finished steps.  With ``keep_logits`` the per-step logits ``[B, G, V]`` are
    returned (to compare the KV cache with full recomputation).  ``code_vectors [K, D]``: what
    codebook-0 codes stand for (:meth:`valle2.codec.Codec.code0_vectors`), used by
    ``options.code_choice`` "mean" and "auto".

    An aligned AR (``ar.dims.aligned``) also moves a pointer through each text: the prompt is
    aligned to its transcript (``prompt_text_lens[i]``, see :func:`_prompt_phones`; default None
    each), each step samples the pointer's move, EOS is barred until the pointer reaches the last
    token and forced once it has passed it.
    """
    dims = ar.dims
    g, eos = dims.group_size, dims.eos_id
    by_mean = options.by_mean(code_vectors)
    device = next(ar.parameters()).device
    b = len(text)
    gen = torch.Generator(device=device)
    if options.seed is not None:
        gen.manual_seed(options.seed)
    else:
        gen.seed()
    prompt = [p[p.shape[0] % g:] for p in prompt]
    text_pad = nn.utils.rnn.pad_sequence(text, batch_first=True)
    text_seg = nn.utils.rnn.pad_sequence([torch.full_like(t, TEXT) for t in text], batch_first=True)
    # Audio region: BOS then prompt groups, left-padded so that all rows end together.
    a_groups = _pad_left([torch.cat([p.new_zeros(1, g), p.view(-1, g)]) for p in prompt], 0)
    a_seg = _pad_left([torch.full((p.shape[0] // g + 1,), AUDIO, dtype=torch.long) for p in prompt], PAD)
    a_bos = _pad_left([torch.arange(p.shape[0] // g + 1) == 0 for p in prompt], False)
    tt, ta = text_pad.shape[1], a_groups.shape[1]
    ids = torch.cat([text_pad, text_pad.new_zeros(b, ta)], 1).to(device)
    groups = torch.cat([a_groups.new_zeros(b, tt, g), a_groups], 1).to(device)
    seg = torch.cat([text_seg, a_seg], 1).to(device)  # text padding is 0 = PAD
    is_bos = torch.cat([torch.zeros(b, tt, dtype=torch.bool), a_bos], 1).to(device)
    phones = pointer = None
    if ar.dims.aligned:
        n_text = torch.tensor([t.shape[0] for t in text], device=device)
        given = [_prompt_phones(ar, t, p, n) for t, p, n in zip(text, prompt, prompt_text_lens or [None] * b)]
        pointer = torch.tensor([s for _, s in given], device=device).clamp(max=n_text)
        # each row's text, then END_PHONE from its end on: the phone at pointer p (0 <= p <= n_text)
        text_end = nn.utils.rnn.pad_sequence([torch.cat([t.long(), t.new_full((1,), END_PHONE).long()]) for t in text],
                                             batch_first=True, padding_value=END_PHONE).to(device)

        def phone_at(ptr: Tensor) -> Tensor:
            """Phone ids ``[B, 1]`` at pointers ``[B]``."""
            return text_end.gather(1, ptr.unsqueeze(1))

        a_phones = _pad_left([torch.cat([ph, ph.new_zeros(1)]) for ph, _ in given], NO_PHONE).to(device)
        a_phones[:, -1:] = phone_at(pointer)
        phones = torch.cat([torch.full((b, tt), NO_PHONE, dtype=torch.long, device=device), a_phones], 1)

    max_groups = [math.ceil(m / g) for m in max_frames]
    floor = torch.tensor(min_frames if min_frames is not None else [0] * b, device=device)
    steps_total = max(max_groups)
    cache = KVCache(dims.n_ar_layers, b, dims.n_heads, seg.shape[1] + steps_total, dims.d_model // dims.n_heads, device,
                    next(ar.parameters()).dtype) if options.use_kv_cache else None
    history = _pad_left([p[-options.ras_window:] if p.numel() else p.new_full((1,), -1) for p in prompt], -1).to(device)
    out = torch.zeros(b, steps_total, g, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    n_steps = torch.zeros(b, dtype=torch.long, device=device)
    result = ARResult(codes=[], hit_limit=[])
    last_step = torch.tensor(max_groups, device=device) - 1
    # what every new column reads besides its group and phone: no text id, the audio segment, not BOS
    step_ids, step_seg = torch.zeros(b, 1, dtype=torch.long, device=device), torch.full((b, 1), AUDIO, device=device)
    step_bos = torch.zeros(b, 1, dtype=torch.bool, device=device)
    position = (seg == AUDIO).sum(1, keepdim=True)  # [B, 1] audio position of the next new column
    new, new_pos = (ids, groups, seg, is_bos, phones), None
    for step in range(steps_total):
        if cache is not None:
            h = ar(*new[:4], positions=new_pos, cache=cache, phones=new[4])
        else:
            h = ar(ids, groups, seg, is_bos, phones=phones)
        logits = ar.logits(h[:, -1:])[:, 0]  # [B, G, V]
        logits[step * g < floor, :, eos] = float("-inf")
        if pointer is not None:
            logits[pointer < n_text - 1, :, eos] = float("-inf")
            logits[pointer >= n_text] = float("-inf")
            logits[pointer >= n_text, :, eos] = 0.0
        if keep_logits:
            result.step_logits.append(logits.clone())
        if by_mean:
            group = posterior_mean_codes(logits.reshape(b * g, -1), code_vectors, eos, options.top_k, options.top_p,
                                         options.temperature, gen).view(b, g)
        elif options.ras:
            group, fell = ras_sample_group(logits, history, options.top_p, options.top_k, options.temperature,
                                           options.ras_window, options.ras_threshold, gen)
            result.n_fallbacks += int((fell & ~done.unsqueeze(1)).sum())
        else:
            group = sample_or_greedy(apply_temperature(logits.reshape(b * g, -1), options.temperature), options.top_k,
                                     options.top_p, options.temperature, gen).view(b, g)
        history = torch.cat([history, group], 1)[:, -options.ras_window:]
        # once a row has emitted EOS, the rest of its group is EOS, and so is everything after
        group = torch.where(group.eq(eos).cummax(1).values | done.unsqueeze(1), torch.full_like(group, eos), group)
        out[:, step] = group
        n_steps += (~done).long()
        done |= group.eq(eos).any(1)
        done |= last_step <= step
        if progress is not None:
            progress(step + 1)
        if bool(done.all()):
            break
        col = (step_ids, group.unsqueeze(1), step_seg, step_bos)
        if pointer is not None:
            move = torch.multinomial(ar.move_logits(h[:, -1]).float().softmax(-1), 1, generator=gen)[:, 0]
            pointer = (pointer + move).clamp(max=n_text)
            col = (*col, phone_at(pointer))
        else:
            col = (*col, None)
        if cache is not None:
            new, new_pos = col, position + step
        else:
            ids, groups, seg, is_bos = (torch.cat([a, c], 1) for a, c in zip((ids, groups, seg, is_bos), col))
            phones = None if pointer is None else torch.cat([phones, col[4]], 1)
    for i in range(b):
        codes = ungroup_codes(out[i, : int(n_steps[i])], eos)
        hit = codes.shape[0] >= max_groups[i] * g
        result.codes.append(codes[: max_frames[i]].cpu())
        result.hit_limit.append(bool(hit))
    result.n_steps = step + 1
    return result


def pick_codes(logits: Tensor, window: int = 0) -> Tensor:
    """The NAR's greedy choice: logits ``[T, V]`` -> codes ``[T]``.

    ``window == 0``: the argmax.  Otherwise the codebook is ordinal (code 0 = "none", codes
    ``1..`` ordered bins, e.g. unvoiced and an F0 grid): a frame gets code 0 if its probability is
    at least 0.5, else the probability-weighted mean bin of the ``2 * window + 1`` bins of
    highest total probability.
    """
    if window == 0:
        return logits.argmax(-1)
    p = logits.float().softmax(-1)
    bins = p[:, 1:]                                                                   # [T, V-1]
    box = F.avg_pool1d(bins.unsqueeze(1), 2 * window + 1, stride=1, padding=window, count_include_pad=True)
    centre = box.squeeze(1).argmax(-1, keepdim=True)                                  # [T, 1]
    idx = (centre + torch.arange(-window, window + 1, device=p.device)).clamp(0, bins.shape[1] - 1)
    mass = bins.gather(1, idx)
    best = ((mass * idx).sum(1) / mass.sum(1).clamp(min=1e-12)).round().long() + 1
    return torch.where(p[:, 0] >= 0.5, torch.zeros_like(best), best)


@torch.inference_mode()
def nar_generate(nar: NARModel, text: list[Tensor], prompt: list[Tensor], code0: list[Tensor] | None,
                 ordinal: Mapping[int, int] | None = None, n_codebooks: int | None = None,
                 index: list[Tensor] | None = None, code_vectors: Tensor | None = None) -> list[Tensor]:
    """Fill codebooks ``1 .. n-1`` greedily, one pass a codebook, where ``n`` is ``n_codebooks``
    (default all the NAR predicts, ``nar.dims.nar_predicts``; the codec's ``predicted_codebooks``
    when it completes the rest).

    text: B LongTensors ``[L_i]``; prompt: B LongTensors ``[P_i, n_q]``; code0: B LongTensors
    ``[T_i]``, or None with ``index``: B LongTensors ``[T_i]`` (:func:`token_index`), from which
    stage 0 predicts codebook 0 first (the code nearest the mean codeword of its distribution
    when ``code_vectors [K, D]`` are given, else the argmax).  ``ordinal``: codebook -> window of
    :func:`pick_codes` (the codec's ``ordinal_codebooks``); other codebooks take the argmax.
    Returns B LongTensors ``[n, T_i]``.
    """
    ordinal = ordinal or {}
    n_q = nar.dims.n_codebooks
    n = nar.dims.nar_predicts if n_codebooks is None else n_codebooks
    if not 1 <= n <= nar.dims.nar_predicts:
        raise ValueError(f"n_codebooks must be in 1..{nar.dims.nar_predicts} (the codebooks this NAR predicts), got {n}")
    if (code0 is None) == (index is None):
        raise ValueError("give nar_generate either code0 or the token index of each frame (index): exactly one of them")
    device = next(nar.parameters()).device
    text_pad = nn.utils.rnn.pad_sequence(text, batch_first=True).to(device)
    text_lens = torch.tensor([t.shape[0] for t in text], device=device)
    frames = code0 if code0 is not None else index
    targets = [torch.zeros(c.shape[0], n_q, dtype=torch.long, device=device) for c in frames]
    prompt = [p.to(device) for p in prompt]
    if code0 is not None:
        for t, c in zip(targets, code0):
            t[:, 0] = c.to(device)
    else:
        stage = torch.zeros(len(text), dtype=torch.long, device=device)
        logits, _ = nar(text_pad, text_lens, prompt, targets, stage, [i.to(device) for i in index])
        for i, t in enumerate(targets):
            lg = logits[i, : t.shape[0]]
            if code_vectors is None:
                t[:, 0] = lg.argmax(-1)
            else:  # posterior_mean_codes reads an EOS column last; stage 0 has none to give
                t[:, 0] = posterior_mean_codes(F.pad(lg, (0, 1), value=float("-inf")), code_vectors, lg.shape[-1])
    for j in range(1, n):
        stage = torch.full((len(text),), j, dtype=torch.long, device=device)
        logits, _ = nar(text_pad, text_lens, prompt, targets, stage)
        for i, t in enumerate(targets):
            t[:, j] = pick_codes(logits[i, : t.shape[0]], ordinal.get(j, 0))
    return [t[:, :n].T.contiguous().cpu() for t in targets]


@dataclass
class Generated:
    """``codes[i]``: LongTensor ``[n_q, T_i]`` of sample i (prompt excluded); ``hit_limit[i]``: the
    AR stopped at its length limit, not at EOS; wall seconds of each model."""

    codes: list[Tensor]
    hit_limit: list[bool]
    ar_seconds: float
    nar_seconds: float


def generate(ar: ARModel, nar: NARModel, text: list[Tensor], prompt: list[Tensor], max_frames: list[int],
             options: DecodingOptions, progress: Callable[[int], None] | None = None,
             min_frames: list[int] | None = None, ordinal: Mapping[int, int] | None = None,
             prompt_text_lens: list[int | None] | None = None, code_vectors: Tensor | None = None,
             n_codebooks: int | None = None) -> Generated:
    """AR then NAR for B samples: text B LongTensors ``[L_i]``, prompt B LongTensors ``[n_q, P_i]``;
    frame limits, ``prompt_text_lens`` and ``code_vectors`` as :func:`ar_generate`; ``ordinal``
    and ``n_codebooks`` (the codes come out ``[n_codebooks, T_i]``) as :func:`nar_generate`.

    An AR that emits EOS at once gets one frame of code 0, so that the NAR always has a target.
    With codebook 0 from the NAR (``options.code0``) no AR runs: each sample's frames follow
    :func:`token_index` (at most ``max_frames``; ``hit_limit`` when that cut it), and
    ``ar_seconds`` is 0.
    """
    source = options.code0_source(nar)
    if source != "ar":
        if options.code_choice == "sample":
            raise DecodingError(f"code_choice='sample' samples the AR's codebook 0; code0={source!r} does not sample: "
                               "use code0='ar' to sample")
        by_mean = options.by_mean(code_vectors)
        if source == "table" and code_vectors is None:
            raise DecodingError("code0='table' needs the codec's codebook-0 vectors (code_vectors) to choose a voice")
        tick = time.perf_counter()
        lens = prompt_text_lens or [None] * len(text)
        # the prompt's alignment: the table's voice choice reads it, and so does a continuation's token_index
        aligned = [prompt_alignment(ar.log_emission, t, p[0], n) if p.shape[1] and (source == "table" or n is None)
                   else None for t, p, n in zip(text, prompt, lens)]
        index = [token_index(nar.token_frames, ar.log_emission, t, p[0], n, m, options.pace, a)
                 for t, p, n, m, a in zip(text, prompt, lens, max_frames, aligned)]
        if source == "table":
            voices = [nar.context.choose_voice(t, p[0], a, code_vectors) if a is not None else 0
                      for t, p, a in zip(text, prompt, aligned)]
            code0 = [nar.context.draft(v, t, ix) for v, t, ix in zip(voices, text, index)]
            codes = nar_generate(nar, text, [p.T for p in prompt], code0, ordinal, n_codebooks)
        else:
            codes = nar_generate(nar, text, [p.T for p in prompt], None, ordinal, n_codebooks, index=index,
                                 code_vectors=code_vectors if by_mean else None)
        hit = [bool(ix.shape[0] >= m and ix[-1] < t.shape[0] - 1) for ix, m, t in zip(index, max_frames, text)]
        return Generated(codes, hit, 0.0, time.perf_counter() - tick)
    tick = time.perf_counter()
    res = ar_generate(ar, text, [p[0] for p in prompt], max_frames, options, progress=progress, min_frames=min_frames,
                      prompt_text_lens=prompt_text_lens, code_vectors=code_vectors)
    ar_seconds = time.perf_counter() - tick
    code0 = [c if c.numel() else p.new_zeros(1) for c, p in zip(res.codes, prompt)]
    tick = time.perf_counter()
    codes = nar_generate(nar, text, [p.T for p in prompt], code0, ordinal, n_codebooks)
    return Generated(codes, res.hit_limit, ar_seconds, time.perf_counter() - tick)
