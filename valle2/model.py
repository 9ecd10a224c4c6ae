"""The VALL-E 2 networks: an AR decoder with Grouped Code Modeling and a NAR decoder.

Both are pre-norm Transformers over one packed sequence per utterance, laid out as::

    [ text tokens (right-padded to the batch's longest) | audio tokens (padding where needed) ]

A segment tensor ``seg: LongTensor[B, S]`` (0 = padding, 1 = text, 2 = audio) says what each
column holds; masks and positions are derived from it, so training (right padding) and batched
decoding (prompts left-padded so that every row ends in the same column) share one code path.
Text and audio have separate sinusoidal positions, each with a learned scale.

- :class:`ARModel` predicts codebook 0.  Its audio tokens are *groups* of ``G`` consecutive
  codes, embedded code by code, concatenated and projected (the paper's group embedding); its
  head predicts the ``G`` codes of the next group.  Text attends to all text (prefix LM); audio
  is causal.  :class:`KVCache` makes step-by-step decoding cost O(S) a step.
- :class:`NARModel` predicts codebook ``j`` in ``1 .. n_codebooks-1`` from the text, a prompt
  whose frames sum the embeddings of all codebooks, the target's codebooks ``< j`` summed, and
  a code-ID (stage) embedding.  Attention is bidirectional.

Codebook 0 from elsewhere than the AR (the NAR's stage 0, the context table) is not the paper's:
:mod:`valle2.code0` holds it; the NAR's ``forward`` takes stage 0's inputs and output layer from there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import align

PAD, TEXT, AUDIO = 0, 1, 2
NO_PHONE, END_PHONE = -1, -2  # phone ids of the aligned AR's audio columns: none given, past the last token
N_ADVANCE = 8  # the aligned AR predicts a move of 0 .. N_ADVANCE - 1 tokens a group


@dataclass
class ModelSize:
    """Network sizes: the ``model:`` section of a training config (:mod:`valle2.config`)."""

    group_size: int = 1
    d_model: int = 256
    n_heads: int = 4
    n_ar_layers: int = 6
    n_nar_layers: int = 6
    d_ff: int = 1024
    dropout: float = 0.1
    aligned: bool = False  # the AR reads the aligned text token of each group and predicts the move (ARModel)
    # Codebooks 1 .. nar_codebooks-1 are what the NAR learns and predicts; 0 = all of them, as the
    # paper.  Synthesis fills Codec.predicted_codebooks and the codec completes the rest
    # (Codec.complete), so a NAR of that many puts all its training where synthesis uses it.
    nar_codebooks: int = 0
    # The model also learns codebook 0 without the AR (valle2.code0): the NAR's stage 0 network,
    # durations and the context table.  Needs ``aligned``: its training alignments are the aligned AR's.
    nar_code0: bool = False

    def __post_init__(self):
        if self.group_size not in (1, 2, 4, 8):
            raise ValueError(f"group_size must be 1, 2, 4 or 8, got {self.group_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.nar_codebooks == 1 or self.nar_codebooks < 0:
            raise ValueError(f"nar_codebooks must be 0 (all) or at least 2, got {self.nar_codebooks}")
        if self.nar_code0 and not self.aligned:
            raise ValueError("nar_code0 needs aligned: true (its training alignments are the aligned AR's)")


@dataclass(kw_only=True)
class ModelDims(ModelSize):
    """Sizes of both networks plus what the data fixes (text vocabulary, codec layout); saved in
    every checkpoint."""

    n_text_vocab: int
    n_codebooks: int = 8
    codebook_size: int = 1024

    def __post_init__(self):
        super().__post_init__()
        if self.nar_codebooks > self.n_codebooks:
            raise ValueError(f"nar_codebooks {self.nar_codebooks} exceeds the codec's {self.n_codebooks} codebooks")

    @property
    def nar_predicts(self) -> int:
        """Codebooks the NAR fills, codebook 0 counted: codebooks ``1 .. nar_predicts - 1``."""
        return self.nar_codebooks or self.n_codebooks

    @property
    def eos_id(self) -> int:
        """The AR's end-of-sequence code, one past the codec's codes."""
        return self.codebook_size

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoids(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal embeddings: LongTensor[...] positions -> FloatTensor[..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float().unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def segment_positions(seg: Tensor) -> Tensor:
    """Position of each column within its own segment: LongTensor[B, S] (0 at padding)."""
    text = (seg == TEXT).long().cumsum(1) - 1
    audio = (seg == AUDIO).long().cumsum(1) - 1
    return torch.where(seg == TEXT, text, torch.where(seg == AUDIO, audio, torch.zeros_like(text)))


def attention_mask(seg_q: Tensor, seg_k: Tensor, q_start: int, causal: bool) -> Tensor:
    """Boolean mask ``[B, 1, Sq, Sk]`` (True = may attend) for queries at columns
    ``q_start .. q_start+Sq-1`` over keys at columns ``0 .. Sk-1``.

    Causal (AR, prefix LM): a query sees valid keys at or before it, and text sees all text.
    Otherwise (NAR): every query sees every valid key.  A column always sees itself, so that
    padding rows stay finite.
    """
    sq, sk = seg_q.shape[1], seg_k.shape[1]
    if causal and sq == 1 and q_start == sk - 1:  # a decoding step: the last column sees every valid key
        allowed = seg_k != PAD
        allowed[:, -1] = True
        return allowed[:, None, None, :]
    qi = torch.arange(q_start, q_start + sq, device=seg_q.device).view(1, sq, 1)
    kj = torch.arange(sk, device=seg_q.device).view(1, 1, sk)
    valid_k = (seg_k != PAD).unsqueeze(1)
    if causal:
        both_text = (seg_q == TEXT).unsqueeze(2) & (seg_k == TEXT).unsqueeze(1)
        allowed = valid_k & ((kj <= qi) | both_text)
    else:
        allowed = valid_k.expand(-1, sq, -1)
    return (allowed | (kj == qi)).unsqueeze(1)


class KVCache:
    """Preallocated keys and values for every layer: ``[B, n_heads, max_len, head_dim]`` each.

    ``length`` columns are filled; :meth:`ARModel.forward` writes the new columns and advances it.
    ``seg`` holds the segment ids of the filled columns (needed for the mask).
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int, device=None, dtype=torch.float32):
        shape = (batch, n_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.seg = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        self.max_len = max_len
        self.length = 0

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (e.g. drop finished samples): LongTensor[B'] into the batch."""
        self.k = [k[index] for k in self.k]
        self.v = [v[index] for v in self.v]
        self.seg = self.seg[index]


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None = None, layer: int = 0,
                weights: list[Tensor] | None = None, rows: Tensor | None = None) -> Tensor:
        """x: [B, S, d]; mask: [B, 1, S, S_keys] (None: no restriction) -> [B, S, d].  With
        ``cache``, keys/values of the new columns are written at ``cache.length`` and attention
        runs over all filled columns.
        With a ``weights`` list, attention is computed explicitly and its weights
        ``[B, n_heads, S, S_keys]`` are appended to it (for a loss on them; slower than SDPA).
        ``rows [B, R]``: only these columns query (all still give keys and values) -> [B, R, d]."""
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if rows is not None:
            q = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
            mask = None if mask is None else mask.gather(2, rows[:, None, :, None].expand(-1, 1, -1, mask.shape[-1]))
            s = rows.shape[1]
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start:start + s] = k
            cache.v[layer][:, :, start:start + s] = v
            k, v = cache.k[layer][:, :, : start + s], cache.v[layer][:, :, : start + s]
        p = self.dropout if self.training else 0.0
        if weights is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            att = ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).masked_fill(~mask, float("-inf")).softmax(-1)
            weights.append(att)
            y = F.dropout(att, p, self.training) @ v
        return self.out(y.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.ln1 = nn.LayerNorm(dims.d_model)
        self.attn = Attention(dims.d_model, dims.n_heads, dims.dropout)
        self.ln2 = nn.LayerNorm(dims.d_model)
        self.ffn = nn.Sequential(nn.Linear(dims.d_model, dims.d_ff), nn.GELU(), nn.Linear(dims.d_ff, dims.d_model))
        self.drop = nn.Dropout(dims.dropout)

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None = None, layer: int = 0,
                weights: list[Tensor] | None = None, rows: Tensor | None = None) -> Tensor:
        """x ``[B, S, d]`` -> ``[B, S, d]``, or ``[B, R, d]`` for the columns ``rows [B, R]`` only."""
        y = self.attn(self.ln1(x), mask, cache, layer, weights, rows)
        if rows is not None:
            x = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = x + self.drop(y)
        return x + self.drop(self.ffn(self.ln2(x)))


