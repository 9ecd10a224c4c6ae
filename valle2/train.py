"""Training the AR and NAR on tokenized utterances.

The AR learns codebook 0 of a whole utterance from its whole text.  The NAR learns codebook
``j`` (drawn per utterance from ``1 .. n_q-1``) after each utterance is split into a condition
part (its first 25-50 % of frames, all codebooks summed) and a target part, as in VALL-E.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .model import ARModel, ModelDims, NARModel


@dataclass
class Utterance:
    """One training example: text token ids ``[L]`` and codec codes ``[n_q, T]``."""

    text_ids: Tensor
    codes: Tensor
    speaker: str = ""


@dataclass
class TrainConfig:
    """Optimiser and schedule: AdamW, linear warm-up then cosine decay to ``min_lr_ratio``."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    grad_accum: int = 1
    nar_prompt_min: float = 0.25
    nar_prompt_max: float = 0.5
    seed: int = 0


def lr_lambda(cfg: TrainConfig):
    """Multiplier of ``cfg.lr`` at each step: warm-up, then cosine decay."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def frames_per_token(data: list[Utterance]) -> float:
    """Mean codec frames per text token over a corpus (sets the decoding length limit)."""
    return sum(u.codes.shape[1] for u in data) / max(1, sum(u.text_ids.shape[0] for u in data))


class Trainer:
    """Holds both models, one AdamW optimiser and the schedule; :meth:`step` runs one update."""

    def __init__(self, dims: ModelDims, cfg: TrainConfig, ar: ARModel | None = None, nar: NARModel | None = None):
        self.dims, self.cfg = dims, cfg
        torch.manual_seed(cfg.seed)
        self.ar = ar if ar is not None else ARModel(dims)
        self.nar = nar if nar is not None else NARModel(dims)
        params = list(self.ar.parameters()) + list(self.nar.parameters())
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.rng = random.Random(cfg.seed)
        self.step_count = 0

    def losses(self, batch: list[Utterance]) -> tuple[Tensor, dict]:
        """AR + NAR loss of one batch, with their statistics."""
        text = nn.utils.rnn.pad_sequence([u.text_ids for u in batch], batch_first=True)
        text_lens = torch.tensor([u.text_ids.shape[0] for u in batch])
        ar_loss, stats = self.ar.loss(text, text_lens, [u.codes[0] for u in batch])
        prompts, targets = [], []
        for u in batch:
            t = u.codes.shape[1]
            p = min(t - 1, max(1, int(t * self.rng.uniform(self.cfg.nar_prompt_min, self.cfg.nar_prompt_max))))
            prompts.append(u.codes[:, :p].T)
            targets.append(u.codes[:, p:].T)
        stage = torch.tensor([self.rng.randint(1, self.dims.n_codebooks - 1) for _ in batch])
        nar_loss, nar_stats = self.nar.loss(text, text_lens, prompts, targets, stage)
        stats.update(nar_stats)
        return ar_loss + nar_loss, stats

    def step(self, batches: list[list[Utterance]]) -> dict:
        """One optimiser update over ``grad_accum`` micro-batches; returns averaged statistics."""
        self.ar.train()
        self.nar.train()
        self.opt.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for batch in batches:
            loss, stats = self.losses(batch)
            (loss / len(batches)).backward()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / len(batches)
        params = [p for m in (self.ar, self.nar) for p in m.parameters()]
        totals["grad_norm"] = float(nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        self.opt.step()
        self.sched.step()
        self.step_count += 1
        totals["lr"] = self.sched.get_last_lr()[0]
        return totals

    def fit(self, data: list[Utterance], progress: bool = True, log=None) -> list[dict]:
        """Train for ``cfg.steps`` updates on random batches of ``data``; returns each step's stats."""
        history = []
        bar = tqdm(range(self.step_count, self.cfg.steps), desc="training", disable=not progress)
        for _ in bar:
            batches = [self.rng.sample(data, min(self.cfg.batch_size, len(data))) for _ in range(self.cfg.grad_accum)]
            stats = self.step(batches)
            history.append(stats)
            bar.set_postfix(ar=f"{stats['ar_loss']:.2f}", nar=f"{stats['nar_loss']:.2f}")
            if log is not None:
                log(self.step_count, stats)
        return history
