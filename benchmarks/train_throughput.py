"""Training throughput of the demo config against a plain PyTorch loop of the same size.

valle2's step trains the AR (grouped codes, prefix-LM mask) and the NAR (bidirectional, random
stage) on one batch.  The baseline trains two plain ``nn.TransformerEncoder`` stacks of the same
width, depth and FFN on the same padded sequences (text + audio), with an embedding, a causal
mask for the first and a padding mask for the second, a linear head, cross-entropy and AdamW.
Throughput counts text tokens + codec frames per second (padding excluded).  The ratio uses
G=1, where both loops see the same sequence lengths; the config's G is printed beside it.

Last line: ``train_throughput_ratio=<valle2 / baseline>`` (target >= 0.9).
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from torch import nn

from tools import run_main
from valle2.config import OptimConfig, load_config
from valle2.model import ModelDims
from valle2.train import Trainer, Utterance


def make_batch(rng: random.Random, n: int, frames: tuple[int, int], n_q: int, vocab: int) -> list[Utterance]:
    out = []
    for _ in range(n):
        t = rng.randint(*frames)
        out.append(Utterance(torch.randint(1, vocab, (max(8, t // 5),)), torch.randint(0, 1024, (n_q, t))))
    return out


class Baseline(nn.Module):
    """Embedding + nn.TransformerEncoder (pre-norm) + linear head, over a padded sequence."""

    def __init__(self, dims: ModelDims, n_layers: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.emb = nn.Embedding(2048, dims.d_model)
        layer = nn.TransformerEncoderLayer(dims.d_model, dims.n_heads, dims.d_ff, dims.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(dims.d_model, dims.codebook_size + 1)

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        s = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(s) if self.causal else None
        h = self.enc(self.emb(tokens), mask=mask, src_key_padding_mask=pad, is_causal=self.causal)
        return nn.functional.cross_entropy(self.head(h).transpose(1, 2), tokens.masked_fill(pad, -100) % 1025,
                                           ignore_index=-100)


def baseline_step(models, opt, batch: list[Utterance]) -> None:
    seqs = [torch.cat([u.text_ids, u.codes[0]]) for u in batch]
    tokens = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    lens = torch.tensor([len(s) for s in seqs])
    pad = torch.arange(tokens.shape[1]).unsqueeze(0) >= lens.unsqueeze(1)
    opt.zero_grad()
    loss = sum(m(tokens, pad) for m in models)
    loss.backward()
    nn.utils.clip_grad_norm_([p for m in models for p in m.parameters()], 1.0)
    opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    p.add_argument("--batch", type=int, default=8, help="utterances a batch")
    p.add_argument("--min-frames", type=int, default=150)
    p.add_argument("--max-frames", type=int, default=450)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    dims = ModelDims(n_text_vocab=256, **vars(cfg.model))
    rng = random.Random(0)
    batches = [make_batch(rng, args.batch, (args.min_frames, args.max_frames), dims.n_codebooks, 256)
               for _ in range(args.steps + args.warmup)]
    n_tokens = [sum(u.text_ids.shape[0] + u.codes.shape[1] for u in b) for b in batches[args.warmup:]]

    trainer_g1 = Trainer(ModelDims(**{**vars(dims), "group_size": 1}), OptimConfig(steps=10_000, warmup_steps=10))
    trainer = Trainer(dims, OptimConfig(steps=10_000, warmup_steps=10))
    models = [Baseline(dims, dims.n_ar_layers, causal=True), Baseline(dims, dims.n_nar_layers, causal=False)]
    opt = torch.optim.AdamW([q for m in models for q in m.parameters()], lr=1e-3)
    for m in models:
        m.train()

    def timed(fn) -> float:
        for b in batches[: args.warmup]:
            fn(b)
        start = time.perf_counter()
        for b in batches[args.warmup:]:
            fn(b)
        return sum(n_tokens) / (time.perf_counter() - start)

    ours_g1 = timed(lambda b: trainer_g1.step([b]))
    base = timed(lambda b: baseline_step(models, opt, b))
    ours = timed(lambda b: trainer.step([b]))
    print(f"demo config: d={dims.d_model} heads={dims.n_heads} layers AR/NAR={dims.n_ar_layers}/{dims.n_nar_layers} "
          f"ffn={dims.d_ff} G={dims.group_size}; batch {args.batch} utterances of {args.min_frames}-{args.max_frames} "
          f"frames; {args.threads} threads")
    print(f"{'loop':<34}{'tokens/s':>10}")
    print(f"{'valle2 Trainer.step, G=1':<34}{ours_g1:>10.0f}")
    print(f"{'plain nn.TransformerEncoder x2':<34}{base:>10.0f}")
    print(f"{f'valle2 Trainer.step, G={dims.group_size}':<34}{ours:>10.0f}")
    print("the ratio compares like with like: G=1 runs the same sequence lengths as the baseline")
    print(f"train_throughput_ratio={ours_g1 / base:.2f}")


if __name__ == "__main__":
    run_main(main)