class Backbone(nn.Module):
    """Text embedding, segment positions and a stack of blocks, shared by the AR and NAR."""

    def __init__(self, dims: ModelDims, n_layers: int):
        super().__init__()
        self.dims = dims
        self.text_emb = nn.Embedding(dims.n_text_vocab, dims.d_model)
        self.text_alpha = nn.Parameter(torch.ones(1))
        self.audio_alpha = nn.Parameter(torch.ones(1))
        self.blocks = nn.ModuleList(Block(dims) for _ in range(n_layers))
        self.ln = nn.LayerNorm(dims.d_model)
        self.drop = nn.Dropout(dims.dropout)

    def embed(self, text: Tensor, audio: Tensor, seg: Tensor, positions: Tensor) -> Tensor:
        """Mix text ids ``[B, S]`` and audio vectors ``[B, S, d]`` by ``seg`` and add positions."""
        pe = sinusoids(positions, self.dims.d_model)
        is_text = (seg == TEXT).unsqueeze(-1)
        x = torch.where(is_text, self.text_emb(text.clamp(min=0)) + self.text_alpha * pe, audio + self.audio_alpha * pe)
        return self.drop(x * (seg != PAD).unsqueeze(-1))

    def run(self, x: Tensor, mask: Tensor, cache: KVCache | None = None,
            weights: list[Tensor] | None = None, rows: Tensor | None = None) -> Tensor:
        """Run the blocks on x ``[B, S, d]`` -> ``[B, S, d]``; with ``rows [B, R]`` only those
        columns come out (``[B, R, d]``, the last block computes just them).  With a ``weights``
        list, each block appends its attention weights ``[B, n_heads, S, S_keys]`` to it.  A mask
        that allows everything (one unpadded sequence in the NAR, a decoding step of the AR) is
        dropped: SDPA is faster without one."""
        if weights is None and bool(mask.all()):
            mask = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i, weights, rows if i == last else None)
        return self.ln(x)


