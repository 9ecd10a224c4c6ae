"""VALL-E 2's decoding: the AR generates codebook 0 group by group (Grouped Code Modeling,
Repetition Aware Sampling, a KV cache); the NAR fills codebooks ``1 .. n-1``, one greedy pass a
codebook.  Codebook 0 from elsewhere (the NAR's stage 0, the context table) is in
:mod:`valle2.code0`, which picks the source and comes back here for the NAR.

:class:`DecodingOptions` holds every option; each field's ``metadata`` has its one-line
``"help"`` (the CLI's flag is generated from it), where it applies (``"sources"``, absent:
every source), its ``"choices"`` and, where the field's default is None, the ``"default"``
that None stands for.  An option that does not apply to the model's codebook-0 source is refused
(:meth:`DecodingOptions.refuse_unused`) when it was set, never when it is left at None.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DecodingError
from .model import AUDIO, NO_PHONE, PAD, TEXT, ARModel, KVCache, NARModel, ungroup_codes
from .sampling import apply_temperature, posterior_mean_codes, ras_sample_group, sample_or_greedy

CODE_CHOICES = ("sample", "mean")
CODE0_SOURCES = ("ar", "nar", "table")  # the AR (the paper), the NAR's stage 0, the context table: valle2.code0
AR, NOT_AR = ("ar",), ("nar", "table")
PROMPT_PACE = 0.0  # DecodingOptions.pace: follow the prompt's pace


def option(default, doc: str, *, sources: tuple[str, ...] | None = None, choices: tuple | None = None, unset=None):
    """A :class:`DecodingOptions` field: its default, its one-line help, the codebook-0 sources it
    applies to (None: all), its choices, and ``unset``, the value a None default stands for."""
    meta: dict = {"help": doc}
    if sources is not None:
        meta["sources"] = sources
    if choices is not None:
        meta["choices"] = choices
    if unset is not None:
        meta["default"] = unset
    return field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line flag of option ``name``: ``top_p`` -> ``--top-p``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class DecodingOptions:
    """How codebook 0 and the NAR's codebooks are decoded; each field's help says what it does.

    The AR's options (sources ``"ar"``): ``top_p``/``top_k``/``temperature`` shape the
    distribution; ``code_choice="sample"`` draws from it, as the paper, and with ``ras`` on,
    Repetition Aware Sampling resamples a code whose ratio over the last ``ras_window`` codes
    reaches ``ras_threshold``; ``code_choice="mean"`` takes the code nearest the distribution's
    mean codeword (:func:`valle2.sampling.posterior_mean_codes`; needs the codec's codebook-0
    vectors; ``ras`` does not apply); unset, it is "mean" where decoding is given the codec's
    vectors (synthesis always gives them) and "sample" otherwise.  Decoding stops at EOS or at the
    frame limit (:func:`frame_limit`), and EOS is barred until ``min_length_ratio`` of the
    expected length (:func:`frame_bounds`), so that a weak model cannot cut a sentence short.

    ``code0``: where codebook 0 comes from; unset, the source recorded in the model file
    (:mod:`valle2.code0`).  ``pace`` applies where it does not come from the AR.  For every
    source: ``match_voice`` moves the codes toward the prompt's voice statistics before decoding
    (:meth:`valle2.codec.Codec.match_voice`); ``nar_codebooks``: how many codebooks (codebook 0
    counted) the NAR fills, the codec completing the rest (:meth:`valle2.codec.Codec.complete`).
    """

    temperature: float | None = option(None, "AR sampling temperature; 0 = greedy", sources=AR, unset=1.0)
    top_k: int | None = option(None, "AR: sample from the k most likely codes only; 0 = off", sources=AR, unset=0)
    top_p: float | None = option(None, "AR nucleus mass; 0 = greedy, 1 = off", sources=AR, unset=0.8)
    ras: bool | None = option(None, "AR: Repetition Aware Sampling, as the paper", sources=AR, unset=True)
    ras_window: int | None = option(None, "AR: K, the window of Repetition Aware Sampling", sources=AR, unset=10)
    ras_threshold: float | None = option(None, "AR: t_r, the repetition ratio that triggers resampling",
                                         sources=AR, unset=0.1)
    use_kv_cache: bool | None = option(None, "AR: reuse keys and values; off = recompute every step (slow)",
                                       sources=AR, unset=True)
    min_length_ratio: float | None = option(None, "AR: no end before this share of the expected length",
                                            sources=AR, unset=0.5)
    code_choice: str | None = option(None, "how codebook 0 is picked: 'sample' (nucleus + RAS, the paper) or 'mean' "
                                     "(the code nearest the mean codeword); none = mean where the codec has codewords",
                                     sources=("ar", "nar"), choices=CODE_CHOICES)
    code0: str | None = option(None, "where codebook 0 comes from: 'ar' (the AR, as the paper), 'nar' (the NAR's "
                               "stage 0) or 'table' (the context table); none = the model's own",
                               choices=CODE0_SOURCES)
    pace: float | None = option(None, "without the AR: each token lasts its mean training duration times this; "
                                "0 = the prompt's pace", sources=NOT_AR, unset=1.0)
    seed: int | None = option(None, "random seed; none = a fresh one each call")
    length_slack: float = option(2.5, "the most frames are the expected length times this, plus one second")
    max_seconds: float = option(40.0, "never generate more than this many seconds")
    match_voice: bool = option(True, "match pitch level and timbre of the codes to the prompt before decoding")
    nar_codebooks: int | None = option(None, "codebooks the NAR fills, codebook 0 counted (8 = all, the paper); "
                                       "default the codec's choice; the codec completes the rest")

    def __post_init__(self):
        if self.pace is not None and not (isinstance(self.pace, (int, float)) and not isinstance(self.pace, bool)
                                          and (self.pace == PROMPT_PACE or 0.25 <= self.pace <= 4.0)):
            raise DecodingError(f"pace must be a number in 0.25..4, or 0 (the prompt's pace), got {self.pace!r}")
        for f in fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise DecodingError(f"{f.name} must be one of {choices}, got {value!r}")

    def filled(self) -> DecodingOptions:
        """These options with every unset (None) field that has a ``"default"`` set to it."""
        return replace(self, **{f.name: f.metadata["default"] for f in fields(self)
                                if getattr(self, f.name) is None and "default" in f.metadata})

    def refuse_unused(self, source: str, where: str) -> None:
        """DecodingError naming the flag of the first option that was set (not None) but does not
        apply when codebook 0 comes from ``source``; ``where`` says where that is, for the message
        (e.g. "this model's codebook 0 comes from the context table")."""
        for f in fields(self):
            value, sources = getattr(self, f.name), f.metadata.get("sources")
            if value is None or sources is None or source in sources:
                continue
            hint = "leave it out" + (", or add --code0 ar to decode codebook 0 with the AR" if "ar" in sources else "")
            raise DecodingError(f"{flag(f.name)} does not apply: {where}; it is for --code0 {' or '.join(sources)} "
                                f"only: {hint}")
        if source != "ar" and self.code_choice == "sample":
            raise DecodingError(f"--code-choice sample does not apply: {where}, which does not sample; leave it out, "
                                "or add --code0 ar to sample codebook 0 with the AR")

    def by_mean(self, code_vectors: Tensor | None) -> bool:
        """Whether codebook 0 takes the code nearest the mean codeword (``code_choice``, given the
        codec's codewords ``code_vectors`` or None); DecodingError for "mean" without codewords."""
        if self.code_choice == "mean" and code_vectors is None:
            raise DecodingError("code_choice='mean' needs the codec's codebook-0 vectors (code_vectors); this codec has none")
        return code_vectors is not None and self.code_choice != "sample"


def frame_limit(n_target_tokens: int, frames_per_token: float, frame_rate: float, options: DecodingOptions) -> int:
    """The most frames to generate for ``n_target_tokens`` text tokens: the expected length
    (``frames_per_token``, measured on the training data or the prompt) times ``length_slack``
    plus one second, never more than ``max_seconds``."""
    expected = n_target_tokens * frames_per_token * options.length_slack + frame_rate
    return max(1, int(min(expected, options.max_seconds * frame_rate)))


def frame_bounds(n_target_tokens: int, frames_per_token: float, frame_rate: float,
                 options: DecodingOptions, given_frames: int = 0) -> tuple[int, int]:
    """``(fewest, most)`` frames to generate for ``n_target_tokens`` text tokens: the AR may not end
    with EOS before ``min_length_ratio`` of the expected length, nor run past :func:`frame_limit`.
    ``given_frames`` of that length are already there (continuation: the prompt's own frames)."""
    most = max(1, frame_limit(n_target_tokens, frames_per_token, frame_rate, options) - given_frames)
    fewest = int(n_target_tokens * frames_per_token * options.filled().min_length_ratio) - given_frames
    return min(max(0, fewest), most), most


@dataclass
class ARResult:
    """Codebook-0 codes ``[T_i]`` per sample (prompt excluded), and diagnostics."""

    codes: list[Tensor]
    hit_limit: list[bool]
    n_fallbacks: int = 0
    n_steps: int = 0
    step_logits: list[Tensor] = field(default_factory=list)


class StepGuide(Protocol):
    """What an AR whose columns read more than their groups needs while decoding (the aligned AR's
    text pointer, :class:`valle2.code0.pointer.TextPointer`)."""

    def start(self, text: list[Tensor], prompt: list[Tensor], device) -> Tensor:
        """Phones ``[B, A]`` of the audio columns (BOS and the prompt's groups, left-padded)."""

    def constrain(self, logits: Tensor) -> None:
        """Change next-group logits ``[B, G, V]`` in place."""

    def advance(self, hidden: Tensor, generator: torch.Generator) -> Tensor:
        """The phones ``[B, 1]`` of the next column, from the last hidden state ``[B, d]``."""


def pad_left(rows: list[Tensor], fill) -> Tensor:
    """Left-pad ``[L_i, ...]`` tensors to ``[B, max L, ...]`` so that every row ends in the same column."""
    width = max(r.shape[0] for r in rows)
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), fill)
    for i, r in enumerate(rows):
        out[i, width - r.shape[0]:] = r
    return out


