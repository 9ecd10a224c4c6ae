"""AR decoding speed: KV cache against full recomputation, and G=2 against G=1.

Each run decodes exactly ``--frames`` codebook-0 frames (10 s at 75 Hz by default; EOS is
disabled so every run does the same work) after a ``--prompt-frames`` prompt and
``--text-tokens`` text tokens, with random weights of the given size.  The cache and
recomputation runs share weights and seed and must give identical codes.  The KV-cache runs
(a few seconds each) are repeated ``--repeats`` times and their median is used, because single
runs vary by +-15 % on a shared CPU; the slow full recomputation runs once.

Last line: ``kv_cache_speedup=<x> group2_time_ratio=<y>`` (targets: x >= 10, y <= 0.55).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from tools import run_main
from valle2.decoding import DecodingOptions, ar_generate
from valle2.model import ARModel, ModelDims


def build(g: int, args) -> ARModel:
    torch.manual_seed(0)
    dims = ModelDims(n_text_vocab=256, codebook_size=1024, group_size=g, d_model=args.d_model, n_heads=args.heads,
                     n_ar_layers=args.layers, n_nar_layers=1, d_ff=4 * args.d_model, dropout=0.0)
    ar = ARModel(dims).eval()
    with torch.no_grad():  # no EOS: every run generates exactly --frames frames
        ar.head.bias.view(g, -1)[:, dims.eos_id] = -1e9
    return ar


def timed(ar: ARModel, args, use_cache: bool) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    text = [torch.randint(1, 256, (args.text_tokens,), generator=g)]
    prompt = [torch.randint(0, 1024, (args.prompt_frames,), generator=g)]
    opts = DecodingOptions(top_p=0.8, ras=True, use_kv_cache=use_cache, seed=0)
    start = time.perf_counter()
    res = ar_generate(ar, text, prompt, [args.frames], opts)
    elapsed = time.perf_counter() - start
    assert res.codes[0].shape[0] == args.frames
    return elapsed, res.codes[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=750, help="frames to generate (750 = 10 s at 75 Hz)")
    p.add_argument("--prompt-frames", type=int, default=225, help="3 s prompt at 75 Hz")
    p.add_argument("--text-tokens", type=int, default=60)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="KV-cache runs per G; the median counts")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    audio_s = args.frames / 75.0
    print(f"AR d={args.d_model} heads={args.heads} layers={args.layers}, {args.frames} frames after a "
          f"{args.prompt_frames}-frame prompt and {args.text_tokens} text tokens, {args.threads} threads")
    rows = []
    ar1 = build(1, args)
    t1_cache, c_cache = timed(ar1, args, True)
    t1_full, c_full = timed(ar1, args, False)
    assert torch.equal(c_cache, c_full), "KV-cache decoding differs from full recomputation"
    ar2 = build(2, args)
    t1_cache = statistics.median([t1_cache] + [timed(ar1, args, True)[0] for _ in range(args.repeats - 1)])
    t2_cache = statistics.median(timed(ar2, args, True)[0] for _ in range(args.repeats))
    rows += [(f"G=1, KV cache (median of {args.repeats})", t1_cache), ("G=1, full recomputation", t1_full),
             (f"G=2, KV cache (median of {args.repeats})", t2_cache)]
    print(f"{'run':<36}{'seconds':>10}{'RTF':>10}")
    for name, t in rows:
        print(f"{name:<36}{t:>10.2f}{t / audio_s:>10.3f}")
    print("KV-cache and full-recomputation codes are identical")
    print(f"kv_cache_speedup={t1_full / t1_cache:.1f} group2_time_ratio={t2_cache / t1_cache:.3f}")


if __name__ == "__main__":
    run_main(main)