def pack(text: Tensor, text_lens: Tensor, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Lay text ``[B, Tt]`` (right-padded) beside audio ``[B, Ta, ...]`` (right-padded).

    Returns ``(text_ids [B, S], audio [B, S, ...], seg [B, S])`` with ``S = Tt + Ta``; audio
    columns of ``text_ids`` are 0 and text columns of ``audio`` are zeros.
    """
    b, tt = text.shape
    ta = audio.shape[1]
    cols_t = torch.arange(tt, device=text.device).unsqueeze(0)
    cols_a = torch.arange(ta, device=text.device).unsqueeze(0)
    seg = torch.cat([torch.where(cols_t < text_lens.unsqueeze(1), TEXT, PAD),
                     torch.where(cols_a < audio_lens.unsqueeze(1), AUDIO, PAD)], dim=1)
    text_ids = torch.cat([text, text.new_zeros(b, ta)], dim=1)
    audio_full = torch.cat([audio.new_zeros(b, tt, *audio.shape[2:]), audio], dim=1)
    return text_ids, audio_full, seg


def group_codes(codes: Tensor, group_size: int, eos_id: int) -> Tensor:
    """Codebook-0 codes ``[T]`` -> groups ``[ceil((T+1)/G), G]`` ending with EOS.

    At least one EOS is appended, then EOS pads to a multiple of ``G``.
    """
    n_eos = group_size - codes.shape[0] % group_size
    padded = torch.cat([codes, codes.new_full((n_eos,), eos_id)])
    return padded.view(-1, group_size)


def ungroup_codes(groups: Tensor, eos_id: int) -> Tensor:
    """Groups ``[M, G]`` -> codes ``[T]``, cut at the first EOS."""
    flat = groups.reshape(-1)
    ends = (flat == eos_id).nonzero()
    return flat[: int(ends[0])] if len(ends) else flat


def group_alignment(index: Tensor, n_tokens: int, group_size: int, n_groups: int) -> tuple[Tensor, Tensor]:
    """Token pointer and move of each AR group, from the token index of each frame ``[T]``.

    The pointer of frame ``t`` is ``index[t]``, or ``n_tokens`` (the end) from frame ``T`` on.
    Returns ``(pointer [n_groups]`` at each group's first frame, ``move [n_groups])``: the pointer
    at the next group's first frame minus this one, clipped to ``N_ADVANCE - 1``, -100 (no target)
    where the group starts past the end.
    """
    ptr = torch.cat([index, index.new_full(((n_groups + 1) * group_size,), n_tokens)])
    starts = torch.arange(n_groups, device=index.device) * group_size
    pos = ptr[starts]
    move = (ptr[starts + group_size] - pos).clamp(max=N_ADVANCE - 1)
    return pos, torch.where(pos == n_tokens, torch.full_like(move, -100), move)


class ARModel(nn.Module):
    """Autoregressive codebook-0 decoder with Grouped Code Modeling.

    With ``dims.aligned`` (VALL-E R, Han et al. 2024) each audio column also reads the text token
    the group it predicts starts on (its phone; ``END_PHONE`` past the text), and
    :meth:`move_logits` predicts how many tokens the next group moves on.  Training alignments come
    from the emission table ``log_emission`` ``[n_text_vocab, codebook_size]`` the model carries
    (:mod:`valle2.alignment`; set before training), which also aligns a prompt to its transcript
    at decoding time.
    """

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        g, d, v = dims.group_size, dims.d_model, dims.codebook_size + 1
        self.backbone = Backbone(dims, dims.n_ar_layers)
        self.code_emb = nn.Embedding(v, d)
        self.group_proj = nn.Linear(g * d, d)
        self.bos = nn.Parameter(torch.randn(d) * 0.02)
        self.head = nn.Linear(d, g * v)
        if dims.aligned:
            self.register_buffer("log_emission", torch.zeros(dims.n_text_vocab, dims.codebook_size))
            self.phone_end = nn.Parameter(torch.randn(d) * 0.02)
            self.move_head = nn.Linear(d, N_ADVANCE)

    def embed_groups(self, groups: Tensor, is_bos: Tensor, phones: Tensor | None = None) -> Tensor:
        """groups ``[B, S, G]`` of code ids, is_bos ``[B, S]``, phones ``[B, S]`` (aligned AR: a text
        token id, ``NO_PHONE`` or ``END_PHONE``) -> group embeddings ``[B, S, d]``."""
        b, s, g = groups.shape
        e = self.group_proj(self.code_emb(groups.clamp(0, self.dims.codebook_size)).view(b, s, -1))
        e = torch.where(is_bos.unsqueeze(-1), self.bos.expand(b, s, -1), e)
        if phones is None:
            return e
        p = self.backbone.text_emb(phones.clamp(min=0)) * (phones >= 0).unsqueeze(-1)
        return e + torch.where((phones == END_PHONE).unsqueeze(-1), self.phone_end.expand_as(p), p)

    def move_logits(self, h: Tensor) -> Tensor:
        """Aligned AR: hidden ``[B, S, d]`` -> logits ``[B, S, N_ADVANCE]`` of the text pointer's move
        from this group to the next."""
        return self.move_head(h)

    def logits(self, h: Tensor) -> Tensor:
        """Hidden ``[B, S, d]`` -> next-group logits ``[B, S, G, codebook_size + 1]``."""
        b, s, _ = h.shape
        return self.head(h).view(b, s, self.dims.group_size, self.dims.codebook_size + 1)

    def forward(self, text: Tensor, groups: Tensor, seg: Tensor, is_bos: Tensor,
                positions: Tensor | None = None, cache: KVCache | None = None,
                weights: list[Tensor] | None = None, phones: Tensor | None = None) -> Tensor:
        """Hidden states for a packed sequence (or its next columns, with ``cache``).

        text ``[B, S]`` ids at text columns; groups ``[B, S, G]`` at audio columns; seg ``[B, S]``;
        is_bos ``[B, S]`` marks the audio boundary column; phones ``[B, S]`` (aligned AR only) the
        text token each audio column's predicted group starts on.  Without a cache the mask is the full
        prefix-LM mask; with one, the ``S`` new columns attend to everything cached.  A
        ``weights`` list receives each block's attention weights (see
        :meth:`Backbone.run`).  Returns ``[B, S, d]``.
        """
        if cache is None:
            seg_k, start = seg, 0
        else:
            start = cache.length
            cache.seg[:, start:start + seg.shape[1]] = seg
            seg_k = cache.seg[:, : start + seg.shape[1]]
        if positions is None:
            positions = segment_positions(seg_k)[:, start:]
        x = self.backbone.embed(text, self.embed_groups(groups, is_bos, phones), seg, positions)
        h = self.backbone.run(x, attention_mask(seg, seg_k, start, causal=True), cache, weights)
        if cache is not None:
            cache.length += seg.shape[1]
        return h

    def teacher_forced(self, text: Tensor, text_lens: Tensor, codes: list[Tensor],
                       weights: list[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Next-group logits given the real history of codebook 0.

        text ``[B, Tt]`` right-padded ids with ``text_lens [B]``; codes: B LongTensors ``[T_i]``
        of codebook 0.  ``weights`` as in :meth:`forward` (attention maps,
        :mod:`valle2.evaluation.attention`).  An aligned AR reads the phones of the Viterbi
        alignment under its emission table.
        Returns ``(logits [B, M, G, V], targets [B, M, G] (-100 at padding), seg [B, Tt + M])``.
        """
        h, tgt, seg, _ = self._teacher_forced_hidden(text, text_lens, codes, weights)
        return self.logits(h), tgt, seg

    def _teacher_forced_hidden(self, text: Tensor, text_lens: Tensor, codes: list[Tensor],
                               weights: list[Tensor] | None, alignments: list[Tensor] | None = None
                               ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """:meth:`teacher_forced` up to the hidden states of the audio columns ``[B, M, d]``; also
        returns the aligned AR's move targets ``[B, M]`` (-100 where none; None when not aligned).
        ``alignments``: each utterance's :func:`~valle2.alignment.align` under ``log_emission``,
        where the caller has them already."""
        g, eos = self.dims.group_size, self.dims.eos_id
        targets = [group_codes(c, g, eos) for c in codes]
        lens = torch.tensor([t.shape[0] for t in targets], device=text.device)
        tgt = nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)  # [B, M, G]
        inp = torch.cat([tgt.new_zeros(tgt.shape[0], 1, g), tgt[:, :-1].clamp(min=0)], dim=1)
        is_bos_a = torch.zeros(inp.shape[:2], dtype=torch.bool, device=text.device)
        is_bos_a[:, 0] = True
        text_ids, groups, seg = pack(text, text_lens, inp, lens)
        _, is_bos, _ = pack(text, text_lens, is_bos_a, lens)
        phones = move = None
        if self.dims.aligned:
            phones_a = torch.full(inp.shape[:2], NO_PHONE, dtype=torch.long, device=text.device)
            move = torch.full(inp.shape[:2], -100, dtype=torch.long, device=text.device)
            for i, c in enumerate(codes):
                n = int(text_lens[i])
                index = alignments[i] if alignments is not None else align(self.log_emission, text[i, :n], c)
                pos, mv = group_alignment(index, n, g, targets[i].shape[0])
                ext = torch.cat([text[i, :n].long(), text.new_full((1,), END_PHONE).long()])
                phones_a[i, : pos.shape[0]], move[i, : mv.shape[0]] = ext[pos], mv
            _, phones, _ = pack(text, text_lens, phones_a, lens)
        h = self.forward(text_ids, groups, seg, is_bos, weights=weights, phones=phones)
        return h[:, text.shape[1]:], tgt, seg, move

    def loss(self, text: Tensor, text_lens: Tensor, codes: list[Tensor],
             alignments: list[Tensor] | None = None) -> tuple[Tensor, dict]:
        """Teacher-forced loss (:meth:`teacher_forced`): sum over the G codes of each group of the
        mean NLL, plus (aligned AR) the mean NLL of the pointer's moves.  ``alignments`` as
        :meth:`_teacher_forced_hidden`.
        Returns ``(loss, {"ar_loss", "ar_acc", "ar_top10"[, "ar_move", "ar_move_acc"]})``.
        """
        h, tgt, _, move = self._teacher_forced_hidden(text, text_lens, codes, None, alignments)
        logits = self.logits(h)
        flat_t = tgt.reshape(-1)
        keep = flat_t != -100
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_t, ignore_index=-100, reduction="sum")
        n_groups = (tgt[..., 0] != -100).sum().clamp(min=1)
        top10 = logits.reshape(-1, logits.shape[-1])[keep].topk(10, dim=-1).indices
        stats = {"ar_acc": (top10[:, 0] == flat_t[keep]).float().mean().item(),
                 "ar_top10": (top10 == flat_t[keep].unsqueeze(1)).any(1).float().mean().item()}
        loss = nll / n_groups
        stats["ar_loss"] = loss.item()
        if move is not None:
            m_logits = self.move_logits(h)
            m_loss = F.cross_entropy(m_logits.reshape(-1, N_ADVANCE), move.reshape(-1), ignore_index=-100)
            has = move != -100
            stats["ar_move"] = m_loss.item()
            stats["ar_move_acc"] = (m_logits.argmax(-1)[has] == move[has]).float().mean().item()
            loss = loss + m_loss
        return loss, stats