@torch.inference_mode()
def ar_generate(ar: ARModel, text: list[Tensor], prompt: list[Tensor], max_frames: list[int],
                options: DecodingOptions = DecodingOptions(), progress=None, keep_logits: bool = False,
                min_frames: list[int] | None = None, code_vectors: Tensor | None = None,
                guide: StepGuide | None = None) -> ARResult:
    """Generate codebook 0 for a batch.

    text: B LongTensors ``[L_i]`` (the whole text: prompt transcript + target, as the model was
    trained); prompt: B LongTensors ``[P_i]`` of codebook-0 prompt codes (trimmed at the start to
    a multiple of G); max_frames / min_frames: per-sample most frames, and fewest before EOS may
    be sampled (default none).  ``progress`` is called with the number of finished steps.  With
    ``keep_logits`` the per-step logits ``[B, G, V]`` are returned (to compare the KV cache with
    full recomputation).  ``code_vectors [K, D]``: what codebook-0 codes stand for
    (:meth:`valle2.codec.Codec.code0_vectors`), used by ``options.code_choice`` "mean" and unset.
    ``guide``: needed by an aligned AR (``ar.dims.aligned``): :class:`valle2.code0.pointer.TextPointer`.
    """
    dims = ar.dims
    if dims.aligned and guide is None:
        raise ValueError("an aligned AR decodes with a text pointer (guide=valle2.code0.pointer.TextPointer(ar, ...))")
    options = options.filled()
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
    a_groups = pad_left([torch.cat([p.new_zeros(1, g), p.view(-1, g)]) for p in prompt], 0)
    a_seg = pad_left([torch.full((p.shape[0] // g + 1,), AUDIO, dtype=torch.long) for p in prompt], PAD)
    a_bos = pad_left([torch.arange(p.shape[0] // g + 1) == 0 for p in prompt], False)
    tt, ta = text_pad.shape[1], a_groups.shape[1]
    ids = torch.cat([text_pad, text_pad.new_zeros(b, ta)], 1).to(device)
    groups = torch.cat([a_groups.new_zeros(b, tt, g), a_groups], 1).to(device)
    seg = torch.cat([text_seg, a_seg], 1).to(device)  # text padding is 0 = PAD
    is_bos = torch.cat([torch.zeros(b, tt, dtype=torch.bool), a_bos], 1).to(device)
    phones = None
    if guide is not None:
        phones = torch.cat([torch.full((b, tt), NO_PHONE, dtype=torch.long, device=device), guide.start(text, prompt, device)], 1)

    max_groups = [math.ceil(m / g) for m in max_frames]
    floor = torch.tensor(min_frames if min_frames is not None else [0] * b, device=device)
    steps_total = max(max_groups)
    cache = KVCache(dims.n_ar_layers, b, dims.n_heads, seg.shape[1] + steps_total, dims.d_model // dims.n_heads, device,
                    next(ar.parameters()).dtype) if options.use_kv_cache else None
    history = pad_left([p[-options.ras_window:] if p.numel() else p.new_full((1,), -1) for p in prompt], -1).to(device)
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
        if guide is not None:
            guide.constrain(logits)
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
        col = (step_ids, group.unsqueeze(1), step_seg, step_bos, None if guide is None else guide.advance(h[:, -1], gen))
        if cache is not None:
            new, new_pos = col, position + step
        else:
            ids, groups, seg, is_bos = (torch.cat([a, c], 1) for a, c in zip((ids, groups, seg, is_bos), col))
            phones = None if guide is None else torch.cat([phones, col[4]], 1)
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
def nar_generate(nar: NARModel, text: list[Tensor], prompt: list[Tensor], code0: list[Tensor],
                 ordinal: Mapping[int, int] | None = None, n_codebooks: int | None = None) -> list[Tensor]:
    """Fill codebooks ``1 .. n-1`` greedily, one pass a codebook, where ``n`` is ``n_codebooks``
    (default all the NAR predicts, ``nar.dims.nar_predicts``; the codec's ``predicted_codebooks``
    when it completes the rest).

    text: B LongTensors ``[L_i]``; prompt: B LongTensors ``[P_i, n_q]``; code0: B LongTensors
    ``[T_i]``.  ``ordinal``: codebook -> window of :func:`pick_codes` (the codec's
    ``ordinal_codebooks``); other codebooks take the argmax.  Returns B LongTensors ``[n, T_i]``.
    """
    ordinal = ordinal or {}
    n_q = nar.dims.n_codebooks
    n = nar.dims.nar_predicts if n_codebooks is None else n_codebooks
    if not 1 <= n <= nar.dims.nar_predicts:
        raise ValueError(f"n_codebooks must be in 1..{nar.dims.nar_predicts} (the codebooks this NAR predicts), got {n}")
    device = next(nar.parameters()).device
    text_pad = nn.utils.rnn.pad_sequence(text, batch_first=True).to(device)
    text_lens = torch.tensor([t.shape[0] for t in text], device=device)
    targets = [torch.zeros(c.shape[0], n_q, dtype=torch.long, device=device) for c in code0]
    prompt = [p.to(device) for p in prompt]
    for t, c in zip(targets, code0):
        t[:, 0] = c.to(device)
    for j in range(1, n):
        stage = torch.full((len(text),), j, dtype=torch.long, device=device)
        logits, _ = nar(text_pad, text_lens, prompt, targets, stage)
        for i, t in enumerate(targets):
            t[:, j] = pick_codes(logits[i, : t.shape[0]], ordinal.get(j, 0))
    return [t[:, :n].T.contiguous().cpu() for t in targets]


@dataclass
class Generated:
    """``codes[i]``: LongTensor ``[n, T_i]`` of sample i (prompt excluded); ``hit_limit[i]``: decoding
    stopped at its length limit, not at EOS (or the end of the text); wall seconds of each model."""

    codes: list[Tensor]
    hit_limit: list[bool]
    ar_seconds: float
    nar_seconds: float


def generate(ar: ARModel, nar: NARModel, text: list[Tensor], prompt: list[Tensor], max_frames: list[int],
             options: DecodingOptions, progress: Callable[[int], None] | None = None,
             min_frames: list[int] | None = None, ordinal: Mapping[int, int] | None = None,
             code_vectors: Tensor | None = None, n_codebooks: int | None = None,
             guide: StepGuide | None = None) -> Generated:
    """AR then NAR for B samples: text B LongTensors ``[L_i]``, prompt B LongTensors ``[n_q, P_i]``;
    frame limits, ``code_vectors`` and ``guide`` as :func:`ar_generate`; ``ordinal`` and
    ``n_codebooks`` (the codes come out ``[n_codebooks, T_i]``) as :func:`nar_generate`.

    An AR that emits EOS at once gets one frame of code 0, so that the NAR always has a target.
    """
    tick = time.perf_counter()
    res = ar_generate(ar, text, [p[0] for p in prompt], max_frames, options, progress=progress, min_frames=min_frames,
                      code_vectors=code_vectors, guide=guide)
    ar_seconds = time.perf_counter() - tick
    code0 = [c if c.numel() else p.new_zeros(1) for c, p in zip(res.codes, prompt)]
    tick = time.perf_counter()
    codes = nar_generate(nar, text, [p.T for p in prompt], code0, ordinal, n_codebooks)
    return Generated(codes, res.hit_limit, ar_seconds, time.perf_counter() - tick)