class NARModel(nn.Module):
    """Non-autoregressive decoder for codebooks ``1 .. dims.nar_predicts - 1``, one output layer
    (``head [nar_predicts - 1, V, d]``) a codebook.

    A row at stage 0 (codebook 0 without the AR, :mod:`valle2.code0.network`) is run when the
    caller gives stage 0's frame inputs and output layer (``frame_inputs``, ``head0``).
    """

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        n_q, v, d = dims.n_codebooks, dims.codebook_size, dims.d_model
        self.backbone = Backbone(dims, dims.n_nar_layers)
        self.code_emb = nn.Embedding(n_q * v, d)  # codebook c's code x at row c*V + x
        self.stage_emb = nn.Embedding(n_q, d)
        self.head = nn.Parameter(torch.randn(dims.nar_predicts - 1, v, d) * d**-0.5)  # stage j's output layer at row j - 1

    def embed_audio(self, codes: Tensor, n_used: Tensor, stage: Tensor) -> Tensor:
        """codes ``[B, S, n_q]``, n_used ``[B, S]`` (how many leading codebooks each column sums:
        all of them for prompt columns, ``j`` for target columns), stage ``[B]`` -> ``[B, S, d]``."""
        n_q, v = self.dims.n_codebooks, self.dims.codebook_size
        offsets = torch.arange(n_q, device=codes.device) * v
        e = self.code_emb(codes.clamp(0, v - 1) + offsets)  # [B, S, n_q, d]
        use = (torch.arange(n_q, device=codes.device) < n_used.unsqueeze(-1)).unsqueeze(-1)
        return (e * use).sum(2) + self.stage_emb(stage).unsqueeze(1)

    def forward(self, text: Tensor, text_lens: Tensor, prompt: list[Tensor], target: list[Tensor], stage: Tensor,
                frame_inputs: list[Tensor | None] | None = None, head0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits for codebook ``stage[b]`` of each target.

        text ``[B, Tt]`` with ``text_lens``; prompt: B LongTensors ``[P_i, n_q]``; target: B
        LongTensors ``[T_i, n_q]`` (only codebooks ``< stage`` are read); stage ``[B]`` in
        ``1 .. nar_predicts - 1``, or 0 for rows with ``frame_inputs[b]`` ``[T_b, d]`` (added to
        the target frames' inputs) given, which ``head0 [V, d]`` scores.
        Returns ``(logits [B, T, V], valid [B, T])`` over the target frames (``T = max T_i``;
        ``logits[b, t]`` is frame ``t`` of target ``b`` where ``valid``): the last block and the
        output layer skip the text's and the prompt's columns.
        """
        n_q = self.dims.n_codebooks
        low = 0 if head0 is not None else 1
        if int(stage.min()) < low or int(stage.max()) >= self.dims.nar_predicts:
            raise ValueError(f"NAR stages run {low}..{self.dims.nar_predicts - 1}, got {stage.tolist()}")
        audio = [torch.cat([p, t]) for p, t in zip(prompt, target)]
        lens = torch.tensor([a.shape[0] for a in audio], device=text.device)
        codes = nn.utils.rnn.pad_sequence(audio, batch_first=True)  # [B, Ta, n_q]
        cols = torch.arange(codes.shape[1], device=text.device).unsqueeze(0)
        p_lens = torch.tensor([p.shape[0] for p in prompt], device=text.device).unsqueeze(1)
        is_target = (cols >= p_lens) & (cols < lens.unsqueeze(1))
        n_used = torch.where(is_target, stage.unsqueeze(1), torch.full_like(cols, n_q))
        audio_e = self.embed_audio(codes, n_used, stage)
        if bool((stage == 0).any()):
            extra = torch.zeros_like(audio_e)
            for i in (stage == 0).nonzero()[:, 0].tolist():
                if frame_inputs is None or frame_inputs[i] is None:
                    raise ValueError("a NAR row at stage 0 needs its frame inputs (valle2.code0.network)")
                p = prompt[i].shape[0]
                extra[i, p:p + target[i].shape[0]] = frame_inputs[i]
            audio_e = audio_e + extra
        text_ids, audio_e, seg = pack(text, text_lens, audio_e, lens)
        x = self.backbone.embed(text_ids, audio_e, seg, segment_positions(seg))
        t_lens = torch.tensor([t.shape[0] for t in target], device=text.device)
        frames = torch.arange(int(t_lens.max()), device=text.device).unsqueeze(0)             # [1, T]
        rows = text.shape[1] + (p_lens + frames).clamp(max=codes.shape[1] - 1)               # [B, T]
        h = self.backbone.run(x, attention_mask(seg, seg, 0, causal=False), rows=rows)         # [B, T, d]
        heads = self.head[(stage - 1).clamp(min=0)]                                           # [B, V, d]
        if head0 is not None:
            heads = torch.where((stage == 0)[:, None, None], head0.unsqueeze(0), heads)
        return torch.einsum("bsd,bvd->bsv", h, heads), frames < t_lens.unsqueeze(1)

    def loss(self, text: Tensor, text_lens: Tensor, prompt: list[Tensor], target: list[Tensor], stage: Tensor,
             frame_inputs: list[Tensor | None] | None = None, head0: Tensor | None = None) -> tuple[Tensor, dict]:
        """Mean NLL of codebook ``stage[b]`` over target frames (arguments as :meth:`forward`).
        Returns ``(loss, stats)``; with stage 0 in the batch, stats add ``code0_acc`` (its top-1)."""
        logits, valid = self.forward(text, text_lens, prompt, target, stage, frame_inputs, head0)
        labels = torch.full(valid.shape, -100, dtype=torch.long, device=text.device)
        for b, t in enumerate(target):
            labels[b, : t.shape[0]] = t[:, stage[b]]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        keep = labels != -100
        top10 = logits[keep].topk(10, dim=-1).indices
        stats = {"nar_loss": loss.item(), "nar_acc": (top10[:, 0] == labels[keep]).float().mean().item(),
                 "nar_top10": (top10 == labels[keep].unsqueeze(1)).any(1).float().mean().item()}
        first = keep & (stage == 0).unsqueeze(1)
        if bool(first.any()):
            stats["code0_acc"] = (logits[first].argmax(-1) == labels[first]).float().mean().item()
        return loss, stats
